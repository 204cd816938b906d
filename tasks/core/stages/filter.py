"""Stage 4 (execution filtering) and the shared sharded-execution units of stages 4, 5 and 7.

Contract: every distinct program (``problem_id, code_hash``) of a sample store is judged once
on one test set, in shards (:class:`ExecShardUnit`, each one cached unit writing one Parquet
file under ``<stage dir>/executions``: :func:`run_exec_shard` skips a shard already on disk, else
judges it with the configured judge and limit policy and writes it). :func:`finish` reduces the executions to
``programs.parquet`` (one row per distinct program) and ``sample_verdicts.parquet`` (one row per
sample: ``passed_public`` and the first failing verdict inherited by duplicates), and publishes
the funnel: samples, distinct programs, survivors, problems with zero survivors, and the
verdict histogram.
Limits: public tests only; a problem without public tests lets no sample survive (reported).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from tasks.core.execution import (
    ExecShard,
    Program,
    distinct_programs,
    execute_shard,
    plan_exec_shards,
    program_summary,
    read_executions,
    shard_done,
    verdict_histogram,
    write_shard,
)
from tasks.core.io import write_parquet
from tasks.core.manifest import Manifest, StagePlan, list_files
from tasks.core.problems import Problem
from tasks.core.stages import REPORT_FILE, Stage
from tasks.core.stages.base import Advance, StageInputs
from tasks.core.stages.judging import limit_policy, make_judge
from tasks.core.stages.sample import eval_problems, store_of

if TYPE_CHECKING:
    from tasks.core.config import JudgeConfig

EXEC_DIR = "executions"  # the execution shards of stages 4, 5 and evaluation
PROGRAMS_FILE = "programs.parquet"
VERDICTS_FILE = "sample_verdicts.parquet"
FUNNEL_PLOT = "filter_funnel.png"


class ExecShardUnit(BaseModel):
    """One shard of programs to judge on one test set: the cached unit of stages 4, 5 and 7."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    root: str
    stage: str
    stage_key: str
    exec_dir: str
    test_set: str
    shard: ExecShard

    @property
    def cache_key(self) -> str:
        return f"{self.stage}-{self.stage_key}-{self.test_set}-{self.shard.index}"

    def complete(self) -> bool:
        return shard_done(Path(self.exec_dir), self.shard)

    @property
    def output(self) -> Path:
        """The one file this unit writes."""
        return Path(self.exec_dir) / self.shard.name

    def at_root(self, root: str) -> ExecShardUnit:
        """This unit planned under another run root (the same run's mirror on another node)."""
        rel = Path(self.exec_dir).relative_to(self.root)
        return self.model_copy(update={"root": root, "exec_dir": str(Path(root) / rel)})


def exec_units(
    plan: StagePlan, programs: list[Program], test_set: str, per_shard: int
) -> list[ExecShardUnit]:
    exec_dir = str(plan.dir / EXEC_DIR)
    return [
        ExecShardUnit(
            root=plan.root,
            stage=plan.stage,
            stage_key=plan.key,
            exec_dir=exec_dir,
            test_set=test_set,
            shard=s,
        )
        for s in plan_exec_shards(programs, per_shard)
    ]


def run_exec_shard(
    unit: ExecShardUnit,
    problems: dict[str, Problem],
    judge: JudgeConfig,
    generated_inputs: dict[str, list[str]] | None = None,
) -> int:
    """Judge one shard's programs on its test set unless the shard is already on disk; the
    number of programs in the shard. ``problems`` (and, for ``generated``, the inputs) must
    cover the shard's problems."""
    if unit.complete():
        return len(unit.shard.programs)
    with make_judge(judge) as runner:
        table = execute_shard(
            runner, unit.shard, problems, unit.test_set, limit_policy(judge), generated_inputs
        )
    write_shard(Path(unit.exec_dir), unit.shard, table)
    return len(unit.shard.programs)


def programs_of(samples: Manifest) -> list[Program]:
    return distinct_programs(store_of(samples).read(columns=["problem_id", "sample_id", "code_hash", "code"]))


