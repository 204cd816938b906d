"""Stage 6: RL fine-tuning with execution rewards.

``train_grpo`` (default; TRL ``GRPOTrainer``), ``train_ppo`` (ours, CodeRL-style actor-critic)
and ``train_expert_iteration`` (fine-tuning on the policy's own passing samples) share one
signature, ``train_<algorithm>(task: RLTask, params) -> RLResult``, one reward builder and
one output layout. Rewards come
from running extracted programs on each problem's hidden tests in the sandbox judge.
No Prefect here; importing this package does not import torch, TRL or transformers until training
(the torch-based PPO names load from :mod:`tasks.core.rl.ppo` on first access).
"""

from tasks.core.hparams import PPOParams
from tasks.core.rl.artifacts import RLResult, RLTask
from tasks.core.rl.expert_iteration import ExpertIterationParams, train_expert_iteration
from tasks.core.rl.grpo import GRPOParams, train_grpo
from tasks.core.rl.rewards import (
    ExecutionReward,
    SandboxFailure,
    all_pass,
    coderl_shaped,
    pass_fraction,
)

__all__ = [
    "ExecutionReward",
    "ExpertIterationParams",
    "GRPOParams",
    "PPOParams",
    "RLResult",
    "RLTask",
    "SandboxFailure",
    "all_pass",
    "coderl_shaped",
    "compute_gae",
    "kl_penalised_rewards",
    "pass_fraction",
    "ppo_losses",
    "train_expert_iteration",
    "train_grpo",
    "train_ppo",
]


_PPO_NAMES = ("compute_gae", "kl_penalised_rewards", "ppo_losses", "train_ppo")


def __getattr__(name: str):
    """The PPO functions import torch: load :mod:`tasks.core.rl.ppo` only when one is used."""
    if name in _PPO_NAMES:
        from tasks.core.rl import ppo

        return getattr(ppo, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
