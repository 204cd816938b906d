"""Isolation between consecutive jobs of one warm sandbox, on bwrap and Docker (issue 13).

Property (``server.py``): a job's processes and address space contain nothing derived from any
other job, and nothing a job does changes how a later job is scheduled, limited or judged. One
test per attack class; each checks the attack's verdict AND that an innocent job run next in
the same warm sandbox (a judge with one worker) is judged normally, in normal time, with the
scheduling state, ``/tmp`` and processes the sandbox started with:

* memory: a later job scans its own address space for an earlier job's program, input and
  output (and finds its own input, the positive control);
* scheduling: nice/scheduling class/affinity/I/O priority of the job server and the runner,
  autogroup, ``PRIO_PGRP``/``PRIO_USER``;
* signals: ``F_SETOWN``/``F_SETSIG``/``F_SETOWN_EX`` + ``O_ASYNC``, ``FIOSETOWN``/``SIOCSPGRP``,
  joining the runner's process group then ``kill(0)``, pidfds, ``rt_sigqueueinfo``, ``tgkill``;
* CPU accounting: CPU burnt by detached (double-forked, ``setsid``) processes is charged;
* leftovers: ``/tmp``'s own mode and extended attributes, inode floods, ``chmod 000`` trees
  deeper than any path or recursion limit, FIFOs, ``/dev/mqueue``; cleanup time is not charged
  to the next job;
* cleanup before reuse: a job aborted mid-test (``stop_on_first_failure``) with a detached
  process and files left is swept before the next job starts.

Docker tests are marked ``docker`` and skip when no engine answers
(``tests/sandbox/docker_env.sh start``).
"""

from __future__ import annotations

import ast
import os
import uuid

import pytest

from tasks.core.sandbox import Job, Judge, Limits, TestCase, Verdict
from tasks.core.sandbox.bwrap import TMP_INODES
from tests.sandbox.conftest import BACKENDS, FAST, _skip_if_allowed, one_worker_judge

INNOCENT = r"""
import os
def sched(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[16]), int(f[38])  # nice (field 19), policy (field 41)
def cpus(pid):
    return [l.split()[1] for l in open(f"/proc/{pid}/status") if l.startswith("Cpus_allowed_list")]
print(sum(i * i for i in range(200000)))
print(sched("self"), sched(1), sched(os.getppid()), os.sched_getscheduler(0))
print(cpus("self"), cpus(1), cpus(os.getppid()))
print(sorted(os.listdir("/tmp")), oct(os.stat("/tmp").st_mode), os.listxattr("/tmp"))
print(sorted(os.listdir("/dev/mqueue")) if os.path.isdir("/dev/mqueue") else None)
print(sorted(p for p in os.listdir("/proc") if p.isdigit() and p != str(os.getpid())))
"""
EXPECTED_SUM = str(sum(i * i for i in range(200000)))
NORMAL_WALL_S = 1.5  # the innocent job needs ~0.05 s of CPU; generous for a loaded machine


@pytest.fixture(scope="module", params=BACKENDS)
def judge1(request):
    """One worker, so every job of a test runs in the same warm sandbox."""
    with one_worker_judge(request.param) as judge:
        judge.baseline = innocent_state(judge)
        yield judge


def run1(judge, program: str, stdin: str = "", limits: Limits | None = None):
    res = judge.run(Job(program=program, tests=(TestCase(stdin, None),)), limits)
    assert res.sandbox_retries == 0, res.results[0].detail
    return res.results[0]


def innocent_state(judge) -> list[str]:
    """Run the innocent job; check its verdict and timing; return what it saw of the sandbox."""
    res = run1(judge, INNOCENT)
    assert res.verdict is Verdict.ACCEPTED, (res.detail, res.stderr_prefix)
    assert res.wall_s < NORMAL_WALL_S, res.wall_s
    lines = res.stdout_prefix.splitlines()
    assert lines[0] == EXPECTED_SUM
    return lines[1:]


def assert_next_job_unaffected(judge) -> None:
    seen = innocent_state(judge)
    base = judge.baseline
    assert seen[:4] == base[:4], (seen, base)  # scheduling, affinity, /tmp, /dev/mqueue
    assert seen[0].startswith("(0, 0) (0, 0) (0, 0) 0"), seen  # nice 0, SCHED_OTHER everywhere
    assert seen[2].startswith("['.prog']"), seen
    assert len(ast.literal_eval(seen[4])) == len(ast.literal_eval(base[4])), (
        seen,
        base,
    )  # server + runner, nothing else


