"""The warm job server that runs INSIDE a sandbox (bwrap or Docker); stdlib only.

Run as ``/usr/bin/python3 -I -S -c <this file's source>`` as the sandbox's pid 1 (Docker; bwrap
``--as-pid-1``); it refuses to start as any other pid, i.e. on a host, because its sweep SIGKILLs every
process it can signal (the runner likewise refuses unless the server loaded it). Protocol on fd 0 / fd 1, one job at a time:

* host -> server: ``>Q`` length + JSON messages. The first is the setup: ``runner`` and
  ``seccomp`` module sources (nothing of the host tree needs to be visible), ``env`` (the
  environment programs see) and ``base_filter`` (load ``seccomp.base_filter()`` here: Docker;
  bwrap has loaded it already). Then ``{"seq", "request"}`` per job; any other message while a
  job runs (the host sends ``{"seq", "abort"}``) stops that job at once.
* server -> host: envelopes ``>IBI`` (job seq, kind, length) + data; kind 0 carries the runner's
  frames (``runner.FRAME``) byte for byte, kind 1 ends the job with ``{"status": wait status,
  "recycle": bool}``, sent only once the job's cleanup is complete.

Isolation property: a job's processes and address space contain nothing derived from any other
job, and nothing a job does changes how a later job is scheduled, limited or judged. Mechanisms:

* memory: this process is the template of every runner and never holds a job's program, input
  or output (only job seq numbers and runner wait statuses pass through it). It forks the next
  job's runner (``runner.main()``, a warm interpreter) *before* that job exists; the runner
  reads its own ``{"seq", "request"}`` message from fd 0 (skipping stale aborts), tells us only
  its seq (4 bytes, on a pipe), and its frames reach the host through ``os.splice`` (the kernel
  moves the pages; where splice is refused, one fixed buffer that is zeroed after every job). So
  nothing of an earlier job exists in a later job's address space, and the runner fork is off
  the job's critical path (it happens while the host collects the previous verdicts).
* processes: when the runner ends (or the host aborts), ``kill(-1)`` from pid 1 SIGKILLs every
  other process of the sandbox; we reap them all as child subreaper. Test children run in their
  own sessions and the runner blocks every signal (``runner.py``).
* scheduling and signals: the base seccomp filter refuses ``setpriority``/``sched_set*``/
  ``ioprio_set``/``migrate_pages``/``move_pages`` on any process but the caller, and the
  ``fcntl``/``ioctl`` owner calls that route SIGIO/SIGURG (or any signal) to another process;
  we block every signal. After every job we compare our nice value, scheduling policy and
  priority, CPU affinity and I/O priority with the ones we started with.
* files: ``/tmp`` is emptied after every test (runner) and every job (here) by
  ``runner.purge``, which never recurses (any depth, ``chmod 000`` trees), restores ``/tmp``'s
  mode and drops its extended attributes where a job could set them; the backends mount ``/tmp``
  with an inode cap (bwrap as root: a host tmpfs owned by root, ``nr_inodes``; Docker:
  ``nr_inodes``), so cleanup work is bounded. SysV IPC and POSIX message queues are denied by the
  base filter (Docker's ``/dev/mqueue`` is mounted read-only).
* cleanup before reuse: the end envelope goes out only after the sweep and the purge; the host
  starts the next job on this sandbox only after it, so cleanup time counts against no later
  job. If the purge leaves anything, or our scheduling state changed, ``recycle`` is true and
  the host throws this sandbox away (the job's verdicts stand).

Per-job cost: every runner and test child is a fork of this process, and each page a fork
writes is copied then (copy-on-write), so what can be made once is made here before the first
fork: libc's ``prctl`` and the seccomp ctypes objects, the guard program with a slot for the
runner's pid (``seccomp.warm``), the signal set; the runner and the test child call
``_signal`` directly (``signal``'s wrappers build an enum member per signal). Together with
``LD_BIND_NOW`` (bwrap.py) this cut about 14% of the page faults and CPU time per job
(trivial one-test jobs, 2 workers: 1,260 to 1,080 faults per job).
Measured cost of the isolation mechanisms: none measurable. Per job it adds one pipe, a seq read, a few syscalls (state
check, the purge) and, per test, a ``setsid`` and a signal-mask reset; the runner
fork left the job's critical path. Six interleaved rounds, ABBA order, of the previous and this
judge (``bench_judge.py`` workload, 2 workers, loaded 2-core machine): medians 308 vs 310
tests/s for 25-test jobs, 129 vs 120 for one-test jobs. If the host goes away the pre-forked runner
reads end-of-file and exits, and so do we (and the sandbox).
Limits: pid numbers and kernel-global counters (load, uptime) are shared by consecutive jobs;
``/tmp``'s timestamps are not reset; without root, bwrap's ``/tmp`` has no inode cap.
"""

