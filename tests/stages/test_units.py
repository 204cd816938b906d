"""The per-unit steps and helpers that live in the core stage modules (not in the Prefect layer):
an execution shard judged then skipped, the judge a config builds, the evaluation's splits and
groups, and the generated inputs only for problems with survivors."""

from __future__ import annotations

import pytest

from tasks.core.config import ClusterConfig, JudgeConfig, ProblemsConfig
from tasks.core.execution import Program, read_executions
from tasks.core.manifest import plan_stage
from tasks.core.problems.schema import Problem, Tests
from tasks.core.sandbox.types import Limits
from tasks.core.stages import Stage, cluster, evaluate, judging
from tasks.core.stages import filter as filter_stage
from tasks.core.stages import problems as problems_stage

SUM = Problem(
    name="sum",
    description="a+b",
    public_tests=Tests(input=("1 2\n",), output=("3\n",)),
    private_tests=Tests(input=("5 5\n",), output=("10\n",)),
)
RIGHT = "a, b = map(int, input().split())\nprint(a + b)\n"
HARDCODED = "print(3)\n"
JUDGE = JudgeConfig(workers=1, programs_per_shard=2)


def test_exec_shard_is_judged_once_then_skipped(tmp_path):
    plan = plan_stage(tmp_path, Stage.FILTER, {}, [], filter_stage)
    programs = [Program("sum", "right", RIGHT), Program("sum", "hard", HARDCODED)]
    [unit] = filter_stage.exec_units(plan, programs, "hidden", JUDGE.programs_per_shard)
    assert not unit.complete()
    assert filter_stage.run_exec_shard(unit, {"sum": SUM}, JUDGE) == 2
    assert unit.complete()
    [shard_file] = (plan.dir / filter_stage.EXEC_DIR).iterdir()
    written = shard_file.stat().st_mtime_ns
    rows = read_executions(plan.dir / filter_stage.EXEC_DIR).to_pylist()
    verdicts = {(r["code_hash"], r["test_set"]): r["verdict"] for r in rows}
    assert verdicts == {("right", "hidden"): "ACCEPTED", ("hard", "hidden"): "WRONG_ANSWER"}
    assert filter_stage.run_exec_shard(unit, {}, JUDGE) == 2  # done: no problem needed, nothing run
    assert shard_file.stat().st_mtime_ns == written


def test_judge_is_built_from_the_config():
    cfg = JudgeConfig(workers=3, time_limit_s=4.0, memory_mb=300)
    assert judging.judge_limits(cfg) == Limits(time_s=4.0, memory_mb=300)
    judge = judging.make_judge(cfg)
    assert judge.workers == 3 and judge.limits == Limits(time_s=4.0, memory_mb=300)


@pytest.fixture(scope="module")
def problem_set(tmp_path_factory):
    cfg = ProblemsConfig(per_family=1, max_eval_problems=3, eval_splits=("test_instances", "test_families"))
    plan = plan_stage(tmp_path_factory.mktemp("run"), Stage.PROBLEMS, cfg, [], problems_stage)
    return problems_stage.build_problem_set(plan, cfg), cfg.eval_splits


def test_evaluation_splits_and_groups_come_from_the_problem_set(problem_set):
    problems, splits = problem_set
    split_of = evaluate.split_of(problems, splits)
    for split in splits:
        names = {p.name for p in problems_stage.load_split(problems, split)}
        assert names and {n for n, s in split_of.items() if s == split} == names
    groups = evaluate.groups_of(problems, splits)
    assert set(groups) == {"family", "difficulty"}
    assert set(groups["family"]) == set(split_of)
    assert "unknown" not in groups["family"].values()  # bundled problems carry their family tag


def test_generated_inputs_only_for_problems_with_survivors(tmp_path):
    other = SUM.model_copy(update={"name": "other"})
    plan = plan_stage(tmp_path, Stage.CLUSTER, {}, [], cluster)
    cfg = ClusterConfig(num_inputs=4)
    inputs = cluster.generate_inputs(plan, cfg, {"sum": SUM, "other": other}, [Program("sum", "h", RIGHT)])
    assert set(inputs) == {"sum"} and len(inputs["sum"]) == 4
    again = cluster.generate_inputs(plan, cfg, {}, [])  # written once, read back
    assert again == inputs