# ------------------------------------------------------------------ memory
SCAN = r"""
import gc, re, sys
pat = re.compile(rb"SECRET-(?:SRC|IN|OUT)-[0-9a-f]{32}")
found = set()
mem = open("/proc/self/mem", "rb", 0)
for line in open("/proc/self/maps"):
    parts = line.split()
    if "r" not in parts[1]:
        continue
    lo, hi = (int(x, 16) for x in parts[0].split("-"))
    try:
        mem.seek(lo)
        found.update(pat.findall(mem.read(hi - lo)))
    except (OSError, ValueError, OverflowError):
        pass
for obj in gc.get_objects():
    found.update(pat.findall(repr(obj).encode("utf-8", "replace")[:100000]))
for mod in list(sys.modules.values()):
    for value in list(vars(mod).values()):
        found.update(pat.findall(repr(value).encode("utf-8", "replace")[:100000]))
print(sorted(x.decode() for x in found))
"""


@pytest.mark.parametrize("tests", [1, 3])
def test_a_later_job_finds_nothing_of_an_earlier_one_in_its_memory(judge1, tests):
    src, inp, own = (f"SECRET-{k}-{uuid.uuid4().hex}" for k in ("SRC", "IN", "IN"))
    program = f"S = {src!r}\nprint(input().replace('-IN-', '-OUT-'))\n"
    earlier = judge1.run(Job(program=program, tests=tuple(TestCase(inp, None) for _ in range(tests))))
    out = inp.replace("-IN-", "-OUT-")
    assert [r.stdout_prefix for r in earlier.results] == [out + "\n"] * tests
    later = run1(judge1, SCAN, stdin=own, limits=Limits(time_s=5.0, memory_mb=512, wall_factor=3.0))
    assert later.verdict is Verdict.ACCEPTED, (later.detail, later.stderr_prefix)
    assert ast.literal_eval(later.stdout_prefix) == [own]  # its own input (the scan works), nothing earlier
    assert_next_job_unaffected(judge1)


# ------------------------------------------------------------------ scheduling state
SCHEDULE = r"""
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
targets = {"server": 1, "runner": os.getppid()}
def probe(name, fn):
    try:
        fn()
        print("OPEN", name)
    except OSError as e:
        print("BLOCKED", name, e.errno)
def sc(nr, *args):
    def call():
        if libc.syscall(nr, *args) != 0:
            raise OSError(ctypes.get_errno(), "")
    return call
for who, pid in targets.items():
    probe(f"nice {who}", lambda: os.setpriority(os.PRIO_PROCESS, pid, 19))
    probe(f"idle {who}", lambda: os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0)))
    probe(f"batch {who}", lambda: os.sched_setscheduler(pid, os.SCHED_BATCH, os.sched_param(0)))
    probe(f"affinity {who}", lambda: os.sched_setaffinity(pid, {0}))
    probe(f"ioprio {who}", sc(251, 1, pid, (3 << 13)))
    attr = (ctypes.c_uint32 * 14)(56, 5)  # struct sched_attr: size, SCHED_IDLE
    probe(f"sched_setattr {who}", sc(314, pid, attr, 0))
    probe(f"autogroup {who}", lambda: open(f"/proc/{pid}/autogroup", "w").write("19"))
    probe(f"oom {who}", lambda: open(f"/proc/{pid}/oom_score_adj", "w").write("1000"))
probe("nice pgrp", lambda: os.setpriority(os.PRIO_PGRP, 0, 19))
probe("nice user", lambda: os.setpriority(os.PRIO_USER, 0, 19))
probe("ioprio user", sc(251, 3, 0, (3 << 13)))
os.nice(5)
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
open("/proc/self/autogroup", "w").write("19")  # our own session's autogroup only
print("SELF", os.getpriority(os.PRIO_PROCESS, 0), os.sched_getscheduler(0))
"""


