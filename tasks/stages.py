"""Prefect tasks around the stage bodies: small, cached by content address, retryable.

Every task takes a ``plan`` (a :class:`~tasks.core.manifest.StagePlan` or a shard unit); the
flows wrap each with :func:`tasks.caching.cached` so the key is the plan's content address.
A task first returns an already-complete output as is (a crashed run's finished work is never
redone) and otherwise calls the stage's core function (:mod:`tasks.core.stages`), which does all
the work, resuming from what it left in its own directory. What a task adds is caching, retries
and progress bars: no logic, so the stage's code fingerprint covers everything that runs.
"""

from __future__ import annotations

from prefect import task

from tasks.core.config import (
    ClusterConfig,
    EvalConfig,
    FinetuneConfig,
    JudgeConfig,
    PretrainConfig,
    ProblemsConfig,
    RLConfig,
    SampleConfig,
)
from tasks.core.execution import Program
from tasks.core.manifest import Manifest, StagePlan
from tasks.core.problems import Problem
from tasks.core.sampling import SampleRequest, SamplingParams
from tasks.core.stages import cluster, evaluate, report
from tasks.core.stages import filter as filter_stage
from tasks.core.stages import finetune as finetune_stage
from tasks.core.stages import pretrain as pretrain_stage
from tasks.core.stages import problems as problems_stage
from tasks.core.stages import rl as rl_stage
from tasks.core.stages import sample as sample_stage
from tasks.core.stages import select as select_stage
from tasks.core.stages import sft_continue as sft_continue_stage
from tasks.progress import StageProgress


@task(name="problems")
def problems_task(plan: StagePlan, cfg: ProblemsConfig) -> Manifest:
    return plan.manifest() or problems_stage.build_problem_set(plan, cfg)


def _train_progress(total: int, name: str):
    bar = StageProgress(total, name, key=None)

    def update(metrics) -> None:
        bar.set(metrics.step)

    return bar, update


@task(name="pretrain")
def pretrain_task(plan: StagePlan, cfg: PretrainConfig) -> Manifest:
    if (done := plan.manifest()) is not None:
        return done
    bar, update = _train_progress(cfg.train.max_steps, "stage 1 pretrain (steps)")
    with bar:
        return pretrain_stage.run_pretrain(plan, cfg, update)


@task(name="finetune")
def finetune_task(
    plan: StagePlan,
    cfg: FinetuneConfig,
    pretrained: Manifest,
    problems: Manifest,
    sft_split: str,
    valid_split: str,
) -> Manifest:
    if (done := plan.manifest()) is not None:
        return done
    bar, update = _train_progress(cfg.train.max_steps, "stage 2 fine-tune (steps)")
    with bar:
        return finetune_stage.run_finetune(plan, cfg, pretrained, problems, sft_split, valid_split, update)


@task(name="sample-shard", retries=1)
def sample_shard_task(
    plan: sample_stage.SampleShardUnit, model: Manifest, params: SamplingParams, request: SampleRequest
) -> int:
    return sample_stage.run_shard(plan, model, params, request)


@task(name="sample-finish")
def sample_finish_task(plan: StagePlan, problem_ids: list[str], cfg: SampleConfig) -> Manifest:
    return plan.manifest() or sample_stage.finish(plan, problem_ids, cfg)


@task(name="exec-shard", retries=2, retry_delay_seconds=1)
def exec_shard_task(
    plan: filter_stage.ExecShardUnit,
    problems: dict[str, Problem],
    judge: JudgeConfig,
    generated_inputs: dict[str, list[str]] | None = None,
) -> int:
    return filter_stage.run_exec_shard(plan, problems, judge, generated_inputs)


@task(name="filter-finish")
def filter_finish_task(plan: StagePlan, samples: Manifest, problem_ids: list[str]) -> Manifest:
    return plan.manifest() or filter_stage.finish(plan, samples, problem_ids)


@task(name="cluster-inputs")
def cluster_inputs_task(
    plan: StagePlan, cfg: ClusterConfig, problems: dict[str, Problem], survivors: list[Program]
) -> dict[str, list[str]]:
    return cluster.generate_inputs(plan, cfg, problems, survivors)


@task(name="cluster-finish")
def cluster_finish_task(
    plan: StagePlan, cfg: ClusterConfig, samples: Manifest, filtered: Manifest
) -> Manifest:
    return plan.manifest() or cluster.finish(plan, cfg, samples, filtered)


@task(name="rl")
def rl_task(
    plan: StagePlan,
    cfg: RLConfig,
    finetuned: Manifest,
    problems: Manifest,
    split: str,
    judge: JudgeConfig,
    difficulty: Manifest | None = None,
) -> Manifest:
    if (done := plan.manifest()) is not None:
        return done
    unit = "rounds" if cfg.algorithm == "expert-iteration" else "steps"
    with StageProgress(cfg.total_steps, f"stage 6 RL {cfg.algorithm} ({unit})") as bar:
        return rl_stage.run_rl(
            plan,
            cfg,
            finetuned,
            problems,
            split,
            judge,
            progress=lambda step, total, metrics: bar.set(step),
            difficulty=difficulty,
        )


@task(name="evaluate-finish")
def evaluate_finish_task(
    plan: StagePlan,
    cfg: EvalConfig,
    label: str,
    problems: Manifest,
    splits: tuple[str, ...],
    samples: Manifest,
    filtered: Manifest,
    clusters: Manifest,
) -> Manifest:
    return plan.manifest() or evaluate.finish(plan, cfg, label, problems, splits, samples, filtered, clusters)


@task(name="sft-continue")
def sft_continue_task(
    plan: StagePlan,
    cfg: FinetuneConfig,
    finetuned: Manifest,
    rl: Manifest,
    problems: Manifest,
    sft_split: str,
    valid_split: str,
) -> Manifest:
    if (done := plan.manifest()) is not None:
        return done
    bar, update = _train_progress(max(1, int(rl.metrics["optimizer_steps"])), "SFT-continue baseline (steps)")
    with bar:
        return sft_continue_stage.run_sft_continue(
            plan, cfg, finetuned, rl, problems, sft_split, valid_split, update
        )


@task(name="select")
def select_task(
    plan: StagePlan, label: str, grid: list[tuple[float, Manifest]], split: str, wide_k: int
) -> Manifest:
    return plan.manifest() or select_stage.choose(plan, label, grid, split, wide_k)


@task(name="report")
def report_task(
    plan: StagePlan,
    contenders: list[report.Contender],
    problems: Manifest,
    splits: tuple[str, ...],
    settings: report.ReportSettings,
    stage_manifests: dict[str, Manifest],
) -> Manifest:
    return plan.manifest() or report.build_report(
        plan, contenders, problems, splits, settings, stage_manifests
    )


@task(name="curve")
def curve_task(
    plan: StagePlan,
    label: str,
    evaluation: Manifest,
    problems: Manifest,
    splits: tuple[str, ...],
    settings,  # tasks.core.stages.curve.CurveSettings
) -> Manifest:
    from tasks.core.stages import curve as curve_stage

    return plan.manifest() or curve_stage.build_curve(plan, label, evaluation, problems, splits, settings)
