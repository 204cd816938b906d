"""The ``alphacode-pipeline`` flow: the six stages end to end, then evaluation and a report.

Parameters are plain (``profile``, ``out_dir``, ``overrides``) so a deployment run can set
them with ``--param``/``--params``; they are validated once into a frozen
:class:`~tasks.core.config.PipelineConfig` and a bad value fails the run at once with the
field named. Each stage is its own subflow; every stage output is content-addressed under
``out_dir`` so a rerun finds finished stages Cached and resumes an interrupted one.
The sharded stages (sample, filter, cluster, evaluate) run on the task runner that
``cfg.runner`` names (:mod:`tasks.runners`); the runner is no part of any stage key.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.context import get_run_context
from pydantic import BaseModel, ConfigDict

from flows.stages import (
    cluster_flow,
    evaluate_flow,
    filter_flow,
    finetune_flow,
    pretrain_flow,
    problems_flow,
    rl_flow,
    sample_flow,
)
from tasks.caching import cached
from tasks.core.config import PipelineConfig, load_profile
from tasks.core.manifest import Manifest, plan_stage
from tasks.core.stages import problems as problems_stage
from tasks.core.stages import report as report_stage
from tasks.recovery import crash_stale_runs, register_active_run
from tasks.runners import is_parallel, make_task_runner, require_runner
from tasks.stages import report_task

DEFAULT_OUT = "runs"


class EvaluationRun(BaseModel):
    model_config = ConfigDict(frozen=True)
    samples: Manifest
    filtered: Manifest
    clusters: Manifest
    evaluation: Manifest


class PipelineResult(BaseModel):
    model_config = ConfigDict(frozen=True)
    root: str
    stages: dict[str, Manifest]
    report: Manifest | None = None


def default_out_dir(profile: str) -> str:
    return str(Path(DEFAULT_OUT) / profile)


@contextmanager
def active_run(root: str):
    """Mark earlier killed runs of this directory Crashed, and record this one while it runs."""
    for run_id in crash_stale_runs(root):
        get_run_logger().warning("flow run %s was killed earlier; marked Crashed", run_id)
    marker = register_active_run(root, str(get_run_context().flow_run.id))
    try:
        yield
    finally:
        marker.unlink(missing_ok=True)


STAGES = ("problems", "pretrain", "finetune", "sample", "filter", "cluster", "evaluate", "rl", "report")


def run_pipeline(cfg: PipelineConfig, root: str, until: str = "report") -> PipelineResult:
    """Run the stages in order up to and including ``until`` (the whole pipeline by default);
    finished stages come back Cached."""
    if until not in STAGES:
        raise ValueError(f"until={until!r} is not a stage; choose one of {', '.join(STAGES)}")
    require_runner(cfg.runner)
    stop = STAGES.index(until)
    stages: dict[str, Manifest] = {"problems": problems_flow(cfg.problems, root)}
    if stop >= STAGES.index("pretrain"):
        stages["pretrain"] = pretrain_flow(cfg.pretrain, root)
    if stop >= STAGES.index("finetune"):
        stages["finetune"] = finetune_flow(
            cfg.finetune,
            stages["pretrain"],
            stages["problems"],
            cfg.problems.sft_split,
            cfg.problems.rl_split,
            root,
        )
    if stop >= STAGES.index("sample"):
        _evaluate_into(
            stages, "sft", cfg, stages["finetune"], root, STAGES[min(stop, STAGES.index("evaluate"))]
        )
    if stop >= STAGES.index("rl"):
        stages["rl"] = rl_flow(
            cfg.rl, cfg.judge, stages["finetune"], stages["problems"], cfg.problems.rl_split, root
        )
    report = None
    if stop >= STAGES.index("report"):
        _evaluate_into(stages, "rl", cfg, stages["rl"], root, "evaluate")
        report = _report(cfg, stages, root)
    return PipelineResult(root=root, stages=stages, report=report)


def _evaluate_into(
    stages: dict, label: str, cfg: PipelineConfig, model: Manifest, root: str, until: str
) -> None:
    """Stages 3-5 and the hidden-test evaluation for one model, up to ``until``."""
    splits, problems = cfg.problems.eval_splits, stages["problems"]
    on = partial(_on_runner, cfg)
    samples = stages[f"sample ({label})"] = on(sample_flow)(cfg.sample, model, problems, splits, root)
    if until == "sample":
        return
    filtered = stages[f"filter ({label})"] = on(filter_flow)(cfg.judge, samples, problems, splits, root)
    if until == "filter":
        return
    clusters = stages[f"cluster ({label})"] = on(cluster_flow)(
        cfg.cluster, cfg.judge, samples, filtered, problems, splits, root
    )
    if until == "cluster":
        return
    stages[f"evaluate ({label})"] = on(evaluate_flow)(
        cfg.evaluate, cfg.judge, label, samples, filtered, clusters, problems, splits, root
    )


def _on_runner(cfg: PipelineConfig, stage_flow):
    """``stage_flow`` as is (sequential), or on ``cfg.runner``'s task runner with its shards submitted."""
    if not is_parallel(cfg.runner):
        return stage_flow
    return partial(stage_flow.with_options(task_runner=make_task_runner(cfg.runner)), parallel=True)


def _report(cfg: PipelineConfig, stages: dict[str, Manifest], root: str) -> Manifest:
    before, after = stages["evaluate (sft)"], stages["evaluate (rl)"]
    split_of = {
        p.name: s for s in cfg.problems.eval_splits for p in problems_stage.load_split(stages["problems"], s)
    }
    plan = plan_stage(root, "report", {}, [before, after], report_stage.MODULES)
    return cached(report_task, root)(
        plan=plan, before=before, after=after, split_of=split_of, stage_manifests=stages
    )


def evaluate_model(
    cfg: PipelineConfig, label: str, model: Manifest, problems: Manifest, root: str
) -> EvaluationRun:
    """Stages 3-5 and the hidden-test evaluation of one model (used by ``reevaluate``)."""
    require_runner(cfg.runner)
    stages: dict[str, Manifest] = {"problems": problems}
    _evaluate_into(stages, label, cfg, model, root, "evaluate")
    return EvaluationRun(
        samples=stages[f"sample ({label})"],
        filtered=stages[f"filter ({label})"],
        clusters=stages[f"cluster ({label})"],
        evaluation=stages[f"evaluate ({label})"],
    )


@flow(name="alphacode-pipeline")
def alphacode_pipeline(
    profile: str = "default", out_dir: str | None = None, overrides: dict[str, Any] | None = None
) -> PipelineResult:
    """The whole pipeline on a named profile (``overrides`` deep-merge into it)."""
    cfg = load_profile(profile, overrides)
    root = str(Path(out_dir or default_out_dir(profile)).resolve())
    with active_run(root):
        result = run_pipeline(cfg, root)
    report_md = (result.report.dir / "report.md").read_text()
    create_markdown_artifact(report_md, key="alphacode-report", description=f"pipeline report ({profile})")
    get_run_logger().info("report: %s", result.report.dir / "report.md")
    return result


@flow(name="alphacode-stage")
def alphacode_stage(
    stage: str = "pretrain",
    profile: str = "default",
    out_dir: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> PipelineResult:
    """One stage on a named profile: its upstream stages come back Cached (or are computed)."""
    cfg = load_profile(profile, overrides)
    root = str(Path(out_dir or default_out_dir(profile)).resolve())
    with active_run(root):
        return run_pipeline(cfg, root, until=stage)