def test_a_job_cannot_change_how_later_jobs_are_scheduled(judge1):
    res = run1(judge1, SCHEDULE)
    assert res.verdict is Verdict.ACCEPTED, (res.detail, res.stderr_prefix)
    lines = res.stdout_prefix.splitlines()
    assert lines[-1] == f"SELF 5 {os.SCHED_IDLE}"  # a job may still lower its own priority
    assert len(lines) == 20 and all(line.startswith("BLOCKED") for line in lines[:-1]), lines
    assert_next_job_unaffected(judge1)


# ------------------------------------------------------------------ signals
SIGNALS = r"""
import ctypes, fcntl, os, signal, socket, struct
libc = ctypes.CDLL(None, use_errno=True)
ppid = os.getppid()
def probe(name, fn):
    try:
        fn()
        print("OPEN", name)
    except OSError as e:
        print("BLOCKED", name, e.errno)
def async_owner(fd, cmd, arg):
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_ASYNC)
    fcntl.fcntl(fd, cmd, arg)
r, w = os.pipe()
a, b = socket.socketpair()
for fd in (1, r, w, a.fileno()):
    probe(f"F_SETSIG {fd}", lambda: async_owner(fd, 10, signal.SIGKILL))
    for pid in (ppid, -ppid, 1):
        probe(f"F_SETOWN {fd} {pid}", lambda: async_owner(fd, fcntl.F_SETOWN, pid))
        probe(f"F_SETOWN_EX {fd} {pid}", lambda: async_owner(fd, 15, struct.pack("ii", 0, pid)))
for req in (0x8901, 0x8902):
    probe(f"ioctl {req:x}", lambda: fcntl.ioctl(a.fileno(), req, struct.pack("i", ppid)))
os.write(w, b"x" * 100)
os.read(r, 100)
a.send(b"x")
b.recv(1)
b.send(b"y")  # SIGIO would go to the owner of a's file, had any owner call succeeded
a.recv(1)
def join_and_kill():
    os.setpgid(0, os.getpgid(ppid))
    os.kill(0, signal.SIGKILL)
probe("join runner group", join_and_kill)
probe("pidfd", lambda: signal.pidfd_send_signal(os.pidfd_open(ppid), signal.SIGKILL))
def raw(nr, *args):
    def call():
        if libc.syscall(nr, *args) != 0:
            raise OSError(ctypes.get_errno(), "")
    return call
for pid in (ppid, 1):
    probe(f"rt_sigqueueinfo {pid}", raw(129, pid, signal.SIGKILL, ctypes.create_string_buffer(128)))
    probe(f"tgkill {pid}", raw(234, pid, pid, signal.SIGKILL))
    probe(f"tkill {pid}", raw(200, pid, signal.SIGKILL))
    probe(f"kill {pid}", lambda: os.kill(pid, signal.SIGKILL))
print("alive")
"""


def test_no_signal_route_reaches_the_runner_or_the_server(judge1):
    res = judge1.run(Job(program=SIGNALS, tests=(TestCase("", None),) * 2))
    assert res.sandbox_retries == 0, res.results[0].detail
    assert [r.verdict for r in res.results] == [Verdict.ACCEPTED] * 2, res.results[0].detail
    lines = res.results[1].stdout_prefix.splitlines()
    assert lines[-1] == "alive" and all(line.startswith("BLOCKED") for line in lines[:-1]), lines
    assert len(lines) > 30
    assert_next_job_unaffected(judge1)


# ------------------------------------------------------------------ CPU accounting
DETACHED_BURNERS = r"""
import os, time
r, w = os.pipe()
for _ in range(2):
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:  # double fork: re-parented, never waited for by us
            start = time.process_time()
            while time.process_time() - start < 0.7:
                pass
            os.write(w, b"x")
            os._exit(0)
        os._exit(0)
os.wait()
os.wait()
got = b""
while len(got) < 2:
    got += os.read(r, 2)
print("done")
"""


def test_cpu_burnt_by_detached_processes_is_charged_to_the_test(judge1):
    lim = Limits(time_s=1.0, memory_mb=128, wall_factor=6.0)
    res = run1(judge1, DETACHED_BURNERS, limits=lim)
    assert res.cpu_s >= 1.3, res  # both burners, though neither was waited for by the program
    assert res.verdict is Verdict.TIME_LIMIT_EXCEEDED and "CPU" in res.detail, res
    assert_next_job_unaffected(judge1)


