"""bubblewrap backend: one sandbox per job, the runner inside forks one child per test.

Contract: ``BwrapBackend().execute(request, timeout_s, on_frame)`` starts ``bwrap`` with every
namespace unshared (private network namespace with only its own loopback, own pid/ipc/uts/
cgroup/user namespaces), an empty read-only root with read-only ``/usr`` (+ ``/bin``, ``/sbin``,
``/lib``, ``/lib64`` symlinks), ``/proc``, a read-only ``/dev``, a size-capped tmpfs on ``/tmp``,
an environment of only PATH/LANG/HOME/TMPDIR/PWD (bwrap itself is started with only PATH, since
the sandbox's pid 1 is bwrap and keeps its environment), a new session, ``--die-with-parent``,
``--disable-userns`` and ``seccomp.base_filter()`` (which also denies non-AF_UNIX sockets). The
runner and its seccomp module are passed in with ``--ro-bind-data`` (nothing of the host tree is
visible), the request on stdin (a memfd, so large programs never deadlock a pipe) and frames
come back on stdout. ``on_frame(meta, blob)`` sees each frame as it arrives and may return
``False`` to stop the job early (the sandbox is then killed). Any harness failure (bwrap error,
runner crash, protocol error, overall timeout) raises ``SandboxError``.

As root, each job runs bwrap under its own unprivileged host uid from ``UidPool`` (61000+):
the sandbox is then an unprivileged user namespace, so RLIMIT_NPROC is enforced (it is not for
host root), and a uid is reused only once no live process of it is left. Without root, bwrap
runs as the calling user (unprivileged user namespaces must be enabled). ``probe()`` checks once
per process that a sandbox can start and raises ``SandboxUnavailable`` with the fix otherwise.
Limits: x86_64 Linux only; one bwrap + interpreter start per job (tens of ms): batch the tests
of one program into one Job.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable

from . import runner as runner_mod
from . import seccomp

HERE = Path(__file__).resolve().parent
BWRAP_ENV = {"PATH": "/usr/bin:/bin"}  # bwrap's own env: pid 1's /proc/1/environ is readable
UID_BASE = 61000
UID_COUNT = 1000
INSTALL_HINT = ("install bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`, Fedora: "
                "`dnf install bubblewrap`) or use backend='docker'")


class SandboxUnavailable(RuntimeError):
    """No sandbox can be created on this machine; the message says how to fix it."""


class SandboxError(RuntimeError):
    """The harness (not the program) failed for one job; the judge retries it."""


def _live_pids_of(uid: int) -> list[int]:
    """Pids owned by ``uid`` that are not zombies (a zombie holds no resources; the sandbox's
    pid 1 can linger as one until the host's init reaps it)."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.stat(f"/proc/{name}").st_uid != uid:
                continue
            with open(f"/proc/{name}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if state not in (b"Z", b"X"):
            pids.append(int(name))
    return pids


def _uid_has_processes(uid: int) -> bool:
    return bool(_live_pids_of(uid))


def _kill_uid(uid: int) -> None:
    for pid in _live_pids_of(uid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue


def handle_frame(meta: dict, blob: bytes, on_frame: Callable[[dict, bytes], object]) -> bool:
    """Dispatch one runner frame (both backends); True when the job is over: the runner said
    ``done``, or ``on_frame`` returned False to stop early. A ``fatal`` frame is a harness
    failure (SandboxError), never a verdict."""
    kind = meta.get("kind")
    if kind == "done":
        return True
    if kind == "fatal":
        raise SandboxError(f"runner failed: {meta.get('error', '')}")
    return on_frame(meta, blob) is False


UID_LOCK_DIR = Path(os.environ.get("ALPHACODE_UID_LOCK_DIR", "/tmp/alphacode-sandbox-uids"))


def _try_lease(uid: int) -> int | None:
    """An exclusive cross-process lease on ``uid`` (an flock'd file), or None if taken.

    Several processes on one machine (Prefect workers, Dask/Ray workers) each have their own
    pool; the lease keeps two of them from picking the same idle uid at the same instant.
    The kernel drops the lease when its holder dies, so a killed run leaks nothing.
    """
    UID_LOCK_DIR.mkdir(parents=True, exist_ok=True)
    fd = os.open(UID_LOCK_DIR / f"{uid}.lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


class UidPool:
    """Pool of unprivileged host uids, one per running sandbox (root only); leases are
    exclusive across processes (:func:`_try_lease`)."""

    def __init__(self, base: int = UID_BASE, count: int = UID_COUNT) -> None:
        self._lock = threading.Lock()
        self._leases: dict[int, int] = {}
        self._busy: set[int] = set()
        self._quarantined: set[int] = set()
        self._start = base + (os.getpid() * 37) % count  # spread concurrent processes apart
        self._base, self._count = base, count

    def acquire(self) -> int:
        with self._lock:
            for k in range(self._count):
                uid = self._base + (self._start - self._base + k) % self._count
                if uid in self._busy or uid in self._quarantined:
                    continue
                lease = _try_lease(uid)
                if lease is None:  # another process holds it
                    continue
                if _uid_has_processes(uid):  # a leftover of a killed run
                    os.close(lease)
                    continue
                self._leases[uid] = lease
                self._busy.add(uid)
                return uid
        raise SandboxError("no free sandbox uid left in the pool")

    def release(self, uid: int) -> None:
        """Free ``uid`` once none of its processes is left (kill them, wait up to 2 s)."""
        deadline = time.monotonic() + 2.0
        while _uid_has_processes(uid) and time.monotonic() < deadline:
            _kill_uid(uid)
            time.sleep(0.002)
        with self._lock:
            self._busy.discard(uid)
            if _uid_has_processes(uid):
                self._quarantined.add(uid)  # keep the lease: nobody may use it
            elif (lease := self._leases.pop(uid, None)) is not None:
                os.close(lease)


_POOL = UidPool()
_PROBE_LOCK = threading.Lock()
_PROBE_RESULT: list[str | None] = []  # [] = not probed yet; [None] = ok; [msg] = unavailable


def _data_pipe(data: bytes) -> int:
    """A pipe's read end already holding ``data`` (must fit the 64 KiB pipe buffer)."""
    if len(data) >= 60_000:
        raise ValueError(f"bind data of {len(data)} bytes is too big for a pipe")
    r, w = os.pipe()
    try:
        os.write(w, data)
    finally:
        os.close(w)
    return r


class BwrapBackend:
    """Builds and runs the bwrap command for one job at a time (thread-safe, stateless)."""

    def __init__(self, tmpfs_bytes: int = 128 << 20) -> None:
        self.bwrap = shutil.which("bwrap")
        if self.bwrap is None:
            raise SandboxUnavailable(f"bwrap (bubblewrap) not found on PATH: {INSTALL_HINT}")
        self.tmpfs_bytes = tmpfs_bytes
        self.as_root = os.geteuid() == 0
        self.setpriv = shutil.which("setpriv")
        self._filter = seccomp.base_filter()
        self._runner_src = (HERE / "runner.py").read_bytes()
        self._seccomp_src = (HERE / "seccomp.py").read_bytes()

    # ------------------------------------------------------------ command line
    def _argv(self, fds: dict[str, int], uid: int | None, argv: list[str]) -> list[str]:
        cmd = [
            self.bwrap, "--unshare-all", "--unshare-user", "--disable-userns",
            "--die-with-parent", "--new-session", "--clearenv", "--uid", "1000", "--gid", "1000",
            "--hostname", "sandbox",
            "--ro-bind", "/usr", "/usr",
            "--symlink", "usr/bin", "/bin", "--symlink", "usr/sbin", "/sbin",
            "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
            "--proc", "/proc", "--dev", "/dev", "--remount-ro", "/dev",
            "--size", str(self.tmpfs_bytes), "--tmpfs", "/tmp",
            "--dir", "/sandbox",
            "--ro-bind-data", str(fds["runner"]), "/sandbox/runner.py",
            "--ro-bind-data", str(fds["seccomp"]), "/sandbox/seccomp.py",
            "--remount-ro", "/",
            "--seccomp", str(fds["filter"]), "--chdir", "/tmp",
        ]
        for key, value in runner_mod.ENV.items():
            cmd += ["--setenv", key, value]
        cmd += ["--", *argv]
        if uid is not None:
            if self.setpriv:  # lets subprocess use vfork (cheap even from a big host process)
                cmd = [self.setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                       "--", *cmd]
        return cmd

    def _spawn(self, argv: list[str], uid: int | None, stdin_fd: int) -> subprocess.Popen:
        fds = {"filter": _data_pipe(self._filter), "runner": _data_pipe(self._runner_src),
               "seccomp": _data_pipe(self._seccomp_src)}
        try:
            extra = {}
            if uid is not None and not self.setpriv:
                extra = {"user": uid, "group": uid, "extra_groups": []}
            return subprocess.Popen(
                self._argv(fds, uid, argv), stdin=stdin_fd, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, pass_fds=tuple(fds.values()), close_fds=True,
                env=BWRAP_ENV, **extra)
        finally:
            for fd in fds.values():
                os.close(fd)

    # ------------------------------------------------------------ availability
    def probe(self) -> None:
        """Raise SandboxUnavailable unless a trivial sandbox runs here (checked once/process)."""
        with _PROBE_LOCK:
            if not _PROBE_RESULT:
                _PROBE_RESULT.append(self._probe_once())
        if _PROBE_RESULT[0] is not None:
            raise SandboxUnavailable(_PROBE_RESULT[0])

    def _probe_once(self) -> str | None:
        uid = _POOL.acquire() if self.as_root else None
        fd = os.memfd_create("probe", 0)
        try:
            proc = self._spawn(["/usr/bin/python3", "-I", "-S", "-c", "print('ok')"], uid, fd)
            out, err = proc.communicate(timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"bwrap could not be started: {exc}; {INSTALL_HINT}"
        finally:
            os.close(fd)
            if uid is not None:
                _POOL.release(uid)
        if proc.returncode != 0 or out.strip() != b"ok":
            return ("bwrap cannot create a sandbox on this machine "
                    f"(exit {proc.returncode}: {err.decode(errors='replace').strip()}). "
                    "Enable unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1"
                    " and user.max_user_namespaces>0; on Ubuntu 24.04+ also "
                    "kernel.apparmor_restrict_unprivileged_userns=0), run as root, "
                    "or use backend='docker'")
        return None

    # ------------------------------------------------------------ one job
    def execute(self, request: dict, timeout_s: float,
                on_frame: Callable[[dict, bytes], bool]) -> None:
        uid = _POOL.acquire() if self.as_root else None
        stdin_fd = os.memfd_create("request", 0)
        proc = None
        try:
            os.write(stdin_fd, runner_mod.encode_request(request))
            os.lseek(stdin_fd, 0, os.SEEK_SET)
            proc = self._spawn(["/usr/bin/python3", "-I", "-S", "/sandbox/runner.py"], uid,
                               stdin_fd)
            os.close(stdin_fd)
            stdin_fd = -1
            _pump(proc, timeout_s, on_frame)
        finally:
            if stdin_fd >= 0:
                os.close(stdin_fd)
            if proc is not None:
                _finish(proc)
            if uid is not None:
                _POOL.release(uid)


def _finish(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def _stderr_of(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    data = proc.stderr.read(4096) if proc.stderr else b""
    return data.decode("utf-8", "replace").strip()


def _pump(proc: subprocess.Popen, timeout_s: float,
          on_frame: Callable[[dict, bytes], bool]) -> None:
    """Read frames until ``done``; raise SandboxError on anything else."""
    fd = proc.stdout.fileno()
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    deadline = time.monotonic() + timeout_s
    buf = bytearray()
    need = runner_mod.FRAME.size
    while True:
        while len(buf) >= need:
            meta_len, blob_len = runner_mod.FRAME.unpack_from(buf)
            total = runner_mod.FRAME.size + meta_len + blob_len
            if len(buf) < total:
                need = total
                break
            meta = json.loads(bytes(buf[runner_mod.FRAME.size:runner_mod.FRAME.size + meta_len]))
            blob = bytes(buf[runner_mod.FRAME.size + meta_len:total])
            del buf[:total]
            need = runner_mod.FRAME.size
            if handle_frame(meta, blob, on_frame):
                return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SandboxError(f"sandbox gave no result within {timeout_s:.1f} s")
        if not poller.poll(int(remaining * 1000) + 1):
            continue
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            raise SandboxError("sandbox exited before finishing "
                               f"(exit {proc.wait()}): {_stderr_of(proc) or 'no stderr'}")
        buf += chunk
