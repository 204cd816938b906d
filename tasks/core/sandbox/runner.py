"""The test runner that executes INSIDE the sandbox (stdlib only, ``/usr/bin/python3 -I -S``).

The job server (``server.py``, the sandbox's pid 1) loads this module and forks ``main()`` once
per job, before the job exists; ``main()`` refuses to run anywhere else (its sweep SIGKILLs every
process it can signal). Contract: ``main(request)`` takes the request dict from the server (or
reads one request frame on fd 0: ``>Q`` length + UTF-8 JSON: language, style, entry_point,
program, inputs, limits), then writes frames on fd 1, each ``>II`` (meta length,
blob length) + JSON meta + raw blob:

* ``{"kind": "compile", "ok": bool, ...}`` once for C++ (blob: nothing);
* ``{"kind": "test", "index": i, ...}`` per test, in order (blob: the captured stdout, or for
  ``call`` style the JSON-encoded return value), at most ``limits.output_bytes`` bytes; for
  ``assert`` style the meta also says ``"completed"`` (see below);
* ``{"kind": "done"}`` last, or ``{"kind": "fatal", "error": ...}`` if the runner itself broke.

The runner puts itself in its own process group and blocks every signal. Per test it forks one
child in its own session (so no process of the test can join the runner's group, and
``/proc/self/autogroup`` changes only the test's own autogroup), with every signal unblocked,
RLIMIT_CPU/AS/FSIZE/NOFILE/NPROC/STACK/CORE set, a per-child seccomp guard
(``seccomp.guard_filter``) so the program cannot signal the runner or pid 1 (the server), stdin
from a memfd, stdout/stderr (and the ``call`` result) on pipes. It enforces the wall limit, stops
reading after ``output_bytes`` (OLE), measures peak RSS with ``wait4``, then SIGKILLs every other
process in the sandbox (``kill(-1)``, which spares the caller and pid 1) and reaps them as child
subreaper. CPU time is that of every process the test created: the child's ``wait4`` usage
(itself and the descendants it waited for) plus the usage of every orphan reaped here (detached,
double-forked or ``setsid`` processes come back to the subreaper), so CPU burnt outside the
child is charged to the test. Then ``purge`` empties ``/tmp`` except the program directory (no
recursion, any depth or permissions; ``/tmp``'s own mode and extended attributes restored where
the job could change them), so no test sees another's processes or files.

Styles (Python): ``stdio`` runs the program on the test's stdin; ``call`` runs it, then calls
``entry_point(*json.loads(input))`` and writes the JSON return value on fd 3; ``assert`` runs it,
then runs the test's ``input`` as Python test code in the program's namespace (stdin empty), and
only then answers a completion handshake: fd 3 is a socket on which the runner sends a random
16-byte nonce right after the fork, and the child echoes it back after the test code returned.
``"completed"`` is true iff exactly that nonce came back, so ``sys.exit``/``SystemExit``,
``os._exit``, a killed interpreter, replaced streams, patched ``exec``/``compile`` or an
``atexit`` trick before the end of the test code never complete. A program written to attack
its own harness (reading fd 3 itself, rewriting the child's frames) can still forge it: the
channel stops accidental and lazy early exits, not deliberate self-inspection.

Python programs run by ``exec`` of the compiled source in the forked child (the runner is that
interpreter, already warm): a few ms per test, not a fresh interpreter. The child rebuilds
``sys.stdin/stdout/stderr``, ``sys.argv`` and a fresh ``__main__`` module; modules the runner
imported stay imported. Its RLIMIT_AS is the runner's address-space size + the memory limit.
C++ is compiled once with g++ under its own limits, then each test ``execve``s the binary.

Limits: a program can still alter its own files under ``/tmp/.prog`` between its tests (this
only affects its own verdicts); expected outputs never come here, comparison is the host's job.
Over 500 lines because the job server ships it into the sandbox as one self-contained stdlib
module (framing, process control, cleanup and the test children belong together there).
"""

from __future__ import annotations

import _signal  # signal's own functions turn every signal number into an enum member: costly in a fresh fork
import atexit
import builtins
import functools
import io  # noqa: F401  (warm for the test children)
import json
import os
import resource
import select
import signal
import socket
import struct
import sys
import time
import traceback
import types

REQUEST = struct.Struct(">Q")
FRAME = struct.Struct(">II")
PROG_DIR = "/tmp/.prog"
WORK_DIR = "/tmp"
ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp", "TMPDIR": "/tmp"}
STDERR_PREFIX = 1024
STDERR_TAIL = 512
STACK_BYTES = 64 << 20
CHUNK = 1 << 16
NONCE_BYTES = 16


