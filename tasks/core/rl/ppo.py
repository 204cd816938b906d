"""CodeRL-style actor-critic PPO with execution rewards (ours; TRL no longer ships PPO).

Contract
- Actor: the causal LM loaded from ``model_dir`` (stage 2). Critic: a linear value head on the
  actor's last hidden states (shared trunk). Reference: a second, frozen copy of ``model_dir``.
- Rollout (no grad): sample ``samples_per_prompt`` completions per prompt; store, detached, the
  rollout-time per-token log-probs (``old_logprobs``), the critic's values and the reference
  log-probs. Log-probs are taken from ``logits / temperature``, the distribution sampled from.
- Rewards per token: ``-beta * (logp_policy - logp_ref)``, plus the execution reward (hidden
  tests, one batched judge call per step) on the final token (:func:`kl_penalised_rewards`).
  Advantages and returns by GAE (:func:`compute_gae`), advantages whitened over valid tokens.
- Update: ``ppo_epochs`` passes over shuffled minibatches; ratio
  ``exp(new_logprobs - old_logprobs)`` against the ROLLOUT-time log-probs, clipped surrogate,
  (optionally clipped) value loss, entropy bonus (:func:`ppo_losses`); grad-norm clipping.
- Outputs as ``train_grpo``: ``out_dir/model`` (actor via ``save_pretrained``; the value head
  is saved beside it as ``value_head.pt``), ``metrics.parquet`` (one row per step: reward,
  reward_std, pass_rate, kl, entropy, policy_loss, value_loss, clip_frac, approx_kl,
  ratio_dev, step_time, ...), ``rl_curve.png``, and ``checkpoints/step-<n>`` every
  ``save_every`` steps and at the last step, in the one checkpoint format
  (:func:`tasks.core.io.save_checkpoint`: actor, value head, optimizer, RNG, step, params and
  the rows so far; the newest ``save_total_limit`` are kept); a rerun with the same ``out_dir``
  resumes from the newest complete one there (refused if any param other than
  ``steps``/``save_every`` changed).
- Sampling is reseeded each step from ``(seed, step)``, and the prompt order is a per-pass
  permutation seeded by ``(seed, pass)``, so a resumed run draws the same prompts and seeds.

- Device (:mod:`tasks.core.device`): actor, value head and reference live on
  ``task.placement`` (default: ``auto`` resolved here) with float32 weights; every forward pass
  (rollout generation, log-probs, values) runs under its autocast (bfloat16/float16 on a GPU,
  none in float32 on the CPU); log-probs, values and losses are computed in float32.
  :attr:`RLResult.device` records the placement.

Limits
- One process, one device. Completions from excluded (sandbox-failed) jobs are dropped from
  the step; a step where all are dropped is skipped.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tasks.core import io
from tasks.core.device import Placement, resolve
from tasks.core.hparams import PPOParams
from tasks.core.problems.schema import Problem
from tasks.core.rl.artifacts import CHECKPOINTS_DIR, RLResult, RLTask, write_outputs
from tasks.core.rl.rewards import ExecutionReward

CHECKPOINT_PREFIX = "step-"
VALUE_HEAD = "value_head"
VALUE_HEAD_FILE = f"{VALUE_HEAD}.pt"
CURVE_KEYS = ("reward", "pass_rate", "kl", "value_loss")


# ----------------------------------------------------------------------------- pure functions


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + eps) * mask


def compute_gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE over ``[batch, time]`` tensors. ``mask`` marks valid tokens (a prefix of each row).

    The value after a row's last valid token is 0 (the episode ends there). Returns
    ``(advantages, returns)`` with ``returns = advantages + values``, both zero where masked.
    """
    if not rewards.shape == values.shape == mask.shape or rewards.dim() != 2:
        raise ValueError(
            f"rewards {tuple(rewards.shape)}, values {tuple(values.shape)} and mask "
            f"{tuple(mask.shape)} must be equal [batch, time] shapes"
        )
    mask = mask.to(values.dtype)
    rewards, values = rewards * mask, values * mask
    advantages = torch.zeros_like(values)
    running = torch.zeros_like(values[:, 0])
    steps = values.shape[1]
    for t in reversed(range(steps)):
        next_mask = mask[:, t + 1] if t + 1 < steps else torch.zeros_like(running)
        next_value = values[:, t + 1] if t + 1 < steps else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value * next_mask - values[:, t]
        running = delta + gamma * lam * next_mask * running
        advantages[:, t] = running * mask[:, t]
    return advantages, (advantages + values) * mask


