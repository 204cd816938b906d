"""Functional behaviour of the judge: test styles, languages, verdicts, bad inputs, retries."""

from __future__ import annotations

import hashlib
import threading

import pytest

from tasks.core.sandbox import Job, JobResult, Judge, Limits, SandboxError, TestCase, Verdict
from tests.sandbox.conftest import FAST

ADD = "a, b = map(int, input().split())\nprint(a + b)\n"
CPP_ADD = "#include <iostream>\nint main(){long long a,b;std::cin>>a>>b;std::cout<<a+b<<'\\n';}\n"


def verdicts(result: JobResult) -> list[str]:
    return [r.verdict.value for r in result.results]


def test_stdio_accepted(judge):
    r = judge.run(Job(program=ADD, tests=(TestCase("1 2\n", "3"), TestCase("5 7", "12\n"))))
    assert verdicts(r) == ["ACCEPTED", "ACCEPTED"] and r.passed


def test_stdio_wrong_answer(judge):
    r = judge.run(Job(program=ADD, tests=(TestCase("1 2\n", "4"),)))
    assert verdicts(r) == ["WRONG_ANSWER"] and r.results[0].stdout_prefix == "3\n"


def test_stdio_float_tolerance(judge):
    r = judge.run(Job(program="print(1/3)", tests=(TestCase("", "0.333333"),)))
    assert verdicts(r) == ["ACCEPTED"]


def test_stdio_whitespace_rules(judge):
    r = judge.run(Job(program="print(' 1   2 ');print();print('3  ')", tests=(TestCase("", "1 2\n3"),)))
    assert verdicts(r) == ["ACCEPTED"]


def test_expected_none_accepts_clean_exit_and_hashes_stdout(judge):
    r = judge.run(Job(program="print('hi')", tests=(TestCase("", None),)))
    assert verdicts(r) == ["ACCEPTED"]
    assert r.results[0].stdout_sha256 == hashlib.sha256(b"hi\n").hexdigest()


def test_runtime_error_reports_exit_code_and_stderr(judge):
    r = judge.run(Job(program="raise ValueError('boom')", tests=(TestCase("", "x"),)))
    res = r.results[0]
    assert res.verdict is Verdict.RUNTIME_ERROR and res.exit_code == 1
    assert "ValueError: boom" in res.stderr_prefix and "runner.py" not in res.stderr_prefix


def test_sys_exit_nonzero_is_runtime_error(judge):
    r = judge.run(Job(program="import sys; print(3); sys.exit(4)", tests=(TestCase("", "3"),)))
    assert verdicts(r) == ["RUNTIME_ERROR"] and r.results[0].exit_code == 4


def test_call_style_accepted_and_wrong(judge):
    job = Job(
        program="def add(a, b):\n    return [a + b, a / b]\n",
        style="call",
        entry_point="add",
        tests=(TestCase("[1, 3]", "[4, 0.3333333]"), TestCase("[2, 2]", "[5, 1.0]")),
    )
    assert verdicts(judge.run(job)) == ["ACCEPTED", "WRONG_ANSWER"]


def test_call_style_ignores_prints(judge):
    job = Job(
        program="def f(x):\n    print('debug')\n    return x * 2\n",
        style="call",
        entry_point="f",
        tests=(TestCase("[21]", "42"),),
    )
    r = judge.run(job)
    assert verdicts(r) == ["ACCEPTED"] and r.results[0].stdout_prefix == "42"


def test_assert_style_pass_and_fail(judge):
    ok = Job(program="def f(x): return x + 1\nassert f(1) == 2\n", style="assert")
    bad = Job(program="def f(x): return x\nassert f(1) == 2\n", style="assert")
    assert [verdicts(r) for r in judge.run_many([ok, bad])] == [["ACCEPTED"], ["RUNTIME_ERROR"]]


def test_assert_style_runs_each_test_input_as_test_code_in_the_program_namespace(judge):
    program = "import sys\nSEEN = sys.stdin.read()\ndef f(x):\n    return x + 1\n"
    tests = (
        TestCase("assert f(1) == 2\nassert SEEN == ''\n"),  # the test code is never stdin
        TestCase("assert f(1) == 3\n"),
        TestCase("print('done')\n", "ignored"),  # expected is unused for assert style
    )
    r = judge.run(Job(program=program, tests=tests, style="assert"))
    assert verdicts(r) == ["ACCEPTED", "RUNTIME_ERROR", "ACCEPTED"]
    assert "AssertionError" in r.results[1].stderr_prefix and r.results[2].stdout_prefix == "done\n"


def test_assert_style_needs_python():
    with pytest.raises(ValueError, match="assert"):
        Job(program="int main(){}", language="cpp", style="assert")


def test_cpp_accepted_and_wrong_answer(judge):
    r = judge.run(Job(program=CPP_ADD, language="cpp", tests=(TestCase("1 2", "3"), TestCase("2 2", "5"))))
    assert verdicts(r) == ["ACCEPTED", "WRONG_ANSWER"]


def test_cpp_compile_error_for_every_test(judge):
    r = judge.run(
        Job(program="int main( { return 0; }", language="cpp", tests=(TestCase("", "1"), TestCase("", "2")))
    )
    assert verdicts(r) == ["COMPILE_ERROR", "COMPILE_ERROR"]
    assert "error" in r.results[0].stderr_prefix


def test_stop_on_first_failure_stops(judge):
    tests = (TestCase("1 1", "2"), TestCase("1 1", "3"), TestCase("1 1", "2"))
    r = judge.run(Job(program=ADD, tests=tests, stop_on_first_failure=True))
    assert verdicts(r) == ["ACCEPTED", "WRONG_ANSWER"]