# ---------------------------------------------------------------- framing (host uses these too)


def encode_frame(meta: dict, blob: bytes = b"") -> bytes:
    head = json.dumps(meta, ensure_ascii=True).encode("ascii")
    return FRAME.pack(len(head), len(blob)) + head + blob


def _read_exact(fd: int, n: int) -> bytes:
    parts, got = [], 0
    while got < n:
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            raise EOFError(f"request truncated: got {got} of {n} bytes")
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


# ---------------------------------------------------------------- process helpers


_PRCTL: list = []  # libc's prctl, looked up once per process (by the job server, before it forks)


def _prctl():
    if not _PRCTL:
        import ctypes

        _PRCTL.append(ctypes.CDLL(None, use_errno=True).prctl)
    return _PRCTL[0]


PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def _vm_bytes() -> int:
    fd = os.open("/proc/self/statm", os.O_RDONLY)  # os-level: no file objects in a fresh runner
    try:
        return int(os.read(fd, 256).split()[0]) * PAGE_SIZE
    finally:
        os.close(fd)


def _set_limits(lim: dict, as_bytes: int, nproc: int) -> None:
    cpu = max(1, int(lim["time_s"] + 0.999))
    pairs = (
        (resource.RLIMIT_CPU, cpu, cpu + 1),
        (resource.RLIMIT_AS, as_bytes, as_bytes),
        (resource.RLIMIT_FSIZE, lim["file_size_bytes"], lim["file_size_bytes"]),
        (resource.RLIMIT_NOFILE, lim["open_files"], lim["open_files"]),
        (resource.RLIMIT_NPROC, nproc, nproc),
        (resource.RLIMIT_STACK, min(STACK_BYTES, as_bytes), min(STACK_BYTES, as_bytes)),
        (resource.RLIMIT_CORE, 0, 0),
    )
    for which, soft, hard in pairs:
        resource.setrlimit(which, (soft, hard))


class Capture:
    """Bounded reader of one pipe: keeps ``keep`` bytes, a short tail, counts everything."""

    def __init__(self, fd: int, keep: int, limit: int) -> None:
        self.fd, self.keep, self.limit = fd, keep, limit
        self.data = bytearray()
        self.tail = b""
        self.total = 0

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.keep - len(self.data)
        if room > 0:
            self.data += chunk[:room]
        self.tail = (self.tail + chunk)[-STDERR_TAIL:]

    @property
    def exceeded(self) -> bool:
        return self.total > self.limit


def _sweep() -> float:
    """SIGKILL every process of the sandbox but us and pid 1, reap them all; returns the CPU
    seconds of the processes reaped here (orphans re-parented to us: detached descendants)."""
    cpu = 0.0
    while True:
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
        while True:
            try:
                pid, _, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return cpu
            if pid == 0:
                break
            cpu += usage.ru_utime + usage.ru_stime
        time.sleep(0.0005)


def _force_open(name: str, dir_fd: int) -> int:
    """A directory fd for ``name`` in ``dir_fd``, made searchable first (we own every file)."""
    try:
        os.chmod(name, 0o700, dir_fd=dir_fd)
    except OSError:
        pass
    return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)


def _flatten(name: str, dir_fd: int, serial: list) -> bool:
    """Unlink the files of directory ``name`` and rename its subdirectories up into ``dir_fd``
    (so no depth ever needs recursion, long paths or one fd per level); True if it changed."""
    try:
        sub = _force_open(name, dir_fd)
    except OSError:
        return False
    changed = False
    try:
        for child in os.listdir(sub):
            try:
                os.unlink(child, dir_fd=sub)
                changed = True
                continue
            except OSError:
                pass
            serial[0] += 1
            try:
                os.chmod(child, 0o700, dir_fd=sub)  # a moved directory's ".." must be writable
                os.rename(child, f".purge-{serial[0]}", src_dir_fd=sub, dst_dir_fd=dir_fd)
                changed = True
            except OSError:
                pass
    except OSError:
        pass
    finally:
        os.close(sub)
    return changed


