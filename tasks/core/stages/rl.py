"""Stage 6: RL fine-tuning of the stage-2 model with execution rewards on hidden tests.

Contract: the policy and the frozen KL reference both start from stage 2's ``model/``; the
prompts are the RL split (never the SFT split, whose prompts the model has memorised); the
reward runs each completion's program on the problem's hidden tests in the sandbox. Resumes
from the checkpoints inside the stage directory. Publishes ``model/``, ``metrics.parquet``
and ``rl_curve.png``; the manifest records the compute the SFT-continue baseline is matched to:
``optimizer_steps`` (the trainer's own count, else its ``steps``), ``train_tokens`` (None where
the trainer does not count them) and ``batch_size``; and where it ran: ``device`` and ``dtype``
(``cfg.device`` resolved here, :mod:`tasks.core.device`; GRPO adds ``generation``).
Difficulty: with ``cfg.difficulty_band`` and a ``difficulty`` manifest (the evaluation of the
stage-2 model's samples of the RL split, at the algorithm's sampling temperature) only the RL
problems whose stage-2 hidden-test pass rate lies in the band are trained on; the counts kept/below/above go in
the manifest.
Limits: algorithms are those of :mod:`tasks.core.rl` (``grpo`` via TRL, ``ppo`` ours,
``expert-iteration`` ours).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow.parquet as pq

from tasks.core.device import resolve
from tasks.core.manifest import Manifest, StagePlan, list_files
from tasks.core.problems import extract_program, format_prompt
from tasks.core.stages import PER_SAMPLE_FILE, Stage
from tasks.core.stages.base import Advance, StageInputs
from tasks.core.stages.judging import limit_policy, make_judge
from tasks.core.stages.problems import load_split

if TYPE_CHECKING:
    from tasks.core.config import JudgeConfig, RLConfig


def trainer_of(algorithm: str):
    """The one dispatch on ``rl.algorithm``: its trainer, which takes the algorithm's params
    (``cfg.params``). Imported here: the trainers pull in torch and TRL, which a run whose RL
    stage is already complete never needs."""
    from tasks.core.rl import train_expert_iteration, train_grpo, train_ppo

    return {"grpo": train_grpo, "ppo": train_ppo, "expert-iteration": train_expert_iteration}[algorithm]


def run_rl(
    plan: StagePlan,
    cfg: RLConfig,
    finetuned: Manifest,
    problem_set: Manifest,
    split: str,
    judge_cfg: JudgeConfig,
    progress=None,
    difficulty: Manifest | None = None,
) -> Manifest:
    """Train ``cfg.algorithm`` from ``finetuned``'s model on the problems of ``split``, rewarded
    by a judge built from ``judge_cfg``; ``progress(step, total, metrics)`` after each step.
    With ``difficulty`` (the evaluation of the stage-2 model's samples of ``split``) only the
    problems whose hidden-test pass rate lies in ``cfg.difficulty_band`` are trained on."""
    problems = load_split(problem_set, split)
    selected: dict = {}
    if difficulty is not None and cfg.difficulty_band is not None:
        problems, selected = _in_band(problems, difficulty, cfg.difficulty_band)
    from tasks.core.rl import RLTask

    trainer, params = trainer_of(cfg.algorithm), cfg.params
    with make_judge(judge_cfg) as judge:
        task = RLTask(
            finetuned.dir / "model",
            problems,
            judge,
            plan.dir,
            format_prompt,
            extract_program,
            progress,
            policy=limit_policy(judge_cfg),
            placement=resolve(cfg.device),
        )
        result = trainer(task, params)
    files = [f for f in list_files(plan.dir) if not f.startswith(("checkpoints/", "rounds/"))]
    return plan.publish(
        files,
        metrics={
            "algorithm": cfg.algorithm,
            "steps": result.steps,
            "final_reward_mean": result.final_reward_mean,
            "resumed_from_step": result.resumed_from_step,
            "rl_problems": len(problems),
            "optimizer_steps": result.optimizer_steps if result.optimizer_steps is not None else result.steps,
            "train_tokens": result.train_tokens,
            "batch_size": getattr(params, "batch_size", None),
            **(result.device or {}),
            **selected,
        },
    )


def _in_band(problems: list, difficulty: Manifest, band: tuple[float, float]) -> tuple[list, dict]:
    from tasks.core.rl.difficulty import band_select, pass_rates

    table = pq.read_table(difficulty.file(PER_SAMPLE_FILE), columns=["problem_id", "passed_hidden"])
    rates = pass_rates(table["problem_id"].to_pylist(), table["passed_hidden"].to_pylist())
    chosen = band_select([p.name for p in problems], rates, band)
    if not chosen.kept:
        raise ValueError(
            f"no RL problem has a stage-2 pass rate in rl.difficulty_band {list(band)} ({chosen.below} below, "
            f"{chosen.above} above): widen the band or set rl.difficulty_band to null"
        )
    keep = set(chosen.kept)
    return [p for p in problems if p.name in keep], chosen.counts()


@dataclass(frozen=True)
class RLInputs(StageInputs):
    """Stage 6: the chosen algorithm's settings (only its knobs: ``tasks.core.config.RLConfig``),
    the judge of its rewards, its split, the stage-2 model and, with a difficulty band, the evaluation
    stage its problems are chosen by."""

    STAGE = Stage.RL
    rl: RLConfig
    judge: JudgeConfig
    split: str
    finetuned: Manifest
    problems: Manifest
    difficulty: Manifest | None = None

    def progress(self) -> tuple[int, str]:
        unit = "rounds" if self.rl.algorithm == "expert-iteration" else "steps"
        return self.rl.total_steps, f"stage 6 RL {self.rl.algorithm} ({unit})"

    def run(self, plan: StagePlan, progress: Advance | None = None) -> Manifest:
        report = None if progress is None else (lambda step, total, metrics: progress(step))
        return run_rl(
            plan, self.rl, self.finetuned, self.problems, self.split, self.judge, report, self.difficulty
        )