def test_run_many_keeps_order(judge):
    jobs = [Job(program=f"print({i})", tests=(TestCase("", str(i)),)) for i in range(6)]
    results = judge.run_many(jobs)
    assert [r.results[0].stdout_prefix for r in results] == [f"{i}\n" for i in range(6)]


def test_run_is_thread_safe(judge):
    out: dict[int, bool] = {}

    def work(i: int) -> None:
        out[i] = judge.run(Job(program=ADD, tests=(TestCase(f"{i} 1", str(i + 1)),))).passed

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == {i: True for i in range(6)}


def test_empty_program_is_accepted_only_without_expected(judge):
    r = judge.run(Job(program="", tests=(TestCase("", None), TestCase("", "1"))))
    assert verdicts(r) == ["ACCEPTED", "WRONG_ANSWER"]


def test_binary_garbage_program_is_runtime_error(judge):
    garbage = bytes(range(256)).decode("latin-1") * 4
    r = judge.run(Job(program=garbage, tests=(TestCase("", "1"),)))
    assert verdicts(r) == ["RUNTIME_ERROR"]


def test_garbage_cpp_is_compile_error(judge):
    garbage = bytes(range(1, 256)).decode("latin-1")
    r = judge.run(Job(program=garbage, language="cpp", tests=(TestCase("", "1"),)))
    assert verdicts(r) == ["COMPILE_ERROR"]


def test_fifty_megabyte_program_does_not_break_the_batch(judge):
    huge = "x = 1\n" + "#" * (50 << 20) + "\nprint(x)\n"
    results = judge.run_many(
        [Job(program=huge, tests=(TestCase("", "1"),)), Job(program="print(2)", tests=(TestCase("", "2"),))]
    )
    assert [verdicts(r) for r in results] == [["ACCEPTED"], ["ACCEPTED"]]


def test_non_utf8_output_is_hashed_raw_and_prefix_replaced(judge):
    prog = "import sys\nsys.stdout.buffer.write(b'\\xff\\xfeok')\n"
    res = judge.run(Job(program=prog, tests=(TestCase("", None),))).results[0]
    assert res.stdout_sha256 == hashlib.sha256(b"\xff\xfeok").hexdigest()
    assert res.stdout_prefix == "\ufffd\ufffdok"


def test_unknown_language_is_rejected_when_the_job_is_built():
    with pytest.raises(ValueError, match="unknown language 'rust'; allowed: python, cpp"):
        Job(program="fn main(){}", language="rust")


def test_call_style_needs_json_arguments():
    with pytest.raises(ValueError, match="JSON"):
        Job(program="def f(x): return x", style="call", entry_point="f", tests=(TestCase("not json", "1"),))


class _FlakyBackend:
    """Wraps the real backend; fails the first ``failures`` executions like a broken harness."""

    def __init__(self, real, failures: int) -> None:
        self.real, self.failures, self.calls = real, failures, 0

    def probe(self) -> None:
        self.real.probe()

    def execute(self, request, timeout_s, on_frame):
        self.calls += 1
        if self.calls <= self.failures:
            raise SandboxError("injected harness failure")
        return self.real.execute(request, timeout_s, on_frame)


def test_sandbox_error_is_retried_and_counted(needs_sandbox):
    j = Judge(workers=1, limits=FAST, max_retries=2)
    j._backend = _FlakyBackend(j._backend, failures=2)
    r = j.run(Job(program=ADD, tests=(TestCase("1 2", "3"),)))
    assert verdicts(r) == ["ACCEPTED"] and r.sandbox_retries == 2


def test_persistent_sandbox_error_is_reported_not_scored(needs_sandbox):
    j = Judge(workers=1, limits=FAST, max_retries=1)
    j._backend = _FlakyBackend(j._backend, failures=10)
    r = j.run(Job(program=ADD, tests=(TestCase("1 2", "3"), TestCase("1 1", "2"))))
    assert verdicts(r) == ["SANDBOX_ERROR", "SANDBOX_ERROR"] and r.sandbox_retries == 1
    assert "injected harness failure" in r.results[0].detail


def test_per_call_limits_override(judge):
    r = judge.run(
        Job(program="import time; time.sleep(0.6)", tests=(TestCase("", None),)),
        limits=Limits(time_s=0.2, wall_factor=2.0),
    )
    assert verdicts(r) == ["TIME_LIMIT_EXCEEDED"]


def test_job_limits_win_over_call_and_judge_limits(judge):
    slow = "import time\nwhile time.process_time() < 1.3:\n    pass\n"
    roomy, tight = Limits(time_s=3.0), Limits(time_s=1.0)
    own = judge.run(Job(program=slow, limits=roomy), limits=tight)  # FAST (judge) and tight lose
    assert verdicts(own) == ["ACCEPTED"]
    assert verdicts(judge.run(Job(program=slow), limits=roomy)) == ["ACCEPTED"]
    assert verdicts(judge.run(Job(program=slow))) == ["TIME_LIMIT_EXCEEDED"]  # FAST: 1 s
    with pytest.raises(ValueError, match="Job.limits"):
        Job(program="", limits={"time_s": 1})


def test_missing_bwrap_raises_with_install_hint(monkeypatch):
    from tasks.core.sandbox import SandboxUnavailable
    from tasks.core.sandbox import bwrap as bwrap_mod

    monkeypatch.setattr(bwrap_mod.shutil, "which", lambda name: None)
    with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap"):
        Judge()
