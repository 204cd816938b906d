"""Stage 6: RL fine-tuning of the stage-2 model with execution rewards on hidden tests.

Contract: the policy and the frozen KL reference both start from stage 2's ``model/``; the
prompts are the RL split (never the SFT split, whose prompts the model has memorised); the
reward runs each completion's program on the problem's hidden tests in the sandbox. Resumes
from the checkpoints inside the stage directory. Publishes ``model/``, ``metrics.parquet``
and ``rl_curve.png``.
Limits: algorithms are those of :mod:`tasks.core.rl` (``grpo`` via TRL, ``ppo`` ours,
``expert-iteration`` ours).
"""

from __future__ import annotations

from tasks.core.config import RLConfig
from tasks.core.manifest import Manifest, StagePlan, list_files
from tasks.core.problems import Problem, extract_program, format_prompt
from tasks.core.rl import train_expert_iteration, train_grpo, train_ppo

# expert iteration samples with tasks.core.sampling and trains with tasks.core.training
MODULES = (
    "tasks/core/rl",
    "tasks/core/problems/prompt.py",
    "tasks/core/stages/rl.py",
    "tasks/core/sampling.py",
    "tasks/core/training.py",
    "tasks/core/modeling.py",
)


def run_rl(
    plan: StagePlan, cfg: RLConfig, finetuned: Manifest, problems: list[Problem], judge, progress=None
) -> Manifest:
    trainer, params = {
        "grpo": (train_grpo, cfg.grpo),
        "ppo": (train_ppo, cfg.ppo),
        "expert-iteration": (train_expert_iteration, cfg.expert_iteration),
    }[cfg.algorithm]
    result = trainer(
        finetuned.dir / "model",
        problems,
        judge,
        params,
        plan.dir,
        format_prompt,
        extract_program,
        progress,
    )
    files = [f for f in list_files(plan.dir) if not f.startswith(("checkpoints/", "rounds/"))]
    return plan.publish(
        files,
        metrics={
            "algorithm": cfg.algorithm,
            "steps": result.steps,
            "final_reward_mean": result.final_reward_mean,
            "resumed_from_step": result.resumed_from_step,
            "rl_problems": len(problems),
        },
    )
