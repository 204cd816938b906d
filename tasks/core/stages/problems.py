"""Stage 0: materialise the problem splits every later stage reads, as JSONL.gz files.

Contract: one file per split named in the config (SFT, RL and evaluation splits), each a
stream of :class:`~tasks.core.problems.Problem` written by ``export_problems``; the manifest
records the per-split counts. Later stages read problems only through :func:`load_split`, so a
stage's content address covers exactly the problems it saw.
Limits: every split is capped as configured; a split name the source does not know fails here.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tasks.core.manifest import Manifest, StagePlan
from tasks.core.problems import Problem, export_problems, load_problem_source, load_problems
from tasks.core.stages import Stage
from tasks.core.stages.base import Advance, StageInputs

if TYPE_CHECKING:
    from tasks.core.config import ProblemsConfig


def split_file(split: str) -> str:
    return f"{split}.jsonl.gz"


def wanted_splits(cfg: ProblemsConfig) -> dict[str, int | None]:
    splits: dict[str, int | None] = {cfg.sft_split: None, cfg.rl_split: cfg.max_rl_problems}
    splits.setdefault(cfg.valid_split, cfg.max_valid_problems)
    for split in cfg.eval_splits:
        splits[split] = cfg.max_eval_problems
    if cfg.rl_valid_split:
        splits.setdefault(cfg.rl_valid_split, cfg.max_valid_problems)
    if cfg.oracle_split:
        splits.setdefault(cfg.oracle_split, cfg.max_rl_problems)  # the very problems of rl_split
    return splits


def _stream(cfg: ProblemsConfig, split: str, cap: int | None) -> Iterator[Problem]:
    kwargs = {"seed": cfg.seed, "per_family": cfg.per_family} if cfg.source == "bundled" else {}
    problems = load_problem_source(cfg.source, split, **kwargs)
    return itertools.islice(problems, cap) if cap else problems


def build_problem_set(plan: StagePlan, cfg: ProblemsConfig) -> Manifest:
    plan.dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split, cap in wanted_splits(cfg).items():
        counts[split] = export_problems(_stream(cfg, split, cap), plan.dir / split_file(split))
    return plan.publish([split_file(s) for s in counts], metrics={"problems": counts})


def load_split(manifest: Manifest, split: str) -> list[Problem]:
    return list(load_problems(manifest.file(split_file(split))))


@dataclass(frozen=True)
class ProblemsInputs(StageInputs):
    """The problems stage: its config only."""

    STAGE = Stage.PROBLEMS
    problems: ProblemsConfig

    def run(self, plan: StagePlan, progress: Advance | None = None) -> Manifest:
        return build_problem_set(plan, self.problems)
