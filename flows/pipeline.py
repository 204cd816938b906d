"""The ``alphacode-pipeline`` flow: the six stages end to end, then evaluation and a report.

Parameters are plain (``profile``, ``out_dir``, ``overrides``) so a deployment run can set
them with ``--param``/``--params``; they are validated once into a frozen
:class:`~tasks.core.config.PipelineConfig` and a bad value fails the run at once with the
field named. Each stage is its own subflow; every stage output is content-addressed under
``out_dir`` so a rerun finds finished stages Cached and resumes an interrupted one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
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
from tasks.core.stages import problems as problems_stage, report as report_stage
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
    report: Manifest


def default_out_dir(profile: str) -> str:
    return str(Path(DEFAULT_OUT) / profile)


def evaluate_model(cfg: PipelineConfig, label: str, model: Manifest, problems: Manifest, root: str) -> EvaluationRun:
    """Stages 3-5 and the hidden-test evaluation for one model."""
    splits = cfg.problems.eval_splits
    samples = sample_flow(cfg.sample, model, problems, splits, root)
    filtered = filter_flow(cfg.judge, samples, problems, splits, root)
    clusters = cluster_flow(cfg.cluster, cfg.judge, samples, filtered, problems, splits, root)
    evaluation = evaluate_flow(cfg.evaluate, cfg.judge, label, samples, filtered, clusters, problems, splits, root)
    return EvaluationRun(samples=samples, filtered=filtered, clusters=clusters, evaluation=evaluation)


def run_pipeline(cfg: PipelineConfig, root: str) -> PipelineResult:
    problems = problems_flow(cfg.problems, root)
    pretrained = pretrain_flow(cfg.pretrain, root)
    finetuned = finetune_flow(cfg.finetune, pretrained, problems, cfg.problems.sft_split, cfg.problems.rl_split, root)
    before = evaluate_model(cfg, "sft", finetuned, problems, root)
    tuned = rl_flow(cfg.rl, cfg.judge, finetuned, problems, cfg.problems.rl_split, root)
    after = evaluate_model(cfg, "rl", tuned, problems, root)
    stages = {
        "problems": problems, "pretrain": pretrained, "finetune": finetuned,
        "sample (sft)": before.samples, "filter (sft)": before.filtered, "cluster (sft)": before.clusters,
        "evaluate (sft)": before.evaluation, "rl": tuned, "sample (rl)": after.samples,
        "filter (rl)": after.filtered, "cluster (rl)": after.clusters, "evaluate (rl)": after.evaluation,
    }
    split_of = {p.name: s for s in cfg.problems.eval_splits for p in problems_stage.load_split(problems, s)}
    plan = plan_stage(root, "report", {}, [before.evaluation, after.evaluation], report_stage.MODULES)
    report = cached(report_task, root)(plan=plan, before=before.evaluation, after=after.evaluation,
                                       split_of=split_of, stage_manifests=stages)
    return PipelineResult(root=root, stages=stages, report=report)


@flow(name="alphacode-pipeline")
def alphacode_pipeline(profile: str = "default", out_dir: str | None = None,
                       overrides: dict[str, Any] | None = None) -> PipelineResult:
    cfg = load_profile(profile, overrides)
    root = str(Path(out_dir or default_out_dir(profile)).resolve())
    result = run_pipeline(cfg, root)
    report_md = (result.report.dir / "report.md").read_text()
    create_markdown_artifact(report_md, key="alphacode-report", description=f"pipeline report ({profile})")
    get_run_logger().info("report: %s", result.report.dir / "report.md")
    return result
