"""GRPO fine-tuning with execution rewards, via TRL's ``GRPOTrainer`` on the device policy's
placement (generation through TRL's colocated vLLM on a GPU when ``use_vllm``), with every
algorithmic knob set explicitly and zero-variance groups filtered out of the loss.

Contract
- ``train_grpo`` loads the policy from ``model_dir`` (the stage-2 model). With ``beta > 0`` TRL
  builds the KL reference by loading the same ``model_dir`` again (``create_model_from_path`` on
  the policy config's ``_name_or_path``), so the reference is the frozen stage-2 model; it is
  never stepped by the optimiser. ``beta == 0`` (TRL's own default, which loads no reference)
  is refused unless ``allow_zero_beta=True``.
- Every GRPOConfig field that changes the algorithm is passed explicitly (:func:`grpo_config`):
  the :class:`GRPOParams` knobs (loss_type, scale_rewards, epsilon / epsilon_high, beta,
  mask_truncated_completions, num_iterations, temperature, ...) and the fixed settings in
  :data:`FIXED_CONFIG` (unbiased sampling, token-level ratios, no entropy terms, optimiser and
  schedule). A TRL release that changes a default therefore changes nothing here.
- Optimiser (``optimizer``): ``continue`` (default) hands TRL stage 2's AdamW, continued from
  ``model/optimizer.pt`` at stage 2's final learning rate with a constant schedule
  (:func:`tasks.core.training.loop.continued_optimizer`), so ``lr``, the Adam settings and the
  linear schedule of :data:`FIXED_CONFIG` apply only to ``fresh`` (TRL's own AdamW at ``lr``).
- Each optimiser step samples ``prompts_per_step * oversample`` prompts x ``num_generations``
  completions, scores them with :class:`ExecutionReward` (hidden tests, one batched judge call),
  and (``filter_zero_std_groups``, default) drops every group whose rewards are all equal (or
  that has fewer than two scorable rewards) from the batch before the loss: those rows carry
  no policy loss, no KL term and no tokens in the loss normaliser. At most ``prompts_per_step``
  of the remaining groups are kept (the first in the sampler's random order), so
  ``oversample > 1`` is DAPO's dynamic sampling done once per step instead of until the batch
  is full. If no group is left, the step's update is skipped: its gradients are set to None, so
  AdamW leaves the weights and its moments untouched (a zero gradient would still move them
  through momentum); the learning-rate schedule still advances. A batch whose kept completions
  are all truncated (with ``mask_truncated_completions``) has no loss token and is skipped too.
  With ``num_iterations = mu > 1`` one generation batch is reused for mu optimiser steps (TRL's
  buffer; ``steps`` counts optimiser steps). At mu = 1 (default) the policy ratio is exactly 1,
  so ``epsilon`` / ``epsilon_high`` never bind and the clip ratios log 0; they act from mu = 2.
- Outputs in ``out_dir``: ``model/`` (final ``save_pretrained``), ``metrics.parquet`` (one row
  per optimiser step: everything TRL logs - reward, reward_std, frac_reward_zero_std, kl,
  entropy, clip_ratio/{low_mean,high_mean,region_mean,low_min,high_max}, step_time, completion
  lengths - plus our ``pass_rate``, ``frac_groups_filtered`` (zero-variance groups / groups
  sampled), ``groups_kept`` and ``update_skipped`` (1.0 when no group was left); with
  ``num_iterations > 1`` the reward, pass-rate and group metrics are on the generating steps only),
  ``rl_curve.png`` (panels :data:`CURVE_KEYS`), and ``checkpoints/checkpoint-<step>`` every
  ``save_every`` steps and at the last step. A rerun with the same ``out_dir`` resumes from the
  newest complete checkpoint found there (and nowhere else); the per-step rows before the
  resume come back from its ``log_history``.
- RL prompts must not be the SFT prompts: the caller passes a split the model was not
  fine-tuned on (e.g. the valid split).

Limits
- kl, entropy and the clip ratios are TRL's, measured over the tokens that carry loss (kept
  groups, non-truncated completions); on a skipped step nothing was measured and they are
  missing from that row. ``reward``, ``reward_std``, ``pass_rate`` and ``frac_reward_zero_std``
  cover every sampled completion, filtered or not.
- The reference and old log-probabilities are still computed for the dropped rows (inside
  TRL's generation step, before the rewards are known); only the training forward/backward
  skips them.
- One process only: the filter reads the whole generation batch on one process.
- Device (:mod:`tasks.core.device`): ``task.placement`` (default: ``auto`` resolved here) sets
  the ``TrainingArguments`` placement and precision (:meth:`~tasks.core.device.Placement.trainer_args`:
  ``use_cpu`` on the CPU, ``bf16``/``fp16`` mixed precision on a GPU, float32 on the CPU).
  Generation is ``model.generate`` unless ``use_vllm`` and the placement is a GPU: then TRL's
  vLLM integration in colocate mode (the engine in this process, on this GPU, taking
  ``vllm_gpu_memory_utilization`` of its memory, sized to the longest prompt +
  ``max_completion_length``), with TRL's importance-sampling correction of the vLLM/trainer
  log-prob mismatch pinned in :data:`VLLM_CONFIG`. ``use_vllm`` is ignored on the CPU (TRL's
  colocate mode needs CUDA). :func:`train_grpo` records the placement and the generator in
  :attr:`RLResult.device`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from tasks.core.device import Placement, resolve
from tasks.core.hparams import OnlineRLParams
from tasks.core.io import numbered_dirs
from tasks.core.problems.schema import Problem
from tasks.core.rl.artifacts import CHECKPOINTS_DIR, ProgressFn, RLResult, RLTask, numeric_row, write_outputs
from tasks.core.rl.rewards import ExecutionReward, RewardName

CHECKPOINT_PREFIX = "checkpoint-"
CHECKPOINT_MARKER = "trainer_state.json"
CURVE_KEYS = ("reward", "pass_rate", "frac_groups_filtered", "kl", "entropy", "clip_ratio/region_mean")

# GRPOConfig fields that are not GRPOParams knobs but change the algorithm: pinned here so that
# a TRL default change cannot move them (tests/rl/test_grpo.py checks each reaches the config).
FIXED_CONFIG: dict[str, Any] = {
    # sampling from the policy itself: the loss's log-probs are of the untruncated distribution
    "top_p": 1.0,
    "top_k": 0,
    "min_p": None,
    "repetition_penalty": 1.0,
    # PPO-style per-token ratios, hard clipping only
    "importance_sampling_level": "token",
    "delta": None,
    "off_policy_mask_threshold": None,
    # the k3 KL estimate times the ratio (TRL's bias correction: the unbiased reverse-KL gradient)
    "use_bias_correction_kl": True,
    "sync_ref_model": False,  # the reference stays the frozen stage-2 model
    "top_entropy_quantile": 1.0,
    "entropy_coef": 0.0,
    "use_adaptive_entropy": False,
    "multi_objective_aggregation": "sum_then_normalize",
    "reward_weights": None,
    "shuffle_dataset": True,
    "steps_per_generation": 1,  # one generation batch per optimiser step (times num_iterations)
    "gradient_accumulation_steps": 1,
    # optimiser and schedule (TRL's current values, pinned)
    "optim": "adamw_torch_fused",
    "adam_beta1": 0.9,
    "adam_beta2": 0.999,
    "adam_epsilon": 1e-8,
    "weight_decay": 0.0,
    "max_grad_norm": 1.0,
    "lr_scheduler_type": "linear",
    "warmup_steps": 0,
}


# TRL's vLLM generation (GPU placements with use_vllm only): colocate (the engine shares this
# process and GPU) and its truncated importance-sampling correction pinned at TRL 1.16's values.
VLLM_CONFIG: dict[str, Any] = {
    "vllm_mode": "colocate",
    "vllm_importance_sampling_correction": True,
    "vllm_importance_sampling_mode": "sequence_mask",
    "vllm_importance_sampling_clip_max": 3.0,
    "vllm_importance_sampling_clip_min": None,
}


class GRPOParams(OnlineRLParams):
    """GRPO's knobs; the defaults follow DAPO (Yu et al. 2025) and Dr. GRPO (Liu et al. 2025)
    for a binary verifiable reward. ``beta`` (0.04, > 0 unless ``allow_zero_beta``) and
    ``temperature`` (1.0) come from :class:`OnlineRLParams`."""

    zero_beta_note = " (and TRL then loads no reference model)"

    num_generations: int = Field(default=8, ge=2)
    # binary "every hidden test passes": the reward that is evaluated (pass@k), no partial credit
    reward: RewardName = "all_pass"
    # token-level normalisation over the batch's loss tokens (DAPO): no per-sequence length bias
    loss_type: Literal["dapo", "dr_grpo", "grpo", "bnpo"] = "dapo"
    # advantages are reward - group mean, not divided by the group std (Dr. GRPO: the std
    # up-weights nearly-all-pass / nearly-all-fail problems, a difficulty bias)
    scale_rewards: Literal["none", "group", "batch"] = "none"
    epsilon: float = Field(default=0.2, gt=0)  # lower clip: ratio >= 1 - epsilon
    epsilon_high: float = Field(default=0.28, gt=0)  # clip-higher (DAPO): ratio <= 1 + epsilon_high
    # truncated completions get no loss (DAPO overlong filtering): a cut-off program is not wrong
    mask_truncated_completions: bool = True
    num_iterations: int = Field(default=1, ge=1)  # optimiser steps per generation batch (mu)
    filter_zero_std_groups: bool = True
    oversample: int = Field(default=1, ge=1)  # prompts sampled per step = prompts_per_step * oversample
    save_total_limit: int | None = Field(default=2, ge=1)
    gradient_checkpointing: bool = False  # TRL's GRPOConfig turns it on; ~1/3 slower steps on CPU
    # generation through TRL's colocated vLLM when the placement is a GPU (needs vllm installed);
    # ignored on the CPU, where generation is model.generate
    use_vllm: bool = False
    vllm_gpu_memory_utilization: float = Field(default=0.3, gt=0, le=1)
    vllm_max_prompt_tokens: int = Field(default=2048, ge=1)  # vLLM context = this + max_completion_length

    @model_validator(mode="after")
    def _grpo_checks(self) -> GRPOParams:
        if self.epsilon_high < self.epsilon:
            raise ValueError(
                f"epsilon_high={self.epsilon_high} < epsilon={self.epsilon}: the upper clip must be at "
                "least the lower one (clip-higher); raise epsilon_high or lower epsilon"
            )
        if self.oversample > 1 and not self.filter_zero_std_groups:
            raise ValueError(
                f"oversample={self.oversample} needs filter_zero_std_groups=True (it samples extra "
                "prompts to replace the zero-variance groups the filter drops); set oversample=1"
            )
        return self


def _dataset(problems: Sequence[Problem], format_prompt: Callable[[Problem], str]) -> Any:
    from datasets import Dataset

    names = [p.name for p in problems]
    if len(set(names)) != len(names):
        raise ValueError("problem names must be unique: they are the reward's problem_id")
    return Dataset.from_list([{"prompt": format_prompt(p), "problem_id": p.name} for p in problems])


def config_values(params: GRPOParams) -> dict[str, Any]:
    """The GRPOConfig fields set from ``params`` (besides :data:`FIXED_CONFIG` and plumbing)."""
    return {
        "max_steps": params.steps,
        "learning_rate": params.lr,
        "beta": params.beta,
        "loss_type": params.loss_type,
        "scale_rewards": params.scale_rewards,
        "epsilon": params.epsilon,
        "epsilon_high": params.epsilon_high,
        "mask_truncated_completions": params.mask_truncated_completions,
        "num_iterations": params.num_iterations,
        "num_generations": params.num_generations,
        "per_device_train_batch_size": params.prompts_per_step * params.oversample * params.num_generations,
        "max_completion_length": params.max_completion_length,
        "temperature": params.temperature,
        "seed": params.seed,
        "data_seed": params.seed,
        "gradient_checkpointing": params.gradient_checkpointing,
    }


def uses_vllm(params: GRPOParams, placement: Placement) -> bool:
    """Generation through TRL's colocated vLLM: asked for, and on a GPU."""
    return params.use_vllm and placement.is_cuda


