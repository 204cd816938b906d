"""The torch-free parameter models of stages 1, 2 and 6: :class:`ModelSpec`, :class:`TrainHParams`,
:class:`PPOParams`, and the RL parameters' shared bases: :class:`KLPenalty` (the beta fields and
check of every RL trainer) and :class:`OnlineRLParams` (the fields GRPO and PPO share).

Contract: frozen pydantic models that forbid unknown fields; a bad combination fails with a
message naming the field and the fix. They live here, not beside the code that uses them
(:mod:`tasks.core.modeling`, :mod:`tasks.core.training`, :mod:`tasks.core.rl.ppo`, which
re-export them), so that validating a configuration (:mod:`tasks.core.config`) never imports
torch or transformers: the CLI rejects a bad profile or ``--set`` without loading them.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ModelSpec(BaseModel):
    """Stage 1's model: ``scratch`` (a preset Llama) or ``pretrained`` (a local HF directory)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: Literal["scratch", "pretrained"] = "scratch"
    preset: Literal["tiny", "small", "base"] = "small"
    vocab_size: int = Field(default=4096, ge=300)
    context_length: int | None = Field(default=None, gt=0)
    path: str | None = None
    init_seed: int = 0

    @model_validator(mode="after")
    def _path_matches_source(self) -> ModelSpec:
        if self.source == "pretrained" and not self.path:
            raise ValueError(
                "model.path is required for source='pretrained'; set it to a local HF model directory"
            )
        if self.source == "scratch" and self.path is not None:
            raise ValueError(
                "model.path must be unset for source='scratch'; use source='pretrained' to load it"
            )
        return self


class TrainHParams(BaseModel):
    """Hyper-parameters of :func:`tasks.core.training.train`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_steps: int = Field(
        default=1000, ge=0, description="0: train nothing (stage 1 with a pretrained model only)"
    )
    batch_size: int = Field(default=8, gt=0)
    grad_accum: int = Field(default=1, gt=0)
    lr: float = Field(default=3e-4, gt=0)
    min_lr_ratio: float = Field(default=0.1, ge=0, le=1)
    warmup_steps: int = Field(default=50, ge=0)
    weight_decay: float = Field(default=0.1, ge=0)
    seq_len: int = Field(default=512, gt=1)
    eval_every: int = Field(default=100, gt=0)
    eval_batches: int = Field(default=8, gt=0)
    checkpoint_every: int = Field(default=100, gt=0)
    seed: int = 0
    max_grad_norm: float = Field(default=1.0, gt=0)
    # warmup-cosine: linear warm-up, then cosine decay to lr * min_lr_ratio; constant: lr at every
    # step (a continuation of an earlier run's optimizer, see tasks.core.training.loop)
    schedule: Literal["warmup-cosine", "constant"] = "warmup-cosine"

    @model_validator(mode="after")
    def _warmup_fits(self) -> TrainHParams:
        if self.max_steps and self.warmup_steps >= self.max_steps:
            raise ValueError(
                f"warmup_steps={self.warmup_steps} must be < max_steps={self.max_steps}; lower warmup_steps"
            )
        if self.schedule == "constant" and self.warmup_steps:
            raise ValueError(
                f"schedule='constant' has no warm-up, but warmup_steps={self.warmup_steps}; set it to 0"
            )
        return self


class KLPenalty(BaseModel):
    """The KL penalty to the frozen stage-2 model that every RL trainer's parameters carry
    (GRPO, PPO, expert iteration), and its one check: ``beta == 0`` is refused unless
    ``allow_zero_beta=True``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    beta: float = Field(default=0.04, ge=0)
    allow_zero_beta: bool = False
    zero_beta_note: ClassVar[str] = ""  # what else beta=0 does in a trainer, for the message

    @model_validator(mode="after")
    def _beta_positive(self) -> KLPenalty:
        if self.beta == 0 and not self.allow_zero_beta:
            raise ValueError(
                f"beta=0 drops the KL penalty to the stage-2 model{self.zero_beta_note}; "
                "use beta>0 (default 0.04) or set allow_zero_beta=True deliberately"
            )
        return self


class OnlineRLParams(KLPenalty):
    """The fields GRPO and PPO share: steps, prompts and sampling, the sandbox reward's options
    (the reward function itself is each trainer's, with its own default), seed, checkpointing.
    ``optimizer``: ``continue`` (default) continues the AdamW state saved with the starting model
    (stage 2's ``model/optimizer.pt``) at its final learning rate, constant, no warm-up, as the
    SFT-continue baseline and expert iteration do; ``fresh`` starts a new optimizer at ``lr``
    (PPO's value head, a new module, always starts fresh at ``lr``)."""

    steps: int = Field(default=50, ge=1)
    lr: float = Field(default=5e-5, gt=0)
    optimizer: Literal["continue", "fresh"] = "continue"
    prompts_per_step: int = Field(default=1, ge=1)
    max_completion_length: int = Field(default=64, ge=1)
    temperature: float = Field(default=1.0, gt=0)
    on_sandbox_error: Literal["raise", "exclude"] = "raise"
    max_tests: int | None = Field(default=None, ge=1)
    seed: int = 0
    save_every: int = Field(default=10, ge=1)


class PPOParams(OnlineRLParams):
    """Parameters of :func:`tasks.core.rl.ppo.train_ppo`."""

    gamma: float = Field(default=1.0, ge=0, le=1)
    lam: float = Field(default=0.95, ge=0, le=1)
    clip_eps: float = Field(default=0.2, gt=0)
    value_clip: float | None = Field(default=0.2, gt=0)
    vf_coef: float = Field(default=0.5, ge=0)
    ent_coef: float = Field(default=0.01, ge=0)
    ppo_epochs: int = Field(default=4, ge=1)
    minibatch_size: int = Field(default=8, ge=1)
    max_grad_norm: float = Field(default=1.0, gt=0)
    samples_per_prompt: int = Field(default=8, ge=1)
    reward: Literal["pass_fraction", "all_pass", "coderl"] = "coderl"
    save_total_limit: int = Field(default=2, ge=1)
