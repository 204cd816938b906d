"""Crash-proof resume, tested: SIGKILL the whole process group of `alphacode run` in the
middle of training, sampling, execution and RL in turn; each rerun of the same command finds
finished stages Cached, resumes the interrupted one from its checkpoint or shards, leaves no
orphaned sandbox or Prefect server, and the final stores have exact row counts."""

from __future__ import annotations

import glob
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
SETTINGS = [
    "pretrain.train.max_steps=40",
    "pretrain.train.checkpoint_every=4",
    "sample.sampling.samples_per_shard=2",
    "judge.programs_per_shard=8",
    "rl.grpo.steps=4",
    "rl.grpo.save_every=1",
    # what follows the last kill point only has to finish: fewer evaluation and valid problems
    "problems.max_eval_problems=2",
    "problems.max_valid_problems=2",
    "select.valid_n=2",
    "select.temperatures=[0.8]",
]


def start(out: Path, home: Path) -> subprocess.Popen:
    args = [sys.executable, "-m", "flows.cli", "run", "--profile", "smoke", "--out", str(out)]
    for s in SETTINGS:
        args += ["--set", s]
    env = {**os.environ, "PREFECT_HOME": str(home)}
    log = open(out.parent / "run.log", "ab")
    return subprocess.Popen(
        args, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def kill_when(proc: subprocess.Popen, ready, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (rc={proc.returncode}) before the kill point")
        if ready():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError("kill point never reached")


def leftovers(home: Path, out: Path) -> list[str]:
    found = []
    for p in psutil.process_iter(["pid", "cmdline", "uids", "status"]):
        try:
            if p.info["status"] == psutil.STATUS_ZOMBIE:  # exited, holds nothing; init reaps it
                continue
            cmd = " ".join(p.info["cmdline"] or [])
            if 61000 <= p.info["uids"].real < 62000 or "bwrap" in cmd.split(" ")[0]:
                found.append(f"sandbox {p.pid}: {cmd[:80]}")
            elif str(out) in cmd or p.environ().get("PREFECT_HOME") == str(home):
                found.append(f"{p.pid}: {cmd[:80]}")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def settle(home: Path, out: Path, within_s: float = 10.0) -> list[str]:
    """Leftover processes once killed ones had ``within_s`` to finish dying."""
    deadline = time.monotonic() + within_s
    while (found := leftovers(home, out)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return found


def no_manifest(stage_glob: str) -> bool:
    return not glob.glob(str(Path(stage_glob).parent / "manifest.json"))


def test_sigkill_in_each_long_stage_then_resume(tmp_path):
    out, home = tmp_path / "run", tmp_path / "home"
    out.mkdir()
    points = {
        "training": lambda: any(
            no_manifest(p) for p in glob.glob(str(out / "pretrain/*/checkpoint/COMPLETE"))
        ),
        "sampling": lambda: len(glob.glob(str(out / "sample/*/samples/*/part-*.parquet"))) >= 3,
        "execution": lambda: len(glob.glob(str(out / "filter/*/executions/shard-*.parquet"))) >= 1,
        "rl": lambda: bool(glob.glob(str(out / "rl/*/checkpoints/checkpoint-*/trainer_state.json"))),
    }
    for name, ready in points.items():
        kill_when(start(out, home), ready)
        assert settle(home, out) == [], f"orphans after killing {name}"
    final = start(out, home)
    assert final.wait(timeout=900) == 0, (tmp_path / "run.log").read_text()[-3000:]
    assert settle(home, out) == []

    log = (tmp_path / "run.log").read_text()
    last = log[log.rfind("Beginning flow run") :]
    assert re.search(r"Task run 'pretrain-\w+' - Finished in state Cached", last)
    assert re.search(r"Task run 'finetune-\w+' - Finished in state Cached", last)
    pretrain = json.loads(next((out / "pretrain").glob("*/manifest.json")).read_text())
    assert pretrain["metrics"]["resumed_from_step"] and pretrain["metrics"]["resumed_from_step"] >= 4
    rl = json.loads(next((out / "rl").glob("*/manifest.json")).read_text())
    assert rl["metrics"]["resumed_from_step"] and rl["metrics"]["resumed_from_step"] >= 1
    for manifest in (out / "sample").glob("*/manifest.json"):
        m = json.loads(manifest.read_text())
        table = pq.read_table(manifest.parent / "samples")
        n = m["config"]["sample"]["sampling"]["n"]  # 6 on test splits; the valid grid and RL estimate differ
        assert table.num_rows == m["metrics"]["problems"] * n
        assert (
            len(set(zip(table["problem_id"].to_pylist(), table["sample_id"].to_pylist()))) == table.num_rows
        )
    for manifest in (out / "filter").glob("*/manifest.json"):
        ex = pq.read_table(manifest.parent / "executions")
        keys = list(
            zip(ex["problem_id"].to_pylist(), ex["code_hash"].to_pylist(), ex["test_index"].to_pylist())
        )
        assert len(keys) == len(set(keys))
