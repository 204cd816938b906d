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
    oracle_sft_flow,
    pretrain_flow,
    problems_flow,
    report_flow,
    rl_flow,
    run_stage,
    sample_flow,
    select_flow,
    sft_continue_flow,
)
from tasks.artifacts import publish_markdown_file
from tasks.core import store
from tasks.core.config import PipelineConfig, deep_merge, load_profile, normalise_overrides
from tasks.core.manifest import Manifest
from tasks.core.runs import point_latest
from tasks.core.seeds import seed_overrides, write_spread
from tasks.core.stages import STAGES, Stage
from tasks.core.stages.cluster import ClusterInputs
from tasks.core.stages.evaluate import EvaluateInputs
from tasks.core.stages.filter import FilterInputs
from tasks.core.stages.finetune import FinetuneInputs
from tasks.core.stages.pretrain import PretrainInputs
from tasks.core.stages.problems import ProblemsInputs
from tasks.core.stages.report import Contender, ReportInputs, ReportSettings
from tasks.core.stages.rl import RLInputs
from tasks.core.stages.sample import SampleInputs
from tasks.core.stages.select import SelectInputs
from tasks.core.stages.sft_continue import OracleSFTInputs, SFTContinueInputs
from tasks.recovery import crash_stale_runs, register_active_run
from tasks.runners import require_runner, runner_session

DEFAULT_OUT = "runs"


class EvaluationRun(BaseModel):
    """Stages 3-5 and the hidden-test evaluation of one model at one sampling setting
    (``label``, e.g. ``rl T=0.8``); later ones are None when the run stopped early (``until``)."""

    model_config = ConfigDict(frozen=True)
    label: str = ""
    samples: Manifest
    filtered: Manifest | None = None
    clusters: Manifest | None = None
    evaluation: Manifest | None = None

    def labelled(self, label: str) -> dict[str, Manifest]:
        pairs = zip(_EVAL_STAGES, (self.samples, self.filtered, self.clusters, self.evaluation), strict=True)
        return {f"{stage.value} ({label})": m for stage, m in pairs if m is not None}


class PipelineResult(BaseModel):
    """Every stage a run finished (None: not reached). ``sft`` is stage 3-5 of the stage-2 model
    at the configured sampling temperature (the massive-sampling run); ``sft_continue`` the
    compute-matched baseline model; ``oracle_sft`` the oracle-SFT upper reference (trained on
    ``problems.oracle_split`` when set); ``rl_difficulty`` stages 3-4 of the stage-2 model on the RL
    split when RL problems are chosen by pass rate; ``selections`` each compared model's temperature choice on
    ``valid``; ``evaluations`` every test evaluation of the report by label (``rl T=0.8``...);
    ``rl_eval`` the RL model's evaluation its pass@k curve comes from."""

    model_config = ConfigDict(frozen=True)
    root: str
    problems: Manifest
    pretrain: Manifest | None = None
    finetune: Manifest | None = None
    sft: EvaluationRun | None = None
    rl_difficulty: EvaluationRun | None = None
    rl: Manifest | None = None
    sft_continue: Manifest | None = None
    oracle_sft: Manifest | None = None
    selections: dict[str, Manifest] = {}
    evaluations: dict[str, EvaluationRun] = {}
    rl_eval: EvaluationRun | None = None
    report: Manifest | None = None

    @property
    def stages(self) -> dict[str, Manifest]:
        """The finished stages by display label (``sample (sft T=0.8)``, ``rl``...), in pipeline
        order: for printing and the report's stage list; code reads the fields."""
        out = {Stage.PROBLEMS.value: self.problems}
        out |= {
            s.value: m for s, m in ((Stage.PRETRAIN, self.pretrain), (Stage.FINETUNE, self.finetune)) if m
        }
        out |= self.sft.labelled(self.sft.label) if self.sft else {}
        out |= self.rl_difficulty.labelled(self.rl_difficulty.label) if self.rl_difficulty else {}
        out |= {Stage.RL.value: self.rl} if self.rl else {}
        out |= {Stage.SFT_CONTINUE.value: self.sft_continue} if self.sft_continue else {}
        out |= {Stage.ORACLE_SFT.value: self.oracle_sft} if self.oracle_sft else {}
        out |= {f"{Stage.SELECT.value} ({k})": m for k, m in self.selections.items()}
        for run in self.evaluations.values():
            out |= run.labelled(run.label)
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
    with runner_session(cfg.runner):
        return _run_pipeline(cfg, root, until)


