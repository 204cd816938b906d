"""The solve-rate-vs-samples curve (:mod:`tasks.core.scaling`) and its stage (:mod:`tasks.core.stages.curve`).

The exact filter formula is checked against brute-force enumeration of every k-subset and every
submission set on small problems and against simulation at n = 1000; the curves' orderings on
synthetic outcomes built so that they must hold; the stage end to end on a real problems stage
and a per-sample table in the evaluation's schema.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.core.config import ProblemsConfig
from tasks.core.io import write_parquet
from tasks.core.manifest import list_files, plan_stage, publish
from tasks.core.metrics import ProblemSamples, n_at_k_per_problem, pass_at_k
from tasks.core.scaling import (
    CURVE_FILE,
    CURVE_PLOT,
    GAPS_FILE,
    LARGEST_FILE,
    curve_names,
    filter_solve_probability,
    k_grid,
    largest_cluster_correct,
    scaling_curve,
    write_curve,
)
from tasks.core.stages import Stage
from tasks.core.stages import curve as curve_stage
from tasks.core.stages import problems as problems_stage
from tasks.core.stages.evaluate import PER_SAMPLE_FILE, load_split

PNG = b"\x89PNG\r\n\x1a\n"
PASS, CLUSTER, FILTER, RANDOM = curve_names(10)


def samples(public, hidden, cluster) -> ProblemSamples:
    return ProblemSamples(np.array(public, bool), np.array(hidden, bool), np.array(cluster, np.int64))


def pure_problem(n: int, correct: int, wrong_clusters: int, wrong_size: int, seed: int) -> ProblemSamples:
    """``correct`` survivors in one cluster (they alone pass the hidden tests), ``wrong_clusters``
    clusters of ``wrong_size`` wrong survivors, the rest filtered out; shuffled."""
    cid = [0] * correct + [1 + i // wrong_size for i in range(wrong_clusters * wrong_size)]
    cid += [-1] * (n - len(cid))
    cid = np.random.default_rng(seed).permutation(np.array(cid))
    return samples(cid >= 0, cid == 0, cid)


# ------------------------------------------------------------------------------------ the k grid


def test_k_grid_is_1_2_5_decades_up_to_n_and_ends_at_n():
    assert k_grid(1000) == [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]
    assert k_grid(30) == [1, 2, 5, 10, 20, 30]
    assert k_grid(1) == [1]
    with pytest.raises(ValueError, match="n >= 1"):
        k_grid(0)


# ------------------------------------------------------------------------- the exact filter curve


def brute_force_filter(n: int, survivors: int, good: int, k: int, m: int) -> float:
    """Average over every k-subset, then every submission set of min(m, s) of its s survivors."""
    kinds = ["good"] * good + ["bad"] * (survivors - good) + ["out"] * (n - survivors)
    total = 0.0
    subsets = list(itertools.combinations(range(n), k))
    for subset in subsets:
        alive = [i for i in subset if kinds[i] != "out"]
        if not alive:
            continue
        picks = list(itertools.combinations(alive, min(m, len(alive))))
        total += sum(any(kinds[i] == "good" for i in p) for p in picks) / len(picks)
    return total / len(subsets)


@pytest.mark.parametrize("n", [6, 8])
def test_filter_probability_equals_brute_force_enumeration(n):
    for survivors in range(n + 1):
        for good in range(survivors + 1):
            for k in range(1, n + 1):
                for m in (1, 2, 3):
                    exact = filter_solve_probability(n, survivors, good, k, m)
                    assert exact == pytest.approx(brute_force_filter(n, survivors, good, k, m), abs=1e-12), (
                        n,
                        survivors,
                        good,
                        k,
                        m,
                    )


def test_filter_probability_matches_simulation_at_n_1000():
    rng = np.random.default_rng(7)
    n, survivors, good, m, draws = 1000, 60, 3, 10, 20_000
    kinds = np.array([2] * good + [1] * (survivors - good) + [0] * (n - survivors))
    for k in (20, 100, 500):
        hits = 0
        for _ in range(draws):
            subset = kinds[rng.choice(n, k, replace=False)]
            alive = subset[subset > 0]
            chosen = rng.choice(alive, min(m, alive.size), replace=False) if alive.size else alive
            hits += bool((chosen == 2).any())
        exact = filter_solve_probability(n, survivors, good, k, m)
        se = math.sqrt(max(exact * (1 - exact), 1e-4) / draws)
        assert abs(hits / draws - exact) < 5 * se, (k, hits / draws, exact)


def test_filter_probability_refuses_impossible_counts():
    with pytest.raises(ValueError, match="good <= survivors <= n"):
        filter_solve_probability(10, 3, 4, 5, 10)
    with pytest.raises(ValueError, match="1 <= k <= n"):
        filter_solve_probability(10, 3, 1, 11, 10)


# ----------------------------------------------------------------------------------- the curves


def test_every_curve_is_one_when_every_sample_passes_everything():
    p = samples([True] * 50, [True] * 50, [0] * 50)
    result = scaling_curve([p, p], ["f", "g"], ["s", "s"], draws=20, n_boot=200)
    assert {pt.curve for pt in result.points} == {PASS, CLUSTER, FILTER, RANDOM}
    for pt in result.points:
        assert (pt.value, pt.lo, pt.hi) == (1.0, 1.0, 1.0), pt
    assert all(r.fraction == 1.0 for r in result.largest)


def test_clustering_beats_filter_beats_random_when_clusters_are_pure():
    problems = [pure_problem(200, correct=8 + i, wrong_clusters=40, wrong_size=3, seed=i) for i in range(8)]
    families = [f"fam{i // 2}" for i in range(8)]
    result = scaling_curve(problems, families, ["a"] * 4 + ["b"] * 4, draws=200, n_boot=300)
    assert result.ks == (1, 2, 5, 10, 20, 50, 100, 200)
    for split in ("a", "b", "all"):
        by = {name: {p.k: p.value for p in result.series(name, split)} for name in (CLUSTER, FILTER, RANDOM)}
        for k in result.ks:
            assert by[FILTER][k] >= by[RANDOM][k] - 1e-12, (split, k)  # both exact
            assert by[CLUSTER][k] >= by[FILTER][k] - 0.03, (split, k)  # clustering: Monte Carlo
        # the largest cluster is the correct one: from k = 50 on clustering all but always solves it
        assert by[CLUSTER][200] == 1.0 and by[CLUSTER][50] > by[FILTER][50] + 0.1
        assert by[RANDOM][200] == by[RANDOM][10]  # no filter: more samples do not help
    gaps = {(g.split, g.gap, g.k): g for g in result.gaps}
    assert {k for _, _, k in gaps} == {10, 100}  # 1000 is not reached with 200 samples
    assert gaps[("all", "clustering - filter", 100)].lo > 0
    assert gaps[("all", "filter - random", 100)].lo > 0
    assert gaps[("all", "clustering - filter", 100)].families == 4
    assert [r.fraction for r in result.largest] == [1.0, 1.0, 1.0]


def test_pass_at_k_is_monotone_and_bounds_every_n_at_k():
    rng = np.random.default_rng(3)
    problems = []
    for _ in range(6):
        public = rng.random(120) < 0.3
        cluster = np.where(public, rng.integers(0, 8, 120), -1)
        hidden = (public & (cluster < 2)) | (rng.random(120) < 0.02)
        problems.append(samples(public, hidden, cluster))
    result = scaling_curve(problems, [f"f{i % 3}" for i in range(6)], ["s"] * 6, draws=300, n_boot=300)
    passk = [p.value for p in result.series(PASS)]
    assert passk == sorted(passk) and passk[-1] > passk[0]
    for name in (CLUSTER, FILTER, RANDOM):
        for p, q in zip(result.series(PASS), result.series(name), strict=True):
            assert q.value <= p.value + (0.03 if name == CLUSTER else 1e-12), (name, p.k)
    expected = [np.mean([pass_at_k(120, int(x.hidden_pass.sum()), k) for x in problems]) for k in result.ks]
    assert passk == pytest.approx(expected)


def test_every_band_contains_its_value_and_a_one_problem_split_has_a_zero_width_band():
    rng = np.random.default_rng(5)
    problems = [samples(rng.random(40) < 0.5, rng.random(40) < 0.3, rng.integers(0, 4, 40)) for _ in range(7)]
    result = scaling_curve(problems, list("aabbcdd"), ["x"] * 6 + ["y"], draws=30, n_boot=200)
    for p in result.points:
        assert p.lo - 1e-12 <= p.value <= p.hi + 1e-12, p
        if p.split == "y":
            assert p.lo == p.value == p.hi and p.problems == 1
    assert {p.families for p in result.points if p.split == "all"} == {4}
    assert all(g.lo <= g.difference <= g.hi for g in result.gaps)


def test_largest_cluster_correct_is_1_at_n_and_counts_a_problem_without_survivors_as_wrong():
    right = samples([1, 1, 1, 1, 0], [1, 1, 1, 0, 0], [0, 0, 0, 1, -1])  # largest cluster 0: correct
    wrong = samples([1, 1, 1, 0, 0], [0, 0, 1, 1, 1], [2, 2, 3, -1, -1])  # largest cluster 2: wrong
    none = samples([0] * 5, [1] * 5, [-1] * 5)  # no survivor: nothing submitted
    assert [largest_cluster_correct(p) for p in (right, wrong, none)] == [True, False, False]
    problems = [right, wrong, none]
    exact = n_at_k_per_problem(problems, 1, 5)
    assert exact.tolist() == [1.0, 0.0, 0.0]
    result = scaling_curve(problems, ["a", "b", "c"], ["s"] * 3, draws=10, n_boot=200)
    [row] = [r for r in result.largest if r.split == "all"]
    assert row.fraction == pytest.approx(1 / 3) and row.with_clusters == 2 and row.problems == 3


def test_scaling_curve_refuses_mismatched_inputs():
    p = samples([1], [1], [0])
    with pytest.raises(ValueError, match="one of each per problem"):
        scaling_curve([p, p], ["f"], ["s", "s"])
    with pytest.raises(ValueError, match="at least one problem"):
        scaling_curve([], [], [])


def test_write_curve_writes_typed_tables_and_a_png_even_without_gaps(tmp_path):
    p = samples([1, 1, 0, 0, 1], [1, 0, 0, 0, 1], [0, 1, -1, -1, 0])
    result = scaling_curve([p, p], ["f", "g"], ["s", "s"], draws=10, n_boot=200)
    assert result.gaps == ()  # 5 samples reach no gap k
    paths = write_curve(tmp_path / "out", result)
    assert [x.name for x in paths] == [CURVE_FILE, GAPS_FILE, LARGEST_FILE, CURVE_PLOT]
    curve = pq.read_table(paths[0])
    assert (
        curve.schema.field("k").type == pa.int64() and curve.num_rows == 4 * 3 * 2
    )  # curves x ks (1, 2, 5) x splits (s, all)
    assert pq.read_table(paths[1]).schema.names[:3] == ["split", "gap", "k"]
    assert paths[3].read_bytes()[:8] == PNG
    assert not [x for x in (tmp_path / "out").iterdir() if ".tmp" in x.name]


# --------------------------------------------------------------------------- the stage, end to end


@pytest.fixture(scope="module")
def problem_set(tmp_path_factory):
    cfg = ProblemsConfig(
        per_family=2,
        eval_splits=("test_templates", "test_instances"),
        max_eval_problems=3,
        max_rl_problems=1,
        max_valid_problems=1,
    )
    root = tmp_path_factory.mktemp("run")
    plan = plan_stage(root, Stage.PROBLEMS, cfg, [], problems_stage)
    return root, problems_stage.build_problem_set(plan, cfg)


def test_curve_stage_publishes_curve_gaps_and_report_from_a_per_sample_table(problem_set):
    root, problems = problem_set
    splits = ("test_templates", "test_instances")
    ids = [p.name for s in splits for p in load_split(problems, s)]
    n, rows = 100, []
    for i, pid in enumerate(ids):
        p = pure_problem(n, correct=5 + i, wrong_clusters=20, wrong_size=2, seed=i)
        for s in range(n):
            public = bool(p.passed_public[s])
            rows.append(
                {
                    "problem_id": pid,
                    "sample_id": s,
                    "code_hash": f"{pid}:{p.cluster_id[s]}:{s}",
                    "passed_public": public,
                    "cluster_id": int(p.cluster_id[s]) if public else None,
                    "passed_hidden": bool(p.hidden_pass[s]),
                }
            )
    evaluation_dir = root / "evaluate" / "synthetic"
    write_parquet(evaluation_dir / PER_SAMPLE_FILE, pa.Table.from_pylist(rows))
    evaluation = publish(
        evaluation_dir,
        stage="evaluate",
        key="synthetic",
        config={},
        upstream=[problems],
        code="x",
        files=list_files(evaluation_dir),
    )
    settings = curve_stage.CurveSettings(draws=50, bootstrap=200)
    plan = plan_stage(
        root, Stage.CURVE, {"s": 1}, [("evaluation", evaluation), ("problems", problems)], curve_stage
    )
    manifest = curve_stage.build_curve(plan, "sft T=0.8", evaluation, problems, splits, settings)
    per_split = {f"curve-{s}.png" for s in splits}
    assert set(manifest.files) == {CURVE_FILE, GAPS_FILE, LARGEST_FILE, CURVE_PLOT, "report.md"} | per_split
    assert plan.manifest() == manifest  # complete: a rerun finds it
    curve = pq.read_table(manifest.file(CURVE_FILE)).to_pylist()
    assert {r["split"] for r in curve} == {*splits, "all"}
    assert {r["k"] for r in curve} == {1, 2, 5, 10, 20, 50, 100}
    allrows = {(r["curve"], r["k"]): r for r in curve if r["split"] == "all"}
    assert allrows[(CLUSTER, 100)]["value"] == 1.0 and allrows[(CLUSTER, 100)]["problems"] == 6
    families = {r["families"] for r in curve if r["split"] == "all"}
    tags = {p.tags["family"] for s in splits for p in load_split(problems, s)}
    assert families == {len(tags)}  # families come from the problems' tags
    m = manifest.metrics
    assert m["n"] == n and m["problems"] == 6 and m["largest_cluster_correct"]["fraction"] == 1.0
    assert set(m["gaps"]) == {
        "clustering - filter @10",
        "filter - random @10",
        "clustering - filter @100",
        "filter - random @100",
    }
    assert m["gaps"]["filter - random @100"]["difference"] > 0
    report = manifest.file("report.md").read_text()
    assert "## Gaps" in report and CLUSTER in report and "![curve](curve.png)" in report
    for s in splits:  # a table and a plot per split
        assert f"## Split `{s}` (3 problems)" in report and f"(curve-{s}.png)" in report