def purge(root: str, keep: str = "", mode: int | None = None) -> bool:
    """Empty directory ``root`` except the entry ``keep``; never raises and never recurses.

    Restores ``root``'s permission bits to ``mode`` and drops its extended attributes (ACLs
    included) where we own it. Runs only once every process of the job is dead (nothing races
    it); the tmpfs inode cap bounds its work. True if nothing but ``keep`` is left."""
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return False
    serial = [0]
    try:
        if mode is not None and os.fstat(fd).st_mode & 0o7777 != mode:
            try:
                os.chmod(fd, mode)
            except OSError:
                pass
        for attr in _listxattr(fd):
            try:
                os.removexattr(fd, attr)
            except OSError:
                pass
        while True:
            names = [n for n in os.listdir(fd) if n != keep]
            if not names:
                return True
            changed = False
            for name in names:
                try:
                    os.unlink(name, dir_fd=fd)
                    changed = True
                    continue
                except FileNotFoundError:
                    continue
                except OSError:
                    pass
                try:
                    os.rmdir(name, dir_fd=fd)
                    changed = True
                    continue
                except OSError:
                    pass
                if _flatten(name, fd, serial):
                    changed = True
            if not changed:
                return False
    except OSError:
        return False
    finally:
        os.close(fd)


def _listxattr(fd: int) -> list:
    try:
        return os.listxattr(fd)
    except OSError:
        return []


def _clean_tmp() -> None:
    purge(WORK_DIR, keep=".prog", mode=TMP_MODE[0])


ALL_SIGNALS = _signal.valid_signals()
TMP_MODE = [None]  # /tmp's permission bits when the job started (restored after every test)


def _result_channel(want_result: bool, handshake: bool) -> tuple[int, int]:
    """(runner end, child end) of fd 3: a pipe for ``call``, a socket pair for the handshake."""
    if handshake:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        return ours.detach(), theirs.detach()
    return os.pipe() if want_result else (-1, -1)


def _read_chunk(fd: int) -> bytes:
    """One read of a child's pipe or socket; a socket reset (the child exited without reading
    the handshake nonce) reads as end of file."""
    try:
        return os.read(fd, CHUNK)
    except ConnectionResetError:
        return b""


def _send_nonce(fd: int) -> bytes:
    """The nonce, sent to the child's end of fd 3. A child that closed or shut down its end
    before the send (a hostile program can) makes the send fail: that is the child's doing, so
    it is no harness error: the child simply cannot echo the nonce and its test fails."""
    nonce = os.urandom(NONCE_BYTES)
    try:
        _write_all(fd, nonce)
    except OSError:  # EPIPE / ECONNRESET (SIGPIPE is blocked in the runner)
        pass
    return nonce


# ---------------------------------------------------------------- the supervised run


