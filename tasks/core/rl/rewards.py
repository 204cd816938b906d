"""Execution rewards for RL fine-tuning: pure scoring functions plus one TRL-style callable.

Contract
- ``pass_fraction``, ``all_pass`` and ``coderl_shaped`` map a list of :class:`JobResult` (one per
  completion) to a list of rewards, one per result, in order. They never start a process.
- ``coderl_shaped`` follows CodeRL (Le et al. 2022): the first non-passing test, in test order,
  decides the reward: compile error -1.0, runtime error (including time, memory and output limits)
  -0.6, wrong answer -0.3; all tests pass +1.0. A Python ``SyntaxError`` is reported by the judge as
  a RUNTIME_ERROR whose ``stderr_prefix`` contains ``"SyntaxError"``; it is scored as a compile
  error (-1.0). Because only the first failure matters, the shaping is the same whether the judge
  stopped on the first failure or ran every test.
- SANDBOX_ERROR (the judge itself failed, not the program) is never scored. With
  ``on_sandbox_error="raise"`` (default) a :class:`SandboxFailure` is raised; with ``"exclude"`` the
  reward of that completion is ``None``, which TRL's GRPOTrainer turns into NaN and then into a zero
  advantage (the completion moves nothing) and which our PPO drops from its batch.
- :class:`ExecutionReward` has TRL's reward signature ``fn(prompts, completions, **kwargs)``; the
  ``problem_id`` dataset column selects the problem. It extracts each program with the given
  ``extract_program``, runs them on the problem's HIDDEN tests (private + generated, optionally
  capped to the first ``max_tests``) - never the public examples - in ONE batched
  ``judge.run_many(jobs)`` call, and records the batch's pass rate in ``last_pass_rate``. The
  jobs come from the one job builder, :func:`tasks.core.jobs.build_job` (evaluation's too), so
  each runs under its problem's own limits: ``policy`` (a :class:`LimitPolicy`, e.g.
  ``LimitPolicy.from_config(judge_config)``), or if None the default rule around ``limits``
  (None: the judge's own limits) as the limits of problems without their own.

Limits
- A problem without hidden tests is rejected when the reward is built (it cannot be scored).
- ``pass_fraction`` needs every test run, so ``ExecutionReward`` only asks the judge to stop on
  the first failure for ``all_pass`` and ``coderl``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from tasks.core.jobs import LimitPolicy, build_job
from tasks.core.problems.schema import Problem
from tasks.core.sandbox.types import Job, JobResult, Limits, TestResult, Verdict

RewardName = Literal["pass_fraction", "all_pass", "coderl"]
OnSandboxError = Literal["raise", "exclude"]

COMPILE_ERROR_REWARD = -1.0
RUNTIME_ERROR_REWARD = -0.6
WRONG_ANSWER_REWARD = -0.3
ALL_PASS_REWARD = 1.0

_RUNTIME_LIKE = frozenset(
    {
        Verdict.RUNTIME_ERROR,
        Verdict.TIME_LIMIT_EXCEEDED,
        Verdict.MEMORY_LIMIT_EXCEEDED,
        Verdict.OUTPUT_LIMIT_EXCEEDED,
    }
)


class SandboxFailure(RuntimeError):
    """The judge failed on a job (SANDBOX_ERROR): the program's quality is unknown."""


def _has_sandbox_error(result: JobResult) -> bool:
    return any(r.verdict is Verdict.SANDBOX_ERROR for r in result.results)


def _check(result: JobResult, index: int, on_sandbox_error: OnSandboxError) -> bool:
    """True when ``result`` may be scored; raises or returns False (excluded) otherwise."""
    if on_sandbox_error not in ("raise", "exclude"):
        raise ValueError(f"on_sandbox_error must be 'raise' or 'exclude', got {on_sandbox_error!r}")
    if not result.results:
        raise ValueError(
            f"result {index} has no test results; a reward needs at least one test "
            "(give every problem hidden tests)"
        )
    if not _has_sandbox_error(result):
        return True
    if on_sandbox_error == "raise":
        detail = next(r.detail for r in result.results if r.verdict is Verdict.SANDBOX_ERROR)
        raise SandboxFailure(
            f"result {index} has a SANDBOX_ERROR ({detail!r}); fix the sandbox or pass "
            "on_sandbox_error='exclude' to drop such completions from the update"
        )
    return False


