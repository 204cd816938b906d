"""Prefect tasks around the stage bodies: small, cached by content address, retryable.

Every task takes a ``plan`` (a :class:`~tasks.core.manifest.StagePlan` or a shard unit); the
flows wrap each with :func:`tasks.caching.cached` so the key is the plan's content address
(shard tasks of a run in an object store excepted: there the store is their cache).
:func:`stage_task` runs any stage from its declared inputs
(:class:`~tasks.core.stages.base.StageInputs`): it first returns an already-complete output as
is (a crashed run's finished work is never redone) and otherwise calls ``inputs.run``, which
does all the work, resuming from what it left in its own directory. The shard tasks run one unit
of a sharded stage, on whichever node the task runner placed them
(:func:`tasks.core.nodes.run_unit`; with a store URL, through that node's mirror of the run).
What a task adds is caching, retries and progress bars: no logic, so the stage's code
fingerprint covers everything that runs.
"""

from __future__ import annotations

from prefect import task

from tasks.core.config import JudgeConfig
from tasks.core.execution import Program
from tasks.core.manifest import Manifest, StagePlan
from tasks.core.nodes import run_stage_here, run_unit
from tasks.core.problems import Problem
from tasks.core.sampling import SampleRequest, SamplingParams
from tasks.core.stages import cluster
from tasks.core.stages import filter as filter_stage
from tasks.core.stages import sample as sample_stage
from tasks.core.stages.base import StageInputs
from tasks.progress import StageProgress


@task(name="stage")
def stage_task(plan: StagePlan, inputs: StageInputs) -> Manifest:
    """Compute ``inputs``' stage into ``plan`` (or return it, if already complete)."""
    if (done := plan.manifest()) is not None:
        return done
    total, what = inputs.progress()
    if not total:
        return inputs.run(plan)
    with StageProgress(total, what, key=None) as bar:
        return inputs.run(plan, bar.set)


@task(name="stage-on-node")
def stage_on_node_task(inputs: StageInputs, store_url: str) -> str:
    """Compute ``inputs``' stage on whichever node the task runner placed this task, through the
    store (:func:`tasks.core.nodes.run_stage_here`); returns the stage's path in the run."""
    return run_stage_here(inputs, store_url).relative_path


def sample_unit(
    plan: sample_stage.SampleShardUnit,
    model: Manifest,
    params: SamplingParams,
    request: SampleRequest,
    store_url: str | None = None,
) -> int | None:
    """One sampling shard on this node: the body of :func:`sample_shard_task` and of a
    :class:`tasks.engines.SamplerEngine`."""

    def compute(unit, model):
        return sample_stage.run_shard(unit, model, params, request)

    return run_unit(plan, store_url, compute, (model,))


@task(name="sample-shard", retries=1)
def sample_shard_task(
    plan: sample_stage.SampleShardUnit,
    model: Manifest,
    params: SamplingParams,
    request: SampleRequest,
    store_url: str | None = None,
    engine=None,
) -> int | None:
    """``engine``: a :class:`tasks.engines.SamplerEngine` handle to run the shard in (Ray with
    ``runner.gpus``), else it runs in this task's process."""
    if engine is None:
        return sample_unit(plan, model, params, request, store_url)
    import ray

    return ray.get(engine.run.remote(plan, model, params, request, store_url))


@task(name="exec-shard", retries=2, retry_delay_seconds=1)
def exec_shard_task(
    plan: filter_stage.ExecShardUnit,
    problems: dict[str, Problem],
    judge: JudgeConfig,
    generated_inputs: dict[str, list[str]] | None = None,
    store_url: str | None = None,
) -> int | None:
    def compute(unit):
        return filter_stage.run_exec_shard(unit, problems, judge, generated_inputs)

    return run_unit(plan, store_url, compute)


@task(name="cluster-inputs")
def cluster_inputs_task(
    plan: StagePlan, cfg, problems: dict[str, Problem], survivors: list[Program]
) -> dict[str, list[str]]:
    return cluster.generate_inputs(plan, cfg, problems, survivors)
