"""The ``alphacode-study`` flow: candidate settings trained on their training split and scored
on a selection split only (never a test split), one table with intervals.

Each candidate of ``data/studies/<study>.toml`` (:mod:`tasks.core.study`) is the profile plus
its overrides; its stages up to RL run (Cached where shared: problems, stages 1-2 and any
candidate already trained), then its RL model is sampled and judged on the study's split
(``problems.rl_valid_split``, the RL cells' ``valid_rl`` on the bundled profiles, else
``valid``) with ``select.valid_n`` samples per problem at every temperature of
``select.temperatures``, and scored at its own best pass@1 temperature there (a fixed
temperature would reward the entropy loss that greedy decoding gives for free); so are the
stage-2 model (the baseline) and the candidate's own SFT-continue model (stage 2 trained on its
SFT data for the candidate's optimizer steps: the compute-matched baseline it must beat). A
candidate that changes the problems or stages 1-2 is refused. The table goes to
``<run>/study/<study>/`` and a Prefect artifact.
``alphacode-reach`` (:func:`alphacode_reach`) is the check before RL: how many RL problems the
stage-2 model solves at least once in k samples.
Limits: each model's temperature is chosen and scored on the same split, which flatters every
row alike (the choice is one of a few temperatures); the report's test figures never use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, ConfigDict

from flows.pipeline import (
    active_run,
    default_out_dir,
    evaluate_on_split,
    run_pipeline,
    select_temperatures,
    sft_continue,
    train_through_rl,
)
from tasks.core.config import deep_merge, load_profile, normalise_overrides
from tasks.core.metrics import pass_at_k
from tasks.core.rl.difficulty import pass_rates
from tasks.core.stages.evaluate import PER_SAMPLE_FILE
from tasks.core.stages.sample import eval_problems
from tasks.core.study import load_study, study_rows, write_study

BASELINE = "stage-2"


def _pass1(evaluation) -> dict[str, float]:
    table = pq.read_table(evaluation.file(PER_SAMPLE_FILE), columns=["problem_id", "passed_hidden"])
    counts: dict[str, list[int]] = {}
    for pid, ok in zip(table["problem_id"].to_pylist(), table["passed_hidden"].to_pylist()):
        nc = counts.setdefault(pid, [0, 0])
        nc[0], nc[1] = nc[0] + 1, nc[1] + bool(ok)
    return {pid: pass_at_k(n, c, 1) for pid, (n, c) in counts.items()}


@flow(name="alphacode-study")
def alphacode_study(
    profile: str = "default",
    study: str = "rl",
    out_dir: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> str:
    """Run study ``study`` on ``profile``; returns the study report's path."""
    candidates = load_study(study)
    base = load_profile(profile, overrides)
    root = str(Path(out_dir or default_out_dir(profile)).resolve())
    split = base.problems.rl_valid_split or base.problems.valid_split
    values, sources, matched, temperatures = {}, {}, {}, {}

    def score(label: str, model, problems) -> None:
        t, _, _ = select_temperatures(label, base, model, problems, root, split)
        run = evaluate_on_split(label, base, t, model, problems, root, split)  # Cached: one of the grid's
        values[label], sources[label], temperatures[label] = _pass1(run.evaluation), run.evaluation.path, t

    with active_run(root):
        for name, extra in candidates.items():
            cfg = load_profile(profile, deep_merge(normalise_overrides(overrides), extra))
            _same_stage2(name, cfg, base)
            trained = train_through_rl(cfg, root)
            if BASELINE not in values:
                score(BASELINE, trained.finetune, trained.problems)
                family_of = {
                    p.name: p.tags.get("family", p.name) for p in eval_problems(trained.problems, (split,))
                }
            score(name, trained.rl, trained.problems)
            twin = f"sft-continue[{name}]"
            score(
                twin,
                sft_continue(cfg, trained.finetune, trained.rl, trained.problems, root),
                trained.problems,
            )
            matched[name] = twin
    rows = study_rows(
        values, BASELINE, family_of, n_boot=base.evaluate.bootstrap, seed=base.evaluate.seed, matched=matched
    )
    rows = [{"candidate": r["candidate"], "temperature": temperatures[r["candidate"]], **r} for r in rows]
    name = Path(study).stem  # a study given as a .toml path is reported under its file's name
    path = write_study(Path(root) / "study" / name, name, rows, sources, split)
    create_markdown_artifact(
        path.read_text(), key="alphacode-study", description=f"study {study} ({profile})"
    )
    get_run_logger().info("study report: %s", path)
    return str(path)


def _same_stage2(name: str, cfg, base) -> None:
    """A candidate may change what happens from RL on, never the problems or stages 1-2 (then
    it would not be compared from the same stage-2 model)."""
    for part in ("problems", "pretrain", "finetune"):
        if getattr(cfg, part) != getattr(base, part):
            raise ValueError(
                f"study candidate {name!r} changes {part}: a study compares settings from RL on; "
                "override only rl.* (and judge.*) in it"
            )


class Reach(BaseModel):
    """What :func:`alphacode_reach` measured: ``solved`` of ``problems`` RL problems pass the
    hidden tests in at least one of ``k`` samples at ``temperature``."""

    model_config = ConfigDict(frozen=True)
    split: str
    k: int
    temperature: float
    problems: int
    solved: int
    evaluation: str

    @property
    def share(self) -> float:
        return self.solved / self.problems if self.problems else 0.0


@flow(name="alphacode-reach")
def alphacode_reach(
    profile: str = "default",
    k: int = 8,
    temperature: float = 1.0,
    out_dir: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> Reach:
    """Before RL: the share of the RL split's problems the stage-2 model solves on the hidden
    tests at least once in ``k`` samples at ``temperature`` (RL rarely learns what the model it
    starts from never solves at any k: Yue et al. 2025). Stages 1-2 run or come back Cached; the
    samples are stages 3-5 and the evaluation on the RL split, cached like any other."""
    extra = {"evaluate": {"ks": sorted({1, k}), "n_at_k": sorted({1, k})}}
    cfg = load_profile(profile, deep_merge(normalise_overrides(overrides), extra))
    root = str(Path(out_dir or default_out_dir(profile)).resolve())
    split = cfg.problems.rl_split
    with active_run(root):
        trained = run_pipeline(cfg, root, until="finetune")
        run = evaluate_on_split(
            "sft reach", cfg, temperature, trained.finetune, trained.problems, root, split, k
        )
    table = pq.read_table(run.evaluation.file(PER_SAMPLE_FILE), columns=["problem_id", "passed_hidden"])
    rates = pass_rates(table["problem_id"].to_pylist(), table["passed_hidden"].to_pylist())
    return Reach(
        split=split,
        k=k,
        temperature=temperature,
        problems=len(rates),
        solved=sum(1 for r in rates.values() if r > 0),
        evaluation=str(run.evaluation.path),
    )