def _score(
    results: Sequence[JobResult],
    fn: Callable[[JobResult], float],
    on_sandbox_error: OnSandboxError,
) -> list[float | None]:
    return [fn(r) if _check(r, i, on_sandbox_error) else None for i, r in enumerate(results)]


def pass_fraction(
    results: Sequence[JobResult], on_sandbox_error: OnSandboxError = "raise"
) -> list[float | None]:
    """Fraction of tests accepted, in [0, 1]."""
    return _score(results, lambda r: sum(t.passed for t in r.results) / len(r.results), on_sandbox_error)


def all_pass(results: Sequence[JobResult], on_sandbox_error: OnSandboxError = "raise") -> list[float | None]:
    """1.0 when every test is accepted, else 0.0."""
    return _score(results, lambda r: 1.0 if r.passed else 0.0, on_sandbox_error)


def is_compile_error(result: TestResult) -> bool:
    """COMPILE_ERROR, or a Python RUNTIME_ERROR whose stderr shows a ``SyntaxError``."""
    if result.verdict is Verdict.COMPILE_ERROR:
        return True
    return result.verdict is Verdict.RUNTIME_ERROR and "SyntaxError" in result.stderr_prefix


def _coderl_one(result: JobResult) -> float:
    failure = result.first_failure
    if failure is None:
        return ALL_PASS_REWARD
    if is_compile_error(failure):
        return COMPILE_ERROR_REWARD
    if failure.verdict in _RUNTIME_LIKE:
        return RUNTIME_ERROR_REWARD
    if failure.verdict is Verdict.WRONG_ANSWER:
        return WRONG_ANSWER_REWARD
    raise ValueError(f"no CodeRL reward for verdict {failure.verdict}")  # unreachable today


def coderl_shaped(
    results: Sequence[JobResult], on_sandbox_error: OnSandboxError = "raise"
) -> list[float | None]:
    """CodeRL shaping: -1 compile/syntax error, -0.6 runtime/limit, -0.3 wrong answer, +1 pass."""
    return _score(results, _coderl_one, on_sandbox_error)


REWARD_FUNCTIONS: dict[str, Callable[..., list[float | None]]] = {
    "pass_fraction": pass_fraction,
    "all_pass": all_pass,
    "coderl": coderl_shaped,
}


