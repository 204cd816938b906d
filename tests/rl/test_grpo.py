"""GRPO via TRL on the tiny Llama: explicit knobs, the zero-variance filter, and the real
sandbox reward end to end."""

from __future__ import annotations

import shutil

import pyarrow.parquet as pq
import pytest
import torch

from tasks.core.rl.grpo import (
    FIXED_CONFIG,
    GRPOParams,
    build_grpo_trainer,
    config_values,
    grpo_config,
    step_rows,
    train_grpo,
)
from tasks.core.rl.rewards import ExecutionReward
from tests.rl.conftest import RL_PROBLEMS, parity_extract, plain_prompt, rl_task

# A random tiny model almost never ends a completion with EOS within 16 tokens, so with DAPO's
# truncation mask every completion would be masked and every update skipped: tests turn it off.
SMOKE = dict(
    steps=2,
    num_generations=4,
    max_completion_length=16,
    save_every=1,
    lr=1e-3,
    mask_truncated_completions=False,
)
G = SMOKE["num_generations"]


def test_zero_beta_rejected_by_default():
    with pytest.raises(ValueError, match="allow_zero_beta"):
        GRPOParams(beta=0.0)


def test_zero_beta_allowed_explicitly():
    assert GRPOParams(beta=0.0, allow_zero_beta=True).beta == 0.0


def test_unknown_param_rejected():
    with pytest.raises(ValueError):
        GRPOParams(kl=0.1)


def test_defaults_are_dapo_and_dr_grpo():
    p = GRPOParams()
    assert (p.loss_type, p.scale_rewards, p.epsilon, p.epsilon_high) == ("dapo", "none", 0.2, 0.28)
    assert (p.mask_truncated_completions, p.num_iterations, p.beta, p.temperature) == (True, 1, 0.04, 1.0)
    assert (p.reward, p.filter_zero_std_groups, p.oversample) == ("all_pass", True, 1)


def test_bad_combinations_rejected():
    with pytest.raises(ValueError, match="epsilon_high"):
        GRPOParams(epsilon=0.3, epsilon_high=0.2)
    with pytest.raises(ValueError, match="filter_zero_std_groups"):
        GRPOParams(oversample=2, filter_zero_std_groups=False)
    with pytest.raises(ValueError):
        GRPOParams(loss_type="cispo")
    with pytest.raises(ValueError):
        GRPOParams(scale_rewards=True)


def _config_value(value):
    return getattr(value, "value", value)  # transformers' enums (optim, lr_scheduler_type)


@pytest.mark.parametrize(
    "params",
    [
        GRPOParams(),
        GRPOParams(
            loss_type="dr_grpo",
            scale_rewards="group",
            epsilon=0.1,
            epsilon_high=0.3,
            mask_truncated_completions=False,
            num_iterations=2,
            beta=0.1,
            temperature=0.7,
            prompts_per_step=3,
            oversample=2,
            num_generations=4,
        ),
    ],
    ids=["defaults", "non-defaults"],
)
def test_every_knob_reaches_grpo_config(params, tmp_path):
    config = grpo_config(params, tmp_path)
    expected = {**config_values(params), **FIXED_CONFIG}
    assert (
        expected["per_device_train_batch_size"]
        == params.prompts_per_step * params.oversample * params.num_generations
    )
    for field in ("loss_type", "scale_rewards", "epsilon", "epsilon_high", "mask_truncated_completions"):
        assert expected[field] == getattr(params, field)
    assert (expected["num_iterations"], expected["beta"]) == (params.num_iterations, params.beta)
    assert expected["temperature"] == params.temperature
    mismatched = {
        k: (_config_value(getattr(config, k)), v)
        for k, v in expected.items()
        if _config_value(getattr(config, k)) != v
    }
    assert mismatched == {}
    assert config.generation_batch_size == expected["per_device_train_batch_size"]


def test_trainer_uses_the_knobs(tiny_model_dir, tmp_path):
    params = GRPOParams(**{**SMOKE, "epsilon": 0.1, "epsilon_high": 0.3, "num_iterations": 2})
    trainer = build_grpo_trainer(rl_task(tiny_model_dir, None, tmp_path), _split_reward(), params)
    assert (trainer.loss_type, trainer.scale_rewards) == ("dapo", "none")
    assert (trainer.epsilon_low, trainer.epsilon_high, trainer.num_iterations) == (0.1, 0.3, 2)
    assert (trainer.beta, trainer.temperature, trainer.mask_truncated_completions) == (0.04, 1.0, False)


def test_oversample_needs_enough_problems(tiny_model_dir, tmp_path):
    params = GRPOParams(**{**SMOKE, "prompts_per_step": 2, "oversample": 2})
    with pytest.raises(ValueError, match="prompts_per_step\\*oversample=4 .* 2 problems"):
        build_grpo_trainer(rl_task(tiny_model_dir, None, tmp_path), _split_reward(), params)


