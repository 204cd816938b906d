"""One Prefect flow per pipeline stage. Flows only wire: each takes the stage's declared inputs
(a :class:`~tasks.core.stages.base.StageInputs`, built once by the caller), plans the stage from
them, submits its cached units and returns its manifest. What a stage computes, and what its key
holds, lives in ``tasks.core.stages``.

Sharded stages (sample, filter, cluster, evaluate) take ``parallel``: False (the default) runs
the shards one after another in the flow's process; True ``.submit()``s every shard to the
flow's task runner (give one with ``flow.with_options(task_runner=tasks.runners.make_task_runner(...))``),
waits for all of them and then re-raises the first failure. Both modes write the same
content-addressed shards; ``parallel`` is no part of any stage key."""

from __future__ import annotations

from prefect import flow

from tasks.artifacts import publish_stage_artifacts
from tasks.caching import cached, pull_record, push_record
from tasks.core.config import JudgeConfig, RunnerConfig
from tasks.core.manifest import Manifest, StagePlan
from tasks.core.nodes import collect, pending
from tasks.core.stages import Stage, cluster
from tasks.core.stages import filter as filter_stage
from tasks.core.stages.base import StageInputs
from tasks.core.stages.cluster import ClusterInputs
from tasks.core.stages.evaluate import EvaluateInputs
from tasks.core.stages.filter import FilterInputs
from tasks.core.stages.sample import SampleInputs
from tasks.core.store import remote_of
from tasks.progress import StageProgress
from tasks.runners import is_parallel, make_task_runner
from tasks.stages import (
    cluster_inputs_task,
    exec_shard_task,
    sample_shard_task,
    stage_on_node_task,
    stage_task,
)


def _cached_stage(inputs: StageInputs, plan: StagePlan, root: str) -> Manifest:
    """The stage's cached task, named after the stage (Cached when ``plan`` is complete). Its
    manifest is bound to ``plan``'s directory: a Cached result was pickled where the run then
    lay, and a run directory copied elsewhere must read its own files."""
    task = cached(stage_task.with_options(name=str(inputs.STAGE)), root)
    return task(plan=plan, inputs=inputs).at(plan.dir)


def finish_stage(inputs: StageInputs, plan: StagePlan, root: str) -> Manifest:
    """The stage's cached task, then its Prefect artifacts."""
    manifest = _cached_stage(inputs, plan, root)
    publish_stage_artifacts(manifest)
    return manifest


TRAINING = frozenset({Stage.PRETRAIN, Stage.FINETUNE, Stage.RL, Stage.SFT_CONTINUE, Stage.ORACLE_SFT})


def placed_on_gpus(stage: str, runner: RunnerConfig) -> bool:
    """A training stage of a run in an object store, with ``runner.gpus`` on Ray: computed on a
    node Ray picks, as one task asking for those GPUs (:func:`_single`)."""
    return runner.kind == "ray" and bool(runner.gpus) and stage in TRAINING


def run_stage(stage_flow, inputs: StageInputs, root: str, runner: RunnerConfig | None = None) -> Manifest:
    """Run ``inputs``' stage. A stage whose output is already complete is returned by its cached
    task in the calling flow (one task run, state Cached, in the UI), without entering its
    subflow: a rerun with nothing to do costs a manifest read per stage, not a flow run. Any other
    stage runs in ``stage_flow``, which resumes it; a sharded stage's shards go to ``runner``'s
    task runner when it runs several at once (the runner is no part of any key).

    When ``root`` is the mirror of a run in an object store (:mod:`tasks.core.store`), a stage
    complete in the store and not in the mirror is pulled first (then it is complete here), and
    every stage's directory is pushed to the store once complete (a no-op when it is there).
    The stage's Prefect cache record travels with it, so a pulled stage comes back Cached.
    A training stage of such a run with ``runner.gpus`` on Ray runs on a node Ray picks
    (:func:`placed_on_gpus`); in a local run directory training runs in this process."""
    plan = inputs.plan(root)
    remote = remote_of(root)
    if remote is not None and not plan.complete() and remote.pull(plan.stage, plan.key, plan.dir):
        pull_record(root, plan.cache_key, remote)
    if plan.complete():
        manifest = _cached_stage(inputs, plan, root)
    elif runner is not None and remote is not None and placed_on_gpus(inputs.STAGE, runner):
        manifest = stage_flow.with_options(task_runner=make_task_runner(runner))(
            inputs, root, gpus=runner.gpus
        )
        push_record(root, plan.cache_key, remote)  # the stage came from the node that pushed it
    elif runner is not None and is_parallel(runner) and inputs.STAGE not in TRAINING:
        gpus = {"gpus": runner.gpus} if inputs.STAGE is Stage.SAMPLE and runner.gpus else {}
        manifest = stage_flow.with_options(task_runner=make_task_runner(runner))(
            inputs, root, parallel=True, **gpus
        )
    else:
        manifest = stage_flow(inputs, root)
    if remote is not None and remote.push(manifest):
        push_record(root, plan.cache_key, remote)
    return manifest


