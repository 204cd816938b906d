"""The Docker backend: verdicts, isolation, robustness, and parity with bwrap.

Tests marked ``docker`` need a Docker engine (``tests/sandbox/docker_env.sh start``); they skip,
with the reason, only when no engine answers. A failing image build or container start FAILS.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tasks.core.sandbox import Job, JobResult, Judge, Limits, SandboxUnavailable, TestCase, Verdict
from tasks.core.sandbox.docker_backend import OWNER_LABEL, connect, ensure_image
from tests.sandbox.conftest import FAST
from tests.sandbox.test_adversarial import assert_no_connection, connect_probe, marker_processes

REPO = Path(__file__).resolve().parents[2]
ADD = "a, b = map(int, input().split())\nprint(a + b)\n"
CPP_ADD = "#include <iostream>\nint main(){long long a,b;std::cin>>a>>b;std::cout<<a+b<<'\\n';}\n"


@pytest.fixture(scope="module")
def client():
    try:
        return connect(timeout_s=10)
    except SandboxUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def djudge(client):
    ensure_image(client)
    with Judge(backend="docker", workers=2, limits=FAST) as j:
        yield j


def verdicts(result: JobResult) -> list[str]:
    return [r.verdict.value for r in result.results]


def run1(judge, program: str, stdin: str = "", limits: Limits | None = None):
    return judge.run(Job(program=program, tests=(TestCase(stdin, None),)), limits).results[0]


def our_containers(client) -> list:
    return client.containers.list(all=True, filters={"label": OWNER_LABEL})


# ------------------------------------------------------------------ no engine needed
def test_docker_judge_is_cheap_and_unreachable_engine_is_unavailable(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    judge = Judge(backend="docker")  # builds without touching the engine
    with pytest.raises(SandboxUnavailable, match="docker_env.sh start"):
        judge.run(Job(program="print(1)"))
    judge.close()


# ------------------------------------------------------------------ verdicts
@pytest.mark.docker
def test_accepted_and_wrong_answer(djudge):
    r = djudge.run(Job(program=ADD, tests=(TestCase("1 2\n", "3"), TestCase("5 7", "13"))))
    assert verdicts(r) == ["ACCEPTED", "WRONG_ANSWER"] and r.results[1].stdout_prefix == "12\n"


@pytest.mark.docker
def test_time_limit_cpu_and_wall(djudge):
    lim = Limits(time_s=0.3, wall_factor=2.0)
    cpu = run1(djudge, "while True:\n    pass\n", limits=lim)
    wall = run1(djudge, "import time\ntime.sleep(30)\n", limits=lim)
    assert cpu.verdict is wall.verdict is Verdict.TIME_LIMIT_EXCEEDED
    assert wall.wall_s < lim.wall_s + 0.5 and wall.cpu_s < 0.3


@pytest.mark.docker
def test_memory_limit_exceeded(djudge):
    res = run1(
        djudge,
        "blocks = []\nwhile True:\n    blocks.append(bytearray(1 << 24))\n",
        limits=Limits(time_s=2.0, memory_mb=64),
    )
    assert res.verdict is Verdict.MEMORY_LIMIT_EXCEEDED


@pytest.mark.docker
def test_runtime_error_reports_exit_code_and_stderr(djudge):
    res = run1(djudge, "raise ValueError('boom')")
    assert res.verdict is Verdict.RUNTIME_ERROR and res.exit_code == 1
    assert "ValueError: boom" in res.stderr_prefix


@pytest.mark.docker
def test_cpp_compiles_and_runs(djudge):
    r = djudge.run(Job(program=CPP_ADD, language="cpp", tests=(TestCase("1 2", "3"), TestCase("2 2", "5"))))
    assert verdicts(r) == ["ACCEPTED", "WRONG_ANSWER"]


# ------------------------------------------------------------------ isolation
@pytest.mark.docker
def test_cannot_connect_to_host_loopback_listener(djudge):
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        res = run1(djudge, connect_probe("AF_INET", f"('127.0.0.1', {srv.getsockname()[1]})"))
        assert res.verdict is Verdict.ACCEPTED and res.stdout_prefix.startswith("BLOCKED")
        assert_no_connection(srv)


@pytest.mark.docker
def test_host_environment_is_not_visible(djudge, monkeypatch):
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    monkeypatch.setenv("ALPHACODE_TEST_SECRET", secret)
    prog = (
        "import os\nprint(sorted(os.environ))\nfor p in os.listdir('/proc'):\n"
        "    if p.isdigit():\n        try:\n"
        "            print(open(f'/proc/{p}/environ', 'rb').read())\n"
        "        except OSError:\n            pass\n"
    )
    res = run1(djudge, prog)
    assert res.stdout_prefix.splitlines()[0] == "['HOME', 'LANG', 'PATH', 'PWD', 'TMPDIR']"
    assert secret not in res.stdout_prefix and "ALPHACODE" not in res.stdout_prefix


@pytest.mark.docker
def test_root_is_read_only_and_project_invisible(djudge):
    mark = f"alphacode-sbx-{uuid.uuid4().hex}"
    targets = [f"/{mark}", f"/usr/{mark}", f"/etc/{mark}", f"/dev/shm/{mark}", f"/tmp/{mark}"]
    prog = (
        f"import os\nfor p in {targets!r}:\n    try:\n        open(p, 'a').write('x')\n"
        "        print('WROTE', p)\n    except OSError:\n        print('BLOCKED', p)\n"
        f"print(os.path.exists({str(REPO / 'pyproject.toml')!r}), os.getuid() != 0)\n"
    )
    lines = run1(djudge, prog).stdout_prefix.splitlines()
    assert lines == [f"BLOCKED {t}" for t in targets[:-1]] + [f"WROTE /tmp/{mark}", "False True"]
    assert not Path(f"/tmp/{mark}").exists()


@pytest.mark.docker
def test_fork_bomb_is_bounded_and_leaves_nothing(djudge):
    mark = f"{uuid.uuid4().int % 10**6}.4343"
    prog = (
        "import os\nn = 0\nfor _ in range(500):\n    try:\n        pid = os.fork()\n"
        "    except OSError:\n        break\n    if pid == 0:\n"
        f"        os.execv('/usr/bin/sleep', ['sleep', '{mark}'])\n    n += 1\nprint(n)\n"
    )
    res = run1(djudge, prog)
    assert res.verdict is Verdict.ACCEPTED
    assert 0 < int(res.stdout_prefix) < djudge.limits.processes
    assert marker_processes(mark) == []
    assert run1(djudge, "print('alive')").stdout_prefix == "alive\n"


@pytest.mark.docker
def test_jobs_on_one_worker_do_not_see_each_other(client):
    with Judge(backend="docker", workers=1, limits=FAST) as judge:
        first = (
            "import os, subprocess\nopen('/tmp/left', 'w').write('x')\n"
            "subprocess.Popen(['/usr/bin/sleep', '30'], start_new_session=True)\n"
        )
        check = (
            "import os\nprocs = [p for p in os.listdir('/proc') if p.isdigit()]\n"
            "print(sorted(os.listdir('/tmp')), len(procs))\n"
        )
        assert judge.run(Job(program=first)).passed
        out = run1(judge, check).stdout_prefix
    assert out == "['.prog'] 3\n"  # server (pid 1) + runner + this program


# ------------------------------------------------------------------ robustness
@pytest.mark.docker
def test_stop_on_first_failure_aborts_the_rest_at_once(client):
    with Judge(backend="docker", workers=1, limits=Limits(time_s=1.0, wall_factor=2.0)) as judge:
        slow = Job(
            program="import time\nprint(1)\ntime.sleep(1.5)\n",
            stop_on_first_failure=True,
            tests=(TestCase("", "2"),) + (TestCase("", "1"),) * 5,
        )
        r = judge.run(slow)
        start = time.monotonic()
        nxt = judge.run(Job(program=ADD, tests=(TestCase("1 1", "2"),)))
    assert verdicts(r) == ["WRONG_ANSWER"] and nxt.passed and nxt.sandbox_retries == 0
    assert time.monotonic() - start < 1.0  # not queued behind the five skipped tests


@pytest.mark.docker
def test_dead_container_is_retried_on_a_fresh_one(client):
    with Judge(backend="docker", workers=1, limits=FAST) as judge:
        assert judge.run(Job(program="print(1)", tests=(TestCase("", "1"),))).passed
        (worker,) = judge._backend._idle
        worker.container.remove(force=True)
        r = judge.run(Job(program="print(1)", tests=(TestCase("", "1"),)))
    assert r.passed and r.sandbox_retries == 1


@pytest.mark.docker
def test_close_and_host_exit_leave_no_container(client):
    script = (
        "import os\nfrom tasks.core.sandbox import Judge, Job\n"
        "j = Judge(backend='docker', workers=1)\n"
        "assert j.run(Job(program='print(1)')).passed\nos._exit(0)\n"
    )
    before = {c.id for c in our_containers(client)}
    subprocess.run([sys.executable, "-c", script], cwd=REPO, check=True, timeout=60)
    deadline = time.monotonic() + 10
    while {c.id for c in our_containers(client)} - before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert {c.id for c in our_containers(client)} - before == set()
    with Judge(backend="docker", workers=1, limits=FAST) as judge:
        judge.run(Job(program="print(1)"))
        (worker,) = judge._backend._idle
    # close() asks the engine to remove it; when the container's own auto-remove (its server saw
    # end-of-file) got there first, the engine finishes that removal asynchronously
    deadline = time.monotonic() + 10
    while worker.container.id in {c.id for c in our_containers(client)} and time.monotonic() < deadline:
        time.sleep(0.2)
    assert worker.container.id not in {c.id for c in our_containers(client)}


# ------------------------------------------------------------------ parity with bwrap
PARITY = [
    Job(program=ADD, tests=(TestCase("1 2", "3"), TestCase("2 2", "5"))),
    Job(
        program="def f(x):\n    return x * 2\n",
        style="call",
        entry_point="f",
        tests=(TestCase("[2]", "4"), TestCase("[3]", "7")),
    ),
    Job(program="def f(x): return x + 1\nassert f(1) == 2\n", style="assert"),
    Job(program="import sys\nsys.exit(3)\n", tests=(TestCase("", ""),)),
    Job(program="while True:\n    pass\n", tests=(TestCase("", ""),)),
    Job(program="x = bytearray(1 << 30)\n", tests=(TestCase("", ""),)),
    Job(program="while True:\n    print('x' * 4096)\n", tests=(TestCase("", ""),)),
    Job(program="int main( {", language="cpp", tests=(TestCase("", ""), TestCase("", ""))),
    Job(program=CPP_ADD, language="cpp", tests=(TestCase("4 5", "9"),)),
]


@pytest.mark.docker
def test_same_verdicts_as_bwrap(judge, djudge):
    ours = [verdicts(r) for r in djudge.run_many(PARITY)]
    theirs = [verdicts(r) for r in judge.run_many(PARITY)]
    assert ours == theirs
    assert ours[3:7] == [
        ["RUNTIME_ERROR"],
        ["TIME_LIMIT_EXCEEDED"],
        ["MEMORY_LIMIT_EXCEEDED"],
        ["OUTPUT_LIMIT_EXCEEDED"],
    ]
