"""bubblewrap backend: warm sandboxes, each running the job server; one fork per test inside.

Contract: ``BwrapBackend().execute(request, timeout_s, on_frame)`` runs one job in an idle warm
sandbox, or starts one: ``bwrap`` with every namespace unshared (private network namespace with
only its own loopback, own pid/ipc/uts/cgroup/user namespaces), an empty read-only root with
read-only ``/usr`` (+ ``/bin``, ``/sbin``, ``/lib``, ``/lib64`` symlinks), ``/proc``, a read-only
``/dev``, a size-capped tmpfs on ``/tmp`` (as root: a root-owned sticky tmpfs with an inode cap,
``scratch.Scratch``, bound in; without root, or where the host refuses the mount, bwrap's own
``--tmpfs`` without one), an environment of only PATH/LANG/HOME/TMPDIR/PWD (bwrap
itself is started with only PATH; the job server also starts with ``LD_BIND_NOW=1``, so the
dynamic linker resolves every symbol once there instead of in each forked runner and test,
and then replaces its environment with those five), a new session, ``--die-with-parent``, ``--disable-userns``,
``--as-pid-1`` and ``seccomp.base_filter()`` (which also denies non-AF_UNIX sockets and SysV/POSIX
IPC). Its pid 1 is ``server.py``, the job server shared with the Docker backend (nothing of the
host tree is visible; the runner and seccomp sources come in its setup message). It runs each
job in a ``runner.main()`` forked before the job existed, then kills every other process of the
sandbox, reaps them and empties ``/tmp`` before it takes the next job (the isolation property
and its mechanisms: ``server.py``), while the bwrap + interpreter start (~35 ms here) is paid
once per sandbox instead of once per job. A sandbox takes its next job only once the server's
end envelope of the last one came (``settle``: its cleanup is complete; waited for at checkout,
before the next job's deadline starts); one that does not settle within ``SETTLE_S``, or whose
server asks to be recycled, is closed and replaced. ``on_frame(meta, blob)`` sees each frame as it arrives and may
return ``False`` to stop the job early (the server aborts the rest; the sandbox stays warm). Any
harness failure (bwrap error, runner crash, protocol error, overall timeout) raises
``SandboxError`` and that sandbox is thrown away, so the judge's retry starts a fresh one. A
sandbox is also retired after ``max_jobs`` jobs.

As root, each sandbox runs bwrap under its own unprivileged host uid from ``UidPool`` (61000+),
held for the sandbox's life: the sandbox is then an unprivileged user namespace, so RLIMIT_NPROC
is enforced (it is not for host root), and a uid is reused only once no live process of it is
left. Without root, bwrap runs as the calling user (unprivileged user namespaces must be
enabled). ``probe()`` checks once per process that a sandbox can start and raises
``SandboxUnavailable`` with the fix otherwise. Sandboxes are started from one long-lived thread
(``--die-with-parent`` follows the starting *thread*); ``close()`` stops them. If the host process
dies they die with it. Limits: x86_64 Linux only; isolation between jobs of one sandbox rests on
the pristine runner template, the sweep, the purge and the seccomp filter, not on fresh
namespaces.
"""

from __future__ import annotations

import fcntl
import os
import select
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import runner as runner_mod
from . import seccomp
from .envelopes import SERVER, Envelopes, message, serve_frames, setup_message
from .scratch import ROOT as SCRATCH_ROOT
from .scratch import Scratch, umount
from .types import SandboxError, SandboxUnavailable

BWRAP_ENV = {"PATH": "/usr/bin:/bin"}  # bwrap's own env: pid 1's /proc/1/environ is readable
UID_BASE = 61000
UID_COUNT = 1000
INSTALL_HINT = (
    "install bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`, Fedora: "
    "`dnf install bubblewrap`) or use backend='docker'"
)


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


def _detach_stale_scratch() -> None:
    """Unmount scratch tmpfs left by killed processes (a uid nobody leases, with no process)."""
    try:
        names = os.listdir(SCRATCH_ROOT)
    except OSError:
        return
    for name in names:
        if not name.isdigit() or not os.path.ismount(SCRATCH_ROOT / name):
            continue
        lease = _try_lease(int(name))
        if lease is None:  # a live sandbox of some process
            continue
        try:
            if not _uid_has_processes(int(name)):
                umount(SCRATCH_ROOT / name)
        finally:
            os.close(lease)


_PROBE_LOCK = threading.Lock()
_PROBE_RESULT: list[str | None] = []  # [] = not probed yet; [None] = ok; [msg] = unavailable
STDERR_KEEP = 4096
SETTLE_S = 10.0  # how long a finished job's cleanup may take before its sandbox is thrown away
TMP_INODES = 8192  # files + directories /tmp may hold at once (bwrap as root, Docker)


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


