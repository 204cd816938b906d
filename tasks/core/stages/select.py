"""Temperature selection on the valid split, for one model of the report.

Contract: given the model's evaluations on the ``valid`` split at each temperature of the grid
(each a finished evaluation stage: hidden-test pass@k with family-clustered intervals), picks
the temperature with the best valid pass@1 (``pass1_temperature``: the one test pass@1 is
reported at) and the one with the best valid pass@``wide_k`` (``wide_temperature``: the one the
test pass@k curve and 10@k are reported at); ties go to the earlier temperature of the grid.
Writes ``temperatures.parquet`` (one row per temperature: pass@1 and pass@wide_k with their
intervals, problems, families) and ``report.md``; the manifest carries the two choices. Only the
valid split is read: no test split reaches this stage.
Limits: a difference inside the intervals still picks one temperature (the choice is a point
estimate, stated with its intervals beside it).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.core.io import atomic_write_text, write_parquet
from tasks.core.manifest import Manifest, StagePlan, list_files
from tasks.core.report import markdown_table
from tasks.core.stages import REPORT_FILE, Stage
from tasks.core.stages.base import Advance, StageInputs
from tasks.core.stages.evaluate import METRICS_FILE

GRID_FILE = "temperatures.parquet"


def _metric(evaluation: Manifest, split: str, k: int) -> dict:
    rows = pq.read_table(evaluation.file(METRICS_FILE)).to_pylist()
    hit = [r for r in rows if r["split"] == split and r["metric"] == "pass@k" and r["k"] == k]
    if not hit:
        raise ValueError(
            f"evaluation {evaluation.key} has no {split} pass@{k}: sample at least {k} per valid "
            "problem (select.valid_n) and keep k in evaluate.ks"
        )
    return hit[0]


def grid_rows(grid: list[tuple[float, Manifest]], split: str, wide_k: int) -> list[dict]:
    rows = []
    for temperature, evaluation in grid:
        one, wide = _metric(evaluation, split, 1), _metric(evaluation, split, wide_k)
        rows.append(
            {
                "temperature": float(temperature),
                "pass@1": one["value"],
                "pass@1 lo": one["lo"],
                "pass@1 hi": one["hi"],
                f"pass@{wide_k}": wide["value"],
                f"pass@{wide_k} lo": wide["lo"],
                f"pass@{wide_k} hi": wide["hi"],
                "problems": one["problems"],
                "families": one["families"],
                "evaluation": evaluation.key,
            }
        )
    return rows


def best(rows: list[dict], column: str) -> float:
    """The temperature of the first row with the largest ``column``."""
    top = max(r[column] for r in rows)
    return next(r["temperature"] for r in rows if r[column] == top)


def choose(
    plan: StagePlan, label: str, grid: list[tuple[float, Manifest]], split: str, wide_k: int
) -> Manifest:
    """Pick ``label``'s temperatures from its ``split`` evaluations (see the module docstring)."""
    if not grid:
        raise ValueError("select: an empty temperature grid; give select.temperatures")
    rows = grid_rows(grid, split, wide_k)
    write_parquet(plan.dir / GRID_FILE, pa.Table.from_pylist(rows))
    pass1, wide = best(rows, "pass@1"), best(rows, f"pass@{wide_k}")
    shown = [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in rows]
    text = [
        f"# Temperature selection: {label}, on `{split}`",
        "",
        f"pass@1 is reported at T = {pass1}; pass@k and 10@k at T = {wide} (best valid pass@{wide_k}).",
        "",
        markdown_table(shown),
        "",
    ]
    atomic_write_text(plan.dir / REPORT_FILE, "\n".join(text))
    return plan.publish(
        list_files(plan.dir),
        metrics={
            "label": label,
            "split": split,
            "pass1_temperature": pass1,
            "wide_temperature": wide,
            "wide_k": wide_k,
        },
    )


@dataclass(frozen=True)
class SelectInputs(StageInputs):
    """Temperature choice for ``label``: its evaluations on ``split``, one per grid temperature."""

    STAGE = Stage.SELECT
    label: str
    split: str
    wide_k: int
    grid: tuple[tuple[float, Manifest], ...]

    def run(self, plan: StagePlan, progress: Advance | None = None) -> Manifest:
        return choose(plan, self.label, list(self.grid), self.split, self.wide_k)