def _split_reward(constant=("add_a",)):
    """Constant 1.0 for the problems in ``constant``; 0, 1, 0, 1, ... (by row) for the others."""

    def split_reward(prompts, completions, problem_id, **kwargs):
        return [1.0 if pid in constant else float(i % 2) for i, pid in enumerate(problem_id)]

    return split_reward


def _generation_batch():
    """What TRL's sampler hands one step: each prompt repeated num_generations times."""
    return [{"prompt": plain_prompt(p), "problem_id": p.name} for p in RL_PROBLEMS for _ in range(G)]


def _scored(tiny_model_dir, tmp_path, **overrides):
    params = GRPOParams(**{**SMOKE, "prompts_per_step": 2, **overrides})
    trainer = build_grpo_trainer(rl_task(tiny_model_dir, None, tmp_path), _split_reward(), params)
    trainer.model.train()
    torch.manual_seed(0)
    return trainer, trainer._generate_and_score_completions(_generation_batch())


def _grads(trainer, batch):
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer's loop, which this bypasses
    trainer.model.zero_grad()
    trainer.compute_loss(trainer.model, batch).backward()
    return {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}


def test_zero_variance_groups_are_dropped_from_the_loss(tiny_model_dir, tmp_path):
    on, kept = _scored(tiny_model_dir, tmp_path / "on")
    off, full = _scored(tiny_model_dir, tmp_path / "off", filter_zero_std_groups=False)
    # same seed, same weights: the same completions; the filter keeps add_b's group only
    assert full["completion_ids"].shape[0] == 2 * G and kept["completion_ids"].shape[0] == G
    assert torch.equal(kept["completion_ids"], full["completion_ids"][G:, : kept["completion_ids"].shape[1]])
    assert torch.equal(kept["advantages"], torch.tensor([-0.5, 0.5] * (G // 2)))
    assert torch.count_nonzero(full["advantages"][:G]) == 0  # TRL: zero advantage, still in the batch
    n_kept, n_full = kept["completion_mask"].sum(), full["completion_mask"].sum()
    assert int(kept["num_items_in_batch"]) == n_kept < int(full["num_items_in_batch"]) == n_full
    assert on._metrics["train"]["frac_groups_filtered"] == [0.5]
    assert on._metrics["train"]["groups_kept"] == [1.0] and off._metrics["train"]["groups_kept"] == [2.0]
    # the constant group's rows add nothing to TRL's loss but its tokens to the DAPO normaliser:
    # unfiltered gradient x its token count == filtered gradient x the kept token count
    g_on, g_off = _grads(on, kept), _grads(off, full)
    assert g_on.keys() == g_off.keys() and any(g.abs().sum() > 0 for g in g_on.values())
    assert on._metrics["train"]["update_skipped"] == [0.0]
    for name in g_on:
        torch.testing.assert_close(g_off[name] * n_full, g_on[name] * n_kept, rtol=1e-4, atol=1e-7)


def test_oversampling_keeps_at_most_prompts_per_step_groups(tiny_model_dir, tmp_path):
    params = GRPOParams(**{**SMOKE, "prompts_per_step": 1, "oversample": 2})
    reward = _split_reward(constant=())  # both groups vary: one is dropped by the cap
    trainer = build_grpo_trainer(rl_task(tiny_model_dir, None, tmp_path), reward, params)
    assert trainer.args.per_device_train_batch_size == 2 * G
    trainer.model.train()
    out = trainer._generate_and_score_completions(_generation_batch())
    assert out["completion_ids"].shape[0] == G
    assert trainer._metrics["train"]["frac_groups_filtered"] == [0.0]
    assert trainer._metrics["train"]["groups_kept"] == [1.0]


def test_step_with_only_constant_groups_is_skipped(tiny_model_dir, tmp_path):
    """Step 1 has reward variance, step 2 none: step 2 must not move the weights (AdamW's
    momentum from step 1 would, if it were given a zero gradient instead of none)."""
    from transformers import TrainerCallback

    calls: list[int] = []

    def first_call_varies(prompts, completions, problem_id, **kwargs):
        calls.append(1)
        return [float(i % 2) if len(calls) == 1 else 0.0 for i in range(len(completions))]

    snapshots: list[dict[str, torch.Tensor]] = []

    class Snapshot(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kw):
            snapshots.append({k: v.detach().clone() for k, v in model.state_dict().items()})

    params = GRPOParams(**{**SMOKE, "prompts_per_step": 2})
    trainer = build_grpo_trainer(rl_task(tiny_model_dir, None, tmp_path), first_call_varies, params)
    start = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    trainer.add_callback(Snapshot())
    trainer.train()
    assert len(calls) == 2 and len(snapshots) == 2
    assert any(not torch.equal(start[k], snapshots[0][k]) for k in start)
    assert all(torch.equal(snapshots[0][k], snapshots[1][k]) for k in start)
    first, second = [e for e in trainer.state.log_history if "reward" in e]
    assert (first["update_skipped"], second["update_skipped"]) == (0.0, 1.0)
    assert (first["frac_groups_filtered"], second["frac_groups_filtered"]) == (0.0, 1.0)
    assert first["kl"] is not None and second["kl"] is None and second["entropy"] is None


def test_num_iterations_reuses_one_filtered_generation(tiny_model_dir, tmp_path):
    calls: list[int] = []
    inner = _split_reward()

    def counted(prompts, completions, problem_id, **kwargs):
        calls.append(1)
        return inner(prompts, completions, problem_id)

    params = GRPOParams(**{**SMOKE, "prompts_per_step": 2, "num_iterations": 2})
    trainer = build_grpo_trainer(rl_task(tiny_model_dir, None, tmp_path), counted, params)
    trainer.train()
    rows = step_rows(trainer.state.log_history)
    assert len(calls) == 1 and trainer.state.global_step == 2  # 2 optimiser steps, 1 generation
    assert rows[0]["frac_groups_filtered"] == 0.5 and rows[0]["groups_kept"] == 1.0
    assert rows[0]["clip_ratio/region_mean"] == 0.0  # the first pass is on-policy: ratio exactly 1
    assert rows[1]["kl"] > 0  # the second pass starts from the moved policy
    assert "reward" not in rows[1] and rows[1]["update_skipped"] == 0.0


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
    for column in (
        "reward",
        "reward_std",
        "pass_rate",
        "kl",
        "entropy",
        "clip_ratio/low_mean",
        "clip_ratio/high_mean",
        "clip_ratio/region_mean",
        "frac_reward_zero_std",
        "frac_groups_filtered",
        "groups_kept",
        "update_skipped",
        "step_time",
    ):
        assert column in table, column
    assert all(0.0 <= f <= 1.0 for f in table["frac_groups_filtered"])


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


def test_cpu_placement_generates_with_transformers_in_float32(tmp_path):
    """The device policy reaches GRPOConfig: on the CPU no mixed precision and no vLLM, even when
    use_vllm is asked for (TRL's colocate mode needs a GPU)."""
    from tasks.core.device import Placement

    config = grpo_config(GRPOParams(use_vllm=True), tmp_path, Placement("cpu", "float32"))
    assert (config.use_cpu, config.bf16, config.fp16, config.use_vllm) == (True, False, False, False)


def test_gpu_placement_asks_trl_for_colocated_vllm_and_mixed_precision():
    from tasks.core.device import Placement
    from tasks.core.rl.grpo import VLLM_CONFIG, device_values

    gpu = Placement("cuda:0", "bfloat16")
    params = GRPOParams(use_vllm=True, max_completion_length=64, vllm_max_prompt_tokens=1000)
    values = device_values(params, gpu)
    assert values["use_vllm"] and values["vllm_mode"] == "colocate"
    assert (values["use_cpu"], values["bf16"], values["fp16"]) == (False, True, False)
    assert values["vllm_max_model_length"] == 1064
    assert VLLM_CONFIG.items() <= values.items()
    assert device_values(GRPOParams(), gpu)["use_vllm"] is False  # not asked for: model.generate


def test_continue_hands_trl_stage2s_adamw_at_its_final_rate(tiny_model_dir, tmp_path):
    from tasks.core.training import read_optimizer_state
    from tests.rl.conftest import STAGE2_FINAL_LR

    saved = read_optimizer_state(tiny_model_dir)
    trainer = build_grpo_trainer(
        rl_task(tiny_model_dir, None, tmp_path), _split_reward(), GRPOParams(**SMOKE)
    )
    groups = trainer.optimizer.param_groups
    assert {g["lr"] for g in groups} == {STAGE2_FINAL_LR} != {SMOKE["lr"]}  # not params.lr
    assert {float(s["step"]) for s in trainer.optimizer.state.values()} == {float(saved.step)}
    assert trainer.lr_scheduler.lr_lambdas[0](1000) == 1.0  # constant, no warm-up, no decay
    fresh = build_grpo_trainer(
        rl_task(tiny_model_dir, None, tmp_path / "fresh"),
        _split_reward(),
        GRPOParams(**{**SMOKE, "optimizer": "fresh"}),
    )
    assert fresh.optimizer is None  # TRL builds its own AdamW at params.lr when training starts


def test_smoke_trained_at_stage2s_final_rate(smoke):
    from tests.rl.conftest import STAGE2_FINAL_LR

    assert pq.read_table(smoke.metrics_path).to_pydict()["learning_rate"] == [STAGE2_FINAL_LR] * 2
