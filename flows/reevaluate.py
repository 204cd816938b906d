"""The ``reevaluate`` flow: evaluate a checkpoint on a named split and append to a history.

``model_stage`` names the stage whose newest complete manifest in ``run_dir`` is the model to
evaluate (``rl`` or ``finetune``), unless ``model_key`` pins one. The evaluation reuses the
run's content-addressed stages, so re-evaluating an unchanged checkpoint is all Cached: no
sample is redrawn and no identical program is re-run. Metrics are appended to
``<run_dir>/history/metrics.parquet``; ``history/report.md`` plots the trend and flags
regressions beyond the confidence intervals (also published as Prefect artifacts).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from flows.pipeline import evaluate_model
from flows.stages import problems_flow, run_stage
from tasks.artifacts import publish_markdown_file
from tasks.core.config import load_profile
from tasks.core.history import append_history, newest_manifest, plot_trend, regressions
from tasks.core.manifest import Manifest, read_manifest
from tasks.core.report import markdown_table
from tasks.core.stages.problems import ProblemsInputs


def _model(run_dir: Path, stage: str, key: str | None) -> Manifest:
    if key is None:
        return newest_manifest(run_dir, stage)
    manifest = read_manifest(run_dir / stage / key)
    if manifest is None:
        raise FileNotFoundError(
            f"no complete {stage!r} stage {key!r} in {run_dir}: check `alphacode samples runs`"
        )
    return manifest


@flow(name="reevaluate")
def reevaluate(
    run_dir: str = "runs/default",
    profile: str = "default",
    split: str = "test_instances",
    model_stage: str = "rl",
    model_key: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict:
    root = Path(run_dir).resolve()
    cfg = load_profile(profile, overrides)
    cfg = cfg.model_copy(update={"problems": cfg.problems.model_copy(update={"eval_splits": (split,)})})
    model = _model(root, model_stage, model_key)
    problems = run_stage(problems_flow, ProblemsInputs(cfg.problems), str(root))
    run = evaluate_model(cfg, f"{model_stage}:{model.key[:8]}", model, problems, str(root))
    now = datetime.now(timezone.utc).isoformat()
    rows = [
        {
            **{k: r[k] for k in ("split", "metric", "k", "value", "lo", "hi", "problems")},
            "evaluated_at": now,
            "model_stage": model_stage,
            "model_key": model.key,
        }
        for r in pq.read_table(run.evaluation.file("metrics.parquet")).to_pylist()
    ]
    history_dir = root / "history"
    history = append_history(history_dir / "metrics.parquet", rows)
    flagged = regressions(history)
    plot_trend(history, split, "pass@k", history_dir / f"trend_{split}.png")
    report = _report(history, flagged, split)
    (history_dir / "report.md").write_text(report)
    publish_markdown_file(
        history_dir / "report.md",
        key="reevaluate-report",
        description=f"re-evaluation of {run_dir} on {split}",
    )
    create_table_artifact(rows, key="reevaluate-metrics", description="metrics of this re-evaluation")
    if flagged:
        get_run_logger().warning("regressions beyond the confidence interval: %s", flagged)
    return {
        "model_key": model.key,
        "evaluation": run.evaluation.path,
        "regressions": len(flagged),
        "rows": len(rows),
    }


def _report(history, flagged, split: str) -> str:
    latest = max(history.column("evaluated_at").to_pylist())
    rows = [r for r in history.to_pylist() if r["evaluated_at"] == latest]
    lines = [
        f"# Re-evaluation history ({split})",
        "",
        f"Evaluations so far: {len(set(history.column('evaluated_at').to_pylist()))}.",
        "",
        "## Latest",
        "",
        markdown_table(rows),
        "",
        "## Regressions beyond the 95% CI",
        "",
    ]
    lines.append(markdown_table([vars(f) for f in flagged]) if flagged else "None.")
    lines += ["", f"![trend](trend_{split}.png)", ""]
    return "\n".join(lines)
