"""Expert iteration: fine-tune on the policy's own samples that pass the hidden tests.

Contract
- ``rounds`` rounds; round r samples ``samples_per_problem`` completions of every RL problem
  from the current model (batched HF sampling, ``temperature``, seed ``seed + r``), scores them
  with the trainers' shared reward (:func:`~tasks.core.rl.rewards.make_reward`: ``all_pass`` on
  the problem's HIDDEN tests, one batched judge call) and keeps up to ``keep_per_problem``
  passing completions per problem, duplicates included (their frequency is the policy's own; a
  probe here that deduplicated, with a lower lr and fewer epochs, gained nothing). It then
  trains on those (prompt, completion) pairs for ``epochs`` passes through the shared training
  loop (:func:`tasks.core.training.train`: AdamW, clipping, the device policy's placement and
  mixed precision, ``task.placement``; sampling runs there too) with the loss
  :class:`~tasks.core.training.KLRegularisedNLL`:
  per completion token, the NLL plus ``beta`` times the full-vocabulary KL(policy || reference),
  the reference being the frozen stage-2 model (``model_dir``, not the previous round's); the
  result is the next round's model. Optimizer (``optimizer``): ``continue`` (default) loads the
  AdamW state saved with the round's starting model (stage 2's ``model/optimizer.pt``, then each
  round's own, saved with its model) and trains at that state's constant learning rate, i.e.
  stage 2's final one, with no warm-up: continue, don't restart (``lr`` is then unused);
  ``fresh`` starts a new AdamW at ``lr`` with a warm-up of up to 10 steps and cosine decay.
  Rounds (``rounds_from``): ``previous`` (default) chains them, each round training the
  previous round's model on its own passing samples; ``stage2`` is ReST-EM's (Singh et al. 2023):
  each round samples from the previous round's model but trains stage 2's model afresh on the
  union of every round's passing samples so far (``optimizer_steps`` counts every round's steps).
  ``beta == 0`` is refused unless ``allow_zero_beta=True``
  (:class:`~tasks.core.hparams.KLPenalty`). A round with no passing sample trains nothing.
- Outputs as the other trainers: ``out_dir/model`` (the last round's model), ``metrics.parquet``
  (one row per round: ``step`` = round, ``reward`` = ``pass_rate`` = the sampled completions'
  hidden-test pass rate, ``solved_problems``, ``pairs``, ``train_steps``, ``train_tokens`` (input
  tokens of those steps), ``train_loss`` (NLL)
  and ``kl`` of the round's last step, ``step_time``), ``rl_curve.png``.
- Resume: round r's work lives in ``out_dir/rounds/round-<r>/``: ``scored.json`` (the kept
  pairs, pass rate and solved count, written once the samples are scored), the training loop's
  ``checkpoint/``, ``model/``, ``metrics.parquet`` (per step) and ``loss.png``, and last
  ``round.json``, which marks the round complete. A rerun skips complete rounds; an interrupted
  round reuses its ``scored.json`` (no re-sampling) and resumes its training from the loop's
  checkpoint (every ``checkpoint_every`` steps). A rerun is refused if any param other than
  ``rounds`` changed.
- RL prompts must not be the SFT prompts: the caller passes another split (the valid split).

Limits: sampling uses :class:`~tasks.core.sampling.HFBatchedBackend` (no vLLM path here), on
CPU; training runs where the shared loop's Accelerator puts it (one process tested, on CPU);
each round reloads the model from disk.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from tasks.core.device import Placement, resolve
from tasks.core.hparams import KLPenalty
from tasks.core.io import atomic_write_json
from tasks.core.problems.schema import Problem
from tasks.core.rl.artifacts import RLResult, RLTask, write_outputs
from tasks.core.rl.rewards import ExecutionReward, OnSandboxError, RewardName

ROUNDS_DIR = "rounds"
ROUND_MARKER = "round.json"
SCORED_FILE = "scored.json"
CURVE_KEYS = ("pass_rate", "train_loss", "kl")


class ExpertIterationParams(KLPenalty):
    reward: ClassVar[RewardName] = "all_pass"  # fixed: a kept sample passes every hidden test
    on_sandbox_error: ClassVar[OnSandboxError] = "raise"

    rounds: int = Field(default=1, ge=1)
    samples_per_problem: int = Field(default=8, ge=1)
    temperature: float = Field(default=1.0, gt=0)
    max_completion_length: int = Field(default=96, ge=1)
    keep_per_problem: int = Field(default=8, ge=1)
    lr: float = Field(default=3e-4, gt=0)  # only with optimizer = "fresh"
    optimizer: Literal["continue", "fresh"] = "continue"
    rounds_from: Literal["previous", "stage2"] = "previous"
    epochs: float = Field(default=3.0, gt=0)
    batch_size: int = Field(default=16, ge=1)
    checkpoint_every: int = Field(default=50, ge=1)
    seq_len: int = Field(default=512, gt=1)
    sample_batch_size: int = Field(default=128, ge=1)
    max_tests: int | None = Field(default=None, ge=1)
    seed: int = 0


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


def _sample(
    model_dir: Path, prompts: list[str], params: ExpertIterationParams, seed: int, placement: Placement
) -> list[list[str]]:
    from tasks.core.sampling import HFBatchedBackend, SamplingParams

    sampling = SamplingParams(
        n=params.samples_per_problem,
        temperature=params.temperature,
        max_new_tokens=params.max_completion_length,
        batch_size=params.sample_batch_size,
    )
    backend = HFBatchedBackend(model_dir, placement)
    gens = backend.generate(prompts, params.samples_per_problem, sampling, seed)
    return [[g.text for g in group] for group in gens]


def _train_round(
    model_dir: Path,
    ref_dir: Path,
    pairs: list[tuple[str, str]],
    params: ExpertIterationParams,
    round_dir: Path,
    seed: int,
    placement: Placement,
) -> tuple[int, int, float, float | None]:
    """Train on ``pairs`` with loss NLL + beta * KL(policy || frozen ref) per label token through
    the shared loop into ``round_dir`` (``model/``, ``checkpoint/``, ``metrics.parquet``,
    ``loss.png``), resuming its checkpoint. Returns (steps, input tokens, last NLL, last KL)."""
    from tasks.core.modeling import load_model_and_tokenizer
    from tasks.core.training import KLRegularisedNLL, PromptCompletionDataset, train

    policy, tokenizer = load_model_and_tokenizer(model_dir)
    ref = load_model_and_tokenizer(ref_dir)[0]
    max_len = min(params.seq_len, policy.config.max_position_embeddings)
    data = PromptCompletionDataset(pairs, tokenizer, max_len, seed=seed)
    hp = round_hparams(params, len(pairs), max_len, seed, model_dir)
    cont = model_dir if params.optimizer == "continue" else None
    loss = KLRegularisedNLL(ref, params.beta)
    result = train(
        policy,
        tokenizer,
        data,
        None,
        hp,
        round_dir,
        loss=loss,
        placement=placement,
        save_optimizer=True,
        continue_from=cont,
    )
    return hp.max_steps, result.tokens_seen, result.final_train_loss, result.final_kl


def round_hparams(params: ExpertIterationParams, pairs: int, max_len: int, seed: int, model_dir: Path):
    """A round's training settings: ``epochs`` passes over ``pairs`` (at least 2 steps), at the
    constant learning rate saved with ``model_dir``'s optimizer state (``continue``) or at
    ``params.lr`` with warm-up and cosine decay (``fresh``)."""
    from tasks.core.training import TrainHParams, read_optimizer_state

    steps = max(2, round(params.epochs * pairs / params.batch_size))
    if params.optimizer == "continue":
        schedule = {"lr": read_optimizer_state(model_dir).lr, "warmup_steps": 0, "schedule": "constant"}
    else:
        schedule = {"lr": params.lr, "warmup_steps": min(10, steps // 5)}
    return TrainHParams(
        max_steps=steps,
        batch_size=params.batch_size,
        seq_len=max_len,
        checkpoint_every=params.checkpoint_every,
        seed=seed,
        **schedule,
    )


def _score(
    r: int,
    model_dir: Path,
    problems: Sequence[Problem],
    reward: ExecutionReward,
    params: ExpertIterationParams,
    format_prompt: Callable[[Problem], str],
    placement: Placement,
) -> dict[str, Any]:
    """Round ``r``'s samples, scored: the passing pairs kept, the pass rate, the solved count."""
    prompts = [format_prompt(p) for p in problems]
    groups = _sample(model_dir, prompts, params, params.seed + r, placement)
    flat = [(prompt, p.name, c) for prompt, p, group in zip(prompts, problems, groups) for c in group]
    rewards = reward([f[0] for f in flat], [f[2] for f in flat], problem_id=[f[1] for f in flat])
    pairs = passing_pairs(
        [f[0] for f in flat], [f[1] for f in flat], [f[2] for f in flat], rewards, params.keep_per_problem
    )
    solved = len({pid for (_, pid, _), rw in zip(flat, rewards) if rw == 1.0})
    return {"pairs": pairs, "pass_rate": reward.last_pass_rate, "solved": solved}