import errno
import fcntl
import gc
import json
import os
import select
import signal
import struct
import sys
import types

ENVELOPE, LENGTH, SEQ = struct.Struct(">IBI"), struct.Struct(">Q"), struct.Struct(">I")
FIONREAD = 0x541B
TMP = "/tmp"


def read(n):
    data = bytearray()
    while len(data) < n:
        chunk = os.read(0, min(n - len(data), 1 << 20))
        if not chunk:
            os._exit(0)  # the host detached: stop (and the sandbox with us)
        data += chunk
    return bytes(data)


def message():
    return json.loads(read(LENGTH.unpack(read(8))[0]))


def send(seq, kind, data=b""):
    view = memoryview(ENVELOPE.pack(seq, kind, len(data)) + data)
    while view:
        view = view[os.write(1, view) :]


def load(name, code):
    mod = types.ModuleType(name)
    mod.__file__ = "/sandbox/" + name + ".py"
    exec(compile(code, mod.__file__, "exec"), mod.__dict__)
    sys.modules[name] = mod
    return mod


def sweep():
    status = {}
    while True:
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            pid, st = os.waitpid(-1, 0)
            status[pid] = st
        except ChildProcessError:
            return status


class Relay:
    """Copies the runner's frames to fd 1 as envelopes without them entering our heap."""

    def __init__(self):
        self.splice = True
        self.buf = bytearray(1 << 16)  # used only where splice is refused; zeroed per job
        self.dirty = False

    def chunk(self, fd, seq):
        """Forward what ``fd`` holds now as one envelope; False at end-of-file."""
        n = min(struct.unpack("i", fcntl.ioctl(fd, FIONREAD, b"\0\0\0\0"))[0], len(self.buf))
        if n <= 0:
            return False
        self._header(seq, n)
        while n and self.splice:
            try:
                n -= os.splice(fd, 1, n)
            except OSError as exc:
                if exc.errno not in (errno.EINVAL, errno.ENOSYS):
                    raise
                self.splice = False  # this fd 1 takes no splice: the fixed buffer from now on
        if n:
            self.buf_copy(fd, n)
        return True

    def _header(self, seq, n):
        view = memoryview(ENVELOPE.pack(seq, 0, n))
        while view:
            view = view[os.write(1, view) :]

    def buf_copy(self, fd, n):
        self.dirty = True
        view = memoryview(self.buf)
        got = 0
        while got < n:
            got += os.readv(fd, [view[got:n]])
        out = view[:n]
        while out:
            out = out[os.write(1, out) :]

    def wipe(self):
        if self.dirty:
            self.buf[:] = bytes(len(self.buf))
            self.dirty = False


def sched_state(syscall):
    """Our scheduling state; a job must not be able to change it (the base filter refuses)."""
    return (
        os.getpriority(os.PRIO_PROCESS, 0),
        os.sched_getscheduler(0),
        os.sched_getparam(0).sched_priority,
        tuple(sorted(os.sched_getaffinity(0))),
        syscall(252, 1, 0),  # ioprio_get(IOPRIO_WHO_PROCESS, self)
    )


