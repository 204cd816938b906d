"""Difficulty-aware RL problem selection from the pipeline's own pass rates.

Contract: :func:`band_select` keeps the problems whose estimated pass rate ``p`` lies in the
closed band ``lo <= p <= hi`` (the prompts whose groups carry reward variance: a problem the
policy always or never solves gives GRPO zero advantage and expert iteration nothing new) and
counts those below and above. :func:`pass_rates` turns per-sample verdicts into per-problem
pass rates. Pure functions over lists; where the estimate comes from (stage 3-4: the stage-2
model's samples of the RL split at RL's temperature, judged on the hidden tests the reward
uses) is the RL stage's business.
Limits: a problem without any sample is reported as ``unsampled`` and never kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class DifficultySelection:
    kept: tuple[str, ...]
    below: int  # pass rate < lo (too hard for now)
    above: int  # pass rate > hi (already solved)
    unsampled: int
    band: tuple[float, float]

    def counts(self) -> dict[str, object]:
        return {
            "difficulty_band": list(self.band),
            "difficulty_kept": len(self.kept),
            "difficulty_below": self.below,
            "difficulty_above": self.above,
            "difficulty_unsampled": self.unsampled,
        }


def pass_rates(problem_ids: Iterable[str], passed: Iterable[bool]) -> dict[str, float]:
    """Per problem, the fraction of its samples that passed."""
    counts: dict[str, list[int]] = {}
    for pid, ok in zip(problem_ids, passed, strict=True):
        nc = counts.setdefault(pid, [0, 0])
        nc[0] += 1
        nc[1] += bool(ok)
    return {pid: c / n for pid, (n, c) in counts.items()}


def band_select(
    names: Sequence[str], rates: Mapping[str, float], band: tuple[float, float]
) -> DifficultySelection:
    """The problems of ``names`` (in order) whose pass rate lies in ``band``; see the module docstring."""
    lo, hi = band
    if not 0 <= lo <= hi <= 1:
        raise ValueError(f"difficulty band {band}: give 0 <= lo <= hi <= 1, e.g. (0.1, 0.9)")
    kept = tuple(n for n in names if n in rates and lo <= rates[n] <= hi)
    return DifficultySelection(
        kept=kept,
        below=sum(1 for n in names if n in rates and rates[n] < lo),
        above=sum(1 for n in names if n in rates and rates[n] > hi),
        unsampled=sum(1 for n in names if n not in rates),
        band=(lo, hi),
    )
