"""The pipeline report: the RL model against its compute-matched baselines, per test split.

Contract: the contenders are the stage-2 model, the SFT-continue baseline (stage 2 trained on
its SFT data for the RL stage's optimizer steps) and the RL model, each evaluated on the test
splits at its own temperatures, chosen on ``valid`` (:mod:`tasks.core.stages.select`): pass@1
comes from its evaluation at its pass@1 temperature, pass@``wide_k``, the pass@k curve and
``n_submissions``@k from its evaluation at its wide temperature. Per split and metric the
report gives every contender's value and the subject's (RL's) difference from the BEST baseline
on that split (the strongest, so the comparison is never against the weakest), with a
family-clustered paired bootstrap 95% interval (:func:`tasks.core.metrics.family_paired_bootstrap`:
families resampled, then problems within each) and the number of families behind it.
An optional *reference* contender (``ReportSettings.reference``: the oracle-SFT model, trained on
the RL problems' reference solutions, which RL never sees) is an upper reference, never a
baseline: each row gives ``gap closed = (subject - gap_from) / (reference - gap_from)`` with
``gap_from`` the SFT-continue baseline, only where ``reference - gap_from >= min_gap`` (0.05;
else empty, since a ratio over a smaller gap is noise).
Reads only the evaluations' Parquet files; writes ``metrics.parquet`` (every contender's rows),
``comparison.parquet``, ``pass_at_k_<split>.png``/``n_at_k_<split>.png`` and ``report.md``
(which links both plots of every split, ``all`` first).
Limits: the best baseline is picked per split on that split's own point estimates, which
favours the baselines (a conservative choice); a difference is over the problems both
evaluations share.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

from tasks.core.io import atomic_write_text, write_parquet
from tasks.core.manifest import Manifest, StagePlan, list_files
from tasks.core.metrics import family_paired_bootstrap, n_at_k_per_problem, pass_at_k
from tasks.core.report import markdown_table, plot_n_at_k, plot_pass_at_k
from tasks.core.stages import REPORT_FILE, Stage
from tasks.core.stages.base import Advance, StageInputs
from tasks.core.stages.evaluate import (
    METRICS_FILE,
    PER_SAMPLE_FILE,
    Outcomes,
    curves,
    problem_outcomes,
    split_of,
)
from tasks.core.stages.sample import eval_problems


class Contender(BaseModel):
    """One model of the comparison and the evaluations its figures come from."""

    model_config = ConfigDict(frozen=True)
    label: str
    pass1: Manifest  # evaluation at ``pass1_temperature``
    wide: Manifest  # evaluation at ``wide_temperature``
    pass1_temperature: float
    wide_temperature: float


class ReportSettings(BaseModel):
    model_config = ConfigDict(frozen=True)
    subject: str = "rl"
    wide_k: int = 10
    n_submissions: int = 10
    seed: int = 0
    bootstrap: int = 1000
    reference: str | None = None  # label of the upper reference (oracle SFT), never a baseline
    gap_from: str = "sft-continue"  # the baseline the gap to the reference is measured from
    min_gap: float = 0.05


def gap_closed(means: dict[str, float], s: ReportSettings) -> float | None:
    """``(subject - gap_from) / (reference - gap_from)``, None without a reference or where the
    reference is less than ``min_gap`` above ``gap_from``."""
    if s.reference not in means or s.gap_from not in means:
        return None
    gap = means[s.reference] - means[s.gap_from]
    return (means[s.subject] - means[s.gap_from]) / gap if gap >= s.min_gap else None


def _outcomes(evaluation: Manifest, splits: dict[str, str], families: dict[str, str]) -> dict[str, Outcomes]:
    table = pq.read_table(evaluation.file(PER_SAMPLE_FILE))
    return {o.problem_id: o for o in problem_outcomes(table, splits, families)}


def per_problem(contender: Contender, splits, families, s: ReportSettings) -> dict[str, dict[str, float]]:
    """metric name -> problem -> value, for this contender."""
    one, wide = _outcomes(contender.pass1, splits, families), _outcomes(contender.wide, splits, families)
    n_min = min(o.n for o in wide.values())
    out = {"pass@1": {p: pass_at_k(o.n, o.c, 1) for p, o in one.items()}}
    if s.wide_k <= n_min:
        out[f"pass@{s.wide_k}"] = {p: pass_at_k(o.n, o.c, s.wide_k) for p, o in wide.items()}
    ids = sorted(wide)
    values = n_at_k_per_problem([wide[p].samples for p in ids], s.n_submissions, n_min, seed=s.seed)
    out[f"{s.n_submissions}@{n_min}"] = dict(zip(ids, values.tolist()))
    return out


def comparison_rows(
    values: dict[str, dict[str, dict[str, float]]],
    split_of_problem: dict[str, str],
    family_of: dict[str, str],
    s: ReportSettings,
) -> list[dict]:
    """Per split x metric: every contender's mean, the best baseline and the subject's paired
    difference from it (see the module docstring)."""
    rows = []
    metrics = [m for m in values[s.subject] if all(m in v for v in values.values())]
    for split in [*sorted(set(split_of_problem.values())), "all"]:
        for metric in metrics:
            ids = sorted(
                p
                for p in values[s.subject][metric]
                if split in ("all", split_of_problem.get(p)) and all(p in v[metric] for v in values.values())
            )
            if len(ids) < 2:
                continue
            means = {label: float(np.mean([v[metric][p] for p in ids])) for label, v in values.items()}
            baselines = [label for label in values if label not in (s.subject, s.reference)]
            base = max(baselines, key=lambda label: means[label])
            diff = family_paired_bootstrap(
                [values[s.subject][metric][p] for p in ids],
                [values[base][metric][p] for p in ids],
                [family_of.get(p, p) for p in ids],
                n_boot=s.bootstrap,
                seed=s.seed,
            )
            rows.append(
                {
                    "split": split,
                    "metric": metric,
                    **means,
                    "best baseline": base,
                    "difference": diff.difference,
                    "lo": diff.lo,
                    "hi": diff.hi,
                    "problems": len(ids),
                    "families": diff.n_families,
                    **({"gap closed": gap_closed(means, s)} if s.reference in means else {}),
                }
            )
    return rows


def _labelled_rows(contenders: list[Contender]) -> list[dict]:
    rows = []
    for c in contenders:
        for r in pq.read_table(c.wide.file(METRICS_FILE)).to_pylist():
            rows.append({**r, "model": c.label, "temperature": c.wide_temperature})
        if c.pass1.key != c.wide.key:
            for r in pq.read_table(c.pass1.file(METRICS_FILE)).to_pylist():
                if r["metric"] == "pass@k" and r["k"] == 1:
                    rows.append({**r, "model": c.label, "temperature": c.pass1_temperature})
    return rows


def build_report(
    plan: StagePlan,
    contenders: list[Contender],
    problems: Manifest,
    splits: tuple[str, ...],
    settings: ReportSettings,
    stage_manifests: dict[str, Manifest],
) -> Manifest:
    """Compare ``settings.subject`` with the other contenders over the problems of ``splits``;
    ``stage_manifests`` (label -> manifest) are linked from the report."""
    labels = {c.label for c in contenders}
    if settings.subject not in labels or not labels - {settings.subject, settings.reference}:
        raise ValueError(
            f"the report needs {settings.subject!r} and at least one baseline among its contenders"
        )
    where = split_of(problems, splits)
    family_of = {p.name: p.tags.get("family", p.name) for p in eval_problems(problems, splits)}
    values = {c.label: per_problem(c, where, family_of, settings) for c in contenders}
    comparison = comparison_rows(values, where, family_of, settings)
    write_parquet(plan.dir / "comparison.parquet", pa.Table.from_pylist(comparison))
    rows = _labelled_rows(contenders)
    write_parquet(plan.dir / METRICS_FILE, pa.Table.from_pylist(rows))
    plotted = _plots(plan, contenders, rows, settings)
    atomic_write_text(
        plan.dir / REPORT_FILE, _markdown(contenders, comparison, rows, stage_manifests, settings, plotted)
    )
    headline = {f"{r['split']}/{r['metric']}/difference": round(r["difference"], 4) for r in comparison}
    return plan.publish(list_files(plan.dir), metrics={"comparison": comparison, **headline})


def _plots(plan: StagePlan, contenders: list[Contender], rows: list[dict], s: ReportSettings) -> list[str]:
    """Draw the pass@k and n@k plots of every split; returns the splits, ``all`` first."""
    named = [
        {**r, "label": f"{r['model']} (T={r['temperature']})"}
        for r in rows
        if any(r["label"] == c.wide.metrics.get("label") for c in contenders)
    ]
    for split in sorted({r["split"] for r in named}):
        plot_pass_at_k(curves(named, "pass@k", split), plan.dir / f"pass_at_k_{split}.png")
        plot_n_at_k(curves(named, f"{s.n_submissions}@k", split), plan.dir / f"n_at_k_{split}.png")
    return sorted({r["split"] for r in named}, key=lambda split: (split != "all", split))


def _fmt(rows: list[dict], keep: Callable[[str], bool] = lambda k: True) -> str:
    return markdown_table(
        [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items() if keep(k)} for r in rows]
    )


def _markdown(
    contenders: list[Contender],
    comparison: list[dict],
    rows: list[dict],
    stages: dict[str, Manifest],
    s: ReportSettings,
    plotted: list[str],
) -> str:
    temps = [
        {"model": c.label, "pass@1 at T": c.pass1_temperature, "pass@k, n@k at T": c.wide_temperature}
        for c in contenders
    ]
    lines = [
        "# AlphaCode pipeline report",
        "",
        f"## {s.subject} against the best compute-matched baseline, per test split (hidden tests)",
        "",
        "Each model at its own temperatures, chosen on `valid` (never on a test split). `difference` "
        f"is {s.subject} minus the best baseline on that split, with a family-clustered paired "
        "bootstrap 95% CI (families resampled, then problems within each family); `families` is "
        "the number of families behind each interval."
        + (
            f" `{s.reference}` is an upper reference, never a baseline (trained on the reference "
            f"solutions of the RL problems, which {s.subject} never sees); `gap closed` = "
            f"({s.subject} - {s.gap_from}) / ({s.reference} - {s.gap_from}), empty where that "
            f"gap is below {s.min_gap}."
            if s.reference
            else ""
        ),
        "",
        _fmt(comparison),
        "",
        "## Temperatures (chosen on valid)",
        "",
        markdown_table(temps),
        "",
        "## All metrics",
        "",
        _fmt(rows),
        "",
        "## Stages",
        "",
    ]
    for name, m in stages.items():
        lines.append(f"- **{name}** `{m.key}`: {m.path}")
    lines += ["", "## Plots", ""]
    for split in plotted:
        lines += [
            f"### {split}",
            "",
            f"![pass@k {split}](pass_at_k_{split}.png) ![n@k {split}](n_at_k_{split}.png)",
            "",
        ]
    return "\n".join(lines)


@dataclass(frozen=True)
class ReportInputs(StageInputs):
    """The report: the contenders' evaluations (two each), the splits compared, and every stage
    the report lists (``stages``, by display label): all of them upstream, each in its role."""

    STAGE = Stage.REPORT
    settings: ReportSettings
    splits: tuple[str, ...]
    contenders: tuple[Contender, ...]
    problems: Manifest
    stages: dict[str, Manifest]

    def run(self, plan: StagePlan, progress: Advance | None = None) -> Manifest:
        return build_report(
            plan, list(self.contenders), self.problems, self.splits, self.settings, self.stages
        )
