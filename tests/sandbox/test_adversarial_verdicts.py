"""Hostile programs against the VERDICT rules, on bwrap and Docker (issue 13).

Each test checks the verdict AND that an innocent job run next in the same warm sandbox (a
judge with one worker, so consecutive jobs share it) is judged normally. Classes:

* early exit: an assert-style test passes only when the test code ran to its end (the runner's
  nonce handshake), so leaving early in any way is a RUNTIME_ERROR, never ACCEPTED;
* harness not run: HumanEval problems built by the job builder run their ``check`` harness;
* decoding bombs: a call-style return value the host cannot decode is a WRONG_ANSWER with a
  detail, and never an exception that loses the batch.

Docker tests are marked ``docker`` and skip when no engine answers
(``tests/sandbox/docker_env.sh start``).
"""

from __future__ import annotations

import pytest

from tasks.core.jobs import LimitPolicy, build_job
from tasks.core.problems import load_humaneval
from tasks.core.sandbox import Job, TestCase, Verdict
from tests.sandbox.conftest import BACKENDS, one_worker_judge


@pytest.fixture(scope="module", params=BACKENDS)
def judge1(request):
    """One worker, so every job of a test runs in the same warm sandbox."""
    with one_worker_judge(request.param) as judge:
        yield judge


# ------------------------------------------------------------------ early exit (assert style)
INC = "def inc(x):\n    return x + 1\n"
INC_TEST = "assert inc(1) == 2\nassert inc(41) == 42\n"
WRONG_INC = "def inc(x):\n    return x\n"
EARLY_EXITS = {
    "sys.exit(0)": "import sys\n" + WRONG_INC + "sys.exit(0)\n",
    "os._exit(0)": "import os\n" + WRONG_INC + "os._exit(0)\n",
    "raise SystemExit": WRONG_INC + "raise SystemExit\n",
    "exit inside the tested function": "import sys\ndef inc(x):\n    sys.exit(0)\n",
    "os._exit inside the tested function": "import os\ndef inc(x):\n    os._exit(0)\n",
    "killed interpreter": "import os, signal\n" + WRONG_INC + "os.kill(os.getpid(), signal.SIGKILL)\n",
    "replaced stdout, then exit": "import io, sys\nsys.stdout = io.StringIO()\n" + WRONG_INC + "sys.exit()\n",
    "atexit then exit": "import atexit, os\natexit.register(lambda: os._exit(0))\n"
    + WRONG_INC
    + "raise SystemExit(0)\n",
    "patched exec and compile": "import builtins\nbuiltins.exec = lambda *a, **k: None\n"
    "builtins.compile = lambda *a, **k: None\n" + WRONG_INC,
    "closed completion fd": "import os\nfor fd in range(3, 64):\n    try:\n        os.close(fd)\n"
    "    except OSError:\n        pass\n" + WRONG_INC + "os._exit(0)\n",
    "guessed nonce on fd 3": "import os\nos.write(3, b'0' * 16)\n" + WRONG_INC + "os._exit(0)\n",
    "thread exits mid-test": "import os, threading\n"
    + WRONG_INC
    + "threading.Thread(target=os._exit, args=(0,)).start()\n"
    "import time\ntime.sleep(0.2)\n",
}


@pytest.mark.parametrize("name", sorted(EARLY_EXITS))
def test_leaving_before_the_test_code_finishes_fails(judge1, name):
    hostile = Job(program=EARLY_EXITS[name], tests=(TestCase(INC_TEST),), style="assert")
    innocent = Job(program=INC, tests=(TestCase(INC_TEST), TestCase("assert inc(0) == 1\n")), style="assert")
    res = judge1.run(hostile).results[0]
    assert res.verdict in (Verdict.RUNTIME_ERROR, Verdict.WRONG_ANSWER), (name, res)
    assert judge1.run(innocent).passed


def test_assert_test_code_failing_or_exiting_itself_fails(judge1):
    failing = Job(program=INC, tests=(TestCase("assert inc(1) == 3\n"),), style="assert")
    exiting = Job(program=INC, tests=(TestCase("import sys\nsys.exit(0)\nassert False\n"),), style="assert")
    assert judge1.run(failing).results[0].verdict is Verdict.RUNTIME_ERROR
    res = judge1.run(exiting).results[0]
    assert res.verdict is Verdict.RUNTIME_ERROR and "before the test code finished" in res.detail
    assert judge1.run(Job(program=INC, tests=(TestCase(INC_TEST),), style="assert")).passed