def device_values(params: GRPOParams, placement: Placement) -> dict[str, Any]:
    """The GRPOConfig fields the placement sets: device and precision, and the generator."""
    if not uses_vllm(params, placement):
        return {**placement.trainer_args(), "use_vllm": False}
    return {
        **placement.trainer_args(),
        "use_vllm": True,
        **VLLM_CONFIG,
        "vllm_gpu_memory_utilization": params.vllm_gpu_memory_utilization,
        "vllm_max_model_length": params.vllm_max_prompt_tokens + params.max_completion_length,
    }


def grpo_config(params: GRPOParams, checkpoints: Path, placement: Placement | None = None) -> Any:
    from trl import GRPOConfig

    return GRPOConfig(
        output_dir=str(checkpoints),
        **config_values(params),
        **FIXED_CONFIG,
        save_strategy="steps",
        save_steps=params.save_every,
        save_total_limit=params.save_total_limit,
        logging_steps=1,
        report_to=[],
        **device_values(params, placement or resolve()),
        remove_unused_columns=False,
        dataloader_num_workers=0,
        disable_dropout=True,
        log_completions=False,
    )


def zero_std_groups(rewards_per_func: Any, weights: Any, num_generations: int) -> Any:
    """Bool per group: its weighted rewards have (nan-)std <= 1e-8, as TRL's own
    ``frac_reward_zero_std`` test, or fewer than two scorable rewards (all-None rows are NaN)."""
    import torch
    from trl.trainer.utils import nanstd

    rewards = (rewards_per_func * weights.to(rewards_per_func.device).unsqueeze(0)).nansum(dim=1)
    rewards[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan
    std = nanstd(rewards.view(-1, num_generations), dim=1)
    return ~(std > 1e-8)  # NaN std (< 2 scorable) counts as zero


@functools.cache
def filtering_trainer_class() -> type:
    """``GRPOTrainer`` subclass that drops zero-variance groups (module docstring); built on first
    use so that importing this module does not import TRL."""
    import torch
    from trl import GRPOTrainer

    class ZeroVarianceFilteredGRPOTrainer(GRPOTrainer):
        def __init__(self, *args: Any, max_groups: int, filter_zero_std: bool, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if self.accelerator.num_processes != 1:
                raise RuntimeError(
                    f"the zero-variance filter runs on one process; got {self.accelerator.num_processes}"
                )
            self.max_groups = max_groups
            self.filter_zero_std = filter_zero_std
            self.skip_update = False
            self._last_rewards_per_func: torch.Tensor | None = None

        def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):  # type: ignore[override]
            rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
            self._last_rewards_per_func = rewards
            return rewards

        def _generate_and_score_completions(self, inputs):  # type: ignore[override]
            out = super()._generate_and_score_completions(inputs)
            mode = "train" if self.model.training else "eval"
            if mode != "train":
                return out
            g = self.num_generations
            zero = zero_std_groups(self._last_rewards_per_func, self.reward_weights, g)
            n_groups = int(zero.numel())
            if self.filter_zero_std:
                kept = torch.nonzero(~zero).flatten()[: self.max_groups]
            else:
                kept = torch.arange(n_groups)
            self.skip_update = kept.numel() == 0
            rows = (kept.unsqueeze(1) * g + torch.arange(g)).flatten()
            if self.skip_update:  # keep one group's rows, masked, so the loss is an exact zero
                rows = torch.arange(g)
            batch = out["completion_ids"].shape[0]
            out = {key: _take_rows(value, rows, batch) for key, value in out.items()}
            if self.skip_update:
                out["completion_mask"] = torch.zeros_like(out["completion_mask"])
                if "tool_mask" in out:
                    out["tool_mask"] = torch.zeros_like(out["tool_mask"])
            loss_mask = out["completion_mask"] * out.get("tool_mask", 1)
            out["num_items_in_batch"] = loss_mask.sum()
            self.skip_update = self.skip_update or int(out["num_items_in_batch"]) == 0
            metrics = self._metrics[mode]
            metrics["frac_groups_filtered"].append(
                float(zero.float().mean()) if self.filter_zero_std else 0.0
            )
            metrics["groups_kept"].append(float(kept.numel()))
            return out

        def _compute_loss(self, model, inputs):  # type: ignore[override]
            mode = "train" if self.model.training else "eval"
            before = {key: len(values) for key, values in self._metrics[mode].items()}
            loss = super()._compute_loss(model, inputs)
            if mode == "train" and self.skip_update:  # nothing measured: kl, entropy, clip ratios
                for key, values in self._metrics[mode].items():
                    for i in range(before.get(key, 0), len(values)):
                        values[i] = math.nan
            if mode == "train":  # once per optimiser step (reused batches included)
                self._metrics[mode]["update_skipped"].append(float(self.skip_update))
            return loss

        def training_step(self, model, inputs, num_items_in_batch):  # type: ignore[override]
            loss = super().training_step(model, inputs, num_items_in_batch)
            if self.skip_update:  # no group carries loss: leave weights and AdamW moments as they are
                for p in model.parameters():
                    p.grad = None
            return loss

    return ZeroVarianceFilteredGRPOTrainer


def _take_rows(value: Any, rows: Any, batch: int) -> Any:
    """``value`` restricted to ``rows`` if it is a per-row tensor or list of the batch."""
    import torch

    if isinstance(value, torch.Tensor) and value.ndim >= 1 and value.shape[0] == batch:
        return value[rows.to(value.device)]
    if isinstance(value, list) and len(value) == batch:
        return [value[i] for i in rows.tolist()]
    return value


def _progress_callback(progress: ProgressFn, total: int) -> Any:
    """A transformers ``TrainerCallback`` forwarding each per-step TRL log to ``progress``."""
    from transformers import TrainerCallback

    class _Progress(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if logs and "loss" in logs:  # a per-step log, not the end-of-train summary
                progress(state.global_step, total, numeric_row(logs))

    return _Progress()


def _policy_and_optimizer(model_dir: Path, params: GRPOParams, placement: Placement) -> tuple[Any, tuple]:
    """What the trainer starts from: with ``optimizer = "fresh"`` the model's path (TRL loads it
    in float32 and builds its AdamW at ``lr`` with its linear schedule); with ``continue`` the
    float32 model on its device and stage 2's AdamW continued at its final rate, constant."""
    if params.optimizer == "fresh":
        return str(model_dir), (None, None)
    import torch
    from transformers import AutoModelForCausalLM

    from tasks.core.training.loop import continued_optimizer

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=placement.master_dtype())
    model.to(placement.torch_device())
    optimizer = continued_optimizer(model, model_dir)
    return model, (optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0))


