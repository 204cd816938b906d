"""GRPO via TRL on the tiny Llama with the real sandbox reward."""

from __future__ import annotations

import shutil

import pyarrow.parquet as pq
import pytest
import torch

from tasks.core.rl.grpo import GRPOParams, build_grpo_trainer, train_grpo
from tasks.core.rl.rewards import ExecutionReward
from tests.rl.conftest import RL_PROBLEMS, parity_extract, rl_task

SMOKE = dict(steps=2, num_generations=4, max_completion_length=16, save_every=1, lr=1e-3)


def test_zero_beta_rejected_by_default():
    with pytest.raises(ValueError, match="allow_zero_beta"):
        GRPOParams(beta=0.0)


def test_zero_beta_allowed_explicitly():
    assert GRPOParams(beta=0.0, allow_zero_beta=True).beta == 0.0


def test_unknown_param_rejected():
    with pytest.raises(ValueError):
        GRPOParams(kl=0.1)


@pytest.fixture(scope="module")
def progress_calls() -> list:
    return []


@pytest.fixture(scope="module")
def smoke(tiny_model_dir, judge, tmp_path_factory, progress_calls):
    out = tmp_path_factory.mktemp("grpo")
    return train_grpo(rl_task(tiny_model_dir, judge, out, calls=progress_calls), GRPOParams(**SMOKE))


def test_smoke_writes_model_metrics_and_plot(smoke):
    assert (smoke.model_dir / "config.json").is_file()
    assert (smoke.model_dir / "tokenizer.json").is_file()
    assert smoke.plot_path.stat().st_size > 0
    assert smoke.steps == 2 and smoke.resumed_from_step is None


def test_progress_called_once_per_step(smoke, progress_calls):
    assert [(s, t) for s, t, _ in progress_calls] == [(1, 2), (2, 2)]
    assert all("reward" in m for _, _, m in progress_calls)


def test_smoke_metrics_have_one_row_per_step(smoke):
    table = pq.read_table(smoke.metrics_path).to_pydict()
    assert table["step"] == [1.0, 2.0]
    for column in ("reward", "reward_std", "pass_rate", "kl", "entropy", "step_time"):
        assert column in table


def test_resume_continues_from_last_checkpoint(smoke, tiny_model_dir, judge, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(smoke.model_dir.parent, out)
    params = GRPOParams(**{**SMOKE, "steps": 3})
    result = train_grpo(rl_task(tiny_model_dir, judge, out), params)
    assert result.resumed_from_step == 2 and result.steps == 3
    assert pq.read_table(result.metrics_path).to_pydict()["step"] == [1.0, 2.0, 3.0]


def test_reference_is_frozen_stage2_model(tiny_model_dir, judge, tmp_path):
    from transformers import AutoModelForCausalLM

    stage2 = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)).state_dict()
    reward = ExecutionReward(
        judge=judge, problems={p.name: p for p in RL_PROBLEMS}, extract_program=parity_extract
    )
    params = GRPOParams(**{**SMOKE, "steps": 1})
    task = rl_task(tiny_model_dir, judge, tmp_path)
    trainer = build_grpo_trainer(task, reward, params)
    assert trainer.ref_model is not None
    assert trainer.ref_model.config._name_or_path == str(tiny_model_dir)
    trainer.train()
    ref, policy = trainer.ref_model.state_dict(), trainer.model.state_dict()
    assert all(torch.equal(ref[k], stage2[k]) for k in stage2)
    assert any(not torch.equal(policy[k], stage2[k]) for k in stage2)