def _round(
    r: int,
    model_dir: Path,
    ref_dir: Path,
    problems: Sequence[Problem],
    reward: ExecutionReward,
    params: ExpertIterationParams,
    round_dir: Path,
    format_prompt: Callable[[Problem], str],
    placement: Placement,
) -> None:
    """Sample from ``model_dir`` and score (or reuse ``scored.json``), train on the passing
    completions (``rounds_from = "stage2"``: stage 2, i.e. ``ref_dir``, on every round's so far);
    ``round.json`` last."""
    started = time.perf_counter()
    scored_path = round_dir / SCORED_FILE
    if scored_path.is_file():
        scored = _read_checked(scored_path, params)
    else:
        scored = _score(r, model_dir, problems, reward, params, format_prompt, placement)
        atomic_write_json(scored_path, {**scored, "params": _resume_key(params)})
    pairs = [(prompt, completion) for prompt, completion in scored["pairs"]]
    train_from = model_dir
    if params.rounds_from == "stage2":
        train_from, pairs = ref_dir, _earlier_pairs(round_dir.parent, r, params) + pairs
    steps, tokens, loss, kl = 0, 0, float("nan"), float("nan")
    if pairs:
        steps, tokens, loss, kl = _train_round(
            train_from, ref_dir, pairs, params, round_dir, params.seed + r, placement
        )
    row = {
        "step": float(r + 1),
        "reward": scored["pass_rate"],
        "pass_rate": scored["pass_rate"],
        "solved_problems": float(scored["solved"]),
        "pairs": float(len(pairs)),
        "train_steps": float(steps),
        "train_tokens": float(tokens),
        "train_loss": loss,
        "kl": kl,
        "step_time": time.perf_counter() - started,
    }
    atomic_write_json(
        round_dir / ROUND_MARKER, {"row": row, "trained": bool(pairs), "params": _resume_key(params)}
    )


