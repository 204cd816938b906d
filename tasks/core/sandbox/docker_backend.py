"""Docker backend: warm per-worker containers that run the same in-sandbox runner as bwrap.

Contract: ``DockerBackend(workers, limits).execute(request, timeout_s, on_frame)`` has the exact
semantics of ``BwrapBackend.execute`` (same ``runner.py`` and frames, so the judge's verdict rules
are shared; expected outputs never enter a container, comparison stays on the host). It keeps up
to ``workers`` long-lived containers (created lazily from ``ensure_image``), each running one job
at a time. A container is started with ``network_mode=none`` (its own network namespace with only
loopback), a read-only root, a ``tmpfs_mb`` tmpfs on ``/tmp`` (the only writable place; no
``/dev/shm``: ``ipc_mode=none``), ``cap_drop=ALL``, ``no-new-privileges``, Docker's default
seccomp profile, a memory cap (no swap), a pids cap, one CPU, and a non-root uid that no other
sandbox uses (``UidPool`` 62000+, so RLIMIT_NPROC counts only its own processes). Its pid 1 only
reaps orphans.

Per job, one ``docker exec`` starts ``python3 -I -S -c BOOTSTRAP`` as that uid; the bootstrap
reads the runner's and seccomp module's sources from stdin (nothing of the host tree is in the
image), SIGKILLs every leftover process of earlier jobs and waits until they are gone, empties
``/tmp``, resets the environment to ``runner.ENV`` + ``PWD``, loads ``seccomp.base_filter()``
(same socket/namespace denials as bwrap) and runs ``runner.main()``, which reads the request
next on stdin. Frames come back on the exec's stdout. Any harness failure (Docker API error,
bootstrap/runner crash, protocol error, ``timeout_s`` passed) raises ``SandboxError`` and the
container is thrown away, so the judge's retry runs on a fresh one. ``on_frame`` returning
``False`` stops reading; the rest of that job is killed by the next job's bootstrap (or when the
container is removed).

``probe()`` (once per backend) connects to the engine (``DOCKER_HOST`` or the default socket),
builds the image if needed and runs a trivial job; it raises ``SandboxUnavailable`` with the fix
otherwise. ``close()`` removes the containers. Limits: the per-test limits are the runner's
rlimits, as with bwrap; the container caps are backstops sized from the Judge's ``limits`` when
the backend is built (a later per-call ``limits`` above them can be cut short by the cgroup). The
engine must run on this machine for uid isolation to hold (uids are checked in this host's
/proc). Containers left by a killed process carry the label ``alphacode.judge.owner`` and are
removed by the next backend on the same host whose owner pid is gone.
"""

from __future__ import annotations

import json
import os
import select
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Callable

from . import runner as runner_mod
from .bwrap import SandboxError, SandboxUnavailable, UidPool
from .docker_image import IMAGE, ImageBuildError, ensure_image
from .types import Limits

HERE = Path(__file__).resolve().parent
UIDS = UidPool(base=62000, count=1000)  # disjoint from bwrap's 61000+ pool
OWNER_LABEL = "alphacode.judge.owner"
STDERR_KEEP = 4096
START_HINT = ("start a Docker engine (Debian: `apt-get install -y docker.io` then, as root, "
              "`tests/sandbox/docker_env.sh start`) or use backend='bwrap'")

PID1 = """
import os, signal
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGCHLD])
while True:
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass
    signal.sigtimedwait([signal.SIGCHLD], 5.0)
"""

