"""Metrics history for scheduled re-evaluation: append, trend plot, regression flags.

Contract: ``<run>/history/metrics.parquet`` holds one row per (evaluation time, model key,
split, metric, k) with value and 95% CI. :func:`append_history` rewrites it atomically with the
new rows added (existing rows are never changed). :func:`regressions` compares, per (split,
metric, k), the newest evaluation with the one before it and flags a regression when the new
value is below the previous interval's lower bound *and* the previous value is above the new
interval's upper bound (the intervals do not overlap), so noise inside the CIs is not flagged.
:func:`newest_manifest` finds the newest complete manifest of a stage in a run directory by the
``created_at`` recorded in the manifests themselves (not by file times).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.core.io import write_parquet
from tasks.core.manifest import Manifest, read_manifest
from tasks.core.plots import plot_curves
from tasks.core.stages.evaluate import METRIC_SCHEMA

HISTORY_SCHEMA = pa.schema(
    [("evaluated_at", pa.string()), ("model_stage", pa.string()), ("model_key", pa.string())]
    + [field for field in METRIC_SCHEMA if field.name != "label"]
)


@dataclass(frozen=True)
class Regression:
    split: str
    metric: str
    k: int
    previous: float
    previous_lo: float
    current: float
    current_hi: float


def newest_manifest(run_dir: Path, stage: str) -> Manifest:
    stage_root = Path(run_dir) / stage
    manifests = [m for d in sorted(stage_root.glob("*")) if (m := read_manifest(d)) is not None]
    if not manifests:
        raise FileNotFoundError(
            f"no complete {stage!r} stage under {stage_root}: run the pipeline first (alphacode run --out {run_dir})"
        )
    return max(manifests, key=lambda m: m.created_at)


def read_history(path: Path) -> pa.Table:
    return (
        pq.read_table(path, schema=HISTORY_SCHEMA) if Path(path).is_file() else HISTORY_SCHEMA.empty_table()
    )


def append_history(path: Path, rows: Sequence[dict]) -> pa.Table:
    table = pa.concat_tables([read_history(path), pa.Table.from_pylist(list(rows), schema=HISTORY_SCHEMA)])
    write_parquet(Path(path), table)
    return table


def regressions(history: pa.Table) -> list[Regression]:
    by_key: dict[tuple, list[dict]] = {}
    for row in history.to_pylist():
        by_key.setdefault((row["split"], row["metric"], row["k"]), []).append(row)
    flagged = []
    for (split, metric, k), rows in sorted(by_key.items()):
        rows.sort(key=lambda r: r["evaluated_at"])
        if len(rows) < 2:
            continue
        prev, cur = rows[-2], rows[-1]
        if cur["value"] < prev["lo"] and prev["value"] > cur["hi"]:
            flagged.append(Regression(split, metric, k, prev["value"], prev["lo"], cur["value"], cur["hi"]))
    return flagged


def plot_trend(history: pa.Table, split: str, metric: str, path: Path) -> Path | None:
    rows = sorted(
        (r for r in history.to_pylist() if r["split"] == split and r["metric"] == metric),
        key=lambda r: r["evaluated_at"],
    )
    if not rows:
        return None
    runs = sorted({r["evaluated_at"] for r in rows})
    x = list(range(1, len(runs) + 1))
    panels = {}
    for k in sorted({r["k"] for r in rows}):
        by_time = {r["evaluated_at"]: r["value"] for r in rows if r["k"] == k}
        name = f"{metric} k={k}"
        panels[name] = {name: (x, [by_time.get(t, float("nan")) for t in runs])}
    return plot_curves(panels, path, title=f"{split}: {metric} per re-evaluation", xlabel="re-evaluation")
