"""Stage 2: fine-tuning the stage-1 model on CodeContests-style (prompt, solution) pairs.

Contract: starts from stage 1's ``model/`` and trains on (prompt, reference solution) pairs of
the SFT split, loss on solution tokens only (the prompt format is ``format_training_example``),
validating on the validation split. Resumes from ``<stage dir>/checkpoint`` (see
:mod:`tasks.core.training`) and publishes like stage 1 (:func:`~tasks.core.stages.pretrain.publish_trained`),
with its optimizer state beside the weights (``model/optimizer.pt``: AdamW after the last step
and the schedule's final learning rate, ``lr * min_lr_ratio``), which every continuation of
stage 2 (SFT-continue, expert iteration) resumes at that constant rate instead of restarting;
the manifest also records the SFT examples, problems and truncated examples, and the device and
dtype it trained on (``cfg.device`` resolved here, :mod:`tasks.core.device`).
Limits: one process; only Python 3 reference solutions are used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tasks.core.device import resolve
from tasks.core.manifest import Manifest, StagePlan
from tasks.core.problems import Language, format_training_example
from tasks.core.stages import Stage
from tasks.core.stages.base import Advance, StageInputs
from tasks.core.stages.pretrain import Progress, on_steps, publish_trained
from tasks.core.stages.problems import load_split

if TYPE_CHECKING:
    from tasks.core.config import FinetuneConfig


def sft_pairs(problems) -> list[tuple[str, str]]:
    pairs = []
    for problem in problems:
        for solution in problem.solutions.of(Language.PYTHON3):
            pairs.append(format_training_example(problem, solution))
    return pairs


def run_finetune(
    plan: StagePlan,
    cfg: FinetuneConfig,
    pretrained: Manifest,
    problems: Manifest,
    sft_split: str,
    valid_split: str,
    progress: Progress | None = None,
) -> Manifest:
    from tasks.core.modeling import load_model_and_tokenizer
    from tasks.core.training import PromptCompletionDataset, train

    model, tokenizer = load_model_and_tokenizer(pretrained.dir / "model")
    train_problems = load_split(problems, sft_split)[: cfg.max_problems]
    valid_problems = load_split(problems, valid_split)
    max_len = min(cfg.train.seq_len, model.config.max_position_embeddings)
    train_data = PromptCompletionDataset(sft_pairs(train_problems), tokenizer, max_len, seed=cfg.train.seed)
    valid_data = PromptCompletionDataset(sft_pairs(valid_problems), tokenizer, max_len)
    placement = resolve(cfg.device)
    result = train(
        model,
        tokenizer,
        train_data,
        valid_data,
        cfg.train,
        plan.dir,
        progress,
        placement=placement,
        save_optimizer=True,
    )
    return publish_trained(
        plan,
        result,
        {
            "sft_examples": len(train_data),
            "sft_problems": len(train_problems),
            "truncated": train_data.truncated,
        },
    )


@dataclass(frozen=True)
class FinetuneInputs(StageInputs):
    """Stage 2: the pretrained model, the problem set, and which splits train and validate."""

    STAGE = Stage.FINETUNE
    finetune: FinetuneConfig
    sft_split: str
    valid_split: str
    pretrained: Manifest
    problems: Manifest

    def progress(self) -> tuple[int, str]:
        return self.finetune.train.max_steps, "stage 2 fine-tune (steps)"

    def run(self, plan: StagePlan, progress: Advance | None = None) -> Manifest:
        return run_finetune(
            plan,
            self.finetune,
            self.pretrained,
            self.problems,
            self.sft_split,
            self.valid_split,
            on_steps(progress),
        )
