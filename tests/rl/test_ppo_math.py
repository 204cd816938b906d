"""PPO building blocks: GAE by hand, KL-penalised rewards, clipped losses, a toy bandit."""

from __future__ import annotations

import pytest
import torch

from tasks.core.rl.ppo import (
    PPOParams,
    completion_mask,
    compute_gae,
    kl_penalised_rewards,
    masked_whiten,
    ppo_losses,
)


def test_gae_matches_hand_computation():
    # gamma=0.9, lam=0.5; the 4th position is padding holding garbage that must not leak.
    rewards = torch.tensor([[0.0, 0.0, 1.0, 5.0]])
    values = torch.tensor([[0.5, 0.2, 0.4, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    adv, ret = compute_gae(rewards, values, mask, gamma=0.9, lam=0.5)
    # d2 = 1 - 0.4 = 0.6;  d1 = 0.9*0.4 - 0.2 = 0.16;  d0 = 0.9*0.2 - 0.5 = -0.32
    # A2 = 0.6;  A1 = 0.16 + 0.45*0.6 = 0.43;  A0 = -0.32 + 0.45*0.43 = -0.1265
    assert torch.allclose(adv, torch.tensor([[-0.1265, 0.43, 0.6, 0.0]]), atol=1e-6)
    assert torch.allclose(ret, torch.tensor([[0.3735, 0.63, 1.0, 0.0]]), atol=1e-6)


def test_gae_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shapes"):
        compute_gae(torch.zeros(1, 3), torch.zeros(1, 2), torch.ones(1, 3), 1.0, 1.0)


def test_kl_rewards_put_execution_reward_on_last_valid_token():
    logp = torch.tensor([[-1.0, -2.0, -3.0], [-1.0, -1.0, -1.0]])
    ref = torch.tensor([[-1.5, -2.0, -2.0], [-1.0, -1.0, -1.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    rewards, kl = kl_penalised_rewards(logp, ref, mask, torch.tensor([1.0, -0.3]), beta=0.1)
    assert torch.allclose(kl, torch.tensor([[0.5, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    assert torch.allclose(rewards, torch.tensor([[-0.05, 1.0, 0.0], [0.0, 0.0, -0.3]]))


def test_completion_mask_stops_after_first_eos():
    ids = torch.tensor([[5, 6, 1, 1, 7], [5, 5, 5, 5, 5]])
    assert completion_mask(ids, eos_id=1).tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]


def test_policy_loss_is_clipped():
    old = torch.zeros(1, 2)
    new = torch.log(torch.tensor([[2.0, 1.05]]))  # ratios 2.0 (clipped at 1.2) and 1.05
    adv = torch.ones(1, 2)
    zeros = torch.zeros(1, 2)
    out = ppo_losses(new, old, adv, zeros, zeros, zeros, torch.ones(1, 2), 0.2, None)
    assert out.policy_loss.item() == pytest.approx(-(1.2 + 1.05) / 2)
    assert out.clip_frac.item() == pytest.approx(0.5)


def test_zero_beta_rejected_by_default():
    with pytest.raises(ValueError, match="allow_zero_beta"):
        PPOParams(beta=0.0)
    assert PPOParams(beta=0.0, allow_zero_beta=True).beta == 0.0


class _Bandit:
    """Single-token episodes over 4 actions; action 2 pays 1. Policy = a logits vector."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.logits = torch.zeros(4, requires_grad=True)
        self.value = torch.zeros(1, requires_grad=True)
        self.ref = torch.zeros(4)
        self.opt = torch.optim.Adam([self.logits, self.value], lr=0.05)

    def rollout(self, n: int = 64):
        with torch.no_grad():
            actions = torch.distributions.Categorical(logits=self.logits).sample((n,))
            old = torch.log_softmax(self.logits, -1)[actions].unsqueeze(1)
            ref = torch.log_softmax(self.ref, -1)[actions].unsqueeze(1)
            old_values = self.value.expand(n).unsqueeze(1).clone()
        mask = torch.ones(n, 1)
        rewards, _ = kl_penalised_rewards(old, ref, mask, (actions == 2).float(), beta=0.01)
        adv, ret = compute_gae(rewards, old_values, mask, gamma=1.0, lam=0.95)
        return actions, old, old_values, masked_whiten(adv, mask), ret, mask

    def update(self, batch) -> torch.Tensor:
        actions, old, old_values, adv, ret, mask = batch
        new = torch.log_softmax(self.logits, -1)[actions].unsqueeze(1)
        values = self.value.expand(len(actions)).unsqueeze(1)
        out = ppo_losses(new, old, adv, values, old_values, ret, mask, 0.2, 0.2)
        self.opt.zero_grad()
        (out.policy_loss + 0.5 * out.value_loss).backward()
        self.opt.step()
        return out.ratio


def test_ratio_is_one_on_policy_and_moves_after_first_update():
    bandit = _Bandit()
    batch = bandit.rollout()
    first = bandit.update(batch)
    second = bandit.update(batch)
    assert torch.allclose(first, torch.ones_like(first))
    assert (second - 1).abs().max().item() > 1e-3


def test_bandit_learns_rewarded_token():
    bandit = _Bandit()
    for _ in range(40):
        batch = bandit.rollout()
        for _ in range(4):
            bandit.update(batch)
    assert torch.softmax(bandit.logits, -1)[2].item() > 0.9
