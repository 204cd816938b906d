"""The pipeline report: the stage-2 (SFT) model against the RL model, from their evaluations.

Contract: reads the two evaluation stages' ``metrics.parquet`` and ``per_sample.parquet``;
writes ``metrics.parquet`` (both models' rows), ``comparison.parquet`` (per split: pass@1 of
each model and the paired difference over the same problems with a family-clustered bootstrap
95% CI, ``metrics.family_paired_bootstrap``, and the number of families it resampled),
``pass_at_k.png``/``n_at_k.png`` with both models' curves, and ``report.md`` linking every
stage's own report and plots. Nothing is recomputed from models: only from Parquet.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.core.io import write_parquet
from tasks.core.manifest import Manifest, StagePlan, list_files
from tasks.core.metrics import family_paired_bootstrap, pass_at_k
from tasks.core.report import markdown_table, plot_n_at_k, plot_pass_at_k
from tasks.core.stages import REPORT_FILE
from tasks.core.stages.evaluate import METRICS_FILE, PER_SAMPLE_FILE, curves, split_of
from tasks.core.stages.sample import eval_problems


def per_problem_pass1(evaluation: Manifest) -> dict[str, float]:
    table = pq.read_table(evaluation.file(PER_SAMPLE_FILE), columns=["problem_id", "passed_hidden"])
    counts: dict[str, list[int]] = {}
    for pid, ok in zip(table["problem_id"].to_pylist(), table["passed_hidden"].to_pylist()):
        nc = counts.setdefault(pid, [0, 0])
        nc[0] += 1
        nc[1] += bool(ok)
    return {pid: pass_at_k(n, c, 1) for pid, (n, c) in counts.items()}


def compare(
    before: Manifest,
    after: Manifest,
    split_of: dict[str, str],
    seed: int = 0,
    family_of: dict[str, str] | None = None,
) -> list[dict]:
    """Per split, pass@1 before/after and their family-clustered paired bootstrap difference;
    a problem missing from ``family_of`` is its own family."""
    a, b = per_problem_pass1(after), per_problem_pass1(before)
    family_of = family_of or {}
    rows = []
    for split in [*sorted(set(split_of.values())), "all"]:
        ids = sorted(p for p in a if p in b and split in ("all", split_of.get(p)))
        if len(ids) < 2:
            continue
        x, y = np.array([a[p] for p in ids]), np.array([b[p] for p in ids])
        diff = family_paired_bootstrap(x, y, [family_of.get(p, p) for p in ids], seed=seed)
        rows.append(
            {
                "split": split,
                "problems": len(ids),
                "pass@1 before": float(y.mean()),
                "pass@1 after": float(x.mean()),
                "difference": diff.difference,
                "lo": diff.lo,
                "hi": diff.hi,
                "families": diff.n_families,
            }
        )
    return rows


def build_report(
    plan: StagePlan,
    before: Manifest,
    after: Manifest,
    problems: Manifest,
    splits: tuple[str, ...],
    stage_manifests: dict[str, Manifest],
) -> Manifest:
    """Compare the evaluations ``before`` and ``after`` RL over the problems of ``splits``;
    ``stage_manifests`` (label -> manifest) are linked from the report."""
    rows = (
        pq.read_table(before.file(METRICS_FILE)).to_pylist()
        + pq.read_table(after.file(METRICS_FILE)).to_pylist()
    )
    write_parquet(plan.dir / METRICS_FILE, pa.Table.from_pylist(rows))
    family_of = {p.name: p.tags.get("family", p.name) for p in eval_problems(problems, splits)}
    comparison = compare(before, after, split_of(problems, splits), family_of=family_of)
    write_parquet(plan.dir / "comparison.parquet", pa.Table.from_pylist(comparison))
    n_metric = next((r["metric"] for r in rows if r["metric"] != "pass@k"), "10@k")
    for split in sorted({r["split"] for r in rows}):
        plot_pass_at_k(curves(rows, "pass@k", split), plan.dir / f"pass_at_k_{split}.png")
        plot_n_at_k(curves(rows, n_metric, split), plan.dir / f"n_at_k_{split}.png")
    plan.dir.joinpath(REPORT_FILE).write_text(_markdown(rows, comparison, stage_manifests))
    headline = {f"{r['split']}/difference": round(r["difference"], 4) for r in comparison}
    return plan.publish(list_files(plan.dir), metrics={"comparison": comparison, **headline})


def _fmt(rows: list[dict]) -> str:
    return markdown_table(
        [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in rows]
    )


def _markdown(rows: list[dict], comparison: list[dict], stages: dict[str, Manifest]) -> str:
    lines = [
        "# AlphaCode pipeline report",
        "",
        "## RL vs stage-2 model: pass@1 on hidden tests",
        "",
        "Paired difference with a family-clustered bootstrap 95% CI (families resampled, then "
        "problems within each family); `families` is the number of families behind each interval.",
        "",
        _fmt(comparison),
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
    lines += ["", "![pass@k](pass_at_k_all.png) ![n@k](n_at_k_all.png)", ""]
    return "\n".join(lines)
