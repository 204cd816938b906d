"""RLTask: the trainers' shared input checks and reward; write_outputs: the shared layout."""

from dataclasses import replace

import pyarrow.parquet as pq
import pytest

from tasks.core.hparams import PPOParams
from tasks.core.jobs import LimitPolicy
from tasks.core.rl.artifacts import RLTask, write_outputs
from tasks.core.rl.expert_iteration import ExpertIterationParams
from tasks.core.rl.grpo import GRPOParams
from tasks.core.sandbox.types import Limits
from tests.rl.conftest import rl_task


def test_start_builds_each_trainers_reward_from_its_params(tiny_model_dir, tmp_path):
    policy = LimitPolicy(default=Limits(time_s=3.0))
    task = replace(rl_task(tiny_model_dir, judge=None, out_dir=tmp_path), policy=policy)
    ppo = task.start(PPOParams(max_tests=1, on_sandbox_error="exclude"), "train_ppo")
    assert (ppo.reward, ppo.on_sandbox_error, ppo.max_tests) == ("coderl", "exclude", 1)
    assert ppo.limit_policy() is policy and sorted(ppo.problems) == ["add_a", "add_b"]
    assert task.start(GRPOParams(), "train_grpo").reward == "all_pass"
    ei = task.start(ExpertIterationParams(), "train_expert_iteration")
    assert (ei.reward, ei.on_sandbox_error) == ("all_pass", "raise")  # fixed for expert iteration


def test_start_refuses_a_dir_without_a_model_and_no_problems(tiny_model_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        rl_task(tmp_path, judge=None, out_dir=tmp_path).start(PPOParams(), "train_ppo")
    empty = RLTask(tiny_model_dir, [], None, tmp_path, str, str)
    with pytest.raises(ValueError, match="train_ppo needs at least one problem"):
        empty.start(PPOParams(), "train_ppo")


def test_zero_beta_is_refused_by_every_trainers_params():
    for params in (PPOParams, GRPOParams, ExpertIterationParams):
        with pytest.raises(ValueError, match="allow_zero_beta=True"):
            params(beta=0)
        assert params(beta=0, allow_zero_beta=True).beta == 0


def test_write_outputs_saves_model_metrics_and_one_panel_per_present_key(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    rows = [{"step": 1.0, "reward": 0.5}, {"step": 2.0, "reward": 0.7, "kl": 0.1}]
    out = write_outputs(tmp_path, model, tokenizer, rows, ("reward", "kl", "absent"), "t")
    assert (out.model_dir / "config.json").is_file() and (out.model_dir / "tokenizer.json").is_file()
    assert pq.read_table(out.metrics_path).to_pydict() == {
        "kl": [None, 0.1],
        "reward": [0.5, 0.7],
        "step": [1.0, 2.0],
    }
    assert out.plot_path.read_bytes()[:4] == b"\x89PNG"