def _single(inputs: StageInputs, root: str, gpus: float = 0.0) -> Manifest:
    """The stage's cached task here; with ``gpus`` (the flow's task runner is Ray, the run is in
    an object store) the stage is first computed on a node with those GPUs free, pushed to the
    store from there and pulled into this node's mirror."""
    plan = inputs.plan(root)
    if gpus and not plan.complete():
        from prefect_ray.context import remote_options

        remote = remote_of(root)
        with remote_options(num_gpus=gpus):
            stage_on_node_task.submit(inputs=inputs, store_url=remote.url).result()
        if remote.pull(plan.stage, plan.key, plan.dir) is None:
            raise RuntimeError(
                f"stage {plan.stage}/{plan.key} ran on another node but is not complete in {remote.url}"
            )
    return finish_stage(inputs, plan, root)


# Stage inputs are frozen dataclasses whose config types resolve only under TYPE_CHECKING: their
# caller builds them from validated configs, so flows never re-validate them as parameters.
problems_flow = flow(name=Stage.PROBLEMS.value, validate_parameters=False)(_single)
pretrain_flow = flow(name=Stage.PRETRAIN.value, validate_parameters=False)(_single)
finetune_flow = flow(name=Stage.FINETUNE.value, validate_parameters=False)(_single)
rl_flow = flow(name=Stage.RL.value, validate_parameters=False)(_single)
sft_continue_flow = flow(name=Stage.SFT_CONTINUE.value, validate_parameters=False)(_single)
oracle_sft_flow = flow(name=Stage.ORACLE_SFT.value, validate_parameters=False)(_single)
select_flow = flow(name=Stage.SELECT.value, validate_parameters=False)(_single)
curve_flow = flow(name=Stage.CURVE.value, validate_parameters=False)(_single)
report_flow = flow(name=Stage.REPORT.value, validate_parameters=False)(_single)


@flow(name="sample", validate_parameters=False)
def sample_flow(inputs: SampleInputs, root: str, parallel: bool = False, gpus: float = 0.0) -> Manifest:
    """``gpus``: what each shard asks a Ray task runner for (``runner.gpus``; 0 elsewhere)."""
    plan = inputs.plan(root)
    if not plan.complete():
        params = inputs.sample.sampling
        calls = [
            dict(plan=unit, model=inputs.model, params=params, request=request)
            for unit, request in inputs.units(plan)
        ]
        sizes = [c["plan"].shard.num_samples for c in calls]
        _run_shards(sample_shard_task, root, calls, parallel, "stage 3 sampling", sizes, "sample", gpus)
    return finish_stage(inputs, plan, root)


def _run_shards(
    task,
    root: str,
    calls: list[dict],
    parallel: bool,
    description: str,
    sizes: list[int],
    unit: str,
    gpus: float = 0.0,
) -> None:
    """Run a sharded stage's unit ``task`` once per keyword set (:func:`_run_units`).

    In a local run directory each unit is a Prefect task cached in it. In the mirror of a run in
    an object store the store is the units' cache instead (a task may run on another node, where
    this node's paths mean nothing): every unit whose file is in the store is downloaded, not
    run; the rest run with the store's URL (:func:`tasks.core.nodes.run_unit`) and their files
    are collected from the store afterwards."""
    remote = remote_of(root)
    if remote is None:
        _run_units(cached(task, root), calls, parallel, description, sizes, unit, gpus)
        return
    todo = pending([c["plan"] for c in calls], remote)
    calls = [{**calls[i], "store_url": remote.url} for i in todo]
    _run_units(task, calls, parallel, description, [sizes[i] for i in todo], unit, gpus)
    collect([c["plan"] for c in calls], remote)


