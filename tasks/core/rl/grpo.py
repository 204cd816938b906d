"""GRPO fine-tuning with execution rewards, via TRL's ``GRPOTrainer`` (CPU, no vLLM).

Contract
- ``train_grpo`` loads the policy from ``model_dir`` (the stage-2 model). With ``beta > 0`` TRL
  builds the KL reference by loading the same ``model_dir`` again (``create_model_from_path`` on
  the policy config's ``_name_or_path``), so the reference is the frozen stage-2 model; it is
  never stepped by the optimiser. ``beta == 0`` (TRL's own default, which loads no reference)
  is refused unless ``allow_zero_beta=True``.
- Each step samples ``prompts_per_step`` prompts x ``num_generations`` completions, scores them
  with :class:`ExecutionReward` (hidden tests, one batched judge call) and takes one optimiser
  step. Outputs in ``out_dir``: ``model/`` (final ``save_pretrained``), ``metrics.parquet`` (one
  row per step: everything TRL logs - reward, reward_std, kl, entropy, clip ratios, step_time,
  frac_reward_zero_std, completion lengths - plus our ``pass_rate``), ``rl_curve.png``, and
  ``checkpoints/checkpoint-<step>`` every ``save_every`` steps and at the last step. A rerun
  with the same ``out_dir`` resumes from the newest complete checkpoint found there (and
  nowhere else); the per-step rows before the resume come back from its ``log_history``.
- RL prompts must not be the SFT prompts: the caller passes a split the model was not
  fine-tuned on (e.g. the valid split).

Limits
- Groups whose G rewards are all equal get zero advantage (TRL subtracts the group mean), so
  they add no policy gradient, only the KL term; they are not re-sampled (TRL has no cheap
  dynamic-sampling switch). Their share is logged as ``frac_reward_zero_std``.
- CPU only here (``use_cpu=True``, fp32); generation uses ``model.generate``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from tasks.core.hparams import OnlineRLParams
from tasks.core.io import numbered_dirs
from tasks.core.problems.schema import Problem
from tasks.core.rl.artifacts import CHECKPOINTS_DIR, ProgressFn, RLResult, RLTask, numeric_row, write_outputs
from tasks.core.rl.rewards import ExecutionReward

CHECKPOINT_PREFIX = "checkpoint-"
CHECKPOINT_MARKER = "trainer_state.json"
CURVE_KEYS = ("reward", "pass_rate", "kl")


class GRPOParams(OnlineRLParams):
    zero_beta_note = " (and TRL then loads no reference model)"

    num_generations: int = Field(default=8, ge=2)
    reward: Literal["pass_fraction", "all_pass", "coderl"] = "pass_fraction"
    epsilon: float = Field(default=0.2, gt=0)
    save_total_limit: int | None = Field(default=2, ge=1)
    gradient_checkpointing: bool = False  # TRL's GRPOConfig turns it on; ~1/3 slower steps on CPU


def _dataset(problems: Sequence[Problem], format_prompt: Callable[[Problem], str]) -> Any:
    from datasets import Dataset

    names = [p.name for p in problems]
    if len(set(names)) != len(names):
        raise ValueError("problem names must be unique: they are the reward's problem_id")
    return Dataset.from_list([{"prompt": format_prompt(p), "problem_id": p.name} for p in problems])


def _config(params: GRPOParams, checkpoints: Path) -> Any:
    from trl import GRPOConfig

    return GRPOConfig(
        output_dir=str(checkpoints),
        max_steps=params.steps,
        learning_rate=params.lr,
        beta=params.beta,
        epsilon=params.epsilon,
        num_generations=params.num_generations,
        per_device_train_batch_size=params.prompts_per_step * params.num_generations,
        gradient_accumulation_steps=1,
        max_completion_length=params.max_completion_length,
        temperature=params.temperature,
        seed=params.seed,
        data_seed=params.seed,
        save_strategy="steps",
        save_steps=params.save_every,
        save_total_limit=params.save_total_limit,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        bf16=False,
        fp16=False,
        use_vllm=False,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        disable_dropout=True,
        log_completions=False,
        gradient_checkpointing=params.gradient_checkpointing,
    )


def _progress_callback(progress: ProgressFn, total: int) -> Any:
    """A transformers ``TrainerCallback`` forwarding each per-step TRL log to ``progress``."""
    from transformers import TrainerCallback

    class _Progress(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if logs and "reward" in logs:
                progress(state.global_step, total, numeric_row(logs))

    return _Progress()


def build_grpo_trainer(task: RLTask, reward: ExecutionReward, params: GRPOParams) -> Any:
    """The configured ``GRPOTrainer`` (policy and reference both loaded from ``task.model_dir``)."""
    from transformers import AutoTokenizer
    from trl import GRPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(str(task.model_dir))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    callbacks = [_progress_callback(task.progress, params.steps)] if task.progress else None
    return GRPOTrainer(
        model=str(task.model_dir),
        reward_funcs=[reward],
        args=_config(params, task.out_dir / CHECKPOINTS_DIR),
        train_dataset=_dataset(task.problems, task.format_prompt),
        processing_class=tokenizer,
        callbacks=callbacks,
    )


def step_rows(log_history: Sequence[Mapping[str, Any]]) -> list[dict[str, float]]:
    """Per-step metric rows from a Trainer ``log_history`` (drops the end-of-train summary)."""
    rows = []
    for entry in log_history:
        if "reward" in entry and "step" in entry:
            rows.append(numeric_row(entry))
    return rows


def train_grpo(task: RLTask, params: GRPOParams) -> RLResult:
    """GRPO-train ``task.model_dir`` on ``task.problems`` (not the SFT prompts); see the module
    docstring."""
    reward = task.start(params, "train_grpo")
    trainer = build_grpo_trainer(task, reward, params)
    found = numbered_dirs(task.out_dir / CHECKPOINTS_DIR, CHECKPOINT_PREFIX, CHECKPOINT_MARKER)
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(found[-1][1]) if found else None)
    rows = step_rows(trainer.state.log_history)
    title = f"GRPO ({time.perf_counter() - started:.0f} s)"
    out = write_outputs(task.out_dir, trainer.model, trainer.processing_class, rows, CURVE_KEYS, title)
    return RLResult(
        model_dir=out.model_dir,
        steps=int(trainer.state.global_step),
        metrics_path=out.metrics_path,
        plot_path=out.plot_path,
        final_reward_mean=rows[-1]["reward"] if rows else float("nan"),
        resumed_from_step=found[-1][0] if found else None,
    )