BOOTSTRAP = """
import json, os, shutil, signal, struct, sys, time, types
def read(n):
    data = b""
    while len(data) < n:
        chunk = os.read(0, n - len(data))
        if not chunk:
            raise SystemExit("bootstrap: stdin closed early")
        data += chunk
    return data
src = json.loads(read(struct.unpack(">Q", read(8))[0]))
me, deadline = os.getpid(), time.monotonic() + 5.0
while True:
    try:
        os.kill(-1, signal.SIGKILL)
    except ProcessLookupError:
        pass
    left = [p for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, me)]
    if not left:
        break
    if time.monotonic() > deadline:
        raise SystemExit(f"bootstrap: leftover processes survive: {left}")
    time.sleep(0.002)
def force(func, path, _exc):
    os.chmod(os.path.dirname(path), 0o700)
    if not os.path.islink(path):
        os.chmod(path, 0o700)
    func(path)
for name in os.listdir("/tmp"):
    path = os.path.join("/tmp", name)
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, onerror=force)
    else:
        os.unlink(path)
os.environ.clear()
os.environ.update(src["env"])
os.chdir("/tmp")
def load(name, code):
    mod = types.ModuleType(name)
    mod.__file__ = "/sandbox/" + name + ".py"
    exec(compile(code, mod.__file__, "exec"), mod.__dict__)
    sys.modules[name] = mod
    return mod
seccomp = load("seccomp", src["seccomp"])
seccomp.prepare(seccomp.base_filter())()
load("runner", src["runner"]).main()
"""


def connect(timeout_s: float = 30.0):
    """A ``docker.DockerClient`` that answered a ping, else SandboxUnavailable with the fix."""
    try:
        import docker
    except ImportError:
        raise SandboxUnavailable("the `docker` Python package is missing: pip install docker; "
                                 f"then {START_HINT}") from None
    try:
        client = docker.from_env(timeout=int(timeout_s))
        client.ping()
    except Exception as exc:  # any connection failure means: no engine answers
        raise SandboxUnavailable(f"no Docker engine answers ({exc}); {START_HINT}") from None
    return client


class _Demux:
    """Splits Docker's multiplexed exec stream (8-byte headers) into stdout frames + stderr."""

    def __init__(self) -> None:
        self.raw = bytearray()
        self.out = bytearray()
        self.err = bytearray()

    def feed(self, chunk: bytes) -> None:
        self.raw += chunk
        while len(self.raw) >= 8:
            size = int.from_bytes(self.raw[4:8], "big")
            if len(self.raw) < 8 + size:
                return
            stream, payload = self.raw[0], bytes(self.raw[8:8 + size])
            del self.raw[:8 + size]
            if stream == 1:
                self.out += payload
            elif len(self.err) < STDERR_KEEP:
                self.err += payload[:STDERR_KEEP - len(self.err)]

    def frames(self):
        """Yield complete runner frames ``(meta, blob)`` from stdout."""
        head = runner_mod.FRAME.size
        while len(self.out) >= head:
            meta_len, blob_len = runner_mod.FRAME.unpack_from(self.out)
            total = head + meta_len + blob_len
            if len(self.out) < total:
                return
            meta = json.loads(bytes(self.out[head:head + meta_len]))
            blob = bytes(self.out[head + meta_len:total])
            del self.out[:total]
            yield meta, blob


def _pump(sock: socket.socket, timeout_s: float, on_frame: Callable[[dict, bytes], bool]) -> None:
    deadline = time.monotonic() + timeout_s
    demux = _Demux()
    while True:
        for meta, blob in demux.frames():
            kind = meta.get("kind")
            if kind == "done":
                return
            if kind == "fatal":
                raise SandboxError(f"runner failed: {meta.get('error', '')}")
            if on_frame(meta, blob) is False:
                return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SandboxError(f"container gave no result within {timeout_s:.1f} s")
        if not select.select([sock], [], [], remaining)[0]:
            continue
        chunk = sock.recv(1 << 20)
        if not chunk:
            err = demux.err.decode("utf-8", "replace").strip()
            raise SandboxError(f"container job ended before finishing: {err or 'no stderr'}")
        demux.feed(chunk)


