"""A local Prefect deployment of the pipeline: server, work pool, deployments, worker.

``start_stack`` starts ``prefect server start`` in the background and polls ``/api/health``
until it answers (the command returns before the API is healthy), creates the ``process``
work pool ``local-process``, runs ``prefect deploy --all`` from the repository root (using
``prefect.yaml``, whose ``pull`` step :func:`flows.deploy_steps.enter_repository` runs every flow
in the repository root), then starts ``prefect worker start``. These are the plain Prefect
commands, in the background; nothing here is needed for the deployments to run. PIDs go to ``<state>/*.pid``;
``stop_stack`` ends both process groups by PID (SIGTERM, then SIGKILL: a background worker
ignores SIGINT). Each process's output goes to ``<state>/*.log``.
Limits: one local server per state directory; a port already in use fails the health check.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
POOL = "local-process"


@dataclass(frozen=True)
class Stack:
    api_url: str
    state_dir: Path
    server_pid: int
    worker_pid: int


def prefect_bin() -> str:
    candidate = Path(sys.executable).with_name("prefect")
    return str(candidate) if candidate.exists() else "prefect"


def _spawn(args: list[str], log: Path, env: dict[str, str]) -> int:
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            args,
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return proc.pid


def wait_healthy(api_url: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(
        f"Prefect API at {api_url} did not become healthy in {timeout_s:.0f} s; see server.log"
    )


def _run(args: list[str], env: dict[str, str]) -> None:
    proc = subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args[1:4])} failed ({proc.returncode}): {proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        )


def stack_env(api_url: str) -> dict[str, str]:
    return {**os.environ, "PREFECT_API_URL": api_url}


def start_stack(state_dir: Path, port: int = 4200) -> Stack:
    state_dir.mkdir(parents=True, exist_ok=True)
    stop_stack(state_dir)  # a stale stack of this state dir (e.g. after a crash) goes first
    api_url = f"http://127.0.0.1:{port}/api"
    env = stack_env(api_url)
    server_env = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}
    server = _spawn(
        [prefect_bin(), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        state_dir / "server.log",
        server_env,
    )
    (state_dir / "server.pid").write_text(str(server))
    wait_healthy(api_url)
    _run([prefect_bin(), "work-pool", "create", POOL, "--type", "process", "--overwrite"], env)
    _run([prefect_bin(), "--no-prompt", "deploy", "--all"], env)
    worker = _spawn([prefect_bin(), "worker", "start", "--pool", POOL], state_dir / "worker.log", env)
    (state_dir / "worker.pid").write_text(str(worker))
    (state_dir / "stack.json").write_text(
        json.dumps({"api_url": api_url, "server": server, "worker": worker})
    )
    return Stack(api_url, state_dir, server, worker)


def kill_group(pid: int, grace_s: float = 10.0) -> None:
    """SIGTERM the process group led by ``pid``, SIGKILL what is left after ``grace_s``. A leader
    that is this process's child is reaped, so its zombie does not hold the wait."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def stop_stack(state_dir: Path) -> list[int]:
    """End the worker, then the server, by the PIDs this module recorded; returns them."""
    stopped = []
    for name in ("worker.pid", "server.pid"):
        path = state_dir / name
        if path.is_file():
            pid = int(path.read_text().strip())
            kill_group(pid)
            path.unlink()
            stopped.append(pid)
    return stopped