class Runner:
    def __init__(self, request: dict, guard) -> None:
        self.req = request
        self.lim = request["limits"]
        self.guard = guard
        self.prctl = _prctl()
        self.base_tasks = 2  # pid 1 (the job server) and this runner share our uid

    def run_child(
        self, child_main, stdin: bytes, lim: dict, as_bytes: int, want_result: bool, handshake: bool = False
    ):
        """Fork, run ``child_main`` in the child, supervise; returns (meta, stdout_or_result).

        ``handshake`` (assert style): fd 3 is a socket; the runner sends a nonce after the fork,
        ``meta["completed"]`` says whether the child echoed it; the blob is then the stdout."""
        in_fd = os.memfd_create("stdin", 0)
        _write_all(in_fd, stdin)
        os.lseek(in_fd, 0, os.SEEK_SET)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        res_r, res_w = _result_channel(want_result, handshake)
        st_r, st_w = os.pipe()
        nproc = self.base_tasks + lim["processes"]
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:  # child: never returns
            try:
                self._child_setup(in_fd, out_w, err_w, res_w, st_w, lim, as_bytes, nproc)
                child_main()
            finally:
                os._exit(126)
        for fd in (in_fd, out_w, err_w, res_w, st_w):
            if fd >= 0:
                os.close(fd)
        nonce = _send_nonce(res_r) if handshake else b""  # made after the fork: never in the child
        caps = {
            "out": Capture(out_r, lim["output_bytes"], lim["output_bytes"]),
            "err": Capture(err_r, STDERR_PREFIX, lim["output_bytes"]),
        }
        if want_result:
            caps["res"] = Capture(res_r, lim["output_bytes"], lim["output_bytes"])
        meta = self._supervise(pid, start, caps, lim["wall_s"])
        meta["setup_ok"] = os.read(st_r, 1) == b"1"  # written by the child before the program
        os.close(st_r)
        main = caps["res"] if want_result and not handshake else caps["out"]
        if handshake:
            meta["completed"] = bytes(caps["res"].data) == nonce
        err = caps["err"]
        meta.update(
            stdout_total=main.total,
            stderr_prefix=bytes(err.data).decode("utf-8", "replace"),
            stderr_total=err.total,
            memory_error=(
                b"MemoryError" in err.tail or b"std::bad_alloc" in err.tail or b"std::bad_alloc" in err.data
            ),
        )
        if want_result:
            meta["printed_total"] = caps["out"].total
        return meta, bytes(main.data)

    def _child_setup(self, in_fd, out_w, err_w, res_w, st_w, lim, as_bytes, nproc) -> None:
        os.setsid()  # own session + group: can't join (and kill(0)) the runner's group, own autogroup
        os.dup2(in_fd, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        if res_w >= 0:
            os.dup2(res_w, 3)
        st_fd = os.dup2(st_w, 9)
        os.closerange(4 if res_w >= 0 else 3, st_fd)
        os.closerange(st_fd + 1, 1 << 20)
        os.chdir(WORK_DIR)
        _set_limits(lim, as_bytes, nproc)
        _signal.pthread_sigmask(_signal.SIG_SETMASK, ())  # the runner blocks every signal; we don't
        self.prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE 1: /proc/self readable again
        self.guard()
        os.write(st_fd, b"1")
        os.close(st_fd)

    def _supervise(self, pid: int, start: float, caps: dict, wall_s: float) -> dict:
        pidfd = os.pidfd_open(pid)
        poller = select.poll()
        by_fd = {c.fd: c for c in caps.values()}
        for fd in (*by_fd, pidfd):
            poller.register(fd, select.POLLIN)
        open_fds = set(by_fd)
        exited = timed_out = exceeded = False
        deadline = start + wall_s
        end = None
        while not exited or open_fds:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = not exited
                break
            if exited and end is not None and time.monotonic() - end > 0.05:
                break  # a straggler holds the pipes open; the sweep below kills it
            for fd, _ev in poller.poll(max(1, int(remaining * 1000) + 1) if not exited else 50):
                if fd == pidfd:
                    exited, end = True, time.monotonic()
                    poller.unregister(pidfd)
                    continue
                chunk = _read_chunk(fd)
                if not chunk:
                    poller.unregister(fd)
                    open_fds.discard(fd)
                    continue
                by_fd[fd].feed(chunk)
                if by_fd[fd].exceeded:
                    exceeded = True
            if exceeded:
                break
        wall = (end or time.monotonic()) - start
        if not exited:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.kill(pid, signal.SIGKILL)
        _, status, usage = os.wait4(pid, 0)
        detached_cpu = _sweep()
        if not exceeded:
            for fd in list(open_fds):  # every writer is dead now: drain to EOF
                while chunk := _read_chunk(fd):
                    by_fd[fd].feed(chunk)
        for fd in (*by_fd, pidfd):
            os.close(fd)
        _clean_tmp()
        return {
            "wall_s": wall,
            "cpu_s": usage.ru_utime + usage.ru_stime + detached_cpu,
            "maxrss_kb": usage.ru_maxrss,
            "exit_code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
            "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
            "timed_out": timed_out,
            "output_exceeded": exceeded or any(c.exceeded for c in caps.values()),
        }


# ---------------------------------------------------------------- children


def _exit_code(exc: SystemExit) -> int:
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _json_default(obj):
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=repr)
    raise TypeError(f"return value of type {type(obj).__name__} is not JSON-serializable")


def python_child(program: str, style: str, entry_point: str, test_input: str) -> None:
    """Body of a forked Python test child: run ``program`` as ``__main__`` (then the test code
    for ``assert`` style) and exit. ``exec``/``compile``/``os.read``/``os.write`` are bound
    before the program runs, so a program patching them cannot skip the test code. A failure is
    printed by the interpreter's own C display (``sys.__excepthook__``, bound before the program
    runs), byte for byte what ``traceback.print_exception`` prints, at about half its cost in a
    fresh fork (60 instead of 145 page faults)."""
    run, build, read, write, display = exec, compile, os.read, os.write, sys.__excepthook__
    sys.stdin = sys.__stdin__ = open(0, encoding="utf-8", errors="surrogateescape", closefd=False)
    sys.stdout = sys.__stdout__ = open(1, "w", encoding="utf-8", errors="surrogateescape", closefd=False)
    sys.stderr = sys.__stderr__ = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)
    sys.argv = ["main.py"]
    module = types.ModuleType("__main__")
    module.__builtins__ = builtins
    module.__file__ = "main.py"
    sys.modules["__main__"] = module
    code = 0
    try:
        run(build(program, "main.py", "exec"), module.__dict__)
        if style == "call":
            result = getattr(module, entry_point)(*json.loads(test_input))
            _write_all(3, json.dumps(result, default=_json_default).encode())
        elif style == "assert":
            run(build(test_input, "test.py", "exec", dont_inherit=True, optimize=0), module.__dict__)
            nonce = read(3, NONCE_BYTES)  # the test code returned: answer the handshake
            if write(3, nonce) != len(nonce):
                raise OSError("completion handshake cut short")
        atexit._run_exitfuncs()
        if "threading" in sys.modules:
            sys.modules["threading"]._shutdown()
    except SystemExit as exc:
        code = _exit_code(exc)
    except BaseException as exc:  # the program's own failure: report it like python would
        tb = exc.__traceback__
        tb = tb.tb_next if tb else None  # not this function's frame
        display(type(exc), BaseException.with_traceback(exc, tb), tb)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            code = code or 1
    os._exit(code)