def kl_penalised_rewards(
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    mask: torch.Tensor,
    sequence_rewards: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards ``-beta * (logp - logp_ref)``, plus ``sequence_rewards`` at each row's
    last valid token. Returns ``(rewards, kl)`` with ``kl`` the per-token ``logp - logp_ref``."""
    mask = mask.to(logprobs.dtype)
    lengths = mask.sum(dim=1).long()
    if (lengths < 1).any():
        raise ValueError("every row needs at least one valid token to carry its reward")
    kl = (logprobs - ref_logprobs) * mask
    rewards = -beta * kl
    rows = torch.arange(rewards.shape[0], device=rewards.device)
    rewards[rows, lengths - 1] += sequence_rewards.to(rewards.dtype)
    return rewards, kl


@dataclass(frozen=True)
class PPOLosses:
    policy_loss: torch.Tensor
    value_loss: torch.Tensor
    ratio: torch.Tensor
    clip_frac: torch.Tensor
    approx_kl: torch.Tensor


def ppo_losses(
    new_logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float,
    value_clip: float | None,
) -> PPOLosses:
    """Clipped PPO surrogate and value loss, masked means over valid tokens.

    ``ratio = exp(new_logprobs - old_logprobs)`` where ``old_logprobs`` are the rollout-time
    log-probs (detached here, whatever the caller passes).
    """
    mask = mask.to(new_logprobs.dtype)
    old_logprobs, advantages = old_logprobs.detach(), advantages.detach()
    old_values, returns = old_values.detach(), returns.detach()
    log_ratio = new_logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    surrogate = torch.max(-advantages * ratio, -advantages * torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps))
    value_error = (values - returns) ** 2
    if value_clip is not None:
        clipped = old_values + torch.clamp(values - old_values, -value_clip, value_clip)
        value_error = torch.max(value_error, (clipped - returns) ** 2)
    with torch.no_grad():
        clip_frac = masked_mean(((ratio - 1).abs() > clip_eps).to(mask.dtype), mask)
        approx_kl = masked_mean(0.5 * log_ratio**2, mask)
    return PPOLosses(
        policy_loss=masked_mean(surrogate, mask),
        value_loss=0.5 * masked_mean(value_error, mask),
        ratio=ratio.detach(),
        clip_frac=clip_frac,
        approx_kl=approx_kl,
    )


def token_entropy(logits: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)


# ----------------------------------------------------------------------------- parameters


# ----------------------------------------------------------------------------- model pieces


class ValueHead(nn.Module):
    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)
        nn.init.normal_(self.linear.weight, std=1e-3)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden).squeeze(-1)


@dataclass(frozen=True)
class Rollout:
    sequences: torch.Tensor  # [N, P + C] prompt (left-padded) + completion ids
    attention_mask: torch.Tensor  # [N, P + C]
    mask: torch.Tensor  # [N, C] valid completion tokens (up to and incl. the first EOS)
    prompt_len: int
    old_logprobs: torch.Tensor  # [N, C] rollout-time, detached
    old_values: torch.Tensor  # [N, C]
    ref_logprobs: torch.Tensor  # [N, C]


def _forward(
    model: nn.Module,
    head: ValueHead | None,
    sequences: torch.Tensor,
    attention_mask: torch.Tensor,
    prompt_len: int,
    temperature: float,
    placement: Placement | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Per completion token: log-prob of the taken token, value, entropy (all ``[N, C]``); the
    forward pass under ``placement``'s autocast (none when not given), the rest in float32."""
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    with placement.autocast() if placement is not None else nullcontext():
        out = model(
            input_ids=sequences,
            attention_mask=attention_mask,
            position_ids=position_ids,
            output_hidden_states=head is not None,
        )
    logits = out.logits[:, prompt_len - 1 : -1].float() / temperature
    targets = sequences[:, prompt_len:]
    logprobs = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    values = None
    if head is not None:
        values = head(out.hidden_states[-1][:, prompt_len - 1 : -1].float())
    return logprobs, values, token_entropy(logits)


def completion_mask(completions: torch.Tensor, eos_id: int | None) -> torch.Tensor:
    """1 for tokens up to and including the first EOS of each row (all tokens if none)."""
    if eos_id is None:
        return torch.ones_like(completions).float()
    is_eos = (completions == eos_id).long()
    before = is_eos.cumsum(dim=1) - is_eos  # EOS count strictly before each position
    return (before == 0).float()


# ----------------------------------------------------------------------------- training loop


@dataclass
class _State:
    policy: nn.Module
    head: ValueHead
    ref: nn.Module
    tokenizer: Any
    optimizer: torch.optim.Optimizer
    rows: list[dict[str, float]]
    step: int
    placement: Placement


def _load(model_dir: Path, params: PPOParams, placement: Placement) -> _State:
    """Actor, value head and frozen reference on ``placement``, float32 master weights."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    placement.activate()
    device = placement.torch_device()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    policy = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=placement.master_dtype()).to(device)
    ref = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=placement.master_dtype()).to(device)
    ref.requires_grad_(False)
    policy.eval()  # no dropout: rollout and update log-probs come from the same function
    ref.eval()
    head = ValueHead(policy.config.hidden_size).to(device)
    optimizer = _optimizer(policy, head, model_dir, params)
    return _State(policy, head, ref, tokenizer, optimizer, rows=[], step=0, placement=placement)


def _optimizer(policy, head: ValueHead, model_dir: Path, params: PPOParams) -> torch.optim.Optimizer:
    """Stage 2's AdamW continued over the policy (``optimizer = "continue"``) plus a fresh group
    for the value head at ``lr``; or one fresh AdamW at ``lr`` over both."""
    if params.optimizer == "fresh":
        return torch.optim.AdamW(
            list(policy.parameters()) + list(head.parameters()), lr=params.lr, weight_decay=0.0
        )
    from tasks.core.training.loop import continued_optimizer

    optimizer = continued_optimizer(policy, model_dir)
    optimizer.add_param_group({"params": list(head.parameters()), "lr": params.lr, "weight_decay": 0.0})
    return optimizer


def _resume_key(params: PPOParams) -> dict[str, Any]:
    return params.model_dump(exclude={"steps", "save_every"})


def _resume(state: _State, ckpt: io.Checkpoint, params: PPOParams) -> None:
    fixed, old = _resume_key(params), ckpt.meta["params"]
    if fixed != old:
        diff = sorted(k for k in fixed if fixed.get(k) != old.get(k))
        raise ValueError(f"checkpoint {ckpt.path} was written with other params ({diff}); use a new out_dir")
    state.policy.load_state_dict(ckpt.state("model"))
    state.head.load_state_dict(ckpt.state(VALUE_HEAD))
    state.optimizer.load_state_dict(ckpt.state("optimizer"))
    state.rows = list(ckpt.meta["rows"])
    state.step = ckpt.step


def _save_checkpoint(state: _State, params: PPOParams, checkpoints: Path) -> None:
    states = {
        "model": state.policy.state_dict(),
        VALUE_HEAD: state.head.state_dict(),
        "optimizer": state.optimizer.state_dict(),
    }
    meta = {"params": _resume_key(params), "rows": state.rows}
    io.save_checkpoint(checkpoints / f"{CHECKPOINT_PREFIX}{state.step}", state.step, states, meta)
    io.prune_checkpoints(checkpoints, CHECKPOINT_PREFIX, params.save_total_limit)


def _problems_for_step(problems: Sequence[Problem], step: int, params: PPOParams) -> list[Problem]:
    chosen = []
    for j in range(params.prompts_per_step):
        index = step * params.prompts_per_step + j
        epoch, pos = divmod(index, len(problems))
        order = list(range(len(problems)))
        random.Random(params.seed * 1_000_003 + epoch).shuffle(order)
        chosen.append(problems[order[pos]])
    return chosen


@torch.no_grad()
def _rollout(state: _State, prompts: list[str], params: PPOParams) -> tuple[Rollout, list[str]]:
    tok = state.tokenizer
    enc = tok(prompts, return_tensors="pt", padding=True, padding_side="left").to(state.placement.device)
    with state.placement.autocast():
        sequences = _generate(state, enc, params)
    prompt_len = enc["input_ids"].shape[1]
    completions = sequences[:, prompt_len:]
    mask = completion_mask(completions, tok.eos_token_id)
    prompt_mask = enc["attention_mask"].repeat_interleave(params.samples_per_prompt, dim=0)
    attention = torch.cat([prompt_mask, mask.long()], dim=1)
    logprobs, values, _ = _forward(
        state.policy, state.head, sequences, attention, prompt_len, params.temperature, state.placement
    )
    ref_logprobs, _, _ = _forward(
        state.ref, None, sequences, attention, prompt_len, params.temperature, state.placement
    )
    texts = [tok.decode(row[: int(m.sum())], skip_special_tokens=True) for row, m in zip(completions, mask)]
    rollout = Rollout(sequences, attention, mask, prompt_len, logprobs, values, ref_logprobs)
    return rollout, texts


def _generate(state: _State, enc: Any, params: PPOParams) -> torch.Tensor:
    tok = state.tokenizer
    return state.policy.generate(
        input_ids=enc["input_ids"],
        attention_mask=enc["attention_mask"],
        do_sample=True,
        temperature=params.temperature,
        top_k=0,
        top_p=1.0,
        max_new_tokens=params.max_completion_length,
        num_return_sequences=params.samples_per_prompt,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )


def _select(rollout: Rollout, keep: torch.Tensor) -> Rollout:
    return Rollout(
        rollout.sequences[keep],
        rollout.attention_mask[keep],
        rollout.mask[keep],
        rollout.prompt_len,
        rollout.old_logprobs[keep],
        rollout.old_values[keep],
        rollout.ref_logprobs[keep],
    )


def _update(
    state: _State, ro: Rollout, advantages: torch.Tensor, returns: torch.Tensor, params: PPOParams
) -> dict[str, float]:
    stats: dict[str, list[float]] = {
        k: [] for k in ("policy_loss", "value_loss", "entropy", "clip_frac", "approx_kl", "ratio_dev")
    }
    n = ro.sequences.shape[0]
    for _ in range(params.ppo_epochs):
        for idx in torch.randperm(n).split(params.minibatch_size):
            logprobs, values, entropy = _forward(
                state.policy,
                state.head,
                ro.sequences[idx],
                ro.attention_mask[idx],
                ro.prompt_len,
                params.temperature,
                state.placement,
            )
            mask = ro.mask[idx]
            losses = ppo_losses(
                logprobs,
                ro.old_logprobs[idx],
                advantages[idx],
                values,
                ro.old_values[idx],
                returns[idx],
                mask,
                params.clip_eps,
                params.value_clip,
            )
            ent = masked_mean(entropy, mask)
            loss = losses.policy_loss + params.vf_coef * losses.value_loss - params.ent_coef * ent
            state.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(
                list(state.policy.parameters()) + list(state.head.parameters()), params.max_grad_norm
            )
            state.optimizer.step()
            stats["policy_loss"].append(losses.policy_loss.item())
            stats["value_loss"].append(losses.value_loss.item())
            stats["entropy"].append(ent.item())
            stats["clip_frac"].append(losses.clip_frac.item())
            stats["approx_kl"].append(losses.approx_kl.item())
            stats["ratio_dev"].append(masked_mean((losses.ratio - 1).abs(), mask).item())
    out = {k: sum(v) / len(v) for k, v in stats.items()}
    out["ratio_dev_max"] = max(stats["ratio_dev"])
    return out


def _ppo_step(
    state: _State,
    reward: ExecutionReward,
    problems: Sequence[Problem],
    format_prompt: Callable[[Problem], str],
    params: PPOParams,
) -> dict[str, float]:
    started = time.perf_counter()
    torch.manual_seed(params.seed * 1_000_003 + state.step)
    chosen = _problems_for_step(problems, state.step, params)
    rollout, texts = _rollout(state, [format_prompt(p) for p in chosen], params)
    ids = [p.name for p in chosen for _ in range(params.samples_per_prompt)]
    scores = reward(
        [format_prompt(p) for p in chosen for _ in range(params.samples_per_prompt)], texts, problem_id=ids
    )
    keep = torch.tensor([s is not None for s in scores], device=rollout.sequences.device)
    row: dict[str, float] = {"step": float(state.step + 1), "excluded": float((~keep).sum())}
    row["pass_rate"] = reward.last_pass_rate if reward.last_pass_rate is not None else float("nan")
    if not keep.any():
        row["step_time"] = time.perf_counter() - started
        return row
    ro = _select(rollout, keep)
    seq_rewards = torch.tensor([float(s) for s in scores if s is not None], device=ro.sequences.device)
    rewards, kl = kl_penalised_rewards(ro.old_logprobs, ro.ref_logprobs, ro.mask, seq_rewards, params.beta)
    advantages, returns = compute_gae(rewards, ro.old_values, ro.mask, params.gamma, params.lam)
    advantages = masked_whiten(advantages, ro.mask)
    row.update(_update(state, ro, advantages, returns, params))
    row.update(
        reward=seq_rewards.mean().item(),
        reward_std=seq_rewards.std(unbiased=False).item(),
        kl=masked_mean(kl, ro.mask).item(),
        kl_seq=(kl.sum(dim=1)).mean().item(),
        value_mean=masked_mean(ro.old_values, ro.mask).item(),
        returns_mean=masked_mean(returns, ro.mask).item(),
        completion_len=ro.mask.sum(dim=1).mean().item(),
        step_time=time.perf_counter() - started,
    )
    return row


def train_ppo(task: RLTask, params: PPOParams) -> RLResult:
    """PPO-train ``task.model_dir`` on ``task.problems`` (not the SFT prompts); see the module
    docstring."""
    reward = task.start(params, "train_ppo")
    checkpoints = task.out_dir / CHECKPOINTS_DIR
    found = io.numbered_dirs(checkpoints, CHECKPOINT_PREFIX)
    ckpt = io.read_checkpoint(found[-1][1]) if found else None
    placement = task.placement or resolve()
    state = _load(task.model_dir, params, placement)
    if ckpt is not None:
        _resume(state, ckpt, params)
    while state.step < params.steps:
        row = _ppo_step(state, reward, task.problems, task.format_prompt, params)
        state.step += 1
        state.rows.append(row)
        if task.progress is not None:
            task.progress(state.step, params.steps, row)
        if state.step % params.save_every == 0 or state.step == params.steps:
            _save_checkpoint(state, params, checkpoints)

    def save_head(model_tmp: Path) -> None:
        torch.save(state.head.state_dict(), model_tmp / VALUE_HEAD_FILE)

    out = write_outputs(
        task.out_dir,
        state.policy,
        state.tokenizer,
        state.rows,
        CURVE_KEYS,
        "PPO (CodeRL-style)",
        extra=save_head,
    )
    rewards = [r["reward"] for r in state.rows if "reward" in r]
    return RLResult(
        model_dir=out.model_dir,
        steps=state.step,
        metrics_path=out.metrics_path,
        plot_path=out.plot_path,
        final_reward_mean=rewards[-1] if rewards else float("nan"),
        resumed_from_step=ckpt.step if ckpt is not None else None,
        device=placement.metrics(),
    )
