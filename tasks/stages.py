"""Prefect tasks around the stage bodies: small, cached by content address, retryable.

Every task takes a ``plan`` (a :class:`~tasks.core.manifest.StagePlan` or a shard unit); the
flows wrap each with :func:`tasks.caching.cached` so the key is the plan's content address.
A task first returns an already-complete output as is (a crashed run's finished work is never
redone) and otherwise computes, resuming from what it left in its own directory.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path

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
from tasks.core.execution import execute_shard, write_shard
from tasks.core.jobs import LimitPolicy
from tasks.core.manifest import Manifest, StagePlan
from tasks.core.problems import Problem, extract_program
from tasks.core.samplestore import SampleStore
from tasks.core.sampling import SampleRequest, SamplingParams, make_backend, sample_shard
from tasks.core.sandbox import Judge
from tasks.core.sandbox.types import Limits
from tasks.core.stages import cluster, evaluate
from tasks.core.stages import filter as filter_stage
from tasks.core.stages import problems as problems_stage
from tasks.core.stages import rl as rl_stage
from tasks.core.stages import sample as sample_stage
from tasks.core.stages import train as train_stage
from tasks.progress import StageProgress


def make_judge(cfg: JudgeConfig) -> Judge:
    return Judge(backend=cfg.backend, workers=cfg.workers, limits=judge_limits(cfg))


def judge_limits(cfg: JudgeConfig) -> Limits:
    return Limits(time_s=cfg.time_limit_s, memory_mb=cfg.memory_mb)


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
        return train_stage.run_pretrain(plan, cfg, update)


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
        return train_stage.run_finetune(plan, cfg, pretrained, problems, sft_split, valid_split, update)


_SAMPLING_LOCK = threading.Lock()


@lru_cache(maxsize=2)
def _backend(backend: str, model_dir: str, params: SamplingParams):
    return make_backend(params, model_dir)


def _sample_one_at_a_time(
    plan: sample_stage.SampleShardUnit, model: Manifest, params: SamplingParams, request: SampleRequest
):
    """Sampling seeds torch's process-global RNG per shard: two shards sampled at once by threads
    of one process (thread runner, Dask workers with threads_per_worker > 1) would interleave
    draws and break per-shard reproducibility, so a process samples one shard at a time. (A
    module-level function: Dask pickles it by reference, so every task shares this one lock.)"""
    with _SAMPLING_LOCK:
        backend = _backend(params.backend, str(model.dir / "model"), params)
        return sample_shard(backend, request, params, plan.shard, model.key, extract_program)


@task(name="sample-shard", retries=1)
def sample_shard_task(
    plan: sample_stage.SampleShardUnit, model: Manifest, params: SamplingParams, request: SampleRequest
) -> int:
    store = SampleStore(plan.store_dir)
    if store.has_shard(plan.shard):
        return plan.shard.num_samples
    table = _sample_one_at_a_time(plan, model, params, request)
    store.write_shard(table, plan.shard)
    return table.num_rows


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
    if plan.complete():
        return len(plan.shard.programs)
    with make_judge(judge) as runner:
        table = execute_shard(
            runner, plan.shard, problems, plan.test_set, LimitPolicy.from_config(judge), generated_inputs
        )
    write_shard(Path(plan.exec_dir), plan.shard, table)
    return len(plan.shard.programs)


@task(name="filter-finish")
def filter_finish_task(plan: StagePlan, samples: Manifest, problem_ids: list[str]) -> Manifest:
    return plan.manifest() or filter_stage.finish_filter(
        plan, samples, filter_stage.programs_of(samples), problem_ids
    )


@task(name="cluster-inputs")
def cluster_inputs_task(
    plan: StagePlan, cfg: ClusterConfig, problems: dict[str, Problem]
) -> dict[str, list[str]]:
    return cluster.generate_inputs(plan, cfg, problems, sorted(problems))


@task(name="cluster-finish")
def cluster_finish_task(
    plan: StagePlan, cfg: ClusterConfig, samples: Manifest, filtered: Manifest
) -> Manifest:
    if (done := plan.manifest()) is not None:
        return done
    return cluster.finish_cluster(
        plan, cfg, cluster.survivors(filtered, samples), cluster.sample_counts(samples)
    )


@task(name="rl")
def rl_task(
    plan: StagePlan, cfg: RLConfig, finetuned: Manifest, problems: list[Problem], judge: JudgeConfig
) -> Manifest:
    if (done := plan.manifest()) is not None:
        return done
    unit = "rounds" if cfg.algorithm == "expert-iteration" else "steps"
    with (
        StageProgress(cfg.total_steps, f"stage 6 RL {cfg.algorithm} ({unit})") as bar,
        make_judge(judge) as runner,
    ):
        return rl_stage.run_rl(
            plan, cfg, finetuned, problems, runner, progress=lambda step, total, metrics: bar.set(step)
        )


@task(name="evaluate-finish")
def evaluate_finish_task(
    plan: StagePlan,
    cfg: EvalConfig,
    label: str,
    split_of: dict[str, str],
    samples: Manifest,
    filtered: Manifest,
    clusters: Manifest,
    groups: dict[str, dict[str, str]],
) -> Manifest:
    return plan.manifest() or evaluate.finish_evaluate(
        plan, cfg, label, split_of, samples, filtered, clusters, groups
    )


@task(name="report")
def report_task(
    plan: StagePlan,
    before: Manifest,
    after: Manifest,
    split_of: dict[str, str],
    stage_manifests: dict[str, Manifest],
) -> Manifest:
    from tasks.core.stages import report

    return plan.manifest() or report.build_report(plan, before, after, split_of, stage_manifests)