class _Sandbox:
    """One warm sandbox: bwrap running the job server, its uid lease, one job at a time."""

    def __init__(
        self, proc: subprocess.Popen, uid: int | None, setup: bytes, scratch: Scratch | None = None
    ) -> None:
        self.proc, self.uid, self.seq, self.jobs = proc, uid, 0, 0
        self.scratch, self.pending = scratch, False
        self.envelopes = Envelopes()
        self.err = bytearray()
        self.poller = select.poll()
        for stream in (proc.stdout, proc.stderr):
            os.set_blocking(stream.fileno(), False)
            self.poller.register(stream.fileno(), select.POLLIN)
        self._send(setup)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _send(self, data: bytes) -> None:
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except OSError as exc:
            raise SandboxError(f"sandbox is gone ({exc}): {self.stderr() or 'no stderr'}") from None

    def stderr(self) -> str:
        return self.err.decode("utf-8", "replace").strip()[-1000:]

    def execute(self, request: dict, timeout_s: float, on_frame: Callable[[dict, bytes], bool]) -> None:
        self.seq += 1
        self.jobs += 1
        seq, deadline = self.seq, time.monotonic() + timeout_s
        self.envelopes.start(seq)
        self._send(message({"seq": seq, "request": request}))
        abort = lambda: self._send(message({"seq": seq, "abort": True}))  # noqa: E731
        self.pending = True  # until the server's end envelope: its cleanup is under way
        while not serve_frames(self.envelopes, on_frame, self.stderr, abort):
            self._receive(deadline, timeout_s)
        if self.scratch is not None:
            self.scratch.detach()  # the server runs, so bwrap has bound it: only the sandbox holds it

    def settle(self, budget_s: float = SETTLE_S) -> bool:
        """Wait for the last job's end envelope (sent once its cleanup is complete); True if
        this sandbox may take another job (it ended in time and asked for no recycling)."""
        if self.pending:
            deadline = time.monotonic() + budget_s
            try:
                while self.envelopes.ended is None:
                    self._receive(deadline, budget_s)
            except SandboxError:
                return False
            self.pending = False
        return self.alive() and not (self.envelopes.ended or {}).get("recycle")

    def _receive(self, deadline: float, timeout_s: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SandboxError(f"sandbox gave no result within {timeout_s:.1f} s")
        for fd, _ev in self.poller.poll(int(remaining * 1000) + 1):
            chunk = os.read(fd, 1 << 20)
            if fd == self.proc.stderr.fileno():
                self.err = (self.err + chunk)[-STDERR_KEEP:]
                if not chunk:  # stderr closed: stop polling it (stdout's end decides)
                    self.poller.unregister(fd)
                continue
            if not chunk:
                raise SandboxError(
                    f"sandbox exited before finishing (exit {self.proc.wait()}): "
                    f"{self.stderr() or 'no stderr'}"
                )
            self.envelopes.feed(chunk)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                stream.close()
            except OSError:
                pass
        if self.scratch is not None:
            self.scratch.detach()
        if self.uid is not None:
            _POOL.release(self.uid)


class BwrapBackend:
    """Pool of warm bwrap sandboxes (thread-safe): a job takes an idle one or starts one."""

    def __init__(self, tmpfs_bytes: int = 128 << 20, max_jobs: int = 1000) -> None:
        self.bwrap = shutil.which("bwrap")
        if self.bwrap is None:
            raise SandboxUnavailable(f"bwrap (bubblewrap) not found on PATH: {INSTALL_HINT}")
        self.tmpfs_bytes, self.max_jobs = tmpfs_bytes, max_jobs
        self.as_root = os.geteuid() == 0
        self.scratch_mounts = self.as_root  # off if this host refuses mounts (no CAP_SYS_ADMIN)
        self.setpriv = shutil.which("setpriv")
        self._filter = seccomp.base_filter()
        self._setup = setup_message(base_filter=False)  # bwrap loads the base filter itself
        self._lock = threading.Lock()
        self._idle: list[_Sandbox] = []
        self._spawner: ThreadPoolExecutor | None = None

    # ------------------------------------------------------------ command line
    def _argv(self, filter_fd: int, argv: list[str], as_pid_1: bool, scratch: Scratch | None) -> list[str]:
        cmd = [
            self.bwrap,
            "--unshare-all",
            "--unshare-user",
            "--disable-userns",
            "--die-with-parent",
            "--new-session",
            "--clearenv",
            "--uid",
            "1000",
            "--gid",
            "1000",
            "--hostname",
            "sandbox",
            "--ro-bind",
            "/usr",
            "/usr",
            "--symlink",
            "usr/bin",
            "/bin",
            "--symlink",
            "usr/sbin",
            "/sbin",
            "--symlink",
            "usr/lib",
            "/lib",
            "--symlink",
            "usr/lib64",
            "/lib64",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--remount-ro",
            "/dev",
            *(
                ["--bind", str(scratch.path), "/tmp"]
                if scratch is not None
                else ["--size", str(self.tmpfs_bytes), "--tmpfs", "/tmp"]
            ),
            "--remount-ro",
            "/",
            "--seccomp",
            str(filter_fd),
            "--chdir",
            "/tmp",
        ]
        for key, value in runner_mod.ENV.items():
            cmd += ["--setenv", key, value]
        if as_pid_1:  # the job server binds every symbol at start, not in each forked runner/test
            cmd += ["--setenv", "LD_BIND_NOW", "1"]  # (it replaces its environment with ENV after)
        if as_pid_1:  # the job server is the sandbox's pid 1 (as in Docker): its sweep spares it
            cmd.append("--as-pid-1")
        return cmd + ["--", *argv]

    def _spawn(
        self,
        argv: list[str],
        uid: int | None,
        stdin,
        as_pid_1: bool = False,
        scratch: Scratch | None = None,
    ) -> subprocess.Popen:
        filter_fd = _data_pipe(self._filter)
        try:
            cmd, extra = self._argv(filter_fd, argv, as_pid_1, scratch), {}
            if uid is not None and self.setpriv:  # lets subprocess use vfork
                cmd = [self.setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--", *cmd]
            elif uid is not None:
                extra = {"user": uid, "group": uid, "extra_groups": []}
            return subprocess.Popen(
                cmd,
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(filter_fd,),
                close_fds=True,
                env=BWRAP_ENV,
                **extra,
            )
        finally:
            os.close(filter_fd)

    # ------------------------------------------------------------ availability
    def probe(self) -> None:
        """Raise SandboxUnavailable unless a trivial sandbox runs here (checked once/process)."""
        with _PROBE_LOCK:
            if not _PROBE_RESULT:
                _PROBE_RESULT.append(self._probe_once())
        if _PROBE_RESULT[0] is not None:
            raise SandboxUnavailable(_PROBE_RESULT[0])

    def _probe_once(self) -> str | None:
        if self.as_root:
            _detach_stale_scratch()
        uid = _POOL.acquire() if self.as_root else None
        try:
            proc = self._spawn(["/usr/bin/python3", "-I", "-S", "-c", "print('ok')"], uid, subprocess.DEVNULL)
            out, err = proc.communicate(timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"bwrap could not be started: {exc}; {INSTALL_HINT}"
        finally:
            if uid is not None:
                _POOL.release(uid)
        if proc.returncode != 0 or out.strip() != b"ok":
            return (
                "bwrap cannot create a sandbox on this machine "
                f"(exit {proc.returncode}: {err.decode(errors='replace').strip()}). "
                "Enable unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1"
                " and user.max_user_namespaces>0; on Ubuntu 24.04+ also "
                "kernel.apparmor_restrict_unprivileged_userns=0), run as root, "
                "or use backend='docker'"
            )
        return None

    # ------------------------------------------------------------ warm sandboxes
    def _start(self) -> _Sandbox:
        with self._lock:  # --die-with-parent ties a sandbox to the thread that started it:
            if self._spawner is None:  # start them all from one long-lived thread
                self._spawner = ThreadPoolExecutor(1, thread_name_prefix="bwrap-spawner")
            spawner = self._spawner
        uid = _POOL.acquire() if self.as_root else None
        argv = ["/usr/bin/python3", "-I", "-S", "-c", SERVER]
        scratch = None
        if uid is not None and self.scratch_mounts:
            try:
                scratch = Scratch(uid, self.tmpfs_bytes, TMP_INODES)
            except (OSError, SandboxError):
                self.scratch_mounts = False  # bwrap's own --tmpfs from now on: no inode cap
        try:
            proc = spawner.submit(self._spawn, argv, uid, subprocess.PIPE, True, scratch).result()
        except (OSError, SandboxError) as exc:
            if scratch is not None:
                scratch.detach()
            if uid is not None:
                _POOL.release(uid)
            raise SandboxError(f"bwrap could not be started: {exc}") from None
        try:
            return _Sandbox(proc, uid, self._setup, scratch)
        except BaseException:
            proc.kill()
            proc.wait()
            if scratch is not None:
                scratch.detach()
            if uid is not None:
                _POOL.release(uid)
            raise

    def _checkout(self) -> _Sandbox:
        """An idle sandbox whose last job's cleanup is complete, or a new one. The wait for that
        cleanup happens here, before the next job's deadline starts, so it counts against no
        job's limits; a sandbox that does not settle in time, or asked to be recycled, is closed."""
        while True:
            with self._lock:
                box = self._idle.pop() if self._idle else None
            if box is None:
                return self._start()
            if box.settle():
                return box
            box.close()

    def _checkin(self, box: _Sandbox, healthy: bool) -> None:
        if healthy and box.jobs < self.max_jobs:
            with self._lock:
                if self._spawner is not None:  # not closed meanwhile
                    self._idle.append(box)
                    return
        box.close()

    # ------------------------------------------------------------ one job
    def execute(self, request: dict, timeout_s: float, on_frame: Callable[[dict, bytes], bool]) -> None:
        box = self._checkout()
        healthy = False
        try:
            box.execute(request, timeout_s, on_frame)
            healthy = True
        finally:
            self._checkin(box, healthy)

    def close(self) -> None:
        """Stop every idle sandbox and the spawner thread; call it when no job runs (a sandbox
        dies with the spawner thread)."""
        with self._lock:
            idle, self._idle = self._idle, []
            spawner, self._spawner = self._spawner, None
        for box in idle:
            box.close()
        if spawner is not None:
            spawner.shutdown(wait=True)
