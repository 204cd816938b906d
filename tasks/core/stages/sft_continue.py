"""The SFT-continue baseline: the stage-2 model trained further on its own SFT data for the
compute the RL stage spent, so that a gain from RL is not a gain more supervised training
also gives; and the oracle-SFT upper reference (:class:`OracleSFTInputs`): the same training on
the RL problems' reference solutions (the bundled ``rl_oracle`` split), which neither RL nor any
baseline sees, so the report can say how much of the way to it RL closes.

Contract: starts from stage 2's ``model/`` and trains on the SFT split's (prompt, solution)
pairs as stage 2 does (same data, loss on solution tokens, same ``seq_len`` and validation split;
data order seed stage 2's + 1, so it does not replay stage 2's first batches) with the RL
stage's optimizer budget: its ``optimizer_steps`` and its ``batch_size`` where it records one
(expert iteration does; else stage 2's). Continue, don't restart: it loads the AdamW state
stage 2 saved with its model (``model/optimizer.pt``, :mod:`tasks.core.training.loop`) and
trains at a constant learning rate equal to stage 2's final one (``lr * min_lr_ratio``), with no
warm-up, as expert iteration does by default; so a short run does not land in a re-warming dip
whose size depends on its step count. (Restarting a fresh AdamW at stage 2's peak rate, 1e-3 on
the default profile, halved the model's pass@1 in 16 steps; at 3x stage 2's final rate with a
new warm-up, valid greedy pass@1 went 0.328 -> 0.197 -> 0.164 -> 0.361 over 0, 13, 16, 42 steps.)
The manifest records the learning rate and the stage-2 step it continued from
(``lr``, ``continued_from_step``), and both sides' steps and input tokens
(``rl_optimizer_steps``, ``rl_train_tokens`` beside ``steps``, ``tokens_seen``) so the report can
show how close the match is. With zero RL optimizer steps (no expert-iteration round kept a
sample) it trains nothing and publishes the stage-2 model itself.
Limits: steps and batch size are matched exactly, tokens only as far as the two datasets'
sequence lengths agree (reported, not forced); GRPO and PPO record no optimizer-step count of
their own, so their ``steps`` are used (for PPO, fewer than its optimizer updates).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tasks.core.device import resolve
from tasks.core.manifest import Manifest, StagePlan, list_files
from tasks.core.stages import Stage
from tasks.core.stages.base import Advance, StageInputs
from tasks.core.stages.finetune import sft_pairs
from tasks.core.stages.pretrain import Progress, on_steps, publish_trained
from tasks.core.stages.problems import load_split

if TYPE_CHECKING:
    from tasks.core.config import FinetuneConfig

MODEL_DIR = "model"


def matched_hparams(cfg: FinetuneConfig, rl: Manifest, lr: float):
    """Stage 2's training settings with the RL stage's optimizer steps and batch size, at the
    constant learning rate ``lr`` (stage 2's final one; see the module docstring)."""
    steps = int(rl.metrics["optimizer_steps"])
    batch = rl.metrics.get("batch_size") or cfg.train.batch_size
    return cfg.train.model_copy(
        update={
            "max_steps": steps,
            "batch_size": int(batch),
            "lr": lr,
            "warmup_steps": 0,
            "schedule": "constant",
            "seed": cfg.train.seed + 1,  # a fresh pass through the data, not stage 2's first batches
        }
    )


def run_sft_continue(
    plan: StagePlan,
    cfg: FinetuneConfig,
    finetuned: Manifest,
    rl: Manifest,
    problems: Manifest,
    sft_split: str,
    valid_split: str,
    progress: Progress | None = None,
) -> Manifest:
    from tasks.core.modeling import load_model_and_tokenizer
    from tasks.core.training import PromptCompletionDataset, read_optimizer_state, train

    matched = {
        "rl_optimizer_steps": rl.metrics["optimizer_steps"],
        "rl_train_tokens": rl.metrics.get("train_tokens"),
    }
    if int(rl.metrics["optimizer_steps"]) <= 0:
        shutil.copytree(finetuned.dir / MODEL_DIR, plan.dir / MODEL_DIR, dirs_exist_ok=True)
        files = list_files(plan.dir)
        return plan.publish(files, metrics={"steps": 0, "tokens_seen": 0, **matched})
    saved = read_optimizer_state(finetuned.dir / MODEL_DIR)
    hp = matched_hparams(cfg, rl, saved.lr)
    model, tokenizer = load_model_and_tokenizer(finetuned.dir / MODEL_DIR)
    train_problems = load_split(problems, sft_split)[: cfg.max_problems]
    max_len = min(hp.seq_len, model.config.max_position_embeddings)
    train_data = PromptCompletionDataset(sft_pairs(train_problems), tokenizer, max_len, seed=hp.seed)
    valid_data = PromptCompletionDataset(sft_pairs(load_split(problems, valid_split)), tokenizer, max_len)
    result = train(
        model,
        tokenizer,
        train_data,
        valid_data,
        hp,
        plan.dir,
        progress,
        placement=resolve(cfg.device),
        continue_from=finetuned.dir / MODEL_DIR,
    )
    continued = {"lr": hp.lr, "continued_from_step": saved.step}
    return publish_trained(plan, result, {"sft_examples": len(train_data), **continued, **matched})


@dataclass(frozen=True)
class SFTContinueInputs(StageInputs):
    """The compute-matched baseline: stage 2's model and data, the RL stage's optimizer budget."""

    STAGE = Stage.SFT_CONTINUE
    finetune: FinetuneConfig
    sft_split: str
    valid_split: str
    finetuned: Manifest
    rl: Manifest
    problems: Manifest

    def progress(self) -> tuple[int, str]:
        return max(1, int(self.rl.metrics["optimizer_steps"])), "SFT-continue baseline (steps)"

    def run(self, plan: StagePlan, progress: Advance | None = None) -> Manifest:
        return run_sft_continue(
            plan,
            self.finetune,
            self.finetuned,
            self.rl,
            self.problems,
            self.sft_split,
            self.valid_split,
            on_steps(progress),
        )


@dataclass(frozen=True)
class OracleSFTInputs(SFTContinueInputs):
    """The oracle-SFT upper reference: ``sft_split`` is the oracle split (the RL problems with
    their solutions); steps, batch size and learning rate as the SFT-continue baseline's."""

    STAGE = Stage.ORACLE_SFT

    def progress(self) -> tuple[int, str]:
        return max(1, int(self.rl.metrics["optimizer_steps"])), "oracle-SFT reference (steps)"
