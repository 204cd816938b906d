"""Bad input to `alphacode seeds`, `alphacode study` and `alphacode reach`: one line naming the fix, exit status 2,
before anything runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PREFECT_HOME": str(cwd / ".prefect-home")}
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("seeds", "--seed", "0", "--seed", "0"), "distinct seeds"),
        (("seeds", "--profile", "nope"), "unknown profile 'nope'"),
        (("study", "--study", "nosuch"), "unknown study 'nosuch'"),
        (("study", "--set", "select.valid_n=0"), "select.valid_n"),
        (("reach", "-k", "0"), "give k >= 1"),
        (("reach", "--set", "finetune.train.max_steps=0"), "finetune.train.max_steps"),
    ],
)
def test_bad_arguments_fail_fast_with_one_line(tmp_path, args, needle):
    proc = cli(*args, "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert not (tmp_path / "out").exists()