class Worker:
    """One warm container and its uid; runs one job at a time."""

    def __init__(self, client, image: str, uid: int, config: dict) -> None:
        self.client, self.uid = client, uid
        self.container = client.containers.run(
            image, ["/usr/bin/python3", "-I", "-S", "-c", PID1], user=f"{uid}:{uid}",
            name=f"alphacode-judge-{os.getpid()}-{uuid.uuid4().hex[:8]}", **config)

    def execute(self, payload: bytes, timeout_s: float,
                on_frame: Callable[[dict, bytes], bool]) -> None:
        api = self.client.api
        exec_id = api.exec_create(
            self.container.id, ["/usr/bin/python3", "-I", "-S", "-c", BOOTSTRAP], stdin=True,
            user=f"{self.uid}:{self.uid}", workdir="/tmp",
            environment=[f"{k}={v}" for k, v in runner_mod.ENV.items()])["Id"]
        wrapper = api.exec_start(exec_id, socket=True)
        sock = getattr(wrapper, "_sock", wrapper)
        try:
            sock.settimeout(timeout_s)
            sock.sendall(payload)
            sock.setblocking(True)
            _pump(sock, timeout_s, on_frame)
        finally:
            wrapper.close()
            sock.close()

    def remove(self) -> None:
        try:
            self.container.remove(force=True)
        except Exception:  # already gone or engine down: nothing left to free here
            pass
        UIDS.release(self.uid)


def _container_config(limits: Limits, tmpfs_mb: int, cpus: float) -> dict:
    memory_mb = max(2048, int(limits.memory_mb) + 512)  # g++ runs under a 2 GiB RLIMIT_AS
    return {
        "detach": True, "network_mode": "none", "read_only": True, "ipc_mode": "none",
        "tmpfs": {"/tmp": f"rw,exec,nosuid,nodev,size={tmpfs_mb}m,mode=1777"},
        "cap_drop": ["ALL"], "security_opt": ["no-new-privileges"],
        "mem_limit": f"{memory_mb}m", "memswap_limit": f"{memory_mb}m",
        "pids_limit": max(64, 4 * int(limits.processes) + 16), "nano_cpus": int(cpus * 1e9),
        "hostname": "sandbox", "working_dir": "/tmp", "environment": dict(runner_mod.ENV),
        "labels": {OWNER_LABEL: f"{socket.gethostname()}:{os.getpid()}"},
        "log_config": {"type": "none", "config": {}}, "stop_signal": "SIGKILL",
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

    def __init__(self, workers: int = 2, limits: Limits = Limits(), tmpfs_mb: int = 128,
                 cpus: float = 1.0) -> None:
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
        sources = {"runner": (HERE / "runner.py").read_text(),
                   "seccomp": (HERE / "seccomp.py").read_text(),
                   "env": dict(runner_mod.ENV, PWD="/tmp")}
        self._prefix = runner_mod.encode_request(sources)

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
        except (ImageBuildError, Exception) as exc:
            return f"cannot build/find the judge image {IMAGE}: {exc}"
        frames: list[dict] = []
        request = {"language": "python", "style": "stdio", "entry_point": "",
                   "program": "print('ok')", "inputs": [""],
                   "limits": {"time_s": 5.0, "wall_s": 10.0, "memory_bytes": 256 << 20,
                              "output_bytes": 1 << 10, "file_size_bytes": 1 << 10,
                              "processes": 4, "open_files": 64, "compile_time_s": 5.0}}
        try:
            self._execute_locked_free(request, 60.0, lambda m, b: frames.append(m) or True)
        except SandboxError as exc:
            return f"a Docker sandbox could not run a trivial job: {exc}"
        if not frames or not frames[0].get("setup_ok") or frames[0].get("exit_code") != 0:
            return f"a Docker sandbox ran a trivial job wrongly: {frames}"
        return None

    # ------------------------------------------------------------ workers
    def _checkout(self) -> Worker:
        with self._lock:
            if self._idle:
                return self._idle.pop()
            if self._count >= self.workers:
                raise SandboxError(f"more than {self.workers} concurrent jobs on {self.workers} "
                                   "workers")
            self._count += 1
        uid = UIDS.acquire()
        try:
            return Worker(self._client, self._image, uid, self._config)
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
    def execute(self, request: dict, timeout_s: float,
                on_frame: Callable[[dict, bytes], bool]) -> None:
        self.probe()
        self._execute_locked_free(request, timeout_s, on_frame)

    def _execute_locked_free(self, request: dict, timeout_s: float,
                             on_frame: Callable[[dict, bytes], bool]) -> None:
        payload = self._prefix + runner_mod.encode_request(request)
        worker = self._checkout()
        healthy = False
        try:
            worker.execute(payload, timeout_s, on_frame)
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


__all__ = ["DockerBackend", "Worker", "connect", "ensure_image", "IMAGE"]
