"""One Prefect flow per pipeline stage. Flows only wire: plan the stage, submit its cached
tasks, return its manifest. What a stage computes lives in ``tasks.core.stages``.

Sharded stages (sample, filter, cluster, evaluate) take ``parallel``: False (the default) runs
the shards one after another in the flow's process; True ``.submit()``s every shard to the
flow's task runner (give one with ``flow.with_options(task_runner=tasks.runners.make_task_runner(...))``),
waits for all of them and then re-raises the first failure. Both modes write the same
content-addressed shards; ``parallel`` is no part of any stage key."""

from __future__ import annotations

from prefect import flow

from tasks.artifacts import publish_stage_artifacts
from tasks.caching import cached
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
from tasks.core.manifest import Manifest, plan_stage
from tasks.core.stages import Stage, cluster, evaluate
from tasks.core.stages import filter as filter_stage
from tasks.core.stages import finetune as finetune_stage
from tasks.core.stages import pretrain as pretrain_stage
from tasks.core.stages import problems as problems_stage
from tasks.core.stages import rl as rl_stage
from tasks.core.stages import sample as sample_stage
from tasks.core.stages import select as select_stage
from tasks.core.stages import sft_continue as sft_continue_stage
from tasks.progress import StageProgress
from tasks.stages import (
    cluster_finish_task,
    cluster_inputs_task,
    evaluate_finish_task,
    exec_shard_task,
    filter_finish_task,
    finetune_task,
    pretrain_task,
    problems_task,
    rl_task,
    sample_finish_task,
    sample_shard_task,
    select_task,
    sft_continue_task,
)


@flow(name="problems")
def problems_flow(cfg: ProblemsConfig, root: str) -> Manifest:
    plan = plan_stage(root, Stage.PROBLEMS, cfg, [], problems_stage)
    return _published(cached(problems_task, root)(plan=plan, cfg=cfg))


@flow(name="pretrain")
def pretrain_flow(cfg: PretrainConfig, root: str) -> Manifest:
    plan = plan_stage(root, Stage.PRETRAIN, cfg, [], pretrain_stage)
    return _published(cached(pretrain_task, root)(plan=plan, cfg=cfg))


@flow(name="finetune")
def finetune_flow(
    cfg: FinetuneConfig, pretrained: Manifest, problems: Manifest, sft_split: str, valid_split: str, root: str
) -> Manifest:
    key_cfg = {"finetune": cfg.model_dump(mode="json"), "sft_split": sft_split, "valid_split": valid_split}
    plan = plan_stage(root, Stage.FINETUNE, key_cfg, [pretrained, problems], finetune_stage)
    return _published(
        cached(finetune_task, root)(
            plan=plan,
            cfg=cfg,
            pretrained=pretrained,
            problems=problems,
            sft_split=sft_split,
            valid_split=valid_split,
        )
    )


@flow(name="sample")
def sample_flow(
    cfg: SampleConfig,
    model: Manifest,
    problems: Manifest,
    splits: tuple[str, ...],
    root: str,
    parallel: bool = False,
) -> Manifest:
    key_cfg = {"sample": cfg.model_dump(mode="json"), "splits": list(splits)}
    plan = plan_stage(root, Stage.SAMPLE, key_cfg, [model, problems], sample_stage)
    eval_problems = sample_stage.eval_problems(problems, splits)
    ids = [p.name for p in eval_problems]
    if not plan.complete():
        requests = sample_stage.build_requests(eval_problems, cfg)
        calls = [
            dict(plan=unit, model=model, params=cfg.sampling, request=requests[unit.shard.problem_id])
            for unit in sample_stage.shard_units(plan, ids, cfg)
        ]
        sizes = [c["plan"].shard.num_samples for c in calls]
        _run_units(cached(sample_shard_task, root), calls, parallel, "stage 3 sampling", sizes, "sample")
    return _published(cached(sample_finish_task, root)(plan=plan, problem_ids=ids, cfg=cfg))


def _published(manifest: Manifest) -> Manifest:
    publish_stage_artifacts(manifest)
    return manifest


def _run_units(
    task,
    calls: list[dict],
    parallel: bool,
    description: str,
    sizes: list[int] | None = None,
    unit: str = "shard",
) -> list:
    """Run ``task`` once per keyword set: in turn, or all submitted and awaited (then the first
    failure re-raised, after every other shard has finished and been kept). A terminal bar and a
    Prefect progress artifact count the work: ``sizes[i]`` items of kind ``unit`` per call (the
    bar's rate and ETA are then samples/s or programs/s), else one shard per call."""
    sizes = sizes if sizes is not None else [1] * len(calls)
    with StageProgress(sum(sizes), description, unit=unit) as bar:
        if not parallel:
            results = []
            for kwargs, size in zip(calls, sizes):
                results.append(task(**kwargs))
                bar.advance(size)
            return results
        futures = [task.submit(**kwargs) for kwargs in calls]
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
    _run_units(
        cached(exec_shard_task, root), calls, parallel, f"{plan.stage}: {test_set} tests", sizes, "program"
    )


