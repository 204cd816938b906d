"""Two concurrent runs of the same stage: one computes under the lock, the other waits and
reads it Cached; the output is written once and is intact."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from prefect import flow, task
    from tasks.caching import cached
    from tasks.core.manifest import plan_stage

    @task
    def slow_stage(plan):
        if (done := plan.manifest()) is not None:
            return done
        plan.dir.mkdir(parents=True, exist_ok=True)
        with open(Path(sys.argv[2]), "a") as log:
            log.write("computed\\n")
        time.sleep(4)
        (plan.dir / "payload.txt").write_text("x" * 1000)
        return plan.publish(["payload.txt"])

    @flow
    def one_stage(root):
        plan = plan_stage(root, "slow", {"v": 1}, [], "tasks.core.manifest")
        state = cached(slow_stage, root)(plan=plan, return_state=True)
        print("STATE", state.name, flush=True)

    one_stage(sys.argv[1])
""")


def test_concurrent_runs_lock_then_cached(tmp_path):
    script = tmp_path / "run_stage.py"
    script.write_text(SCRIPT)
    root, log = tmp_path / "out", tmp_path / "computed.log"
    procs = []
    for i in range(2):
        env = {**os.environ, "PREFECT_HOME": str(tmp_path / f"home{i}"), "PYTHONPATH": str(REPO)}
        procs.append(
            subprocess.Popen(
                [sys.executable, str(script), str(root), str(log)],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    states = sorted(
        line.split()[-1] for out in outputs for line in out.splitlines() if line.startswith("STATE")
    )
    assert states == ["Cached", "Completed"], outputs
    assert log.read_text().splitlines() == ["computed"]
    payload = next(root.glob("slow/*/payload.txt"))
    assert payload.read_text() == "x" * 1000