def build_grpo_trainer(task: RLTask, reward: ExecutionReward | Callable[..., Any], params: GRPOParams) -> Any:
    """The configured trainer (policy and reference both loaded from ``task.model_dir``);
    ``reward`` is a TRL reward function (normally the task's :class:`ExecutionReward`)."""
    from transformers import AutoTokenizer

    sampled = params.prompts_per_step * params.oversample
    if sampled > len(task.problems):
        raise ValueError(
            f"GRPO samples prompts_per_step*oversample={sampled} distinct prompts per step but the RL "
            f"split has {len(task.problems)} problems; lower prompts_per_step or oversample"
        )
    tokenizer = AutoTokenizer.from_pretrained(str(task.model_dir))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    callbacks = [_progress_callback(task.progress, params.steps)] if task.progress else None
    placement = task.placement or resolve()
    placement.activate()
    model, optimizers = _policy_and_optimizer(task.model_dir, params, placement)
    return filtering_trainer_class()(
        model=model,
        optimizers=optimizers,
        reward_funcs=[reward],
        args=grpo_config(params, task.out_dir / CHECKPOINTS_DIR, placement),
        train_dataset=_dataset(task.problems, task.format_prompt),
        processing_class=tokenizer,
        callbacks=callbacks,
        max_groups=params.prompts_per_step,
        filter_zero_std=params.filter_zero_std_groups,
    )