def _run_pipeline(cfg: PipelineConfig, root: str, until: str) -> PipelineResult:
    stop = STAGES.index(Stage(until))
    reached = lambda stage: stop >= STAGES.index(stage)  # noqa: E731
    problems = run_stage(problems_flow, ProblemsInputs(cfg.problems), root)
    out: dict[str, Any] = {"root": root, "problems": problems}
    if reached(Stage.PRETRAIN):
        out["pretrain"] = run_stage(pretrain_flow, PretrainInputs(cfg.pretrain), root, cfg.runner)
    if reached(Stage.FINETUNE):
        out["finetune"] = _finetune(cfg, out["pretrain"], problems, root)
    if reached(Stage.SAMPLE):
        until_eval = STAGES[min(stop, STAGES.index(Stage.EVALUATE))]
        t = cfg.sample.sampling.temperature
        out["sft"] = _evaluate(f"sft T={t:g}", cfg, t, out["finetune"], problems, root, until_eval)
    if reached(Stage.RL):
        out["rl_difficulty"], out["rl"] = _rl(cfg, out["finetune"], problems, root)
    if reached(Stage.SFT_CONTINUE):
        out["sft_continue"] = sft_continue(cfg, out["finetune"], out["rl"], problems, root)
    if reached(Stage.ORACLE_SFT) and cfg.problems.oracle_split:
        out["oracle_sft"] = oracle_sft(cfg, out["finetune"], out["rl"], problems, root)
    if reached(Stage.SELECT):
        models = {"sft": out["finetune"], "sft-continue": out["sft_continue"], "rl": out["rl"]}
        models |= {"oracle-sft": out["oracle_sft"]} if out.get("oracle_sft") else {}
        chosen = {
            name: select_temperatures(name, cfg, model, problems, root) for name, model in models.items()
        }
        out["selections"] = {name: sel for name, (_, _, sel) in chosen.items() if sel is not None}
    if reached(Stage.REPORT):
        contenders, evaluations = [], {}
        for name, (t1, tw, _) in chosen.items():
            runs = {t: _evaluate(f"{name} T={t:g}", cfg, t, models[name], problems, root) for t in {t1, tw}}
            evaluations |= {run.label: run for run in runs.values()}
            contenders.append(
                Contender(
                    label=name,
                    pass1=runs[t1].evaluation,
                    wide=runs[tw].evaluation,
                    pass1_temperature=t1,
                    wide_temperature=tw,
                )
            )
        out |= {"evaluations": evaluations, "rl_eval": evaluations[f"rl T={chosen['rl'][1]:g}"]}
        result = PipelineResult(**out)
        return result.model_copy(update={"report": _report(cfg, result, contenders, root)})
    return PipelineResult(**out)


def train_through_rl(cfg: PipelineConfig, root: str) -> PipelineResult:
    """Problems, stages 1-2 and RL (with its difficulty estimate when configured), no test
    evaluation: what a study on ``valid`` needs (all Cached where a run already made them)."""
    require_runner(cfg.runner)
    problems = run_stage(problems_flow, ProblemsInputs(cfg.problems), root)
    pretrain = run_stage(pretrain_flow, PretrainInputs(cfg.pretrain), root, cfg.runner)
    finetune = _finetune(cfg, pretrain, problems, root)
    difficulty, rl = _rl(cfg, finetune, problems, root)
    return PipelineResult(
        root=root, problems=problems, pretrain=pretrain, finetune=finetune, rl_difficulty=difficulty, rl=rl
    )


def _finetune(cfg: PipelineConfig, pretrained: Manifest, problems: Manifest, root: str) -> Manifest:
    p = cfg.problems
    return run_stage(
        finetune_flow,
        FinetuneInputs(cfg.finetune, p.sft_split, p.valid_split, pretrained, problems),
        root,
        cfg.runner,
    )


def sft_continue(
    cfg: PipelineConfig, finetuned: Manifest, rl: Manifest, problems: Manifest, root: str
) -> Manifest:
    """The SFT-continue baseline matched to ``rl``'s compute."""
    inputs = SFTContinueInputs(
        cfg.finetune, cfg.problems.sft_split, cfg.problems.valid_split, finetuned, rl, problems
    )
    return run_stage(sft_continue_flow, inputs, root, cfg.runner)