def exec_child(argv: list) -> None:
    for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    os.execve(argv[0], argv, ENV)


# ---------------------------------------------------------------- job


def _compile_cpp(runner: Runner, lim: dict) -> tuple[dict, bool]:
    with open(os.path.join(PROG_DIR, "main.cpp"), "w", encoding="utf-8", errors="surrogateescape") as f:
        f.write(runner.req["program"])
    cl = dict(
        lim,
        time_s=lim["compile_time_s"],
        wall_s=lim["compile_time_s"] * 2,
        processes=max(lim["processes"], 8),
        open_files=256,
        output_bytes=1 << 20,
        file_size_bytes=256 << 20,
    )
    argv = [
        "/usr/bin/g++",
        "-std=c++17",
        "-O2",
        "-pipe",
        "-o",
        os.path.join(PROG_DIR, "a.out"),
        os.path.join(PROG_DIR, "main.cpp"),
    ]
    meta, _ = runner.run_child(lambda: exec_child(argv), b"", cl, 2 << 30, False)
    ok = meta["exit_code"] == 0 and not meta["timed_out"]
    return dict(meta, kind="compile", ok=ok), ok


def run_job(request: dict, guard, out_fd: int) -> None:
    runner = Runner(request, guard)
    lim = request["limits"]
    try:
        os.mkdir(PROG_DIR)  # /tmp exists; .prog survives the tests of one job only
    except FileExistsError:
        pass
    language, style = request["language"], request["style"]
    if language == "cpp":
        meta, ok = _compile_cpp(runner, lim)
        _write_all(out_fd, encode_frame(meta))
        if not ok:
            _write_all(out_fd, encode_frame({"kind": "done"}))
            return
    program = request["program"]
    for index, test_input in enumerate(request["inputs"]):
        if language == "python":
            stdin = b"" if style != "stdio" else test_input.encode("utf-8", "surrogateescape")
            body = functools.partial(python_child, program, style, request["entry_point"], test_input)
            as_bytes = _vm_bytes() + lim["memory_bytes"]
        else:
            stdin = test_input.encode("utf-8", "surrogateescape")
            body = functools.partial(exec_child, [os.path.join(PROG_DIR, "a.out")])
            as_bytes = lim["memory_bytes"]
        meta, blob = runner.run_child(body, stdin, lim, as_bytes, style != "stdio", style == "assert")
        meta.update(kind="test", index=index)
        _write_all(out_fd, encode_frame(meta, blob))
    _write_all(out_fd, encode_frame({"kind": "done"}))


SANDBOXED = False  # set by the job server (server.py) that loads this module in a sandbox


def main(request: dict | None = None) -> None:
    """Run one job: ``request`` as given by the job server, or read as one frame from fd 0."""
    if not SANDBOXED:  # its sweep SIGKILLs every process it can signal: never on a host
        sys.exit("runner.py runs only inside an alphacode sandbox, started by server.py")
    import seccomp

    try:
        if request is None:
            (length,) = REQUEST.unpack(_read_exact(0, REQUEST.size))
            request = json.loads(_read_exact(0, length))
        _signal.pthread_sigmask(_signal.SIG_BLOCK, ALL_SIGNALS)  # no signal reaches us
        os.setpgid(0, 0)  # our own group, guarded below; test children run in their own sessions
        TMP_MODE[0] = os.stat(WORK_DIR).st_mode & 0o7777
        prctl = _prctl()
        prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: orphans come back to us
        prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: children can't read our /proc/<pid>/mem
        parent = os.getppid()  # the job server: programs may not signal it or its group
        guard = seccomp.guard_loader((1, parent, -parent), os.getpid())  # built by the server
        run_job(request, guard, 1)
    except BaseException as exc:  # report harness failure to the host, never a verdict
        detail = "".join(traceback.format_exception(exc))[-4000:]
        try:
            _write_all(1, encode_frame({"kind": "fatal", "error": detail}))
        except OSError:
            pass
        os._exit(3)


if __name__ == "__main__":
    main()
