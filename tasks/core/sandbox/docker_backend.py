"""Docker backend: warm per-worker containers that run the same in-sandbox runner as bwrap.

Contract: ``DockerBackend(workers, limits).execute(request, timeout_s, on_frame)`` has the exact
semantics of ``BwrapBackend.execute`` (same ``runner.py`` and frames, so the judge's verdict rules
are shared; expected outputs never enter a container, comparison stays on the host). It keeps up
to ``workers`` long-lived containers (created lazily from ``ensure_image``), each running one job
at a time. A container is started with ``network_mode=none`` (its own network namespace with only
loopback), a read-only root, a ``tmpfs_mb`` tmpfs on ``/tmp`` with at most ``TMP_INODES`` inodes,
owned by root and sticky (the only writable place; no ``/dev/shm``: ``ipc_mode=none``;
``/dev/mqueue``, which Docker mounts writable, is replaced by a read-only tmpfs), ``cap_drop=ALL``, ``no-new-privileges``, Docker's default
seccomp profile, a memory cap (no swap), a pids cap, one CPU, and a non-root uid that no other
sandbox uses (``UidPool`` 62000+, so RLIMIT_NPROC counts only its own processes).

The container's pid 1 is the job server (``server.py``, shared with bwrap; run with the image's
``python3 -I -S``) attached to the host by one long-lived stdin/stdout stream (no ``docker exec``
per job: that costs ~70 ms here). At start it receives the runner's and seccomp module's sources
(nothing of the host tree is in the image, so changing the runner needs no image rebuild), sets
the environment to ``runner.ENV`` + ``PWD``, makes itself non-dumpable and loads
``seccomp.base_filter()`` (same socket/namespace denials as bwrap), inherited by everything
below it. Per job it runs a ``runner.main()`` forked before the job existed, forwards its
frames tagged with the job's sequence number, then SIGKILLs every other process of the
container, reaps them, empties ``/tmp`` and sends an end marker (the isolation property and its
mechanisms: ``server.py``); a worker takes its next job only after that marker (``settle``, as
for bwrap; one that does not settle or asks to be recycled is removed). The runner's RLIMIT_NPROC
accounting (pid 1 + runner) is the same as under bwrap. Any harness failure (Docker API error,
runner crash, protocol error, ``timeout_s`` passed) raises ``SandboxError`` and the container
is thrown away, so the judge's retry runs on a fresh one. ``on_frame`` returning ``False``
sends an abort: the server kills the rest of that job at once. If the host goes away, the
server sees end-of-file and exits, and the container removes itself (``auto_remove``).

``probe()`` (once per backend) connects to the engine (``DOCKER_HOST`` or the default socket),
builds the image if needed and runs a trivial job; it raises ``SandboxUnavailable`` with the fix
otherwise. ``close()`` removes the containers. Limits: the per-test limits are the runner's
rlimits, as with bwrap; the container caps are backstops sized from the Judge's ``limits`` when
the backend is built (a later per-call ``limits`` above them can be cut short by the cgroup). The
engine must run on this machine for uid isolation to hold (uids are checked in this host's
/proc). Containers left by a killed process (label ``alphacode.judge.owner``) are removed by the
next backend probe on the same host once their owner pid is gone.
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from . import runner as runner_mod
from .bwrap import SETTLE_S, TMP_INODES, UidPool
from .docker_image import IMAGE, ImageBuildError, ensure_image
from .envelopes import SERVER, Envelopes, message, serve_frames, setup_message
from .types import Limits, SandboxError, SandboxUnavailable

UIDS = UidPool(base=62000, count=1000)  # disjoint from bwrap's 61000+ pool
OWNER_LABEL = "alphacode.judge.owner"
STDERR_KEEP = 4096
START_HINT = (
    "start a Docker engine (Debian: `apt-get install -y docker.io` then, as root, "
    "`tests/sandbox/docker_env.sh start`) or use backend='bwrap'"
)


def connect(timeout_s: float = 30.0):
    """A ``docker.DockerClient`` that answered a ping, else SandboxUnavailable with the fix."""
    try:
        import docker
    except ImportError:
        raise SandboxUnavailable(
            f"the `docker` Python package is missing: pip install docker; then {START_HINT}"
        ) from None
    try:
        client = docker.from_env(timeout=int(timeout_s))
        client.ping()
    except Exception as exc:  # any connection failure means: no engine answers
        raise SandboxUnavailable(f"no Docker engine answers ({exc}); {START_HINT}") from None
    return client


class _Stream:
    """Host end of one worker's attached stream: Docker's 8-byte multiplexing headers, then
    the server's envelopes (:class:`Envelopes`)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.raw = bytearray()  # docker-multiplexed bytes
        self.err = bytearray()  # server/runner stderr, last STDERR_KEEP bytes
        self.envelopes = Envelopes()

    def _demux(self) -> None:
        while len(self.raw) >= 8:
            size = int.from_bytes(self.raw[4:8], "big")
            if len(self.raw) < 8 + size:
                return
            if self.raw[0] == 1:
                self.envelopes.feed(bytes(self.raw[8 : 8 + size]))
            else:
                self.err += self.raw[8 : 8 + size]
            del self.raw[: 8 + size]
        del self.err[:-STDERR_KEEP]

    def receive(self, deadline: float, timeout_s: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SandboxError(f"container gave no result within {timeout_s:.1f} s")
        if not select.select([self.sock], [], [], remaining)[0]:
            return
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise SandboxError(f"container stream closed: {self.stderr() or 'no stderr'}")
        self.raw += chunk
        self._demux()

    def stderr(self) -> str:
        return self.err.decode("utf-8", "replace").strip()[-1000:]


class Worker:
    """One warm container (its pid 1 is the job server) and its uid; one job at a time."""

    def __init__(self, client, image: str, uid: int, config: dict, setup: bytes) -> None:
        self.client, self.uid, self.seq, self.pending = client, uid, 0, False
        self.container = client.containers.create(
            image,
            ["/usr/bin/python3", "-I", "-S", "-c", SERVER],
            user=f"{uid}:{uid}",
            name=f"alphacode-judge-{os.getpid()}-{uuid.uuid4().hex[:8]}",
            **config,
        )
        try:
            self._wrapper = client.api.attach_socket(
                self.container.id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
            )
            sock = getattr(self._wrapper, "_sock", self._wrapper)
            self.stream = _Stream(sock)
            self.container.start()
            sock.sendall(setup)
        except BaseException:
            self.remove()
            raise

    def execute(self, request: dict, timeout_s: float, on_frame: Callable[[dict, bytes], bool]) -> None:
        self.seq += 1
        stream, seq = self.stream, self.seq
        deadline = time.monotonic() + timeout_s
        stream.envelopes.start(seq)
        stream.sock.settimeout(timeout_s)
        stream.sock.sendall(message({"seq": seq, "request": request}))
        stream.sock.setblocking(True)
        self.pending = True  # until the server's end envelope: its cleanup is under way
        while True:
            if serve_frames(
                stream.envelopes,
                on_frame,
                stream.stderr,
                lambda: stream.sock.sendall(message({"seq": seq, "abort": True})),
            ):
                return
            stream.receive(deadline, timeout_s)

    def settle(self, budget_s: float = SETTLE_S) -> bool:
        """Wait for the last job's end envelope (sent once its cleanup is complete); True if
        this container may take another job (it ended in time and asked for no recycling)."""
        if self.pending:
            deadline = time.monotonic() + budget_s
            try:
                while self.stream.envelopes.ended is None:
                    self.stream.receive(deadline, budget_s)
            except (SandboxError, OSError):
                return False
            self.pending = False
        return not (self.stream.envelopes.ended or {}).get("recycle")

    def remove(self) -> None:
        wrapper = getattr(self, "_wrapper", None)
        if wrapper is not None:
            try:
                getattr(wrapper, "_sock", wrapper).close()
                wrapper.close()
            except OSError:
                pass
        try:
            self.container.remove(force=True)
        except Exception:  # already gone (auto-removed) or engine down: nothing to free here
            pass
        UIDS.release(self.uid)


def _container_config(limits: Limits, tmpfs_mb: int, cpus: float) -> dict:
    memory_mb = max(2048, int(limits.memory_mb) + 512)  # g++ runs under a 2 GiB RLIMIT_AS
    return {
        "network_mode": "none",
        "read_only": True,
        "ipc_mode": "none",
        "tmpfs": {
            "/tmp": f"rw,exec,nosuid,nodev,size={tmpfs_mb}m,nr_inodes={TMP_INODES},mode=1777",
            "/dev/mqueue": "ro,nosuid,nodev,noexec,size=4k",  # Docker's own mqueue mount is writable
        },
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "mem_limit": f"{memory_mb}m",
        "memswap_limit": f"{memory_mb}m",
        "pids_limit": max(64, 4 * int(limits.processes) + 16),
        "nano_cpus": int(cpus * 1e9),
        "hostname": "sandbox",
        "working_dir": "/tmp",
        "environment": dict(runner_mod.ENV),
        "labels": {OWNER_LABEL: f"{socket.gethostname()}:{os.getpid()}"},
        "log_config": {"type": "none", "config": {}},
        "stop_signal": "SIGKILL",
        "stdin_open": True,
        "auto_remove": True,
    }


def _remove_orphans(client) -> None:
    """Remove judge containers of dead processes on this host."""
    host = socket.gethostname()
    for container in client.containers.list(all=True, filters={"label": OWNER_LABEL}):
        owner_host, _, pid = container.labels.get(OWNER_LABEL, "").rpartition(":")
        if owner_host == host and pid.isdigit() and not Path(f"/proc/{pid}").exists():
            try:
                container.remove(force=True)
            except Exception:  # removed concurrently by another process
                pass


class DockerBackend:
    """Pool of warm worker containers (thread-safe; at most ``workers`` exist at once)."""

    def __init__(
        self, workers: int = 2, limits: Limits = Limits(), tmpfs_mb: int = 128, cpus: float = 1.0
    ) -> None:
        self.workers = workers
        self._config = _container_config(limits, tmpfs_mb, cpus)
        self._lock = threading.Lock()
        self._probe_lock = threading.Lock()
        self._idle: list[Worker] = []
        self._count = 0
        self._client = None
        self._image: str | None = None
        self._probe_error: str | None = None
        self._probed = False
        self._setup = setup_message(base_filter=True)

    # ------------------------------------------------------------ availability
    def probe(self) -> None:
        with self._probe_lock:
            if not self._probed:
                self._probe_error = self._probe_once()
                self._probed = True
        if self._probe_error is not None:
            raise SandboxUnavailable(self._probe_error)

    def _probe_once(self) -> str | None:
        try:
            self._client = connect()
            _remove_orphans(self._client)
            self._image = ensure_image(self._client)
        except SandboxUnavailable as exc:
            return str(exc)
        except Exception as exc:  # ImageBuildError or a Docker API error
            return f"cannot build/find the judge image {IMAGE}: {exc}"
        frames: list[dict] = []
        request = {
            "language": "python",
            "style": "stdio",
            "entry_point": "",
            "program": "print('ok')",
            "inputs": [""],
            "limits": {
                "time_s": 5.0,
                "wall_s": 10.0,
                "memory_bytes": 256 << 20,
                "output_bytes": 1 << 10,
                "file_size_bytes": 1 << 10,
                "processes": 4,
                "open_files": 64,
                "compile_time_s": 5.0,
            },
        }
        try:
            self._run_job(request, 60.0, lambda m, b: frames.append(m) or True)
        except SandboxError as exc:
            return f"a Docker sandbox could not run a trivial job: {exc}"
        if not frames or not frames[0].get("setup_ok") or frames[0].get("exit_code") != 0:
            return f"a Docker sandbox ran a trivial job wrongly: {frames}"
        return None

    # ------------------------------------------------------------ workers
    def _checkout(self) -> Worker:
        """An idle worker whose last job's cleanup is complete (waited for here, before the next
        job's deadline starts), or a new one; one that does not settle in time is removed."""
        while True:
            with self._lock:
                worker = self._idle.pop() if self._idle else None
            if worker is None:
                break
            if worker.settle():
                return worker
            worker.remove()
            with self._lock:
                self._count -= 1
        with self._lock:
            if self._count >= self.workers:
                raise SandboxError(f"more than {self.workers} concurrent jobs on {self.workers} workers")
            self._count += 1
        uid = UIDS.acquire()
        try:
            return Worker(self._client, self._image, uid, self._config, self._setup)
        except Exception as exc:
            UIDS.release(uid)
            with self._lock:
                self._count -= 1
            raise SandboxError(f"cannot start a worker container: {exc}") from None

    def _checkin(self, worker: Worker, healthy: bool) -> None:
        if healthy:
            with self._lock:
                self._idle.append(worker)
            return
        worker.remove()
        with self._lock:
            self._count -= 1

    # ------------------------------------------------------------ one job
    def execute(self, request: dict, timeout_s: float, on_frame: Callable[[dict, bytes], bool]) -> None:
        self.probe()
        self._run_job(request, timeout_s, on_frame)

    def _run_job(self, request: dict, timeout_s: float, on_frame: Callable[[dict, bytes], bool]) -> None:
        worker = self._checkout()
        healthy = False
        try:
            worker.execute(request, timeout_s, on_frame)
            healthy = True
        except SandboxError:
            raise
        except Exception as exc:  # Docker API / socket failures are harness failures
            raise SandboxError(f"docker exec failed: {type(exc).__name__}: {exc}") from None
        finally:
            self._checkin(worker, healthy)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
            self._count -= len(idle)
        for worker in idle:
            worker.remove()


__all__ = ["DockerBackend", "Worker", "connect", "ensure_image", "IMAGE", "ImageBuildError"]
