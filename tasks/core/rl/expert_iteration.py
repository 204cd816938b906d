"""Expert iteration: fine-tune on the policy's own samples that pass the hidden tests.

Contract
- ``rounds`` rounds; round r samples ``samples_per_problem`` completions of every RL problem
  from the current model (batched HF sampling, ``temperature``, seed ``seed + r``), scores them
  with :class:`ExecutionReward` (``all_pass`` on the problem's HIDDEN tests, one batched judge
  call) and keeps up to ``keep_per_problem`` passing completions per problem, duplicates
  included (their frequency is the policy's own; deduplicating made the update weaker in a
  probe here). It then trains on those (prompt, completion) pairs for ``epochs`` passes with the
  project's training loop (prompt-masked loss, AdamW, warm-up + cosine, bf16 autocast) and the
  result is the next round's model. A round with no passing sample trains nothing.
- There is no KL term: the training data are the reference's own samples, filtered, and the
  update is bounded by ``epochs`` and ``lr``; use ``grpo`` or ``ppo`` for an explicit KL penalty.
- Outputs as the other trainers: ``out_dir/model`` (the last round's model), ``metrics.parquet``
  (one row per round: ``step`` = round, ``reward`` = ``pass_rate`` = the sampled completions'
  hidden-test pass rate, ``solved_problems``, ``pairs``, ``train_steps``, ``train_loss``,
  ``step_time``), ``rl_curve.png``. Round r's work lives in ``out_dir/rounds/round-<r>/``; a round
  is complete once its ``round.json`` is written (last). A rerun skips complete rounds and
  resumes an interrupted round's training from its step checkpoint (``training.train``); it is
  refused if any param other than ``rounds`` changed.
- RL prompts must not be the SFT prompts: the caller passes another split (the valid split).

Limits: sampling uses :class:`~tasks.core.sampling.HFBatchedBackend` (no vLLM path here); each
round reloads the model from disk.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tasks.core.manifest import atomic_write_text
from tasks.core.problems.schema import Problem
from tasks.core.rl.artifacts import (
    METRICS_FILE,
    MODEL_DIR,
    PLOT_FILE,
    ProgressFn,
    RLResult,
    plot_curve,
    save_model_atomic,
    write_metrics,
)
from tasks.core.rl.rewards import ExecutionReward
from tasks.core.sandbox.types import Limits

ROUNDS_DIR = "rounds"
ROUND_MARKER = "round.json"
CURVE_KEYS = ("pass_rate", "train_loss")


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
    seq_len: int = Field(default=512, gt=1)
    sample_batch_size: int = Field(default=128, ge=1)
    max_tests: int | None = Field(default=None, ge=1)
    time_limit_s: float = Field(default=2.0, gt=0)  # CPU seconds per test in the sandbox
    seed: int = 0


def passing_pairs(prompts: Sequence[str], problem_ids: Sequence[str], completions: Sequence[str],
                  rewards: Sequence[float | None], keep_per_problem: int) -> list[tuple[str, str]]:
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

    sampling = SamplingParams(n=params.samples_per_problem, temperature=params.temperature,
                              max_new_tokens=params.max_completion_length,
                              batch_size=params.sample_batch_size)
    backend = HFBatchedBackend(model_dir)
    gens = backend.generate(prompts, params.samples_per_problem, sampling, seed)
    return [[g.text for g in group] for group in gens]


def _train_round(model_dir: Path, pairs: list[tuple[str, str]], params: ExpertIterationParams,
                 round_dir: Path, seed: int) -> tuple[int, float]:
    """Train on ``pairs`` into ``round_dir/train`` (resumable); (optimizer steps, final loss)."""
    from tasks.core.modeling import load_model_and_tokenizer
    from tasks.core.training import PromptCompletionDataset, TrainHParams, train

    model, tokenizer = load_model_and_tokenizer(model_dir)
    max_len = min(params.seq_len, model.config.max_position_embeddings)
    data = PromptCompletionDataset(pairs, tokenizer, max_len, seed=seed)
    steps = max(2, round(params.epochs * len(pairs) / params.batch_size))
    hp = TrainHParams(max_steps=steps, batch_size=params.batch_size, lr=params.lr,
                      warmup_steps=min(10, steps // 5), seq_len=max_len, eval_every=steps,
                      checkpoint_every=max(1, steps // 4), seed=seed)
    result = train(model, tokenizer, data, None, hp, round_dir / "train")
    return steps, float(result.final_train_loss)


def _round(r: int, model_dir: Path, problems: Sequence[Problem], reward: ExecutionReward,
           params: ExpertIterationParams, round_dir: Path, format_prompt: Callable[[Problem], str]) -> None:
    """Sample, score, keep the passing completions, train on them; ``round.json`` last."""
    started = time.perf_counter()
    prompts = [format_prompt(p) for p in problems]
    groups = _sample(model_dir, prompts, params, params.seed + r)
    flat = [(prompt, p.name, c) for prompt, p, group in zip(prompts, problems, groups) for c in group]
    rewards = reward([f[0] for f in flat], [f[2] for f in flat], problem_id=[f[1] for f in flat])
    pairs = passing_pairs([f[0] for f in flat], [f[1] for f in flat], [f[2] for f in flat], rewards,
                          params.keep_per_problem)
    solved = len({pid for (_, pid, _), rw in zip(flat, rewards) if rw == 1.0})
    steps, loss = 0, float("nan")
    if pairs:
        steps, loss = _train_round(model_dir, pairs, params, round_dir, params.seed + r)
    row = {"step": float(r + 1), "reward": reward.last_pass_rate, "pass_rate": reward.last_pass_rate,
           "solved_problems": float(solved), "pairs": float(len(pairs)), "train_steps": float(steps),
           "train_loss": loss, "step_time": time.perf_counter() - started}
    atomic_write_text(round_dir / ROUND_MARKER, json.dumps(
        {"row": row, "trained": bool(pairs), "params": _resume_key(params)}))


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
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir} has no config.json; pass a save_pretrained model dir")
    if not problems:
        raise ValueError("train_expert_iteration needs at least one problem")
    reward = ExecutionReward(judge=judge, problems={p.name: p for p in problems},
                             extract_program=extract_program, reward="all_pass",
                             max_tests=params.max_tests, limits=Limits(time_s=params.time_limit_s))
    rows, current, resumed = [], model_dir, None
    for r in range(params.rounds):
        round_dir = out_dir / ROUNDS_DIR / f"round-{r}"
        marker = round_dir / ROUND_MARKER
        if marker.is_file():
            resumed = r + 1
            if json.loads(marker.read_text())["params"] != _resume_key(params):
                raise ValueError(f"{round_dir} was written with other params; use a new out_dir "
                                 "(only `rounds` may change on resume)")
        else:
            round_dir.mkdir(parents=True, exist_ok=True)
            _round(r, current, problems, reward, params, round_dir, format_prompt)
        done = json.loads(marker.read_text())
        if done["trained"]:  # else the model is unchanged
            current = round_dir / "train" / "model"
        row = done["row"]
        rows.append(row)
        if progress is not None:
            progress(r + 1, params.rounds, row)
    model, tokenizer = load_model_and_tokenizer(current)
    save_model_atomic(model, tokenizer, out_dir / MODEL_DIR)
    metrics = write_metrics(rows, out_dir / METRICS_FILE)
    plot = plot_curve(rows, out_dir / PLOT_FILE, CURVE_KEYS, "expert iteration")
    return RLResult(model_dir=out_dir / MODEL_DIR, steps=params.rounds, metrics_path=metrics,
                    plot_path=plot, final_reward_mean=float(rows[-1]["reward"] or 0.0),
                    resumed_from_step=resumed)
