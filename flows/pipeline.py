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
from tasks.core.stages import STAGES, Stage
from tasks.core.stages import report as report_stage
from tasks.recovery import crash_stale_runs, register_active_run
from tasks.runners import is_parallel, make_task_runner, require_runner
from tasks.stages import report_task

DEFAULT_OUT = "runs"


class EvaluationRun(BaseModel):
    """Stages 3-5 and the hidden-test evaluation of one model; later ones are None when the
    run stopped early (``until``)."""

    model_config = ConfigDict(frozen=True)
    samples: Manifest
    filtered: Manifest | None = None
    clusters: Manifest | None = None
    evaluation: Manifest | None = None

    def labelled(self, label: str) -> dict[str, Manifest]:
        pairs = zip(_EVAL_STAGES, (self.samples, self.filtered, self.clusters, self.evaluation), strict=True)
        return {f"{stage.value} ({label})": m for stage, m in pairs if m is not None}


class PipelineResult(BaseModel):
    """Every stage a run finished (None: not reached). ``sft``/``rl_eval`` are the evaluations of
    the stage-2 and the RL model."""

    model_config = ConfigDict(frozen=True)
    root: str
    problems: Manifest
    pretrain: Manifest | None = None
    finetune: Manifest | None = None
    sft: EvaluationRun | None = None
    rl: Manifest | None = None
    rl_eval: EvaluationRun | None = None
    report: Manifest | None = None

    @property
    def stages(self) -> dict[str, Manifest]:
        """The finished stages by display label (``sample (sft)``, ``rl``...), in pipeline order:
        for printing and the report's stage list; code reads the fields."""
        out = {Stage.PROBLEMS.value: self.problems}
        out |= {
            s.value: m for s, m in ((Stage.PRETRAIN, self.pretrain), (Stage.FINETUNE, self.finetune)) if m
        }
        out |= self.sft.labelled("sft") if self.sft else {}
        out |= {Stage.RL.value: self.rl} if self.rl else {}
        out |= self.rl_eval.labelled("rl") if self.rl_eval else {}
        return out


_EVAL_STAGES = (Stage.SAMPLE, Stage.FILTER, Stage.CLUSTER, Stage.EVALUATE)


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


def run_pipeline(cfg: PipelineConfig, root: str, until: str = Stage.REPORT.value) -> PipelineResult:
    """Run the stages in order up to and including ``until`` (the whole pipeline by default);
    finished stages come back Cached."""
    if until not in STAGES:
        raise ValueError(f"until={until!r} is not a stage; choose one of {', '.join(STAGES)}")
    require_runner(cfg.runner)
    stop = STAGES.index(Stage(until))
    reached = lambda stage: stop >= STAGES.index(stage)  # noqa: E731
    problems = problems_flow(cfg.problems, root)
    pretrain = finetune = rl = None
    sft = rl_eval = None
    if reached(Stage.PRETRAIN):
        pretrain = pretrain_flow(cfg.pretrain, root)
    if reached(Stage.FINETUNE):
        finetune = finetune_flow(
            cfg.finetune, pretrain, problems, cfg.problems.sft_split, cfg.problems.valid_split, root
        )
    if reached(Stage.SAMPLE):
        sft = _evaluate("sft", cfg, finetune, problems, root, STAGES[min(stop, STAGES.index(Stage.EVALUATE))])
    if reached(Stage.RL):
        rl = rl_flow(cfg.rl, cfg.judge, finetune, problems, cfg.problems.rl_split, root)
    if reached(Stage.REPORT):
        rl_eval = _evaluate("rl", cfg, rl, problems, root, Stage.EVALUATE)
    result = PipelineResult(
        root=root, problems=problems, pretrain=pretrain, finetune=finetune, sft=sft, rl=rl, rl_eval=rl_eval
    )
    if reached(Stage.REPORT):
        result = result.model_copy(update={"report": _report(cfg, result, root)})
    return result


def _evaluate(
    label: str, cfg: PipelineConfig, model: Manifest, problems: Manifest, root: str, until: Stage
) -> EvaluationRun:
    """Stages 3-5 and the hidden-test evaluation for one model, up to ``until``."""
    splits = cfg.problems.eval_splits
    on = partial(_on_runner, cfg)
    samples = on(sample_flow)(cfg.sample, model, problems, splits, root)
    if until == Stage.SAMPLE:
        return EvaluationRun(samples=samples)
    filtered = on(filter_flow)(cfg.judge, samples, problems, splits, root)
    if until == Stage.FILTER:
        return EvaluationRun(samples=samples, filtered=filtered)
    clusters = on(cluster_flow)(cfg.cluster, cfg.judge, samples, filtered, problems, splits, root)
    if until == Stage.CLUSTER:
        return EvaluationRun(samples=samples, filtered=filtered, clusters=clusters)
    evaluation = on(evaluate_flow)(
        cfg.evaluate, cfg.judge, label, samples, filtered, clusters, problems, splits, root
    )
    return EvaluationRun(samples=samples, filtered=filtered, clusters=clusters, evaluation=evaluation)


def _on_runner(cfg: PipelineConfig, stage_flow):
    """``stage_flow`` as is (sequential), or on ``cfg.runner``'s task runner with its shards submitted."""
    if not is_parallel(cfg.runner):
        return stage_flow
    return partial(stage_flow.with_options(task_runner=make_task_runner(cfg.runner)), parallel=True)


def _report(cfg: PipelineConfig, result: PipelineResult, root: str) -> Manifest:
    assert result.sft and result.rl_eval  # the report stage runs after both evaluations
    before, after = result.sft.evaluation, result.rl_eval.evaluation
    plan = plan_stage(root, Stage.REPORT, {}, [before, after], report_stage)
    return cached(report_task, root)(
        plan=plan,
        before=before,
        after=after,
        problems=result.problems,
        splits=cfg.problems.eval_splits,
        stage_manifests=result.stages,
    )


def evaluate_model(
    cfg: PipelineConfig, label: str, model: Manifest, problems: Manifest, root: str
) -> EvaluationRun:
    """Stages 3-5 and the hidden-test evaluation of one model (used by ``reevaluate``)."""
    require_runner(cfg.runner)
    return _evaluate(label, cfg, model, problems, root, Stage.EVALUATE)


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
    stage: str = Stage.PRETRAIN.value,
    profile: str = "default",
    out_dir: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> PipelineResult:
    """One stage on a named profile: its upstream stages come back Cached (or are computed)."""
    cfg = load_profile(profile, overrides)
    root = str(Path(out_dir or default_out_dir(profile)).resolve())
    with active_run(root):
        return run_pipeline(cfg, root, until=stage)
