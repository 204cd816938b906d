"""``alphacode samples`` over the synthetic run of conftest.py, through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
import typer
from typer.testing import CliRunner

from flows.cli_samples import register
from tasks.core.inspection import SampleFilter, resolve_stores, samples_sql, scan_run
from tasks.core.samplestore import sha256_hex
from tests.inspect.conftest import code_of

runner = CliRunner()


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """test root"""

    register(app)
    return app


def invoke(*args: str):
    return runner.invoke(_app(), ["samples", *map(str, args)])


def as_json(*args: str):
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_runs_lists_stages_with_completeness_and_rows(run_dir: Path):
    listing = as_json("runs", "--root", run_dir.parent)
    assert [r["run"] for r in listing] == [str(run_dir)]
    stages = {(s["stage"], s["key"]): s for s in listing[0]["stages"]}
    assert stages[("sample", "sftsample001")]["model"] == "sft"
    assert stages[("sample", "rlsample0001")]["model"] == "rl"
    assert stages[("sample", "sftsample001")]["rows"] == 10
    assert stages[("evaluate", "eval000001")]["rows"] == 10
    assert stages[("cluster", "clus000001")]["metrics"] == {"clusters": 2, "selected": 2}
    incomplete = stages[("filter", "zzincomplete")]
    assert incomplete["complete"] is False and incomplete["rows"] is None


def test_runs_table_marks_incomplete(run_dir: Path):
    result = invoke("runs", "--root", run_dir)
    assert result.exit_code == 0, result.output
    assert "INCOMPLETE" in result.stdout and "zzincomplete" in result.stdout


def test_runs_missing_root_exits_2(tmp_path: Path):
    result = invoke("runs", "--root", tmp_path / "nope")
    assert result.exit_code == 2
    assert "does not exist" in result.stderr and "--root" in result.stderr


def test_show_joins_verdicts_clusters_and_selection(run_dir: Path):
    out = as_json("show", run_dir, "--problem", "p/1")
    assert out["sample_key"] == "sftsample001" and out["evaluate_key"] == "eval000001" and out["total"] == 6
    by_id = {r["sample_id"]: r for r in out["rows"]}
    assert by_id[2]["passed_public"] and by_id[2]["passed_hidden"] and by_id[2]["cluster_id"] == 0
    assert by_id[2]["selected"] and by_id[2]["selection_rank"] == 0 and not by_id[2]["is_first_of_code_hash"]
    assert by_id[5]["passed_public"] and by_id[5]["passed_hidden"] is False
    assert by_id[5]["first_failure_hidden"] == "WRONG_ANSWER" and by_id[5]["cluster_id"] == 1
    assert by_id[4]["first_failure_public"] == "TIME_LIMIT_EXCEEDED" and by_id[4]["cluster_id"] is None
    assert by_id[4]["selected"] is False and "code" not in by_id[4]


def test_show_limit_and_code(run_dir: Path):
    out = as_json("show", run_dir, "--problem", "p/1", "--limit", "2", "--code")
    assert [r["sample_id"] for r in out["rows"]] == [0, 1] and out["total"] == 6
    assert out["rows"][1]["code"] == code_of("B")


def test_show_table_output(run_dir: Path):
    result = invoke("show", run_dir, "--problem", "q")
    assert result.exit_code == 0, result.output
    assert "RUNTIME_ERROR" in result.stdout and "4 of 4 matching samples shown" in result.stdout


def test_show_rl_model_has_no_verdicts(run_dir: Path):
    out = as_json("show", run_dir, "--problem", "p/1", "--model", "rl")
    assert out["sample_key"] == "rlsample0001" and out["filter_key"] is None
    assert all(r["passed_public"] is None and r["passed_hidden"] is None for r in out["rows"])


def test_show_model_by_key_prefix(run_dir: Path):
    assert as_json("show", run_dir, "--problem", "q", "--model", "rlsam")["sample_key"] == "rlsample0001"


def test_show_unknown_problem_exits_2_with_hint(run_dir: Path):
    result = invoke("show", run_dir, "--problem", "p/2")
    assert result.exit_code == 2
    assert "'p/2'" in result.stderr and "did you mean p/1" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_show_missing_run_exits_2(tmp_path: Path):
    result = invoke("show", tmp_path / "norun", "--problem", "p/1")
    assert result.exit_code == 2 and "run directory" in result.stderr and "samples runs" in result.stderr


def test_unknown_model_exits_2(run_dir: Path):
    result = invoke("show", run_dir, "--problem", "p/1", "--model", "nosuch")
    assert result.exit_code == 2 and "sftsample001" in result.stderr


def test_incomplete_sample_store_is_named(tmp_path: Path, run_dir: Path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (run / "sample" / "rlsample0001" / "manifest.json").unlink()
    result = invoke("show", run, "--problem", "p/1", "--model", "rl")
    assert result.exit_code == 2
    assert "sample/rlsample0001" in result.stderr and "alphacode run --out" in result.stderr


def test_query_passed_public_failed_hidden(run_dir: Path):
    out = as_json("query", run_dir, "--passed-public", "--failed-hidden", "--problem", "p/1")
    assert [r["sample_id"] for r in out["rows"]] == [1, 5]
    assert {r["code_hash"] for r in out["rows"]} == {sha256_hex(code_of("B"))}


def test_query_across_problems_and_flags_combine(run_dir: Path):
    failed_public = as_json("query", run_dir, "--failed-public")
    assert [(r["problem_id"], r["sample_id"]) for r in failed_public["rows"]] == [
        ("p/1", 3),
        ("p/1", 4),
        ("q", 0),
        ("q", 1),
        ("q", 2),
        ("q", 3),
    ]
    selected = as_json("query", run_dir, "--selected", "--distinct")
    assert [(r["sample_id"], r["selection_rank"]) for r in selected["rows"]] == [(0, 0), (1, 1)]


def test_query_on_hidden_without_evaluate_exits_2(run_dir: Path):
    result = invoke("query", run_dir, "--failed-hidden", "--model", "rl")
    assert result.exit_code == 2 and "no complete evaluate stage" in result.stderr


def test_query_sql_runs_in_plain_duckdb(run_dir: Path):
    stores = resolve_stores(scan_run(run_dir), "sft")
    sql = samples_sql(stores, SampleFilter(problem_id="p/1", passed_public=True, passed_hidden=False))
    rows = duckdb.sql(sql).fetchall()
    assert [r[1] for r in rows] == [1, 5]
    out = as_json("query", run_dir, "--passed-public", "--failed-hidden", "--sql")
    assert out["sql"] == samples_sql(stores, SampleFilter(passed_public=True, passed_hidden=False))


def test_export_writes_one_sample_per_line(run_dir: Path, tmp_path: Path):
    target = tmp_path / "out.jsonl"
    out = as_json("export", run_dir, "--out", target, "--problem", "p/1")
    lines = [json.loads(x) for x in target.read_text().splitlines()]
    assert out["rows"] == 6 and len(lines) == 6
    assert lines[5]["code"] == code_of("B") and lines[5]["passed_hidden"] is False
    assert lines[5]["completion"].endswith("<eos>") and lines[0]["selected"] is True
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_export_with_filter_and_missing_dir(run_dir: Path, tmp_path: Path):
    target = tmp_path / "pf.jsonl"
    assert invoke("export", run_dir, "--out", target, "--passed-public", "--failed-hidden").exit_code == 0
    assert [json.loads(x)["sample_id"] for x in target.read_text().splitlines()] == [1, 5]
    bad = invoke("export", run_dir, "--out", tmp_path / "no" / "x.jsonl")
    assert bad.exit_code == 2 and "does not exist" in bad.stderr


def test_stats_summary(run_dir: Path):
    out = as_json("stats", run_dir)
    assert (out["samples"], out["problems"], out["distinct_programs"]) == (10, 2, 7)
    assert out["dedup_ratio"] == pytest.approx(0.3)
    assert out["finish_reasons"] == {"eos": 3, "length": 3, "stop": 4}
    assert out["mean_tokens"] == pytest.approx((sum(range(10, 16)) + sum(range(10, 14))) / 10)
    assert out["public_pass_rate"] == pytest.approx(0.4) and out["hidden_pass_rate"] == pytest.approx(0.2)
    assert out["problems_solved_hidden"] == 1 and out["clusters_per_problem"] == pytest.approx(1.0)
    assert out["selected_programs"] == 2 and out["problem_ids"] == ["p/1", "q"]


def test_stats_without_downstream_stages(run_dir: Path):
    out = as_json("stats", run_dir, "--model", "rl")
    assert out["samples"] == 10 and out["public_pass_rate"] is None and out["clusters_per_problem"] is None
    table = invoke("stats", run_dir, "--model", "rl")
    assert table.exit_code == 0 and "distinct programs" in table.stdout


def test_corrupt_store_file_exits_2(tmp_path: Path, run_dir: Path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    verdicts = run / "filter" / "filt000001" / "sample_verdicts.parquet"
    verdicts.write_bytes(b"x" * verdicts.stat().st_size)  # same size: the manifest still says complete
    result = invoke("show", run, "--problem", "p/1")
    assert result.exit_code == 2 and "DuckDB could not read" in result.stderr


def test_a_model_name_reads_the_store_the_report_evaluated_not_the_last_written(tmp_path: Path):
    from tests.inspect.conftest import _samples, _stage

    root = tmp_path / "run"
    problems = _stage(root, "problems", "prob0001", [])
    finetune = _stage(root, "finetune", "ft000001", [problems])
    evaluated = _samples(root, "sfttest0001", finetune, problems)
    filt = _stage(root, "filter", "filt000001", [evaluated, problems])
    clus = _stage(root, "cluster", "clus000001", [evaluated, filt, problems])
    ev = _stage(root, "evaluate", "eval000001", [evaluated, filt, clus, problems])
    grid = _samples(root, "sftvalid001", finetune, problems)  # written last, e.g. the valid temperature grid
    assert resolve_stores(scan_run(root), "sft").sample.key == grid.key  # no report: the last written
    _stage(root, "report", "rep0000001", [("contenders[0].pass1", ev), ("contenders[0].wide", ev)])
    stores = resolve_stores(scan_run(root), "sft")
    assert (stores.sample.key, stores.evaluate.key) == (evaluated.key, ev.key)
    assert resolve_stores(scan_run(root), "sftvalid").sample.key == grid.key
