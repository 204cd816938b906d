"""Expert iteration: fine-tune on the policy's own samples that pass the hidden tests.

Contract
- ``rounds`` rounds; round r samples ``samples_per_problem`` completions of every RL problem
  from the current model (batched HF sampling, ``temperature``, seed ``seed + r``), scores them
  with :class:`ExecutionReward` (``all_pass`` on the problem's HIDDEN tests, one batched judge
  call) and keeps up to ``keep_per_problem`` passing completions per problem, duplicates
  included (their frequency is the policy's own; a probe here that deduplicated, with a lower lr
  and fewer epochs, gained nothing). It then trains on those (prompt, completion) pairs for ``epochs`` passes (AdamW,
  warm-up + cosine, bf16 autocast) with, per completion token, the NLL plus ``beta`` times the
  full-vocabulary KL(policy || reference), the reference being the frozen stage-2 model
  (``model_dir``, not the previous round's); the result is the next round's model. ``beta == 0``
  is refused unless ``allow_zero_beta=True``. A round with no passing sample trains nothing.
- Outputs as the other trainers: ``out_dir/model`` (the last round's model), ``metrics.parquet``
  (one row per round: ``step`` = round, ``reward`` = ``pass_rate`` = the sampled completions'
  hidden-test pass rate, ``solved_problems``, ``pairs``, ``train_steps``, ``train_loss`` and
  ``kl`` of the round's last step, ``step_time``), ``rl_curve.png``. Round r's work lives in
  ``out_dir/rounds/round-<r>/``; a round is complete once its ``round.json`` is written (last). A
  rerun skips complete rounds; an interrupted round samples again (same seed: the same samples on
  the same machine and torch build) and
  resumes its training from ``checkpoint.pt`` (every ``checkpoint_every`` steps: model,
  optimizer, step, data position). A rerun is refused if any param other than ``rounds`` changed.
- RL prompts must not be the SFT prompts: the caller passes another split (the valid split).

Limits: sampling uses :class:`~tasks.core.sampling.HFBatchedBackend` (no vLLM path here); one
process, CPU (bf16 autocast on CPU); each round reloads the model from disk.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tasks.core.manifest import atomic_write_text
from tasks.core.problems.schema import Problem
from tasks.core.rl.artifacts import (
    METRICS_FILE,
    MODEL_DIR,
    PLOT_FILE,
    ProgressFn,
    RLResult,
    check_inputs,
    plot_curve,
    save_model_atomic,
    write_metrics,
)
from tasks.core.rl.rewards import ExecutionReward
from tasks.core.sandbox.types import Limits

ROUNDS_DIR = "rounds"
ROUND_MARKER = "round.json"
CURVE_KEYS = ("pass_rate", "train_loss", "kl")


class ExpertIterationParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    rounds: int = Field(default=1, ge=1)
    samples_per_problem: int = Field(default=8, ge=1)
    temperature: float = Field(default=1.0, gt=0)
    max_completion_length: int = Field(default=96, ge=1)
    keep_per_problem: int = Field(default=8, ge=1)
    lr: float = Field(default=3e-4, gt=0)
    epochs: float = Field(default=3.0, gt=0)
    batch_size: int = Field(default=16, ge=1)
    beta: float = Field(default=0.04, ge=0)
    allow_zero_beta: bool = False
    bf16: bool = True
    checkpoint_every: int = Field(default=50, ge=1)
    seq_len: int = Field(default=512, gt=1)
    sample_batch_size: int = Field(default=128, ge=1)
    max_tests: int | None = Field(default=None, ge=1)
    time_limit_s: float = Field(default=2.0, gt=0)  # CPU seconds per test in the sandbox
    seed: int = 0

    @model_validator(mode="after")
    def _beta_positive(self) -> ExpertIterationParams:
        if self.beta == 0 and not self.allow_zero_beta:
            raise ValueError(
                "beta=0 drops the KL penalty to the stage-2 model; use beta>0 "
                "(default 0.04) or set allow_zero_beta=True deliberately"
            )
        return self


def passing_pairs(
    prompts: Sequence[str],
    problem_ids: Sequence[str],
    completions: Sequence[str],
    rewards: Sequence[float | None],
    keep_per_problem: int,
) -> list[tuple[str, str]]:
    """The (prompt, completion) pairs whose reward is 1.0, at most ``keep_per_problem`` per problem,
    in input order."""
    kept: dict[str, int] = {}
    pairs = []
    for prompt, pid, completion, reward in zip(prompts, problem_ids, completions, rewards, strict=True):
        if reward == 1.0 and kept.get(pid, 0) < keep_per_problem:
            kept[pid] = kept.get(pid, 0) + 1
            pairs.append((prompt, completion))
    return pairs


def _sample(model_dir: Path, prompts: list[str], params: ExpertIterationParams, seed: int) -> list[list[str]]:
    from tasks.core.sampling import HFBatchedBackend, SamplingParams

    sampling = SamplingParams(
        n=params.samples_per_problem,
        temperature=params.temperature,
        max_new_tokens=params.max_completion_length,
        batch_size=params.sample_batch_size,
    )
    backend = HFBatchedBackend(model_dir)
    gens = backend.generate(prompts, params.samples_per_problem, sampling, seed)
    return [[g.text for g in group] for group in gens]


def _kl_nll_sums(policy, ref, batch, bf16: bool):
    """Summed NLL of the label tokens and summed KL(policy || ref) over the vocabulary at them."""
    import torch
    import torch.nn.functional as F

    from tasks.core.training import IGNORE_INDEX

    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits = policy(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        ref_logits = ref(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    labels = batch.labels[:, 1:]
    mask = labels != IGNORE_INDEX
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)
    logq = F.log_softmax(ref_logits[:, :-1].float(), dim=-1)
    nll = F.nll_loss(
        logp.reshape(-1, logp.size(-1)), labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
    )
    kl = ((logp.exp() * (logp - logq)).sum(-1) * mask).sum()
    return nll, kl


def _train_round(
    model_dir: Path,
    ref_dir: Path,
    pairs: list[tuple[str, str]],
    params: ExpertIterationParams,
    round_dir: Path,
    seed: int,
) -> tuple[int, float, float]:
    """Train on ``pairs`` with loss NLL + beta * KL(policy || frozen ref) per label token into
    ``round_dir/model``; resumes from ``round_dir/checkpoint.pt``. (steps, last loss, last KL)."""
    import torch

    from tasks.core.modeling import load_model_and_tokenizer
    from tasks.core.training import DataPosition, PromptCompletionDataset, TrainHParams, lr_factor

    torch.manual_seed(seed)
    policy, tokenizer = load_model_and_tokenizer(model_dir)
    ref = load_model_and_tokenizer(ref_dir)[0].eval().requires_grad_(False)
    max_len = min(params.seq_len, policy.config.max_position_embeddings)
    data = PromptCompletionDataset(pairs, tokenizer, max_len, seed=seed)
    steps = max(2, round(params.epochs * len(pairs) / params.batch_size))
    hp = TrainHParams(
        max_steps=steps,
        batch_size=params.batch_size,
        lr=params.lr,
        warmup_steps=min(10, steps // 5),
        seq_len=max_len,
        seed=seed,
    )
    matrices = [p for p in policy.parameters() if p.dim() >= 2]  # as stage 2: decay matrices only
    others = [p for p in policy.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": matrices, "weight_decay": 0.1}, {"params": others, "weight_decay": 0.0}],
        lr=params.lr,
        betas=(0.9, 0.95),
    )
    step, position, loss, kl = 0, DataPosition(), float("nan"), float("nan")
    ckpt = round_dir / "checkpoint.pt"
    if ckpt.is_file():
        state = torch.load(ckpt, weights_only=False)
        policy.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, position = state["step"], DataPosition(*state["position"])
    policy.train()
    while step < steps:
        for group in optimizer.param_groups:
            group["lr"] = params.lr * lr_factor(step, hp)
        indices, position = data.draw(position, params.batch_size)
        batch = data.collate(indices)
        nll_sum, kl_sum = _kl_nll_sums(policy, ref, batch, params.bf16)
        tokens = max(batch.n_label_tokens, 1)
        ((nll_sum + params.beta * kl_sum) / tokens).backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step, loss, kl = step + 1, nll_sum.item() / tokens, kl_sum.item() / tokens
        if step % params.checkpoint_every == 0 and step < steps:
            tmp = ckpt.with_suffix(".tmp")
            torch.save(
                {
                    "model": policy.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "step": step,
                    "position": (position.epoch, position.index),
                },
                tmp,
            )
            tmp.replace(ckpt)
    save_model_atomic(policy, tokenizer, round_dir / "model")
    return steps, loss, kl


def _round(
    r: int,
    model_dir: Path,
    ref_dir: Path,
    problems: Sequence[Problem],
    reward: ExecutionReward,
    params: ExpertIterationParams,
    round_dir: Path,
    format_prompt: Callable[[Problem], str],
) -> None:
    """Sample, score, keep the passing completions, train on them; ``round.json`` last."""
    started = time.perf_counter()
    prompts = [format_prompt(p) for p in problems]
    groups = _sample(model_dir, prompts, params, params.seed + r)
    flat = [(prompt, p.name, c) for prompt, p, group in zip(prompts, problems, groups) for c in group]
    rewards = reward([f[0] for f in flat], [f[2] for f in flat], problem_id=[f[1] for f in flat])
    pairs = passing_pairs(
        [f[0] for f in flat], [f[1] for f in flat], [f[2] for f in flat], rewards, params.keep_per_problem
    )
    solved = len({pid for (_, pid, _), rw in zip(flat, rewards) if rw == 1.0})
    steps, loss, kl = 0, float("nan"), float("nan")
    if pairs:
        steps, loss, kl = _train_round(model_dir, ref_dir, pairs, params, round_dir, params.seed + r)
    row = {
        "step": float(r + 1),
        "reward": reward.last_pass_rate,
        "pass_rate": reward.last_pass_rate,
        "solved_problems": float(solved),
        "pairs": float(len(pairs)),
        "train_steps": float(steps),
        "train_loss": loss,
        "kl": kl,
        "step_time": time.perf_counter() - started,
    }
    atomic_write_text(
        round_dir / ROUND_MARKER,
        json.dumps({"row": row, "trained": bool(pairs), "params": _resume_key(params)}),
    )


def _resume_key(params: ExpertIterationParams) -> dict:
    return params.model_dump(exclude={"rounds"})


def train_expert_iteration(
    model_dir: Path,
    problems: Sequence[Problem],
    judge: Any,
    params: ExpertIterationParams,
    out_dir: Path,
    format_prompt: Callable[[Problem], str],
    extract_program: Callable[[str], str],
    progress: ProgressFn | None = None,
) -> RLResult:
    """Expert-iterate ``model_dir`` on ``problems`` (not the SFT prompts); see the module docstring."""
    from tasks.core.modeling import load_model_and_tokenizer

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    check_inputs(model_dir, problems, "train_expert_iteration")
    reward = ExecutionReward(
        judge=judge,
        problems={p.name: p for p in problems},
        extract_program=extract_program,
        reward="all_pass",
        max_tests=params.max_tests,
        limits=Limits(time_s=params.time_limit_s),
    )
    rows, current, resumed = [], model_dir, None
    for r in range(params.rounds):
        round_dir = out_dir / ROUNDS_DIR / f"round-{r}"
        marker = round_dir / ROUND_MARKER
        if marker.is_file():
            resumed = r + 1
            if json.loads(marker.read_text())["params"] != _resume_key(params):
                raise ValueError(
                    f"{round_dir} was written with other params; use a new out_dir "
                    "(only `rounds` may change on resume)"
                )
        else:
            round_dir.mkdir(parents=True, exist_ok=True)
            _round(r, current, model_dir, problems, reward, params, round_dir, format_prompt)
        done = json.loads(marker.read_text())
        if done["trained"]:  # else the model is unchanged
            current = round_dir / "model"
        row = done["row"]
        rows.append(row)
        if progress is not None:
            progress(r + 1, params.rounds, row)
    model, tokenizer = load_model_and_tokenizer(current)
    save_model_atomic(model, tokenizer, out_dir / MODEL_DIR)
    metrics = write_metrics(rows, out_dir / METRICS_FILE)
    plot = plot_curve(rows, out_dir / PLOT_FILE, CURVE_KEYS, "expert iteration")
    return RLResult(
        model_dir=out_dir / MODEL_DIR,
        steps=params.rounds,
        metrics_path=metrics,
        plot_path=plot,
        final_reward_mean=float(rows[-1]["reward"] or 0.0),
        resumed_from_step=resumed,
    )