def _run_units(
    task,
    calls: list[dict],
    parallel: bool,
    description: str,
    sizes: list[int] | None = None,
    unit: str = "shard",
    gpus: float = 0.0,
) -> list:
    """Run ``task`` once per keyword set: in turn, or all submitted and awaited (then the first
    failure re-raised, after every other shard has finished and been kept). A terminal bar and a
    Prefect progress artifact count the work: ``sizes[i]`` items of kind ``unit`` per call (the
    bar's rate and ETA are then samples/s or programs/s), else one shard per call."""
    sizes = sizes if sizes is not None else [1] * len(calls)
    with StageProgress(sum(sizes), description, unit=unit) as bar:
        if parallel:
            return _submit_all(task, calls, sizes, bar, gpus)
        results = []
        for kwargs, size in zip(calls, sizes):
            results.append(task(**kwargs))
            bar.advance(size)
        return results


def _submit_all(task, calls: list[dict], sizes: list[int], bar, gpus: float) -> list:
    """Submit every call, wait for all, then their results in order (the first failure
    re-raised). With ``gpus`` (Ray, sampling), the calls run in long-lived engines of ``gpus``
    GPUs each (:func:`tasks.engines.engine_pool`), assigned round robin, for this stage only."""
    if not gpus:
        return _await_all([task.submit(**kwargs) for kwargs in calls], sizes, bar)
    from tasks.engines import engine_pool

    with engine_pool(gpus) as engines:
        futures = [task.submit(**kwargs, engine=engines[i % len(engines)]) for i, kwargs in enumerate(calls)]
        return _await_all(futures, sizes, bar)


def _await_all(futures: list, sizes: list[int], bar) -> list:
    for future, size in zip(futures, sizes):
        future.wait()
        bar.advance(size)
    return [future.result() for future in futures]


def _run_exec(
    plan,
    programs,
    test_set: str,
    problems: dict,
    judge: JudgeConfig,
    root: str,
    generated=None,
    parallel: bool = False,
) -> None:
    """Judge ``programs`` shard by shard. Each shard's judge keeps ``judge.workers`` sandboxes
    busy; with ``parallel`` several shards run at once (sandbox uids are leased across processes,
    so that is safe) and the machine then runs up to runner workers x ``judge.workers`` sandboxes."""
    calls = []
    for unit in filter_stage.exec_units(plan, programs, test_set, judge.programs_per_shard):
        needed = {p.problem_id for p in unit.shard.programs}
        gen = {k: v for k, v in generated.items() if k in needed} if generated is not None else None
        calls.append(
            dict(plan=unit, problems={k: problems[k] for k in needed}, judge=judge, generated_inputs=gen)
        )
    sizes = [len(c["plan"].shard.programs) for c in calls]
    _run_shards(exec_shard_task, root, calls, parallel, f"{plan.stage}: {test_set} tests", sizes, "program")


@flow(name="filter", validate_parameters=False)
def filter_flow(inputs: FilterInputs, root: str, parallel: bool = False) -> Manifest:
    plan = inputs.plan(root)
    if not plan.complete():
        programs = filter_stage.programs_of(inputs.samples)
        _run_exec(plan, programs, "public", inputs.by_id(), inputs.judge, root, parallel=parallel)
    return finish_stage(inputs, plan, root)


@flow(name="cluster", validate_parameters=False)
def cluster_flow(inputs: ClusterInputs, root: str, parallel: bool = False) -> Manifest:
    plan = inputs.plan(root)
    if not plan.complete():
        by_id = inputs.by_id()
        survivors = cluster.survivors(inputs.filtered, inputs.samples)
        generated = cluster_inputs_task(plan=plan, cfg=inputs.cluster, problems=by_id, survivors=survivors)
        _run_exec(plan, survivors, "generated", by_id, inputs.judge, root, generated, parallel)
    return finish_stage(inputs, plan, root)


@flow(name="evaluate", validate_parameters=False)
def evaluate_flow(inputs: EvaluateInputs, root: str, parallel: bool = False) -> Manifest:
    plan = inputs.plan(root)
    if not plan.complete():
        programs = filter_stage.programs_of(inputs.samples)
        _run_exec(plan, programs, "hidden", inputs.by_id(), inputs.judge, root, parallel=parallel)
    return finish_stage(inputs, plan, root)
