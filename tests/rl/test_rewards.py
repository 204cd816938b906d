"""Reward functions over lists of hand-built JobResults (no process is started)."""

from __future__ import annotations

import pytest

from tasks.core.rl.rewards import SandboxFailure, all_pass, coderl_shaped, pass_fraction
from tasks.core.sandbox.types import JobResult, Verdict
from tasks.core.sandbox.types import TestResult as TR

AC = TR(Verdict.ACCEPTED)
WA = TR(Verdict.WRONG_ANSWER)


def job(*results: TR) -> JobResult:
    return JobResult(results=tuple(results))


def test_pass_fraction_counts_accepted_tests():
    assert pass_fraction([job(AC, AC), job(AC, WA, WA, WA), job(WA)]) == [1.0, 0.25, 0.0]


def test_all_pass_is_binary():
    assert all_pass([job(AC, AC), job(AC, WA), job(WA)]) == [1.0, 0.0, 0.0]


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (TR(Verdict.COMPILE_ERROR), -1.0),
        (TR(Verdict.RUNTIME_ERROR, stderr_prefix="  File x\nSyntaxError: invalid"), -1.0),
        (TR(Verdict.RUNTIME_ERROR, stderr_prefix="ZeroDivisionError"), -0.6),
        (TR(Verdict.TIME_LIMIT_EXCEEDED), -0.6),
        (TR(Verdict.MEMORY_LIMIT_EXCEEDED), -0.6),
        (TR(Verdict.OUTPUT_LIMIT_EXCEEDED), -0.6),
        (WA, -0.3),
    ],
)
def test_coderl_shaping_table(failure: TR, expected: float):
    assert coderl_shaped([job(AC, failure)]) == [expected]


def test_coderl_all_pass_is_plus_one():
    assert coderl_shaped([job(AC, AC, AC)]) == [1.0]


def test_coderl_first_failure_decides():
    tle = TR(Verdict.TIME_LIMIT_EXCEEDED)
    assert coderl_shaped([job(WA, tle), job(tle, WA)]) == [-0.3, -0.6]


@pytest.mark.parametrize("fn", [pass_fraction, all_pass, coderl_shaped])
def test_sandbox_error_raises_by_default(fn):
    with pytest.raises(SandboxFailure, match="SANDBOX_ERROR"):
        fn([job(AC), job(AC, TR(Verdict.SANDBOX_ERROR, detail="bwrap died"))])


@pytest.mark.parametrize("fn", [pass_fraction, all_pass, coderl_shaped])
def test_sandbox_error_excluded_as_none(fn):
    rewards = fn([job(AC), job(TR(Verdict.SANDBOX_ERROR))], on_sandbox_error="exclude")
    assert rewards[1] is None and rewards[0] is not None


def test_result_without_tests_is_rejected():
    with pytest.raises(ValueError, match="no test results"):
        pass_fraction([job()])
