"""The scaling curve stage: one evaluation's solve rate against samples per problem.

Contract: reads only the evaluation's ``per_sample.parquet`` (public-test pass, cluster id,
hidden-test pass per sample) and the problem set (each problem's split and family tag, as the
evaluation stage reads them: a problem without a ``family`` tag is its own family), and computes
:func:`tasks.core.scaling.scaling_curve`: pass@k, ``m``@k with filtering + clustering, with
filtering only and with neither, for k = 1, 2, 5, 10, ... up to the samples per problem, each with
a family-clustered bootstrap band; the gaps (clustering - filter, filter - random) at k = 10, 100,
1000 where reached; the fraction of problems whose largest cluster is correct. Publishes
``curve.parquet``, ``gaps.parquet``, ``largest_cluster.parquet``, ``curve.png`` (all problems),
``curve-<split>.png`` per split when there are several, and ``report.md`` (a table per split);
the manifest's metrics carry the ``all`` gaps and largest-cluster fraction.
Limits: those of :mod:`tasks.core.scaling` (the bands do not include the clustering curve's
Monte Carlo error; k stops at the smallest sample count of the problems).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from tasks.core.io import atomic_write_text
from tasks.core.manifest import Manifest, StagePlan, list_files
from tasks.core.report import markdown_table
from tasks.core.scaling import (
    ALL,
    CURVE_PLOT,
    GAP_KS,
    ScalingCurve,
    curve_names,
    scaling_curve,
    split_plot,
    write_curve,
)
from tasks.core.stages import REPORT_FILE, Stage
from tasks.core.stages.base import Advance, StageInputs
from tasks.core.stages.evaluate import PER_SAMPLE_FILE, UNKNOWN, groups_of, problem_outcomes, split_of


class CurveSettings(BaseModel):
    """What the curve computes: ``n_submissions`` per problem (AlphaCode: 10), ``draws`` random
    k-subsets per problem and k for the clustering curve, ``bootstrap`` resamples per band."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    n_submissions: int = Field(default=10, ge=1)
    draws: int = Field(default=100, ge=1)
    seed: int = 0
    bootstrap: int = Field(default=1000, ge=100)
    gap_ks: tuple[int, ...] = GAP_KS


def build_curve(
    plan: StagePlan,
    label: str,
    evaluation: Manifest,
    problems: Manifest,
    splits: tuple[str, ...],
    settings: CurveSettings,
) -> Manifest:
    """The curve of ``evaluation`` (the model and sampling ``label`` names) over the problems of
    ``splits``; see the module docstring."""
    table = pq.read_table(evaluation.file(PER_SAMPLE_FILE))
    families = {pid: f for pid, f in groups_of(problems, splits)["family"].items() if f != UNKNOWN}
    outcomes = problem_outcomes(table, split_of(problems, splits), families)
    if not outcomes:
        raise ValueError(f"evaluation {evaluation.key} has no samples: nothing to draw a curve from")
    result = scaling_curve(
        [o.samples for o in outcomes],
        [o.family for o in outcomes],
        [o.split for o in outcomes],
        n_submissions=settings.n_submissions,
        draws=settings.draws,
        seed=settings.seed,
        n_boot=settings.bootstrap,
        gap_ks=settings.gap_ks,
    )
    title = f"{label}: solve rate vs samples, hidden tests"
    write_curve(plan.dir, result, title)
    atomic_write_text(plan.dir / REPORT_FILE, report_markdown(label, result, len(outcomes)))
    return plan.publish(list_files(plan.dir), metrics=headline(label, result))


