"""The ``alphacode-scaling`` flow: AlphaCode's solve rate against samples per problem.

Runs stages 1-2 (Cached where a run of the same settings made them in ``out_dir``), samples the
stage-2 model ``sample.sampling.n`` times per problem of the profile's ``problems.eval_splits``
at ``sample.sampling.temperature`` (stages 3-5 and the hidden-test evaluation, as the pipeline
does), then the ``curve`` stage (:mod:`tasks.core.stages.curve`): pass@k and ``m``@k with
filtering + clustering, filtering only and neither, for k = 1, 2, 5, ... n, with bands, the gaps
and the largest-cluster fraction; a Prefect markdown artifact shows its report.

Which problem set stages 1-2 see: the problems stage's key covers every split it writes, the
evaluation splits and their cap included, and fine-tuning's key covers the problems stage's. So
when the profile ``extends`` another (``scaling`` extends ``default``), stages 1-2 run on the
profile's problems config with ``eval_splits`` and ``max_eval_problems`` taken from the extended
profile: the same problem set that profile's run trained on, so its stages 1-2 come back Cached
in its run directory. The curve's problems are a second problems stage with the profile's own
evaluation selection (the same generator: the bundled splits' first problems). Without
``extends`` both are the profile's problem set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from pydantic import BaseModel, ConfigDict

from flows.pipeline import EvaluationRun, _evaluate, active_run, default_out_dir, run_pipeline
from flows.stages import curve_flow, problems_flow, run_stage
from tasks.artifacts import publish_markdown_file
from tasks.core.config import PipelineConfig, load_profile, profile_extends
from tasks.core.manifest import Manifest
from tasks.core.runs import point_latest
from tasks.core.stages import REPORT_FILE, Stage
from tasks.core.stages.curve import CurveInputs, CurveSettings
from tasks.core.stages.problems import ProblemsInputs


class ScalingResult(BaseModel):
    model_config = ConfigDict(frozen=True)
    root: str
    finetune: Manifest
    problems: Manifest  # the curve's problem set
    evaluation: EvaluationRun
    curve: Manifest

    @property
    def report(self) -> Path:
        return self.curve.dir / REPORT_FILE


def out_dir_for(profile: str) -> str:
    """Default run directory: the extended profile's (where its stages 1-2 are), else the profile's."""
    return default_out_dir(profile_extends(profile) or profile)


def training_config(profile: str, cfg: PipelineConfig) -> PipelineConfig:
    """``cfg`` with the problem set stages 1-2 train on (see the module docstring)."""
    base = profile_extends(profile)
    if base is None:
        return cfg
    parent = load_profile(base).problems
    problems = cfg.problems.model_copy(
        update={"eval_splits": parent.eval_splits, "max_eval_problems": parent.max_eval_problems}
    )
    return cfg.model_copy(update={"problems": problems})


def curve_settings(cfg: PipelineConfig) -> CurveSettings:
    e = cfg.evaluate
    return CurveSettings(n_submissions=e.n_submissions, seed=e.seed, bootstrap=e.bootstrap)


@flow(name="alphacode-scaling")
def alphacode_scaling(
    profile: str = "scaling", out_dir: str | None = None, overrides: dict[str, Any] | None = None
) -> ScalingResult:
    """The solve-rate-vs-samples curve of the stage-2 model on a named profile (``overrides``
    deep-merge into it); ``out_dir`` defaults to the extended profile's run directory."""
    cfg = load_profile(profile, overrides)
    root = str(Path(out_dir or out_dir_for(profile)).resolve())
    splits = cfg.problems.eval_splits
    with active_run(root):
        trained = run_pipeline(training_config(profile, cfg), root, until=Stage.FINETUNE.value)
        problems = run_stage(problems_flow, ProblemsInputs(cfg.problems), root)
        t, n = cfg.sample.sampling.temperature, cfg.sample.sampling.n
        run = _evaluate(f"sft T={t:g}", cfg, t, trained.finetune, problems, root, splits=splits, n=n)
        inputs = CurveInputs(run.label, splits, curve_settings(cfg), run.evaluation, problems)
        curve = run_stage(curve_flow, inputs, root)
    result = ScalingResult(
        root=root, finetune=trained.finetune, problems=problems, evaluation=run, curve=curve
    )
    point_latest(curve)
    publish_markdown_file(
        result.report, key="alphacode-scaling", description=f"solve rate vs samples ({profile})"
    )
    get_run_logger().info("scaling report: %s", result.report)
    return result
