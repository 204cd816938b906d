"""`alphacode doctor` (tasks/core/doctor.py): present parts are ok, a missing binary is reported
missing with its fix and a non-zero exit, optional parts never fail the report."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.core import doctor

REPO = Path(__file__).resolve().parents[2]
needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")


@needs_bwrap
def test_present_bwrap_and_a_working_sandbox_are_ok():
    assert doctor.check_bwrap().status == "ok"
    check = doctor.check_sandbox()
    assert check.status == "ok", check


def test_missing_bwrap_is_missing_with_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    for check in (doctor.check_bwrap(), doctor.check_sandbox()):
        assert check.status == "missing" and check.failed
        assert "apt-get install bubblewrap" in check.fix


def test_torch_present_is_ok_and_an_interpreter_without_it_is_missing(tmp_path):
    present = doctor.check_torch()
    assert present.status == "ok" and "torch 2." in present.detail
    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\necho 'ModuleNotFoundError: No module named torch' >&2\nexit 1\n")
    broken.chmod(0o755)
    missing = doctor.check_torch(python=str(broken))
    assert missing.status == "missing" and "No module named torch" in missing.detail
    assert "pip install torch" in missing.fix


def test_disk_thresholds(tmp_path):
    assert doctor.check_disk(tmp_path / "runs", min_free_gib=0, warn_free_gib=0).status == "ok"
    full = doctor.check_disk(tmp_path / "not" / "yet", min_free_gib=1e9)
    assert full.status == "missing" and "--out" in full.fix and str(tmp_path) in full.detail


def test_prefect_api_is_optional_and_read_from_the_active_profile(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/api"
    (tmp_path / "profiles.toml").write_text(
        f'active = "local"\n[profiles.local]\nPREFECT_API_URL = "{url}"\n'
    )
    assert doctor.prefect_api_url({"PREFECT_HOME": str(tmp_path)}) == url
    assert doctor.prefect_api_url({"PREFECT_HOME": str(tmp_path / "none")}) is None
    down = doctor.check_prefect_api(url, timeout_s=1)
    assert down.status == "warn" and not down.failed and "alphacode serve" in down.fix
    assert doctor.check_prefect_api(None).status == "ok"


def test_optional_checks_never_fail_the_report():
    report = doctor.DoctorReport(
        (doctor.Check("docker", "warn", "down", "start it", required=False), doctor.Check("x", "ok", "fine"))
    )
    assert report.ok
    assert not doctor.DoctorReport((doctor.Check("torch", "missing", "gone", "install"),)).ok


def test_cli_exits_non_zero_naming_the_fix_when_bwrap_is_missing(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path), "PREFECT_HOME": str(tmp_path / "home")}
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.run(
        [sys.executable, "-m", "flows.cli", "doctor", "--runs", str(tmp_path), "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    by_name = {c["name"]: c for c in report["checks"]}
    assert not report["ok"]
    assert by_name["bubblewrap"]["status"] == "missing" and "apt-get install" in by_name["bubblewrap"]["fix"]
    assert by_name["torch"]["status"] == "ok" and by_name["disk"]["status"] in ("ok", "warn")
    assert by_name["device"]["status"] == "ok" and by_name["vllm"]["required"] is False


def test_device_check_reports_what_the_policy_resolves_to_here():
    import torch

    found = doctor.check_device()
    assert found.status == "ok" and "from device=auto, dtype=auto" in found.detail
    if not torch.cuda.is_available():
        assert found.detail.startswith("cpu, float32")
        impossible = doctor.check_device('{"device": "cuda"}')
        assert impossible.status == "missing" and impossible.failed and "no CUDA GPU" in impossible.detail


def test_vllm_check_is_optional_and_warns_only_when_wanted(monkeypatch):
    monkeypatch.setattr(doctor.importlib.util, "find_spec", lambda name: None)
    absent = doctor.check_vllm()
    assert absent.status == "ok" and not absent.required and "not installed" in absent.detail
    wanted = doctor.check_vllm(wanted=True)
    assert wanted.status == "warn" and "pip install vllm" in wanted.fix and not wanted.failed