@flow(name="filter")
def filter_flow(
    judge: JudgeConfig,
    samples: Manifest,
    problems: Manifest,
    splits: tuple[str, ...],
    root: str,
    parallel: bool = False,
) -> Manifest:
    plan = plan_stage(
        root, Stage.FILTER, {"judge": judge.model_dump(mode="json")}, [samples, problems], filter_stage
    )
    by_id = {p.name: p for p in sample_stage.eval_problems(problems, splits)}
    if not plan.complete():
        _run_exec(plan, filter_stage.programs_of(samples), "public", by_id, judge, root, parallel=parallel)
    return _published(cached(filter_finish_task, root)(plan=plan, samples=samples, problem_ids=sorted(by_id)))


@flow(name="cluster")
def cluster_flow(
    cfg: ClusterConfig,
    judge: JudgeConfig,
    samples: Manifest,
    filtered: Manifest,
    problems: Manifest,
    splits: tuple[str, ...],
    root: str,
    parallel: bool = False,
) -> Manifest:
    key_cfg = {"cluster": cfg.model_dump(mode="json"), "judge": judge.model_dump(mode="json")}
    plan = plan_stage(root, Stage.CLUSTER, key_cfg, [samples, filtered, problems], cluster)
    if not plan.complete():
        by_id = {p.name: p for p in sample_stage.eval_problems(problems, splits)}
        survivors = cluster.survivors(filtered, samples)
        inputs = cluster_inputs_task(plan=plan, cfg=cfg, problems=by_id, survivors=survivors)
        _run_exec(plan, survivors, "generated", by_id, judge, root, generated=inputs, parallel=parallel)
    return _published(
        cached(cluster_finish_task, root)(plan=plan, cfg=cfg, samples=samples, filtered=filtered)
    )


@flow(name="evaluate")
def evaluate_flow(
    cfg: EvalConfig,
    judge: JudgeConfig,
    label: str,
    samples: Manifest,
    filtered: Manifest,
    clusters: Manifest,
    problems: Manifest,
    splits: tuple[str, ...],
    root: str,
    parallel: bool = False,
) -> Manifest:
    key_cfg = {
        "evaluate": cfg.model_dump(mode="json"),
        "judge": judge.model_dump(mode="json"),
        "label": label,
    }
    plan = plan_stage(root, Stage.EVALUATE, key_cfg, [samples, filtered, clusters, problems], evaluate)
    if not plan.complete():
        by_id = {p.name: p for p in sample_stage.eval_problems(problems, splits)}
        _run_exec(plan, filter_stage.programs_of(samples), "hidden", by_id, judge, root, parallel=parallel)
    return _published(
        cached(evaluate_finish_task, root)(
            plan=plan,
            cfg=cfg,
            label=label,
            problems=problems,
            splits=splits,
            samples=samples,
            filtered=filtered,
            clusters=clusters,
        )
    )


@flow(name="rl")
def rl_flow(
    cfg: RLConfig,
    judge: JudgeConfig,
    finetuned: Manifest,
    problems: Manifest,
    split: str,
    root: str,
    difficulty: Manifest | None = None,
) -> Manifest:
    key_cfg = {"rl": cfg.model_dump(mode="json"), "judge": judge.model_dump(mode="json"), "split": split}
    upstream = [finetuned, problems, *([difficulty] if difficulty is not None else [])]
    plan = plan_stage(root, Stage.RL, key_cfg, upstream, rl_stage)
    return _published(
        cached(rl_task, root)(
            plan=plan,
            cfg=cfg,
            finetuned=finetuned,
            problems=problems,
            split=split,
            judge=judge,
            difficulty=difficulty,
        )
    )


@flow(name="sft-continue")
def sft_continue_flow(
    cfg: FinetuneConfig,
    finetuned: Manifest,
    rl: Manifest,
    problems: Manifest,
    sft_split: str,
    valid_split: str,
    root: str,
) -> Manifest:
    key_cfg = {"finetune": cfg.model_dump(mode="json"), "sft_split": sft_split, "valid_split": valid_split}
    plan = plan_stage(root, Stage.SFT_CONTINUE, key_cfg, [finetuned, rl, problems], sft_continue_stage)
    return _published(
        cached(sft_continue_task, root)(
            plan=plan,
            cfg=cfg,
            finetuned=finetuned,
            rl=rl,
            problems=problems,
            sft_split=sft_split,
            valid_split=valid_split,
        )
    )


@flow(name="select")
def select_flow(
    label: str, grid: list[tuple[float, Manifest]], split: str, wide_k: int, root: str
) -> Manifest:
    key_cfg = {"label": label, "temperatures": [t for t, _ in grid], "split": split, "wide_k": wide_k}
    plan = plan_stage(root, Stage.SELECT, key_cfg, [m for _, m in grid], select_stage)
    return _published(
        cached(select_task, root)(plan=plan, label=label, grid=grid, split=split, wide_k=wide_k)
    )