def job_process(runner, out_w, seq_w):
    """Body of a pre-forked runner: read this job's message from the host, then run it."""
    while True:
        msg = message()  # end-of-file: the host detached, exit 0 without a seq
        if "request" in msg:
            break  # anything else is the abort of a job that has already ended
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)  # the host's pipe is not ours to read any further
    os.dup2(out_w, 1)
    os.close(null)
    os.close(out_w)
    os.write(seq_w, SEQ.pack(msg["seq"]))
    os.close(seq_w)
    runner.main(msg["request"])


def spawn(runner):
    """Fork the next job's runner now, while no job data exists in this process."""
    r, w = os.pipe()
    seq_r, seq_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.close(seq_r)
            job_process(runner, w, seq_w)
        finally:
            os._exit(0)
    os.close(w)
    os.close(seq_w)
    return pid, r, seq_r


def announced_seq(seq_r):
    head = b""
    while len(head) < SEQ.size:
        chunk = os.read(seq_r, SEQ.size - len(head))
        if not chunk:
            break
        head += chunk
    os.close(seq_r)
    if len(head) < SEQ.size:  # the host detached (or the runner died before its job)
        sweep()
        os._exit(0)
    return SEQ.unpack(head)[0]


def run(ctx, pid, r, seq_r):
    """Run one job in the pre-forked runner; returns the next job's runner, forked after this
    job's cleanup and before its end envelope (so the host's next job finds it ready)."""
    seq = announced_seq(seq_r)
    pidfd = os.pidfd_open(pid)
    poller = select.poll()
    for fd in (r, pidfd, 0):
        poller.register(fd, select.POLLIN)
    live = True
    while live:
        for fd, _ev in poller.poll():
            if fd == r:
                if not ctx.relay.chunk(r, seq):
                    poller.unregister(r)
            else:
                live = False  # the runner exited, or the host sent a message (abort)
    status = sweep().get(pid)
    while ctx.relay.chunk(r, seq):  # every writer is dead: forward the rest
        pass
    os.close(r)
    os.close(pidfd)
    ctx.relay.wipe()
    clean = ctx.runner.purge(TMP, mode=ctx.tmp_mode)
    recycle = not clean or sched_state(ctx.syscall) != ctx.sched
    following = spawn(ctx.runner)
    send(seq, 1, json.dumps({"status": status, "recycle": recycle}).encode())
    return following


class Context:
    def __init__(self, runner, syscall):
        self.runner, self.syscall = runner, syscall
        self.relay = Relay()
        self.tmp_mode = os.stat(TMP).st_mode & 0o7777
        self.sched = sched_state(syscall)


def main():
    if os.getpid() != 1:  # the sandbox's init; never so on a host
        sys.exit("server.py runs only inside an alphacode sandbox (its sweep kills every process)")
    signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())  # no signal route reaches us
    setup = message()
    os.environ.clear()
    os.environ.update(setup["env"])
    os.chdir(TMP)
    seccomp = load("seccomp", setup["seccomp"])
    runner = load("runner", setup["runner"])
    runner.SANDBOXED = True
    prctl = runner._prctl()  # also caches it for every runner forked from us
    seccomp.warm((1, os.getpid(), -os.getpid()))  # each runner's guard program, built once here
    prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: orphans come back to us, the sweep reaps them
    prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: programs can't read our memory or fds
    if setup["base_filter"]:
        seccomp.prepare(seccomp.base_filter())()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    import ctypes

    ctx = Context(runner, ctypes.CDLL(None, use_errno=True).syscall)
    del setup
    gc.collect()
    gc.freeze()  # forked children then don't dirty our objects' pages by collecting them
    job = spawn(runner)
    while True:
        job = run(ctx, *job)


if __name__ == "__main__":
    main()
