"""Temperature selection on valid and the report's comparison against the best baseline.

The selection reads real evaluation ``metrics.parquet`` files (written here with the
evaluation's schema) and the comparison runs on per-problem values, through the same functions
the pipeline's select and report stages call.
"""

from __future__ import annotations

import pyarrow as pa
import pytest

from tasks.core.io import write_parquet
from tasks.core.manifest import FileEntry, Manifest, plan_stage
from tasks.core.stages import Stage
from tasks.core.stages import select as select_stage
from tasks.core.stages.evaluate import METRIC_SCHEMA, METRICS_FILE
from tasks.core.stages.report import ReportSettings, comparison_rows


def _evaluation(tmp_path, name: str, pass1: float, pass10: float) -> Manifest:
    d = tmp_path / name
    d.mkdir()
    rows = [
        {
            "label": name,
            "split": split,
            "metric": "pass@k",
            "k": k,
            "value": v,
            "lo": v - 0.1,
            "hi": v + 0.1,
            "problems": 20,
            "families": 7,
        }
        for split in ("valid", "all")
        for k, v in ((1, pass1), (10, pass10))
    ]
    write_parquet(d / METRICS_FILE, pa.Table.from_pylist(rows, schema=METRIC_SCHEMA))
    return Manifest(
        stage="evaluate",
        key=name,
        path=str(d),
        config={},
        code_version="x",
        created_at="",
        files={METRICS_FILE: FileEntry(size=1)},
    )


def test_select_picks_best_valid_pass1_and_pass10_ties_to_the_earlier(tmp_path):
    grid = [
        (0.0, _evaluation(tmp_path, "greedy", 0.40, 0.40)),
        (0.4, _evaluation(tmp_path, "t04", 0.40, 0.55)),
        (0.8, _evaluation(tmp_path, "t08", 0.30, 0.55)),
    ]
    plan = plan_stage(
        str(tmp_path / "run"),
        Stage.SELECT,
        {"t": 1},
        [(f"grid[{i}]", m) for i, (_, m) in enumerate(grid)],
        select_stage,
    )
    chosen = select_stage.choose(plan, "rl", grid, "valid", 10)
    assert chosen.metrics["pass1_temperature"] == 0.0  # tie with 0.4: the earlier
    assert chosen.metrics["wide_temperature"] == 0.4  # tie with 0.8: the earlier
    assert (chosen.dir / select_stage.GRID_FILE).is_file()


def test_select_refuses_a_missing_k_with_the_fix(tmp_path):
    grid = [(0.8, _evaluation(tmp_path, "t08", 0.3, 0.5))]
    plan = plan_stage(str(tmp_path / "run"), Stage.SELECT, {"t": 2}, [("grid[0]", grid[0][1])], select_stage)
    with pytest.raises(ValueError, match="select.valid_n"):
        select_stage.choose(plan, "rl", grid, "valid", 20)


def test_comparison_is_against_the_best_baseline_per_split():
    split_of = {f"a{i}": "s1" for i in range(6)} | {f"b{i}": "s2" for i in range(6)}
    family_of = {p: p[0] + str(int(p[1:]) // 2) for p in split_of}  # 3 families per split
    values = {
        # on s1 sft-continue is the stronger baseline, on s2 sft is
        "sft": {"pass@1": {**{f"a{i}": 0.2 for i in range(6)}, **{f"b{i}": 0.6 for i in range(6)}}},
        "sft-continue": {"pass@1": {**{f"a{i}": 0.5 for i in range(6)}, **{f"b{i}": 0.1 for i in range(6)}}},
        "rl": {"pass@1": {**{f"a{i}": 0.6 for i in range(6)}, **{f"b{i}": 0.5 for i in range(6)}}},
    }
    rows = {
        r["split"]: r for r in comparison_rows(values, split_of, family_of, ReportSettings(bootstrap=200))
    }
    assert rows["s1"]["best baseline"] == "sft-continue"
    assert rows["s1"]["difference"] == pytest.approx(0.1)
    assert rows["s2"]["best baseline"] == "sft"
    assert rows["s2"]["difference"] == pytest.approx(-0.1)
    assert rows["s1"]["families"] == 3 and rows["all"]["families"] == 6
    assert rows["all"]["problems"] == 12


def test_the_oracle_reference_is_never_the_baseline_and_gives_gap_closed():
    split_of = {f"a{i}": "s1" for i in range(6)} | {f"b{i}": "s2" for i in range(6)}
    family_of = {p: p[0] + str(int(p[1:]) // 2) for p in split_of}
    values = {
        "sft": {"pass@1": {**{f"a{i}": 0.1 for i in range(6)}, **{f"b{i}": 0.5 for i in range(6)}}},
        "sft-continue": {"pass@1": {**{f"a{i}": 0.2 for i in range(6)}, **{f"b{i}": 0.5 for i in range(6)}}},
        # the oracle is best everywhere; on s2 it is only 0.02 above sft-continue
        "oracle-sft": {"pass@1": {**{f"a{i}": 0.6 for i in range(6)}, **{f"b{i}": 0.52 for i in range(6)}}},
        "rl": {"pass@1": {**{f"a{i}": 0.4 for i in range(6)}, **{f"b{i}": 0.5 for i in range(6)}}},
    }
    settings = ReportSettings(bootstrap=200, reference="oracle-sft")
    rows = {r["split"]: r for r in comparison_rows(values, split_of, family_of, settings)}
    assert rows["s1"]["best baseline"] == "sft-continue"  # not the (stronger) oracle
    assert rows["s1"]["difference"] == pytest.approx(0.2)
    assert rows["s1"]["gap closed"] == pytest.approx((0.4 - 0.2) / (0.6 - 0.2))
    assert rows["s2"]["gap closed"] is None  # oracle - sft-continue = 0.02 < min_gap
    assert rows["s2"]["oracle-sft"] == pytest.approx(0.52)
    without = comparison_rows(values, split_of, family_of, ReportSettings(bootstrap=200))
    assert {r["best baseline"] for r in without} == {"oracle-sft"} and "gap closed" not in without[0]
