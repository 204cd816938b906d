"""A Ray cluster of two nodes on this one machine, for the scale-out tests: a head and a worker,
each started with ``ray start --block`` in its own session and stopped by process group (never
``ray stop``, which would stop every Ray instance on the machine).

Each node has its own store cache (``ALPHACODE_STORE_CACHE``: its mirrors of runs in the store)
and its own Ray temp dir. Where ``bwrap`` works, the worker node runs in a mount namespace in
which the head's directory is an empty tmpfs: the head's mirror is not merely unused by the
worker, it is invisible to it, as on two machines. Both nodes join with the same token
(``RAY_AUTH_MODE=token``, :func:`process_token`); the caller's environment (e.g. the store's ``AWS_*`` variables)
reaches both nodes.

Limits: one IP for both nodes (Ray supports that); the node's task processes are Ray's own
workers, started by each node's raylet from this Python.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

START_TIMEOUT_S = 120.0


def ray_binary() -> str:
    beside = Path(sys.executable).parent / "ray"
    return str(beside) if beside.is_file() else (shutil.which("ray") or "ray")


def bwrap_works() -> bool:
    if shutil.which("bwrap") is None:
        return False
    probe = subprocess.run(
        ["bwrap", "--dev-bind", "/", "/", "--tmpfs", "/mnt", "true"], capture_output=True, timeout=30
    )
    return probe.returncode == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_token() -> str:
    """The token this process's Ray client sends: ``RAY_AUTH_TOKEN``, else the file at
    ``RAY_AUTH_TOKEN_PATH``, else ``~/.ray/auth_token`` (Ray writes it when it starts its first
    local instance), else a new random one. Measured: Ray loads the token once per process and
    keeps it, so after a local ``ray.init`` in the same pytest process a cluster with another
    token refuses this process ("InvalidAuthToken")."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"]
    for path in (os.environ.get("RAY_AUTH_TOKEN_PATH"), Path.home() / ".ray" / "auth_token"):
        if path and Path(path).is_file() and Path(path).read_text().strip():
            return Path(path).read_text().strip()
    return secrets.token_hex(32)


@dataclass
class Node:
    name: str
    home: Path  # this node's own directory: store cache, Ray temp dir, log
    proc: subprocess.Popen | None = None

    @property
    def store_cache(self) -> Path:
        return self.home / "store-cache"

    @property
    def ray_temp(self) -> Path:
        """Ray's temp dir for this node: short, under /tmp (Ray's sockets live there, and a Unix
        socket path has at most 107 bytes), linked from ``home`` for the logs."""
        link = self.home / "ray"
        if not link.exists():
            link.symlink_to(tempfile.mkdtemp(prefix=f"ray-{self.name}-", dir="/tmp"))
        return link.resolve()

    def kill(self, sig: int = signal.SIGKILL, grace_s: float = 10.0) -> None:
        """Stop this node as a machine would stop: every process of its session at once."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


@dataclass
class Cluster:
    base: Path
    address: str = ""
    token: str = field(default_factory=lambda: process_token())
    nodes: dict[str, Node] = field(default_factory=dict)
    isolated: bool = False  # the worker cannot see the head's directory

    def env(self, node: Node | None = None) -> dict[str, str]:
        """The environment of a process of ``node`` (or of a driver on the head's machine)."""
        env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}
        env["RAY_USAGE_STATS_ENABLED"] = "0"
        if node is not None:
            env["ALPHACODE_STORE_CACHE"] = str(node.store_cache)
        return env

    def _start(self, node: Node, args: list[str], wrap: list[str]) -> None:
        node.store_cache.mkdir(parents=True, exist_ok=True)
        log = open(node.home / "ray.log", "wb")  # noqa: SIM115 (the node process owns it)
        cmd = [*wrap, ray_binary(), "start", "--block", "--disable-usage-stats", *args]
        node.proc = subprocess.Popen(
            cmd, env=self.env(node), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.nodes[node.name] = node

    def start(self, cpus_per_node: int = 1, worker_gpus: int = 0) -> Cluster:
        """Head, then worker; ``worker_gpus``: GPUs the worker node declares (Ray accounts them,
        it does not probe them), so GPU work is placed on the worker."""
        port = _free_port()
        self.address = f"127.0.0.1:{port}"
        common = [f"--num-cpus={cpus_per_node}", "--object-store-memory=200000000"]
        head = Node("head", self.base / "head")
        head.home.mkdir(parents=True)
        self._start(
            head,
            ["--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={head.ray_temp}", *common],
            [],
        )
        self._wait_for(1)
        worker = Node("worker", self.base / "worker")
        worker.home.mkdir(parents=True)
        self.isolated = bwrap_works()
        hide = ["--tmpfs", str(head.home), "--tmpfs", str(head.ray_temp)]
        wrap = ["bwrap", "--dev-bind", "/", "/", *hide] if self.isolated else []
        worker_temp = ["--temp-dir", str(worker.ray_temp)]
        gpus = [f"--num-gpus={worker_gpus}"] if worker_gpus else []
        self._start(worker, [f"--address={self.address}", *worker_temp, *common, *gpus], wrap)
        self._wait_for(2)
        return self

    def alive_nodes(self) -> int:
        probe = (
            f"import ray; ray.init(address={self.address!r}, logging_level='ERROR', log_to_driver=False); "
            "print(sum(1 for n in ray.nodes() if n['Alive']))"
        )
        try:
            out = subprocess.run(
                [sys.executable, "-c", probe], env=self.env(), capture_output=True, text=True, timeout=60
            )
        except subprocess.TimeoutExpired:
            return 0
        return int(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 and out.stdout.strip() else 0

    def _wait_for(self, n: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            dead = [node.name for node in self.nodes.values() if node.proc.poll() is not None]
            if dead:
                raise RuntimeError(f"ray node(s) {dead} exited: see {self.base}/*/ray.log")
            if self.alive_nodes() >= n:
                return
            time.sleep(2)
        raise RuntimeError(f"the Ray cluster did not reach {n} nodes in {START_TIMEOUT_S} s: see {self.base}")

    def stop(self) -> None:
        for node in reversed(list(self.nodes.values())):
            node.kill(signal.SIGTERM)
            shutil.rmtree(node.ray_temp, ignore_errors=True)


def as_driver(mp, cluster: Cluster) -> None:
    """This process drives ``cluster`` from the head's machine (``mp``: a pytest MonkeyPatch):
    the head's store cache, the cluster's token."""
    for key, value in cluster.env(cluster.nodes["head"]).items():
        if os.environ.get(key) != value:
            mp.setenv(key, value)