def oracle_sft(
    cfg: PipelineConfig, finetuned: Manifest, rl: Manifest, problems: Manifest, root: str
) -> Manifest:
    """The oracle-SFT upper reference: the SFT-continue training on ``problems.oracle_split``."""
    split = cfg.problems.oracle_split
    inputs = OracleSFTInputs(cfg.finetune, split, cfg.problems.valid_split, finetuned, rl, problems)
    return run_stage(oracle_sft_flow, inputs, root, cfg.runner)


def _rl(
    cfg: PipelineConfig, finetune: Manifest, problems: Manifest, root: str
) -> tuple[EvaluationRun | None, Manifest]:
    """The RL stage, after its difficulty estimate when ``rl.difficulty_band`` is set."""
    difficulty = _difficulty(cfg, finetune, problems, root) if cfg.rl.difficulty_band is not None else None
    band = difficulty.evaluation if difficulty else None
    inputs = RLInputs(cfg.rl, cfg.judge, cfg.problems.rl_split, finetune, problems, band)
    return difficulty, run_stage(rl_flow, inputs, root, cfg.runner)


def evaluate_on_split(
    name: str,
    cfg: PipelineConfig,
    t: float,
    model: Manifest,
    problems: Manifest,
    root: str,
    split: str | None = None,
    n: int | None = None,
) -> EvaluationRun:
    """``model`` evaluated on ``split`` (default ``valid``) at ``t``, ``n`` (default
    ``select.valid_n``) samples per problem."""
    valid = (split or cfg.problems.valid_split,)
    label = f"{name} T={t:g} on {valid[0]}"
    return _evaluate(label, cfg, t, model, problems, root, splits=valid, n=n or cfg.select.valid_n)


def _difficulty(cfg: PipelineConfig, model: Manifest, problems: Manifest, root: str) -> EvaluationRun:
    """Stages 3-5 and the evaluation of the stage-2 model on the RL split, at the temperature the
    RL algorithm samples at: the hidden-test pass rates RL problems are chosen by."""
    t, split = cfg.rl.params.temperature, cfg.problems.rl_split
    label = f"sft T={t:g} on {split}"
    return _evaluate(
        label, cfg, t, model, problems, root, Stage.EVALUATE, (split,), cfg.rl.difficulty_samples
    )


def wide_k(cfg: PipelineConfig) -> int:
    """The k of the report's wide pass@k: 10 if both the test and the valid sampling reach it,
    else the largest ``evaluate.ks`` that both reach."""
    reach = min(
        cfg.sample.sampling.n, cfg.select.valid_n if cfg.select.temperatures else cfg.sample.sampling.n
    )
    fits = [k for k in cfg.evaluate.ks if k <= reach]
    if not fits:
        raise ValueError(f"no k of evaluate.ks {list(cfg.evaluate.ks)} is <= {reach} samples: lower a k")
    return 10 if 10 in fits else max(fits)


def select_temperatures(
    name: str, cfg: PipelineConfig, model: Manifest, problems: Manifest, root: str, split: str | None = None
) -> tuple[float, float, Manifest | None]:
    """``name``'s (pass@1 temperature, wide temperature, selection stage), chosen on ``split``
    (default ``valid``) over ``cfg.select.temperatures``; without a grid, the configured
    sampling temperature."""
    grid, split = cfg.select.temperatures, split or cfg.problems.valid_split
    if not grid:
        t = cfg.sample.sampling.temperature
        return t, t, None
    runs = [(t, evaluate_on_split(name, cfg, t, model, problems, root, split)) for t in grid]
    grid_runs = tuple((t, run.evaluation) for t, run in runs)
    sel = run_stage(select_flow, SelectInputs(name, split, wide_k(cfg), grid_runs), root)
    return float(sel.metrics["pass1_temperature"]), float(sel.metrics["wide_temperature"]), sel


