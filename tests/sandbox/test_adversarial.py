"""Hostile programs: each test asserts the verdict AND that the host is untouched.

Probe programs print ``BLOCKED ...`` / ``OPEN ...`` lines instead of crashing, so a sandbox that
lets something through shows up as a failed assertion (never as a skip).
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest

from tasks.core.sandbox import Job, Judge, Limits, TestCase, TestResult, Verdict
from tasks.core.sandbox import bwrap as bwrap_mod
from tests.sandbox.conftest import FAST

REPO = Path(__file__).resolve().parents[2]


def run1(judge, program: str, stdin: str = "", limits: Limits | None = None) -> TestResult:
    return judge.run(Job(program=program, tests=(TestCase(stdin, None),)), limits).results[0]


def marker_processes(marker: str) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if marker.encode() in Path(f"/proc/{name}/cmdline").read_bytes():
                    found.append(int(name))
            except OSError:
                continue
    return found


def connect_probe(family: str, address: str) -> str:
    return (
        f"import socket\ntry:\n    s = socket.socket(socket.{family}, socket.SOCK_STREAM)\n"
        f"    s.settimeout(1)\n    s.connect({address})\n    print('OPEN')\n"
        "except OSError as e:\n    print('BLOCKED', e)\n"
    )


def assert_no_connection(listener: socket.socket) -> None:
    listener.setblocking(False)
    with pytest.raises(BlockingIOError):
        listener.accept()


# ------------------------------------------------------------------ network
def test_cannot_connect_to_host_loopback_tcp(judge):
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        res = run1(judge, connect_probe("AF_INET", f"('127.0.0.1', {srv.getsockname()[1]})"))
        assert res.verdict is Verdict.ACCEPTED and res.stdout_prefix.startswith("BLOCKED")
        assert_no_connection(srv)


def _host_ip() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))  # no packet is sent; picks the default route
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


def test_cannot_connect_to_host_ip(judge):
    with socket.socket() as srv:
        srv.bind(("0.0.0.0", 0))
        srv.listen()
        res = run1(judge, connect_probe("AF_INET", f"('{_host_ip()}', {srv.getsockname()[1]})"))
        assert res.stdout_prefix.startswith("BLOCKED")
        assert_no_connection(srv)


def test_cannot_send_udp_to_host(judge):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as srv:
        srv.bind(("127.0.0.1", 0))
        port = srv.getsockname()[1]
        prog = (
            "import socket\ntry:\n    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            f"    s.sendto(b'leak', ('127.0.0.1', {port}))\n    print('SENT')\n"
            "except OSError as e:\n    print('BLOCKED', e)\n"
        )
        res = run1(judge, prog)
        assert res.stdout_prefix.startswith("BLOCKED")
        srv.setblocking(False)
        with pytest.raises(BlockingIOError):
            srv.recv(16)


def test_dns_does_not_resolve(judge):
    prog = (
        "import socket\ntry:\n    print('RESOLVED', socket.getaddrinfo('pypi.org', 443))\n"
        "except OSError as e:\n    print('BLOCKED', e)\n"
    )
    assert run1(judge, prog).stdout_prefix.startswith("BLOCKED")


def test_cannot_reach_host_abstract_unix_socket(judge):
    name = f"\0alphacode-sbx-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as srv:
        srv.bind(name)
        srv.listen()
        res = run1(judge, connect_probe("AF_UNIX", repr(name)))
        assert res.stdout_prefix.startswith("BLOCKED")
        assert_no_connection(srv)


# ------------------------------------------------------------------ files and environment
def read_probe(path: str) -> str:
    return (
        f"import os\np = {path!r}\ntry:\n    if os.path.isdir(p):\n"
        "        print('OPEN', os.listdir(p))\n    else:\n"
        "        print('OPEN', open(p, 'rb').read(64))\nexcept OSError as e:\n"
        "    print('BLOCKED', e)\n"
    )


def test_cannot_read_root_home(judge):
    assert run1(judge, read_probe("/root")).stdout_prefix.startswith("BLOCKED")


def test_cannot_read_etc_shadow(judge):
    assert run1(judge, read_probe("/etc/shadow")).stdout_prefix.startswith("BLOCKED")


def test_cannot_read_project_dir(judge):
    assert (REPO / "pyproject.toml").exists()
    res = run1(judge, read_probe(str(REPO / "pyproject.toml")))
    assert res.stdout_prefix.startswith("BLOCKED")


def test_host_environment_is_not_visible(judge, monkeypatch):
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    monkeypatch.setenv("ALPHACODE_TEST_SECRET", secret)
    prog = (
        "import os, sys\nname = sys.stdin.read()\nprint(sorted(os.environ))\n"
        "print(os.environ.get(name))\nfor pid in sorted(p for p in os.listdir('/proc') if p.isdigit()):\n"
        "    try:\n        print(pid, name.encode() in open(f'/proc/{pid}/environ', 'rb').read())\n"
        "    except OSError as e:\n        print(pid, 'BLOCKED')\n"
    )
    res = run1(judge, prog, stdin="ALPHACODE_TEST_SECRET")
    lines = res.stdout_prefix.splitlines()
    assert lines[0] == "['HOME', 'LANG', 'PATH', 'PWD', 'TMPDIR']" and lines[1] == "None"
    assert len(lines) > 3 and not any(line.endswith("True") for line in lines[2:]), lines
    assert secret not in res.stdout_prefix


def test_writes_outside_scratch_fail_and_host_is_untouched(judge):
    mark = f"alphacode-sbx-{uuid.uuid4().hex}"
    targets = [
        f"/{mark}",
        f"/usr/{mark}",
        f"/dev/{mark}",
        f"/dev/shm/{mark}",
        f"/sandbox/{mark}",
        "/sandbox/runner.py",
        f"/tmp/{mark}",
    ]
    prog = (
        f"for p in {targets!r}:\n    try:\n        open(p, 'a').write('x')\n"
        "        print('WROTE', p)\n    except OSError as e:\n        print('BLOCKED', p)\n"
    )
    res = run1(judge, prog)
    lines = res.stdout_prefix.splitlines()
    assert lines[:-1] == [f"BLOCKED {t}" for t in targets[:-1]]
    assert lines[-1] == f"WROTE /tmp/{mark}"  # the private scratch tmpfs
    assert not Path(f"/tmp/{mark}").exists() and not Path(f"/{mark}").exists()


def test_cannot_read_runner_memory(judge):
    prog = read_probe("/proc/2/mem").replace("read(64)", "read(1)")
    assert run1(judge, prog).stdout_prefix.startswith("BLOCKED")


# ------------------------------------------------------------------ resources
def test_memory_bomb_is_memory_limit_exceeded(judge):
    res = run1(
        judge,
        "blocks = []\nwhile True:\n    blocks.append(bytearray(1 << 24))\n",
        limits=Limits(time_s=2.0, memory_mb=64),
    )
    assert res.verdict is Verdict.MEMORY_LIMIT_EXCEEDED


def test_cpu_loop_is_time_limit_exceeded(judge):
    lim = Limits(time_s=0.3, wall_factor=3.0)
    res = run1(judge, "while True:\n    pass\n", limits=lim)
    assert res.verdict is Verdict.TIME_LIMIT_EXCEEDED and res.wall_s < lim.wall_s + 0.5


def test_sleep_is_time_limit_exceeded_by_wall_clock(judge):
    lim = Limits(time_s=0.2, wall_factor=2.0)
    res = run1(judge, "import time\ntime.sleep(60)\n", limits=lim)
    assert res.verdict is Verdict.TIME_LIMIT_EXCEEDED and res.cpu_s < 0.2
    assert res.wall_s < lim.wall_s + 0.5


def test_endless_output_is_output_limit_exceeded(judge):
    res = run1(judge, "while True:\n    print('x' * 4096)\n")
    assert res.verdict is Verdict.OUTPUT_LIMIT_EXCEEDED


def test_endless_stderr_is_output_limit_exceeded(judge):
    res = run1(judge, "import sys\nwhile True:\n    sys.stderr.write('e' * 4096)\n")
    assert res.verdict is Verdict.OUTPUT_LIMIT_EXCEEDED


def test_file_size_bomb_is_runtime_error(judge):
    res = run1(judge, "open('/tmp/big', 'wb').write(b'x' * (8 << 20))\n")
    assert res.verdict is Verdict.RUNTIME_ERROR and "File too large" in res.stderr_prefix


def test_tmpfs_fill_is_bounded_and_cleaned_between_tests(judge):
    prog = (
        "import os, sys\nif sys.stdin.read() == 'fill':\n    i = 0\n    try:\n"
        "        while True:\n            open(f'/tmp/f{i}', 'wb').write(b'x' * (1 << 20))\n"
        "            i += 1\n    except OSError as e:\n        print('FULL', i, e.errno)\n"
        "else:\n    print(sorted(os.listdir('/tmp')))\n"
    )
    res = judge.run(Job(program=prog, tests=(TestCase("fill", None), TestCase("list", None))))
    first, second = res.results
    assert first.stdout_prefix.startswith("FULL") and first.stdout_prefix.split()[2] == "28"
    assert int(first.stdout_prefix.split()[1]) <= 128  # the 128 MiB tmpfs cap
    assert second.stdout_prefix == "['.prog']\n"


def test_many_open_files_are_capped(judge):
    prog = (
        "fs = []\ntry:\n    while True:\n        fs.append(open('/dev/null'))\n"
        "except OSError as e:\n    print(len(fs), e.errno)\n"
    )
    res = run1(judge, prog)
    count, errno = map(int, res.stdout_prefix.split())
    assert errno == 24 and count < judge.limits.open_files


def test_thread_bomb_is_capped(judge):
    prog = (
        "import threading, time\nn = 0\ntry:\n    for _ in range(10000):\n"
        "        threading.Thread(target=time.sleep, args=(3,), daemon=True).start()\n"
        "        n += 1\nexcept RuntimeError:\n    pass\nprint(n)\n"
    )
    res = run1(judge, prog)
    assert res.verdict is Verdict.ACCEPTED and int(res.stdout_prefix) < judge.limits.processes


def sandbox_uid_processes() -> list[int]:
    """Live processes of the bwrap sandbox uids (the warm sandboxes' own and any leftovers)."""
    uids = range(bwrap_mod.UID_BASE, bwrap_mod.UID_BASE + bwrap_mod.UID_COUNT)
    return [pid for uid in uids for pid in bwrap_mod._live_pids_of(uid)] if os.geteuid() == 0 else []


def fork_bomb(mark: str) -> str:
    return (
        "import os\nn = 0\nfor _ in range(500):\n    try:\n        pid = os.fork()\n"
        "    except OSError:\n        break\n    if pid == 0:\n"
        f"        os.execv('/usr/bin/sleep', ['sleep', '{mark}'])\n    n += 1\nprint(n)\n"
    )


def test_fork_bomb_is_bounded_and_leaves_nothing(judge):
    assert run1(judge, "print('warm')").stdout_prefix == "warm\n"
    idle = sorted(sandbox_uid_processes())  # the warm sandboxes themselves
    mark = f"{uuid.uuid4().int % 10**6}.4242"
    res = run1(judge, fork_bomb(mark))
    assert res.verdict is Verdict.ACCEPTED and 0 < int(res.stdout_prefix) < judge.limits.processes
    assert marker_processes(mark) == []
    # the same warm sandboxes (each with a freshly pre-forked runner for its next job), nothing else
    assert len(sandbox_uid_processes()) == len(idle)
    assert run1(judge, "print('alive')").stdout_prefix == "alive\n"


def test_closing_the_judge_leaves_no_process_of_its_uids(monkeypatch):
    used: list[int] = []
    real_release = bwrap_mod.UidPool.release
    monkeypatch.setattr(
        bwrap_mod.UidPool, "release", lambda self, uid: (used.append(uid), real_release(self, uid))[1]
    )
    mark = f"{uuid.uuid4().int % 10**6}.4343"
    with Judge(backend="bwrap", workers=2, limits=FAST) as fresh:
        assert fresh.run_many([Job(program=fork_bomb(mark), tests=(TestCase("", None),))] * 2)
    assert marker_processes(mark) == []
    if os.geteuid() == 0:
        assert used and all(not bwrap_mod._uid_has_processes(uid) for uid in used)


def test_state_of_one_job_is_gone_for_the_next_on_the_same_warm_sandbox(judge):
    mark = f"{uuid.uuid4().int % 10**6}.6161"
    plant = (
        "import os, subprocess\nos.makedirs('/tmp/d/e', exist_ok=True)\n"
        "open('/tmp/d/e/f', 'w').write('x')\nopen('/tmp/.hidden', 'w').write('x')\n"
        "os.chmod('/tmp/d/e', 0o500)\nos.chmod('/tmp/d', 0o500)\n"
        f"subprocess.Popen(['/usr/bin/sleep', '{mark}'], start_new_session=True)\n"
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "print('shmget', libc.shmget(0x4242, 4096, 0o1666), ctypes.get_errno())\n"
    )
    looks = (
        "import os\nprint(sorted(os.listdir('/tmp')))\n"
        "print(sorted(open(f'/proc/{p}/cmdline', 'rb').read().split(b'\\0')[0].decode()\n"
        "             for p in os.listdir('/proc') if p.isdigit()))\n"
    )
    planted = run1(judge, plant)
    assert planted.verdict is Verdict.ACCEPTED and "shmget -1 1" in planted.stdout_prefix
    seen = run1(judge, looks).stdout_prefix.splitlines()
    assert seen[0] == "['.prog']"  # only the runner's own program dir
    assert mark not in seen[1] and "sleep" not in seen[1], seen
    assert marker_processes(mark) == []


def test_setsid_escape_is_killed(judge):
    mark = f"{uuid.uuid4().int % 10**6}.5151"
    prog = (
        "import os\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        f"        os.execv('/usr/bin/sleep', ['sleep', '{mark}'])\n    os._exit(0)\n"
        "print('parent done')\n"
    )
    res = judge.run(Job(program=prog, tests=(TestCase("", None), TestCase("", None))))
    assert res.passed
    assert marker_processes(mark) == []


def test_cannot_kill_runner_or_pid1(judge):
    prog = (
        "import os, signal\nfor pid in (os.getppid(), 1, -1, 2):\n    try:\n"
        "        os.kill(pid, signal.SIGKILL)\n        print('KILLED', pid)\n"
        "    except OSError as e:\n        print('BLOCKED', pid, e.errno)\n"
    )
    res = judge.run(Job(program=prog, tests=(TestCase("", None), TestCase("", None))))
    assert [r.verdict for r in res.results] == [Verdict.ACCEPTED, Verdict.ACCEPTED]
    assert all(line.startswith("BLOCKED") for line in res.results[0].stdout_prefix.splitlines())
    assert res.sandbox_retries == 0


def test_unshare_and_chroot_are_denied(judge):
    prog = (
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "for flag in (0x10000000, 0x20000, 0x40000000):\n"
        "    print('unshare', libc.unshare(flag), ctypes.get_errno())\n"
        "try:\n    os.chroot('/tmp')\n    print('chroot OK')\nexcept OSError as e:\n"
        "    print('chroot BLOCKED', e.errno)\n"
    )
    out = run1(judge, prog).stdout_prefix.splitlines()
    assert out == ["unshare -1 1"] * 3 + ["chroot BLOCKED 1"]


def test_proc_self_status_shows_no_caps_no_new_privs_and_seccomp(judge):
    out = run1(judge, "print(open('/proc/self/status').read())").stdout_prefix
    res = run1(
        judge,
        "import sys\nfor l in open('/proc/self/status'):\n"
        "    if l.split(':')[0] in ('CapEff', 'NoNewPrivs', 'Seccomp'):\n"
        "        print(l.strip())\n",
    )
    fields = dict(line.split(":\t") for line in res.stdout_prefix.splitlines())
    assert fields == {"CapEff": "0000000000000000", "NoNewPrivs": "1", "Seccomp": "2"}, out


def test_cpp_fork_bomb_and_memory_bomb(judge):
    prog = (
        "#include <unistd.h>\n#include <vector>\nint main(){int n=0;"
        "for(int i=0;i<1000;i++){pid_t p=fork(); if(p<0)break; if(p==0){pause();_exit(0);} n++;}"
        "std::vector<char> v((size_t)1<<31, 1); return v[n];}\n"
    )
    res = judge.run(Job(program=prog, language="cpp", tests=(TestCase("", None),))).results[0]
    assert res.verdict is Verdict.MEMORY_LIMIT_EXCEEDED
