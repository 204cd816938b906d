"""Bad input to `alphacode run`: one line naming the field and the fix, exit status 2,
nothing computed and nothing already computed touched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PREFECT_HOME": str(cwd / ".prefect-home")}
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", *args],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        timeout=120,
    )


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_unknown_profile(tmp_path):
    proc = run_cli("--profile", "nope", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "unknown profile 'nope'" in line and "smoke" in line


def test_invalid_config_field_value(tmp_path):
    proc = run_cli(
        "--profile", "smoke", "--set", "sample.sampling.temperature=-1", "--out", str(tmp_path), cwd=tmp_path
    )
    assert proc.returncode == 2
    assert "sample.sampling.temperature" in one_error_line(proc)


def test_unknown_config_field(tmp_path):
    proc = run_cli(
        "--profile", "smoke", "--set", "sample.sampling.tempreature=1", "--out", str(tmp_path), cwd=tmp_path
    )
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "sample.sampling.tempreature" in line and "spelling" in line


def test_missing_corpus_dir_leaves_outputs_untouched(tmp_path):
    out = tmp_path / "out"
    earlier = out / "pretrain" / "abc" / "manifest.json"
    earlier.parent.mkdir(parents=True)
    earlier.write_text("{}")
    before = earlier.stat().st_mtime_ns
    proc = run_cli(
        "--profile",
        "smoke",
        "--out",
        str(out),
        "--set",
        "pretrain.corpus.kind=directory",
        "--set",
        f"pretrain.corpus.path={tmp_path / 'missing'}",
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "pretrain.corpus.path" in one_error_line(proc)
    assert earlier.stat().st_mtime_ns == before
    assert sorted(p.name for p in out.iterdir()) == ["pretrain"]


def test_malformed_override(tmp_path):
    proc = run_cli("--profile", "smoke", "--set", "sample.sampling.n", cwd=tmp_path)
    assert proc.returncode == 2
    assert "KEY=VALUE" in one_error_line(proc)