def _evaluate(
    label: str,
    cfg: PipelineConfig,
    temperature: float,
    model: Manifest,
    problems: Manifest,
    root: str,
    until: Stage = Stage.EVALUATE,
    splits: tuple[str, ...] | None = None,
    n: int | None = None,
) -> EvaluationRun:
    """Stages 3-5 and the hidden-test evaluation for one model at ``temperature`` (and ``n``
    samples per problem, default the configured n) on ``splits`` (default the eval splits), up
    to ``until``."""
    splits = splits or cfg.problems.eval_splits
    sampling = cfg.sample.sampling.model_copy(
        update={"temperature": temperature, "n": n or cfg.sample.sampling.n}
    )
    sample_cfg = cfg.sample.model_copy(update={"sampling": sampling})
    on = partial(_on_runner, cfg, root)
    samples = on(sample_flow, SampleInputs(sample_cfg, splits, model, problems))
    if until == Stage.SAMPLE:
        return EvaluationRun(label=label, samples=samples)
    filtered = on(filter_flow, FilterInputs(cfg.judge, splits, samples, problems))
    if until == Stage.FILTER:
        return EvaluationRun(label=label, samples=samples, filtered=filtered)
    cluster_in = ClusterInputs(cfg.cluster, cfg.judge, splits, samples, filtered, problems)
    clusters = on(cluster_flow, cluster_in)
    if until == Stage.CLUSTER:
        return EvaluationRun(label=label, samples=samples, filtered=filtered, clusters=clusters)
    evaluation = on(
        evaluate_flow,
        EvaluateInputs(cfg.evaluate, cfg.judge, label, splits, samples, filtered, clusters, problems),
    )
    return EvaluationRun(
        label=label, samples=samples, filtered=filtered, clusters=clusters, evaluation=evaluation
    )


def _on_runner(cfg: PipelineConfig, root: str, stage_flow, inputs) -> Manifest:
    """A sharded stage, its shards on ``cfg.runner`` (in turn when sequential)."""
    return run_stage(stage_flow, inputs, root, cfg.runner)


def _report(cfg: PipelineConfig, result: PipelineResult, contenders: list[Contender], root: str) -> Manifest:
    settings = ReportSettings(
        wide_k=wide_k(cfg),
        n_submissions=cfg.evaluate.n_submissions,
        seed=cfg.evaluate.seed,
        bootstrap=cfg.evaluate.bootstrap,
        reference="oracle-sft" if result.oracle_sft else None,
    )
    inputs = ReportInputs(
        settings, cfg.problems.eval_splits, tuple(contenders), result.problems, result.stages
    )
    return run_stage(report_flow, inputs, root)


def evaluate_model(
    cfg: PipelineConfig, label: str, model: Manifest, problems: Manifest, root: str
) -> EvaluationRun:
    """Stages 3-5 and the hidden-test evaluation of one model (used by ``reevaluate``)."""
    require_runner(cfg.runner)
    return _evaluate(label, cfg, cfg.sample.sampling.temperature, model, problems, root)


@flow(name="alphacode-pipeline")
def alphacode_pipeline(
    profile: str = "default", out_dir: str | None = None, overrides: dict[str, Any] | None = None
) -> PipelineResult:
    """The whole pipeline on a named profile (``overrides`` deep-merge into it)."""
    cfg = load_profile(profile, overrides)
    root = store.working_root(out_dir or default_out_dir(profile))
    with active_run(root):
        result = run_pipeline(cfg, root)
    latest = point_latest(result.report)
    publish_markdown_file(
        result.report.dir / "report.md", key="alphacode-report", description=f"pipeline report ({profile})"
    )
    get_run_logger().info("report: %s", latest / "report.md")
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
    root = store.working_root(out_dir or default_out_dir(profile))
    with active_run(root):
        return run_pipeline(cfg, root, until=stage)


@flow(name="alphacode-seeds")
def alphacode_seeds(
    profile: str = "default",
    seeds: list[int] | None = None,
    out_dir: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> str:
    """The pipeline once per seed of ``seeds`` (default 0 and 1: stages 2-6 reseeded,
    :mod:`tasks.core.seeds`) into one run directory, then the spread of RL's gain across them;
    returns the spread report's path."""
    seeds = list(seeds or [0, 1])
    base = load_profile(profile, overrides)
    root = store.working_root(out_dir or default_out_dir(profile))
    comparisons, reports = {}, {}
    with active_run(root):
        for seed in seeds:
            extra = deep_merge(normalise_overrides(overrides), seed_overrides(base.rl.algorithm, seed))
            result = run_pipeline(load_profile(profile, extra), root)
            comparisons[seed] = result.report.metrics["comparison"]
            reports[seed] = str(result.report.dir / "report.md")
    path = write_spread(Path(root) / "seeds" / "-".join(map(str, seeds)), comparisons, reports)
    create_markdown_artifact(path.read_text(), key="alphacode-seeds", description=f"seed spread ({profile})")
    get_run_logger().info("seed spread: %s", path)
    return str(path)