# ------------------------------------------------------------------ harness not run (HumanEval)
def test_humaneval_problems_run_their_harness(judge1):
    problem = next(p for p in load_humaneval() if p.name == "HumanEval/2")  # truncate_number
    canonical = problem.solutions.solution[0][len(problem.description) :]
    bogus = [
        "    return 12345\n",
        "    return None\n",
        "    import sys\n    sys.exit(0)\n",
        "    pass\nimport os\nos._exit(0)\n",
    ]
    jobs = [build_job(problem, code, "hidden", LimitPolicy()) for code in [*bogus, canonical]]
    results = judge1.run_many(jobs)
    assert [r.passed for r in results] == [False] * len(bogus) + [True]


# ------------------------------------------------------------------ decoding bombs (call style)
def returns_raw(payload: bytes) -> str:
    """A call-style program whose function writes ``payload`` as its 'result' and leaves."""
    return f"import os\ndef f():\n    os.write(3, {payload!r})\n    os._exit(0)\n"


BOMBS = {
    "invalid utf-8": returns_raw(b"\xff\xfe\x80"),
    "malformed json": returns_raw(b'{"a": [1, 2'),
    "deeply nested json": returns_raw(b"[" * 200_000 + b"]" * 200_000),
    "giant integer": returns_raw(b"7" * 5000),
    "int beyond float range": returns_raw(b"9" * 400),
    "NaN": returns_raw(b"NaN"),
    "extra bytes before the result": "import os\nos.write(3, b'[1')\ndef f():\n    return 1.5\n",
    "json bomb returned normally": "def f():\n    x = []\n    for _ in range(100000):\n        x = [x]\n    return x\n",
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_undecodable_return_values_are_verdicts_not_host_errors(judge1, name):
    bomb = Job(program=BOMBS[name], style="call", entry_point="f", tests=(TestCase("[]", "1.5"),))
    innocent = Job(
        program="def f():\n    return 1.5\n", style="call", entry_point="f", tests=(TestCase("[]", "1.5"),)
    )
    results = judge1.run_many([bomb, innocent, bomb, innocent])  # one batch: nothing is lost
    verdicts = [r.results[0].verdict for r in results]
    assert verdicts[0] in (Verdict.WRONG_ANSWER, Verdict.RUNTIME_ERROR), (name, results[0])
    assert verdicts == [verdicts[0], Verdict.ACCEPTED, verdicts[0], Verdict.ACCEPTED]
    if verdicts[0] is Verdict.WRONG_ANSWER:
        assert results[0].results[0].detail


def test_undecodable_results_name_the_reason(judge1):
    res = judge1.run(
        Job(program=BOMBS["giant integer"], style="call", entry_point="f", tests=(TestCase("[]", "1"),))
    )
    assert res.results[0].verdict is Verdict.WRONG_ANSWER
    assert "not decodable JSON" in res.results[0].detail and "ValueError" in res.results[0].detail


def test_malformed_runner_frames_are_sandbox_errors_not_other_exceptions():
    """Host side: a frame header or end envelope that does not decode is a harness failure
    (SandboxError, retried), never a JSON/Unicode/Recursion error escaping the judge."""
    from tasks.core.sandbox import SandboxError
    from tasks.core.sandbox import runner as runner_mod
    from tasks.core.sandbox.envelopes import ENVELOPE, Envelopes

    for header in (b"\xff\xfe", b"{not json", b"[" * 100_000, b"[1, 2]"):
        envelopes = Envelopes()
        envelopes.start(7)
        frame = runner_mod.FRAME.pack(len(header), 0) + header
        envelopes.feed(ENVELOPE.pack(7, 0, len(frame)) + frame)
        with pytest.raises(SandboxError, match="frame header"):
            list(envelopes.next_frames())
    envelopes = Envelopes()
    envelopes.start(3)
    with pytest.raises(SandboxError, match="end envelope"):
        envelopes.feed(ENVELOPE.pack(3, 1, 4) + b"\x80abc")
