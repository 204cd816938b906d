"""The plain Prefect route, with no help from `alphacode serve` and nothing exported:
`prefect server start`, `prefect work-pool create`, `prefect deploy --all` (from the repository),
`prefect worker start` (from an unrelated directory), then `prefect deployment run
'alphacode-stage/sample' --watch` (stages 1-3 of the smoke profile, the deployment tests'
smaller override) completes; a RELATIVE `out_dir` lands under the repository root, not in the
worker's temporary directory. The point is the deployment route (entrypoint loading, the pull
step, working directory), which a stage's deployment takes as the pipeline's does: the whole
pipeline through a deployment is tests/ops/test_deployments.py. Real server and worker on
127.0.0.1 at a free port, PREFECT_HOME in a temp dir, every wait bounded, both ended by PID."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid

import pytest

from flows.deploy_steps import NotACheckout, enter_repository, repository_root
from flows.serve import REPO_ROOT, kill_group, prefect_bin, wait_healthy
from tests.ops.test_deployments import TINY, free_port


def test_enter_repository_changes_to_the_checkout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert enter_repository() == {"directory": str(REPO_ROOT)}
    assert os.getcwd() == str(REPO_ROOT)


def test_a_copy_outside_a_checkout_is_refused_naming_the_fix(tmp_path):
    with pytest.raises(NotACheckout, match="pip install -e"):
        repository_root(tmp_path)


def _spawn(args: list[str], cwd, env, log) -> int:
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    return proc.pid


def _run(args: list[str], cwd, env, timeout: int = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args}: {proc.stdout[-3000:]}{proc.stderr[-3000:]}"
    return proc


@pytest.mark.slow
def test_plain_prefect_route_runs_the_smoke_deployment(tmp_path):
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    api_url = f"http://127.0.0.1:{free_port()}/api"
    env = {k: v for k, v in os.environ.items() if k != "ALPHACODE_REPO"}
    env |= {"PREFECT_HOME": str(home), "PREFECT_API_URL": api_url}
    server_env = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}
    port = api_url.rsplit(":", 1)[1].split("/")[0]
    relative_out = f"runs/.plain-prefect-test-{uuid.uuid4().hex[:8]}"
    pids = []
    try:
        server_args = [prefect_bin(), "server", "start", "--host", "127.0.0.1", "--port", port]
        pids.append(_spawn(server_args, elsewhere, server_env, home / "server.log"))
        wait_healthy(api_url, timeout_s=180)
        _run([prefect_bin(), "work-pool", "create", "local-process", "--type", "process"], elsewhere, env)
        _run([prefect_bin(), "--no-prompt", "deploy", "--all"], REPO_ROOT, env)
        pids.append(
            _spawn(
                [prefect_bin(), "worker", "start", "--pool", "local-process"], elsewhere, env, home / "w.log"
            )
        )
        args = [prefect_bin(), "deployment", "run", "alphacode-stage/sample", "--watch"]
        args += ["--watch-timeout", "840", "--param", f"out_dir={relative_out}"]
        args += ["--param", "profile=smoke", "--param", f"overrides={json.dumps(TINY)}"]
        proc = subprocess.run(args, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=900)
        worker_log = (home / "w.log").read_text(errors="replace")
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:] + worker_log[-4000:]
        assert "Completed" in proc.stdout
        out = REPO_ROOT / relative_out
        assert list((out / "sample").glob("*/manifest.json")), (
            "the relative out_dir did not resolve against the repository root"
        )
        assert not list(elsewhere.rglob("sample")) and not list(elsewhere.rglob("manifest.json"))
    finally:
        for pid in reversed(pids):
            kill_group(pid)
        shutil.rmtree(REPO_ROOT / relative_out, ignore_errors=True)