def _completion_text(completion: Any) -> str:
    """TRL passes strings for plain prompts and ``[{"role", "content"}]`` lists for chat."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    raise TypeError(f"unsupported completion type {type(completion).__name__}")


@dataclass
class ExecutionReward:
    """TRL reward function: run extracted programs on hidden tests in one batched judge call.

    ``judge`` needs ``run_many(jobs) -> list[JobResult]`` (the sandbox ``Judge``). ``__name__`` is the name TRL logs the
    reward under (``rewards/<name>/mean``). ``last_pass_rate`` / ``last_rewards`` describe the
    most recent call (the pass rate counts excluded sandbox failures as not passing).
    """

    judge: Any
    problems: Mapping[str, Problem]
    extract_program: Callable[[str], str]
    reward: RewardName = "pass_fraction"
    on_sandbox_error: OnSandboxError = "raise"
    max_tests: int | None = None
    limits: Limits | None = None
    language: str = "python"
    policy: LimitPolicy | None = None
    last_pass_rate: float | None = None
    last_rewards: tuple[float | None, ...] = ()
    calls: int = 0

    def __post_init__(self) -> None:
        if self.reward not in REWARD_FUNCTIONS:
            raise ValueError(f"reward must be one of {sorted(REWARD_FUNCTIONS)}, got {self.reward!r}")
        if self.max_tests is not None and self.max_tests < 1:
            raise ValueError(f"max_tests must be >= 1 or None, got {self.max_tests}")
        empty = [pid for pid, p in self.problems.items() if len(p.hidden_tests) == 0]
        if empty:
            raise ValueError(
                f"problems without hidden (private/generated) tests cannot be rewarded: {empty[:5]}; "
                "drop them from the RL split"
            )
        self.__name__ = f"execution_{self.reward}"

    def limit_policy(self) -> LimitPolicy:
        """``policy``, or the default rule around ``limits`` (None: the judge's own limits)."""
        if self.policy is not None:
            return self.policy
        default = self.limits or getattr(self.judge, "limits", None)
        return LimitPolicy(default=default) if isinstance(default, Limits) else LimitPolicy()

    def _job(self, problem: Problem, program: str, policy: LimitPolicy) -> Job:
        job = build_job(
            problem,
            program,
            "hidden",
            policy,
            max_tests=self.max_tests,
            stop_early=self.reward != "pass_fraction",
            language=self.language,
        )
        if job is None:  # unreachable: __post_init__ refuses problems without hidden tests
            raise ValueError(f"problem {problem.name!r} has no hidden tests to reward")
        return job

    def jobs(self, completions: Sequence[Any], problem_id: Sequence[str]) -> list[Job]:
        if len(completions) != len(problem_id):
            raise ValueError(
                f"{len(completions)} completions but {len(problem_id)} problem ids; the dataset "
                "needs a 'problem_id' column (remove_unused_columns=False)"
            )
        missing = sorted({pid for pid in problem_id if pid not in self.problems})
        if missing:
            raise KeyError(f"unknown problem ids {missing[:5]}: pass every RL problem to the reward")
        policy = self.limit_policy()
        return [
            self._job(self.problems[pid], self.extract_program(_completion_text(c)), policy)
            for c, pid in zip(completions, problem_id)
        ]

    def __call__(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        problem_id: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> list[float | None]:
        if problem_id is None:
            raise ValueError("ExecutionReward needs the 'problem_id' dataset column in kwargs")
        results = list(self.judge.run_many(self.jobs(completions, problem_id)))
        if len(results) != len(completions):
            raise RuntimeError(f"judge returned {len(results)} results for {len(completions)} jobs")
        rewards = REWARD_FUNCTIONS[self.reward](results, on_sandbox_error=self.on_sandbox_error)
        self.calls += 1
        self.last_rewards = tuple(rewards)
        self.last_pass_rate = sum(r.passed for r in results) / max(len(results), 1)
        log_metric = kwargs.get("log_metric")
        if callable(log_metric):
            log_metric("pass_rate", self.last_pass_rate)
        return rewards


class RewardSettings(Protocol):
    """The reward fields of an RL trainer's parameters (GRPO, PPO, expert iteration)."""

    reward: RewardName
    on_sandbox_error: OnSandboxError
    max_tests: int | None


def make_reward(
    params: RewardSettings,
    judge: Any,
    problems: Sequence[Problem],
    extract_program: Callable[[str], str],
    policy: LimitPolicy | None = None,
) -> ExecutionReward:
    """The :class:`ExecutionReward` every RL trainer scores with, built from its ``params``.

    Its tests run under ``policy`` (the pipeline passes ``LimitPolicy.from_config`` of the same
    ``JudgeConfig`` evaluation uses, so RL is rewarded under exactly the limits evaluation
    measures with); None: the default rule around the judge's own limits."""
    return ExecutionReward(
        judge=judge,
        problems={p.name: p for p in problems},
        extract_program=extract_program,
        reward=params.reward,
        on_sandbox_error=params.on_sandbox_error,
        max_tests=params.max_tests,
        policy=policy,
    )
