"""Clean-up after a hard crash (SIGKILL) of an earlier run.

Measured with Prefect 3.9 in ephemeral mode: killing only the main process orphans the
temporary API server (a ``uvicorn ... prefect.server.api.server:create_app`` child, reparented
to init), and the killed flow run stays RUNNING in the database forever. So:

* :func:`kill_orphaned_ephemeral_servers` ends ephemeral Prefect servers of *this*
  ``PREFECT_HOME`` whose parent is gone (run before a new ephemeral session starts);
* every pipeline flow run records ``{pid, flow_run_id}`` under ``<root>/.prefect/active/``
  (:func:`register_active_run`, removed on exit); :func:`crash_stale_runs` marks the runs of
  dead PIDs Crashed, so the UI tells the truth.
Sandboxes need nothing: bwrap runs with ``--die-with-parent`` in its own PID namespace.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import psutil

EPHEMERAL_MARKER = "prefect.server.api.server:create_app"


def kill_orphaned_ephemeral_servers(prefect_home: str | None = None) -> list[int]:
    home = prefect_home or os.environ.get("PREFECT_HOME")
    killed = []
    for proc in psutil.process_iter(["pid", "ppid", "cmdline"]):
        try:
            if EPHEMERAL_MARKER not in " ".join(proc.info["cmdline"] or []):
                continue
            env = proc.environ()
            if env.get("PREFECT__SERVER_EPHEMERAL") != "1" or (home and env.get("PREFECT_HOME") != home):
                continue
            if proc.info["ppid"] == 1 or not psutil.pid_exists(proc.info["ppid"]):
                proc.kill()
                killed.append(proc.info["pid"])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return killed


def _active_dir(root: str | Path) -> Path:
    return Path(root) / ".prefect" / "active"


def register_active_run(root: str | Path, flow_run_id: str) -> Path:
    path = _active_dir(root) / f"{flow_run_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": os.getpid(), "flow_run_id": flow_run_id}))
    return path


def stale_runs(root: str | Path) -> list[tuple[Path, str]]:
    out = []
    for path in sorted(_active_dir(root).glob("*.json")):
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            out.append((path, ""))
            continue
        if not psutil.pid_exists(int(info["pid"])):
            out.append((path, info["flow_run_id"]))
    return out


def crash_stale_runs(root: str | Path) -> list[str]:
    """Mark flow runs whose process died as Crashed; returns their ids."""
    from prefect.client.orchestration import get_client
    from prefect.states import Crashed

    crashed = []
    stale = stale_runs(root)
    if not stale:
        return crashed
    with get_client(sync_client=True) as client:
        for path, run_id in stale:
            if run_id:
                try:
                    run = client.read_flow_run(run_id)
                    if run.state and not run.state.is_final():
                        client.set_flow_run_state(
                            run_id,
                            Crashed(message="its process was killed (found on the next start)"),
                            force=True,
                        )
                        crashed.append(run_id)
                except Exception:  # a run of another database (other PREFECT_HOME): nothing to mark
                    pass
            path.unlink(missing_ok=True)
    return crashed