def per_sample(samples: Manifest, programs: pa.Table, column: str) -> pa.Table:
    """Join a per-program table back onto every sample (duplicates inherit the verdict)."""
    rows = store_of(samples).read(columns=["problem_id", "sample_id", "code_hash"])
    joined = rows.join(
        programs.select(["problem_id", "code_hash", "passed", "first_failure"]),
        keys=["problem_id", "code_hash"],
        join_type="left outer",
    )
    joined = joined.rename_columns(
        [
            column if c == "passed" else ("first_failure_" + column if c == "first_failure" else c)
            for c in joined.column_names
        ]
    )
    return joined.sort_by([("problem_id", "ascending"), ("sample_id", "ascending")])


def finish(plan: StagePlan, samples: Manifest, problem_ids: list[str]) -> Manifest:
    """Reduce the public-test executions of ``samples``' programs and publish the funnel."""
    programs = programs_of(samples)
    executions = read_executions(plan.dir / EXEC_DIR)
    summary = program_summary(executions, programs)
    write_parquet(plan.dir / PROGRAMS_FILE, summary)
    verdicts = per_sample(samples, summary, "passed_public")
    write_parquet(plan.dir / VERDICTS_FILE, verdicts)
    passed = verdicts.column("passed_public").to_pylist()
    survivors_by_problem = {pid: 0 for pid in problem_ids}
    for pid, ok in zip(verdicts.column("problem_id").to_pylist(), passed):
        survivors_by_problem[pid] += bool(ok)
    zero = sorted(p for p, c in survivors_by_problem.items() if c == 0)
    metrics = {
        "samples": len(passed),
        "distinct_programs": len(programs),
        "surviving_samples": int(sum(bool(x) for x in passed)),
        "surviving_programs": int(sum(summary.column("passed").to_pylist())),
        "fraction_removed": round(1 - sum(bool(x) for x in passed) / max(1, len(passed)), 4),
        "problems": len(problem_ids),
        "problems_without_survivors": len(zero),
        "verdicts": verdict_histogram(executions),
    }
    write_filter_report(plan.dir, metrics, zero)
    return plan.publish(list_files(plan.dir), metrics=metrics)


def write_filter_report(directory: Path, metrics: dict, zero: list[str]) -> None:
    from tasks.core.report import markdown_table, plot_filter_funnel

    funnel = [
        ("samples", metrics["samples"]),
        ("distinct programs", metrics["distinct_programs"]),
        ("samples passing public tests", metrics["surviving_samples"]),
    ]
    plot_filter_funnel(funnel, directory / FUNNEL_PLOT)
    verdicts = [
        {"verdict": v, "test runs": c} for v, c in sorted(metrics["verdicts"].items(), key=lambda x: -x[1])
    ]
    lines = [
        "# Stage 4: execution filtering on the public tests",
        "",
        f"Removed by filtering: {metrics['fraction_removed']:.1%} of samples "
        "(AlphaCode: ~99% of samples; ~10% of problems had no sample passing the example tests).",
        "",
        markdown_table([{"stage": a, "count": b} for a, b in funnel]),
        "",
        "## Verdicts of test runs",
        "",
        markdown_table(verdicts) if verdicts else "No test run.",
        "",
        f"## Problems with zero survivors: {len(zero)} of {metrics['problems']}",
        "",
    ]
    lines += [f"- `{p}`" for p in zero[:50]] + (["- ..."] if len(zero) > 50 else [])
    lines += ["", f"![funnel]({FUNNEL_PLOT})", ""]
    (directory / REPORT_FILE).write_text("\n".join(lines))


@dataclass(frozen=True)
class FilterInputs(StageInputs):
    """Stage 4: every distinct program of ``samples`` run on its problem's public tests."""

    STAGE = Stage.FILTER
    judge: JudgeConfig
    splits: tuple[str, ...]
    samples: Manifest
    problems: Manifest

    def by_id(self) -> dict[str, Problem]:
        return {p.name: p for p in eval_problems(self.problems, self.splits)}

    def run(self, plan: StagePlan, progress: Advance | None = None) -> Manifest:
        return finish(plan, self.samples, sorted(self.by_id()))
