"""Evaluation's per-model intervals resample families, and say how many stand behind each."""

import pyarrow as pa

from tasks.core.config import EvalConfig
from tasks.core.stages.evaluate import metric_rows, problem_outcomes


def _table(n_problems: int, samples: int = 4) -> pa.Table:
    rows = []
    for i in range(n_problems):
        solved = i % 10 < 5  # families of 10 problems: the first 5 of each family solve everything
        for s in range(samples):
            rows.append(
                {"problem_id": f"p{i:03d}", "passed_public": True, "passed_hidden": solved, "cluster_id": s}
            )
    return pa.Table.from_pylist(rows)


def _pass1(rows):
    return next(r for r in rows if r["split"] == "all" and r["metric"] == "pass@k" and r["k"] == 1)


def test_intervals_are_family_clustered_and_count_families():
    table = _table(60)
    split_of = {f"p{i:03d}": "test" for i in range(60)}
    # 4 families, each all-solved or all-unsolved: resampling families moves the mean in steps
    # of a quarter, resampling problems in steps of a sixtieth
    clustered = {f"p{i:03d}": f"fam{i % 10 < 5}-{i // 30}" for i in range(60)}
    cfg = EvalConfig(ks=(1,), n_at_k=(), bootstrap=500)
    by_family = _pass1(metric_rows("m", problem_outcomes(table, split_of, clustered), cfg))
    by_problem = _pass1(metric_rows("m", problem_outcomes(table, split_of), cfg))
    assert by_family["value"] == by_problem["value"] == 0.5
    assert by_family["families"] == 4 and by_problem["families"] == 60
    assert by_family["hi"] - by_family["lo"] > 2 * (by_problem["hi"] - by_problem["lo"])


def test_per_family_table_leaves_out_single_problem_families():
    from tasks.core.stages.evaluate import group_rows

    table = _table(5)
    split_of = {f"p{i:03d}": "test" for i in range(5)}
    family_of = {"p000": "a", "p001": "a", "p002": "a", "p003": "b", "p004": "c"}
    outcomes = problem_outcomes(table, split_of, family_of)
    rows = group_rows("m", outcomes, {"family": family_of}, EvalConfig(bootstrap=200))
    assert [(r["group"], r["problems"]) for r in rows] == [("a", 3)]