def _earlier_pairs(rounds_dir: Path, r: int, params: ExpertIterationParams) -> list[tuple[str, str]]:
    """The passing pairs rounds 0..r-1 kept (their ``scored.json``), in round order."""
    out = []
    for i in range(r):
        out += [(p, c) for p, c in _read_checked(rounds_dir / f"round-{i}" / SCORED_FILE, params)["pairs"]]
    return out


def _resume_key(params: ExpertIterationParams) -> dict:
    return params.model_dump(exclude={"rounds"})


def _read_checked(path: Path, params: ExpertIterationParams) -> dict[str, Any]:
    """``path``'s JSON, refused if it was written with other params than ``rounds``."""
    saved = json.loads(path.read_text())
    if saved["params"] != _resume_key(params):
        raise ValueError(
            f"{path.parent} was written with other params; use a new out_dir (only `rounds` may change on resume)"
        )
    return saved


def train_expert_iteration(task: RLTask, params: ExpertIterationParams) -> RLResult:
    """Expert-iterate ``task.model_dir`` on ``task.problems`` (not the SFT prompts); see the module
    docstring."""
    from tasks.core.modeling import load_model_and_tokenizer

    reward = task.start(params, "train_expert_iteration")
    placement = task.placement or resolve()
    model_dir, problems = task.model_dir, task.problems
    rows, current, resumed = [], model_dir, None
    for r in range(params.rounds):
        round_dir = task.out_dir / ROUNDS_DIR / f"round-{r}"
        marker = round_dir / ROUND_MARKER
        if marker.is_file():
            resumed = r + 1
        else:
            round_dir.mkdir(parents=True, exist_ok=True)
            _round(r, current, model_dir, problems, reward, params, round_dir, task.format_prompt, placement)
        done = _read_checked(marker, params)
        if done["trained"]:  # else the model is unchanged
            current = round_dir / "model"
        rows.append(done["row"])
        if task.progress is not None:
            task.progress(r + 1, params.rounds, done["row"])
    model, tokenizer = load_model_and_tokenizer(current)
    out = write_outputs(task.out_dir, model, tokenizer, rows, CURVE_KEYS, "expert iteration")
    return RLResult(
        model_dir=out.model_dir,
        steps=params.rounds,
        metrics_path=out.metrics_path,
        plot_path=out.plot_path,
        final_reward_mean=float(rows[-1]["reward"] or 0.0),
        resumed_from_step=resumed,
        optimizer_steps=int(sum(r["train_steps"] for r in rows)),
        train_tokens=int(sum(r.get("train_tokens", 0.0) for r in rows)),
        device=placement.metrics(),
    )