# ------------------------------------------------------------------ leftovers
LEFTOVERS = r"""
import os
def probe(name, fn):
    try:
        fn()
        print("OPEN", name)
    except OSError as e:
        print("BLOCKED", name, e.errno)
mode = os.stat("/tmp").st_mode
probe("chmod /tmp", lambda: os.chmod("/tmp", 0o500))
probe("xattr /tmp", lambda: os.setxattr("/tmp", "user.leak", b"SECRET"))
probe("mqueue", lambda: open("/dev/mqueue/leak", "w").write("SECRET"))
try:
    os.chmod("/tmp", mode)  # where we could change it (bwrap without root): our later tests
except OSError:
    pass
os.chdir("/tmp")
for i in range(3000):  # deeper than PATH_MAX and Python's recursion limit
    os.mkdir("d")
    os.chdir("d")
    open("f", "w").close()
for i in range(3000):
    os.chdir("..")
    os.chmod("d", 0o000 if i % 2 else 0o1000)
os.mkfifo("/tmp/fifo")
os.symlink("/tmp/loop", "/tmp/loop")
n = 0
try:
    while n < 200000:
        open(f"/tmp/f{n}", "w").close()
        n += 1
except OSError as e:
    print("FULL", n, e.errno)
"""


def test_tmp_leftovers_and_their_cleanup_do_not_reach_the_next_job(judge1):
    lim = Limits(time_s=5.0, memory_mb=256, wall_factor=3.0)
    res = judge1.run(Job(program=LEFTOVERS, tests=(TestCase("", None),) * 2), lim)
    assert res.sandbox_retries == 0, res.results[0].detail
    first, second = res.results
    assert first.verdict is Verdict.ACCEPTED, (first.detail, first.stderr_prefix)
    lines = first.stdout_prefix.splitlines()
    if "docker" in type(judge1._backend).__name__.lower() or os.geteuid() == 0:
        # /tmp is a root-owned sticky tmpfs with an inode cap (bwrap as root, Docker)
        assert [line.split()[:2] for line in lines[:3]] == [["BLOCKED", "chmod"], ["BLOCKED", "xattr"]] + [
            ["BLOCKED", "mqueue"]
        ], lines
        full, count, _errno = lines[-1].split()
        assert full == "FULL" and int(count) < TMP_INODES, lines  # the inode cap
    assert second.verdict is Verdict.ACCEPTED, second.detail  # the runner cleaned up between tests
    assert second.stdout_prefix.splitlines()[:3] == lines[:3]
    assert_next_job_unaffected(judge1)


# ------------------------------------------------------------------ cleanup before reuse
def test_an_aborted_job_is_swept_before_the_next_one_starts(judge1):
    """stop_on_first_failure aborts the job while its second test still runs (with a detached
    process and files left behind); the next job starts only after the sweep and the purge."""
    program = (
        "import os, sys, time\nif sys.stdin.read() == 'fail':\n    sys.exit(3)\n"
        "open('/tmp/left', 'w').write('x')\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\n"
        "time.sleep(60)\n"
    )
    tests = (TestCase("fail", None), TestCase("ok", None), TestCase("ok", None))
    res = judge1.run(Job(program=program, tests=tests, stop_on_first_failure=True))
    assert res.sandbox_retries == 0 and [r.verdict for r in res.results] == [Verdict.RUNTIME_ERROR]
    assert_next_job_unaffected(judge1)


def test_a_sandbox_whose_server_asks_for_recycling_is_replaced():
    """The server sets ``recycle`` when its purge left something or its scheduling state changed
    (which the filter prevents, so this simulates the envelope): that sandbox takes no next job."""
    _skip_if_allowed()
    with Judge(backend="bwrap", workers=1, limits=FAST) as judge:
        assert run1(judge, "print(1)").stdout_prefix == "1\n"
        (box,) = judge._backend._idle
        assert box.settle() and box.envelopes.ended.get("recycle") is False
        box.envelopes.ended = dict(box.envelopes.ended, recycle=True)
        assert run1(judge, "print(2)").stdout_prefix == "2\n"
        assert judge._backend._idle[0] is not box and box.proc.poll() is not None
