"""Our PPO loop on the tiny Llama with the real sandbox reward."""

from __future__ import annotations

import shutil

import pyarrow.parquet as pq
import pytest

from tasks.core.rl.ppo import VALUE_HEAD_FILE, PPOParams, train_ppo
from tests.rl.conftest import rl_task

SMOKE = dict(
    steps=2,
    samples_per_prompt=4,
    minibatch_size=2,
    ppo_epochs=2,
    max_completion_length=16,
    save_every=1,
    lr=1e-3,
)


@pytest.fixture(scope="module")
def progress_calls() -> list:
    return []


@pytest.fixture(scope="module")
def smoke(tiny_model_dir, judge, tmp_path_factory, progress_calls):
    out = tmp_path_factory.mktemp("ppo")
    return train_ppo(rl_task(tiny_model_dir, judge, out, calls=progress_calls), PPOParams(**SMOKE))


def test_smoke_writes_model_with_value_head(smoke):
    assert (smoke.model_dir / "config.json").is_file()
    assert (smoke.model_dir / VALUE_HEAD_FILE).is_file()
    assert smoke.plot_path.stat().st_size > 0 and smoke.steps == 2


def test_progress_called_once_per_step(smoke, progress_calls):
    assert [(s, t) for s, t, _ in progress_calls] == [(1, 2), (2, 2)]
    assert all("reward" in m for _, _, m in progress_calls)


def test_smoke_metrics_include_ppo_diagnostics(smoke):
    table = pq.read_table(smoke.metrics_path).to_pydict()
    assert table["step"] == [1.0, 2.0]
    for column in ("reward", "pass_rate", "kl", "entropy", "value_loss", "clip_frac", "step_time"):
        assert column in table


def test_ratio_leaves_one_after_first_update(smoke):
    table = pq.read_table(smoke.metrics_path).to_pydict()
    assert min(table["ratio_dev_max"]) > 0.0


def test_resume_continues_from_last_checkpoint(smoke, tiny_model_dir, judge, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(smoke.model_dir.parent, out)
    params = PPOParams(**{**SMOKE, "steps": 3})
    result = train_ppo(rl_task(tiny_model_dir, judge, out), params)
    assert result.resumed_from_step == 2 and result.steps == 3
    assert pq.read_table(result.metrics_path).to_pydict()["step"] == [1.0, 2.0, 3.0]


def test_resume_with_other_params_is_refused(smoke, tiny_model_dir, judge, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(smoke.model_dir.parent, out)
    params = PPOParams(**{**SMOKE, "steps": 3, "beta": 0.5})
    with pytest.raises(ValueError, match="other params"):
        train_ppo(rl_task(tiny_model_dir, judge, out), params)


@pytest.mark.parametrize("mode", ["continue", "fresh"])
def test_the_policy_continues_stage2s_adamw_and_the_value_head_starts_fresh(tiny_model_dir, mode):
    from tasks.core.device import resolve
    from tasks.core.rl.ppo import _load
    from tasks.core.training import read_optimizer_state
    from tests.rl.conftest import STAGE2_FINAL_LR

    state = _load(tiny_model_dir, PPOParams(**{**SMOKE, "optimizer": mode}), resolve())
    groups = state.optimizer.param_groups
    head = {id(p) for p in state.head.parameters()}
    if mode == "fresh":
        assert [g["lr"] for g in groups] == [SMOKE["lr"]] and not state.optimizer.state
        return
    saved = read_optimizer_state(tiny_model_dir)
    assert [g["lr"] for g in groups] == [STAGE2_FINAL_LR, STAGE2_FINAL_LR, SMOKE["lr"]]
    assert {id(p) for p in groups[-1]["params"]} == head  # the new value head: its own group
    moments = [state.optimizer.state[p] for g in groups[:-1] for p in g["params"]]
    assert len(moments) == len(saved.state["state"]) and all(float(m["step"]) == saved.step for m in moments)