def step_rows(log_history: Sequence[Mapping[str, Any]]) -> list[dict[str, float]]:
    """Per-step metric rows from a Trainer ``log_history`` (drops the end-of-train summary, which
    has ``train_loss`` instead of ``loss``). With ``num_iterations > 1`` only the steps that
    generate carry the reward metrics."""
    rows = []
    for entry in log_history:
        if "loss" in entry and "step" in entry:
            rows.append(numeric_row(entry))
    return rows


def train_grpo(task: RLTask, params: GRPOParams) -> RLResult:
    """GRPO-train ``task.model_dir`` on ``task.problems`` (not the SFT prompts); see the module
    docstring."""
    reward = task.start(params, "train_grpo")
    placement = task.placement or resolve()
    task = dataclasses.replace(task, placement=placement)
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
        final_reward_mean=next((r["reward"] for r in reversed(rows) if "reward" in r), float("nan")),
        resumed_from_step=found[-1][0] if found else None,
        # optimizer updates actually taken: a step whose every group was filtered out is skipped
        optimizer_steps=int(trainer.state.global_step) - int(sum(r.get("update_skipped", 0.0) for r in rows)),
        device={
            **placement.metrics(),
            "generation": "vllm" if uses_vllm(params, placement) else "transformers",
        },
    )
