"""The one job builder: a problem's tests as the judge's :class:`Job`, with the limits it runs under.

Filtering, clustering, evaluation (:mod:`tasks.core.execution`), every RL reward
(:class:`tasks.core.rl.rewards.ExecutionReward`) and ``alphacode humaneval`` build every job of a
problem here and nowhere else, so what RL optimises is exactly what evaluation measures (only
``alphacode judge``, a program against ad-hoc tests, and ``doctor``'s probe build raw Jobs).

Contract of :func:`build_job` ``(problem, code, test_set, policy, ...)``:

* ``test_set`` ``public`` = the problem's public tests; ``hidden`` = private + generated tests
  (``Problem.hidden_tests``); ``generated`` = the given ``generated_inputs`` with no expected
  output (behaviour probing). ``max_tests`` keeps the first ``max_tests`` of them. No tests: None.
* The program is ``code`` as is, except for ``assert``-style problems (HumanEval), where it is
  :func:`~tasks.core.problems.assemble_program` (the prompt's function header + ``code``) and each
  test's input is the problem's test harness, which the judge runs after the program (see
  ``types.Job``): the test passes only if the harness ran to its end.
* ``stop_early`` (default: every set but ``generated``) stops the job at its first failing test.
* ``Job.limits`` = :meth:`LimitPolicy.limits_for`: the rule below. A job carries its own limits,
  so the judge applies them whatever limits its caller passes.

Per-problem limit rule (:class:`LimitPolicy`; floor, factor and cap come from ``JudgeConfig``):
CPU seconds per test = ``min(time_cap_s, max(time_floor_s, factor * problem.time_limit_s))`` with
``factor = time_factor`` for Python (interpreted) and 1 for C++; memory MiB = ``min(memory_cap_mb,
problem memory limit)``; a problem without its own time (memory) limit gets the default limits'
``time_s`` (``memory_mb``). All other limits are the default limits'. With the default rule
(floor 1 s, factor 1.5, cap 10 s) a problem with a 1-second limit gets 1.5 s of CPU per test.

Limits: ``generated`` tests of ``assert`` problems are not built (their inputs are test code, which
mutating inputs cannot produce): the builder returns None for them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from tasks.core.problems.prompt import assemble_program
from tasks.core.problems.schema import Problem, TestStyle
from tasks.core.sandbox.types import Job, Limits, TestCase

TEST_SETS = ("public", "hidden", "generated")
MIB = 1 << 20


@dataclass(frozen=True)
class LimitPolicy:
    """How a problem's own time and memory limits become the judge's :class:`Limits`."""

    default: Limits = field(default_factory=Limits)
    time_floor_s: float = 1.0
    time_factor: float = 1.5
    time_cap_s: float = 10.0
    memory_cap_mb: int = 1024

    def __post_init__(self) -> None:
        if not isinstance(self.default, Limits):
            raise ValueError(f"LimitPolicy.default must be Limits, got {type(self.default).__name__}")
        for name in ("time_floor_s", "time_factor", "time_cap_s", "memory_cap_mb"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"LimitPolicy.{name} must be a positive number, got {value!r}")
        if self.time_floor_s > self.time_cap_s:
            raise ValueError(f"time_floor_s {self.time_floor_s} is above time_cap_s {self.time_cap_s}")

    @classmethod
    def from_config(cls, cfg) -> LimitPolicy:
        """The policy of a ``JudgeConfig`` (its default limits and its floor/factor/cap)."""
        return cls(
            default=Limits(time_s=cfg.time_limit_s, memory_mb=cfg.memory_mb),
            time_floor_s=cfg.time_floor_s,
            time_factor=cfg.time_factor,
            time_cap_s=cfg.time_cap_s,
            memory_cap_mb=cfg.memory_cap_mb,
        )

    def limits_for(self, problem: Problem, language: str = "python") -> Limits:
        """The limits ``problem``'s tests run under (see the module docstring for the rule)."""
        time_s, memory_mb = self.default.time_s, self.default.memory_mb
        own_time = problem.time_limit_s
        if own_time:
            factor = self.time_factor if language == "python" else 1.0
            time_s = min(self.time_cap_s, max(self.time_floor_s, factor * own_time))
        if problem.memory_limit_bytes > 0:
            memory_mb = min(self.memory_cap_mb, math.ceil(problem.memory_limit_bytes / MIB))
        return replace(self.default, time_s=time_s, memory_mb=memory_mb)


def tests_for(
    problem: Problem,
    test_set: str,
    generated_inputs: Sequence[str] = (),
    max_tests: int | None = None,
) -> tuple[TestCase, ...]:
    """The test cases of ``test_set`` (first ``max_tests``); () when the set is empty."""
    if max_tests is not None and max_tests < 1:
        raise ValueError(f"max_tests must be >= 1 or None, got {max_tests}")
    if test_set == "public":
        tests = tuple(TestCase(i, o) for i, o in problem.public_tests.pairs())
    elif test_set == "hidden":
        tests = tuple(TestCase(i, o) for i, o in problem.hidden_tests.pairs())
    elif test_set == "generated":
        assert_style = problem.test_style is TestStyle.ASSERT
        tests = () if assert_style else tuple(TestCase(i, None) for i in generated_inputs)
    else:
        raise ValueError(f"test_set must be one of {TEST_SETS}, got {test_set!r}")
    return tests if max_tests is None else tests[:max_tests]


def build_job(
    problem: Problem,
    code: str,
    test_set: str,
    policy: LimitPolicy,
    *,
    generated_inputs: Sequence[str] = (),
    max_tests: int | None = None,
    stop_early: bool | None = None,
    language: str = "python",
) -> Job | None:
    """``code`` against ``problem``'s ``test_set`` under the problem's limits; None if no tests."""
    tests = tests_for(problem, test_set, generated_inputs, max_tests)
    if not tests:
        return None
    style = TestStyle(problem.test_style)
    return Job(
        program=assemble_program(problem, code),
        tests=tests,
        language=language,
        style=style.value,
        entry_point=problem.entry_point if style is not TestStyle.STDIO else "",
        stop_on_first_failure=test_set != "generated" if stop_early is None else stop_early,
        limits=policy.limits_for(problem, language),
    )