def headline(label: str, result: ScalingCurve) -> dict:
    """The manifest's metrics: samples per problem, the ``all`` gaps and largest-cluster fraction."""
    largest = next(r for r in result.largest if r.split == ALL)
    return {
        "label": label,
        "n": result.n,
        "problems": largest.problems,
        "families": largest.families,
        "largest_cluster_correct": {
            "fraction": round(largest.fraction, 4),
            "lo": round(largest.lo, 4),
            "hi": round(largest.hi, 4),
            "with_clusters": largest.with_clusters,
        },
        "gaps": {
            f"{g.gap} @{g.k}": {
                "difference": round(g.difference, 4),
                "lo": round(g.lo, 4),
                "hi": round(g.hi, 4),
            }
            for g in result.gaps
            if g.split == ALL
        },
        "final": {
            name: round(result.series(name)[-1].value, 4) for name in curve_names(result.n_submissions)
        },
    }


def _rounded(rows: list[dict]) -> list[dict]:
    return [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in rows]


def _curve_table(result: ScalingCurve, split: str) -> str:
    """One split's curves: a row per k, each value with its band."""
    wide = []
    for k in result.ks:
        row: dict = {"k": k}
        for name in curve_names(result.n_submissions):
            p = next(p for p in result.series(name, split) if p.k == k)
            row[name] = f"{p.value:.3f} ({p.lo:.3f}-{p.hi:.3f})"
        wide.append(row)
    return markdown_table(wide)


def _split_sections(result: ScalingCurve) -> list[str]:
    """A table and a plot per split, when there are several (the ``all`` one comes first)."""
    if len(result.splits) < 2:
        return []
    lines = []
    for split in result.splits:
        lines += [
            f"## Split `{split}` ({result.problems(split)} problems)",
            "",
            _curve_table(result, split),
            "",
        ]
        lines += [f"![curve {split}]({split_plot(split)})", ""]
    return lines


def report_markdown(label: str, result: ScalingCurve, problems: int) -> str:
    m = result.n_submissions
    names = curve_names(m)
    gaps = [
        {"split": g.split, "gap": g.gap, "k": g.k, "difference": g.difference, "lo": g.lo, "hi": g.hi}
        | {"P(diff <= 0)": g.frac_not_positive, "problems": g.problems, "families": g.families}
        for g in result.gaps
    ]
    largest = [
        {"split": r.split, "fraction": r.fraction, "lo": r.lo, "hi": r.hi, "problems": r.problems}
        | {"with a cluster": r.with_clusters, "families": r.families}
        for r in result.largest
    ]
    lines = [
        f"# Solve rate vs samples: {label}",
        "",
        f"{problems} problems, {result.n} samples each, hidden tests. Curves: `pass@k` (unbiased "
        f"estimator); `{names[1]}` (AlphaCode: {m} submissions, one from each of the {m} largest "
        f"behavioural clusters of the public-test survivors of a random k-subset; mean of "
        f"{result.draws} subsets); `{names[2]}` ({m} random public-test survivors of a random "
        f"k-subset, exact); `{names[3]}` ({m} random samples, no filter: pass@min({m}, k), exact). "
        "Values with family-clustered 95% bootstrap intervals (families resampled, then problems "
        "within each).",
        "",
        "## All problems",
        "",
        _curve_table(result, ALL),
        "",
        f"![curve]({CURVE_PLOT})",
        "",
        *_split_sections(result),
        "## Gaps (paired, family-clustered 95% bootstrap interval)",
        "",
        markdown_table(_rounded(gaps))
        if gaps
        else f"No gap k is reached with {result.n} samples per problem.",
        "",
        "## Largest cluster correct (its representative passes the hidden tests; no survivor = not correct)",
        "",
        markdown_table(_rounded(largest)),
        "",
        "Every split's points: `curve.parquet`.",
        "",
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class CurveInputs(StageInputs):
    """The scaling curve of one evaluation (``label``) over the problems of ``splits``."""

    STAGE = Stage.CURVE
    label: str
    splits: tuple[str, ...]
    settings: CurveSettings
    evaluation: Manifest
    problems: Manifest

    def run(self, plan: StagePlan, progress: Advance | None = None) -> Manifest:
        return build_curve(plan, self.label, self.evaluation, self.problems, self.splits, self.settings)
