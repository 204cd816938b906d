"""ExecutionReward against the real sandbox judge: hidden tests only, one batched call."""

from __future__ import annotations

import pytest

from tasks.core.problems.schema import Problem, Tests
from tasks.core.rl.rewards import ExecutionReward
from tests.rl.conftest import CountingJudge, identity_extract, make_problem

SUM = "a, b = map(int, input().split())\nprint(a + b)\n"
PRINT_3 = "print(3)\n"  # special-cases the public example 1 2 -> 3


def reward_for(judge, kind: str = "pass_fraction") -> ExecutionReward:
    return ExecutionReward(
        judge=judge, problems={"add": make_problem()}, extract_program=identity_extract, reward=kind
    )


def test_public_example_special_case_gains_nothing(judge):
    rewards = reward_for(judge)(["p", "p"], [PRINT_3, SUM], problem_id=["add", "add"])
    assert rewards == [0.0, 1.0]


def test_jobs_carry_hidden_tests_only():
    problem = make_problem()
    jobs = reward_for(None).jobs([SUM], ["add"])
    assert [t.input for t in jobs[0].tests] == list(problem.hidden_tests.input)
    assert all(t.input not in problem.public_tests.input for t in jobs[0].tests)


def test_one_batched_run_many_per_call(judge):
    counting = CountingJudge(judge)
    reward = reward_for(counting)
    reward(["p"] * 4, [SUM, PRINT_3, "print(", SUM], problem_id=["add"] * 4)
    assert len(counting.calls) == 1 and len(counting.calls[0]) == 4


def test_records_pass_rate_and_logs_it(judge):
    logged = []
    reward = reward_for(judge)
    reward(
        ["p"] * 4,
        [SUM, PRINT_3, SUM, "x"],
        problem_id=["add"] * 4,
        log_metric=lambda name, value: logged.append((name, value)),
    )
    assert reward.last_pass_rate == 0.5 and logged == [("pass_rate", 0.5)]


def test_coderl_scores_syntax_error_as_compile_error(judge):
    rewards = reward_for(judge, "coderl")(["p"] * 3, ["print(", PRINT_3, SUM], problem_id=["add"] * 3)
    assert rewards == [-1.0, -0.3, 1.0]


def test_problem_without_hidden_tests_rejected():
    bare = Problem(name="bare", description="d", public_tests=Tests(input=("1",), output=("1",)))
    with pytest.raises(ValueError, match="hidden"):
        ExecutionReward(judge=None, problems={"bare": bare}, extract_program=identity_extract)


def test_unknown_problem_id_rejected():
    with pytest.raises(KeyError, match="unknown problem ids"):
        reward_for(None).jobs([SUM], ["nope"])
