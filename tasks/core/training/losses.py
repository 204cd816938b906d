"""Pluggable per-batch losses for the training loop: summed over label tokens, never averaged.

Contract: a loss is called as ``loss(model, batch, placement)`` and returns
:class:`LossSums`: ``objective`` (what is backpropagated, after the loop divides it by the
optimizer step's label-token count), ``nll`` (the summed next-token NLL, reported as ``loss``)
and ``kl`` (a summed regulariser, reported as ``kl``; None when the loss has none).
- :class:`NextTokenNLL`: ``objective = nll`` (pretraining, fine-tuning).
- :class:`KLRegularisedNLL`: ``objective = nll + beta * KL(policy || reference)``, the KL taken
  over the full vocabulary at every label token; the reference is frozen (no grad) and moved
  to the batch's device on first use (expert iteration).
The model forward runs under the placement's autocast (:meth:`tasks.core.device.Placement.autocast`:
its low-precision dtype, or none in float32); log-probs are taken in full precision (``.float()``).

Limits: the KL loss runs a second (reference) forward per micro-batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from tasks.core.device import Placement
from tasks.core.training.data import IGNORE_INDEX, Batch


@dataclass(frozen=True)
class LossSums:
    objective: torch.Tensor
    nll: torch.Tensor
    kl: torch.Tensor | None = None


class TokenLoss(Protocol):
    def __call__(self, model: Any, batch: Batch, placement: Placement) -> LossSums: ...


def _logits(model, batch: Batch, placement: Placement) -> torch.Tensor:
    with placement.autocast():
        return model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits


def token_nll_sum(model, batch: Batch, placement: Placement) -> torch.Tensor:
    """Summed next-token cross-entropy of ``batch``'s label tokens."""
    logits = _logits(model, batch, placement)[:, :-1].float()
    labels = batch.labels[:, 1:]
    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
    )


def kl_nll_sums(policy, ref, batch: Batch, placement: Placement) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed NLL of the label tokens and summed KL(policy || ref) over the vocabulary at them."""
    logits = _logits(policy, batch, placement)
    with torch.no_grad():
        ref_logits = _logits(ref, batch, placement)
    labels = batch.labels[:, 1:]
    mask = labels != IGNORE_INDEX
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)
    logq = F.log_softmax(ref_logits[:, :-1].float(), dim=-1)
    nll = F.nll_loss(
        logp.reshape(-1, logp.size(-1)), labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
    )
    kl = ((logp.exp() * (logp - logq)).sum(-1) * mask).sum()
    return nll, kl


class NextTokenNLL:
    """The plain language-model loss."""

    def __call__(self, model, batch: Batch, placement: Placement) -> LossSums:
        nll = token_nll_sum(model, batch, placement)
        return LossSums(objective=nll, nll=nll)


class KLRegularisedNLL:
    """NLL plus ``beta`` times KL(policy || frozen ``reference``) per label token."""

    def __init__(self, reference, beta: float) -> None:
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        self.reference = reference.eval().requires_grad_(False)
        self.beta = beta

    def __call__(self, model, batch: Batch, placement: Placement) -> LossSums:
        device = batch.input_ids.device
        if next(self.reference.parameters()).device != device:
            self.reference.to(device)
        nll, kl = kl_nll_sums(model, self.reference, batch, placement)
        return LossSums(objective=nll + self.beta * kl, nll=nll, kl=kl)
