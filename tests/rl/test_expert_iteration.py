"""Expert iteration on the tiny Llama with the real sandbox reward."""

from __future__ import annotations

import shutil

import pyarrow.parquet as pq
import pytest
from safetensors.torch import load_file

from tasks.core.config import ExpertIterationConfig, GRPOConfig
from tasks.core.rl.expert_iteration import ExpertIterationParams, passing_pairs, train_expert_iteration
from tests.rl.conftest import STAGE2_FINAL_LR, rl_task

SMOKE = dict(
    rounds=2,
    samples_per_problem=6,
    max_completion_length=8,
    lr=1e-3,
    epochs=2.0,
    batch_size=4,
    sample_batch_size=12,
    checkpoint_every=2,
)


def test_passing_pairs_keep_duplicates_and_cap_per_problem():
    pairs = passing_pairs(
        ["p1"] * 4 + ["p2"] * 2,
        ["a"] * 4 + ["b"] * 2,
        ["x", "x", "y", "z", "u", "v"],
        [1.0, 1.0, 0.0, 1.0, 0.0, None],
        2,
    )
    assert pairs == [("p1", "x"), ("p1", "x")]


def test_zero_beta_refused_unless_allowed():
    with pytest.raises(ValueError, match="KL penalty"):
        ExpertIterationParams(beta=0)
    assert ExpertIterationParams(beta=0, allow_zero_beta=True).beta == 0


def test_rl_config_accepts_expert_iteration_and_counts_rounds():
    cfg = ExpertIterationConfig(expert_iteration=ExpertIterationParams(rounds=3))
    assert cfg.total_steps == 3 and GRPOConfig().total_steps == GRPOConfig().grpo.steps


@pytest.fixture(scope="module")
def progress_calls() -> list:
    return []


@pytest.fixture(scope="module")
def smoke(tiny_model_dir, judge, tmp_path_factory, progress_calls):
    out = tmp_path_factory.mktemp("ei")
    return train_expert_iteration(
        rl_task(tiny_model_dir, judge, out, calls=progress_calls), ExpertIterationParams(**SMOKE)
    )


def test_smoke_trains_on_passing_samples_and_writes_outputs(smoke, tiny_model_dir, progress_calls):
    rows = pq.read_table(smoke.metrics_path).to_pydict()
    assert rows["step"] == [1.0, 2.0] and smoke.steps == 2 and smoke.plot_path.stat().st_size > 0
    assert all(p > 0 for p in rows["pairs"]) and all(s >= 2 for s in rows["train_steps"])
    assert all(0 < r < 1 for r in rows["pass_rate"])  # parity_extract: some pass, some fail
    assert rows["kl"][0] > 0  # the policy moved away from the frozen stage-2 reference
    assert [(s, t) for s, t, _ in progress_calls] == [(1, 2), (2, 2)]
    before = load_file(tiny_model_dir / "model.safetensors")
    after = load_file(smoke.model_dir / "model.safetensors")
    assert any(not after[k].equal(before[k]) for k in before)


def test_rounds_continue_the_saved_optimizer_at_its_constant_rate(smoke, tiny_model_dir):
    from tasks.core.training import read_metrics, read_optimizer_state

    rounds = smoke.model_dir.parent / "rounds"
    steps = pq.read_table(smoke.metrics_path).to_pydict()["train_steps"]
    for r in range(2):
        lrs = {m.lr for m in read_metrics(rounds / f"round-{r}" / "metrics.parquet")}
        assert lrs == {STAGE2_FINAL_LR} != {SMOKE["lr"]}, r  # stage 2's final rate, not params.lr
    adam = read_optimizer_state(rounds / "round-1" / "model").state["state"]
    assert {float(s["step"]) for s in adam.values()} == {1 + sum(steps)}  # one AdamW, chained


def test_fresh_optimizer_uses_params_lr_with_warmup(tmp_path):
    from tasks.core.rl.expert_iteration import round_hparams

    fresh = round_hparams(ExpertIterationParams(**{**SMOKE, "optimizer": "fresh"}), 40, 64, 0, tmp_path)
    assert (fresh.lr, fresh.schedule, fresh.warmup_steps) == (SMOKE["lr"], "warmup-cosine", 4)
    with pytest.raises(Exception, match="optimizer state"):
        round_hparams(ExpertIterationParams(**SMOKE), 40, 64, 0, tmp_path)


def test_resume_skips_complete_rounds(smoke, tiny_model_dir, judge, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(smoke.model_dir.parent, out)
    params = ExpertIterationParams(**{**SMOKE, "rounds": 3})
    task = rl_task(tiny_model_dir, judge, out)
    result = train_expert_iteration(task, params)
    assert result.resumed_from_step == 2 and result.steps == 3
    assert pq.read_table(result.metrics_path).to_pydict()["step"] == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="other params"):
        train_expert_iteration(task, params.model_copy(update={"lr": 1e-4}))


def test_round_without_a_passing_sample_trains_nothing(tiny_model_dir, judge, tmp_path):
    params = ExpertIterationParams(**{**SMOKE, "rounds": 1})
    task = rl_task(tiny_model_dir, judge, tmp_path, extract=lambda completion: "print(3)\n")
    result = train_expert_iteration(task, params)
    rows = pq.read_table(result.metrics_path).to_pydict()
    assert rows["pairs"] == [0.0] and rows["train_steps"] == [0.0] and rows["pass_rate"] == [0.0]
    before = load_file(tiny_model_dir / "model.safetensors")
    after = load_file(result.model_dir / "model.safetensors")
    assert all(after[k].equal(before[k]) for k in before)


def test_interrupted_round_resumes_its_training_from_the_checkpoint(
    tiny_model_dir, judge, tmp_path, monkeypatch
):
    """The round trains through the shared loop: killed after its step-2 checkpoint, a rerun
    reuses the round's scored samples and trains only the remaining steps."""
    import tasks.core.rl.expert_iteration as ei
    import tasks.core.training.losses as losses

    # 4 epochs: the round must train past step 3 whatever the sampled pass count (6 pairs today)
    params = ExpertIterationParams(**{**SMOKE, "rounds": 1, "epochs": 4.0})
    task = rl_task(tiny_model_dir, judge, tmp_path)
    real = losses.kl_nll_sums
    calls = {"n": 0}

    def crash_after_three(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt("simulated kill")
        return real(*args, **kwargs)

    monkeypatch.setattr(losses, "kl_nll_sums", crash_after_three)
    with pytest.raises(KeyboardInterrupt):
        train_expert_iteration(task, params)
    round_dir = tmp_path / "rounds" / "round-0"
    assert (round_dir / "checkpoint" / "COMPLETE").read_text().strip() == "step 2"
    assert (round_dir / ei.SCORED_FILE).is_file() and not (round_dir / ei.ROUND_MARKER).exists()
    seen = []
    monkeypatch.setattr(losses, "kl_nll_sums", lambda *a, **k: seen.append(1) or real(*a, **k))
    monkeypatch.setattr(ei, "_sample", lambda *a, **k: pytest.fail("the rerun sampled again"))
    result = train_expert_iteration(task, params)
    steps = pq.read_table(result.metrics_path).to_pydict()["train_steps"][0]
    assert len(seen) == steps - 2  # only the steps after the checkpoint
    per_step = pq.read_table(round_dir / "metrics.parquet").to_pydict()
    assert per_step["step"] == list(range(1, int(steps) + 1)) and all(k > 0 for k in per_step["kl"][1:])


def test_rest_em_rounds_train_stage2_on_the_union_of_passing_samples(smoke, tiny_model_dir, judge, tmp_path):
    import json

    from tasks.core.training import read_optimizer_state

    # round 0 is the chained run's (same params but rounds_from): only its samples are reused
    out = tmp_path / "rest-em"
    params = ExpertIterationParams(**{**SMOKE, "rounds_from": "stage2"})
    result = train_expert_iteration(rl_task(tiny_model_dir, judge, out), params)
    rows = pq.read_table(result.metrics_path).to_pydict()
    kept = [
        len(json.loads((out / "rounds" / f"round-{r}" / "scored.json").read_text())["pairs"])
        for r in range(2)
    ]
    assert rows["pairs"] == [float(kept[0]), float(kept[0] + kept[1])]  # round 1: the union
    # round 1 trained from stage 2 (its optimizer: stage 2's step + round 1's steps), not from round 0
    adam = read_optimizer_state(out / "rounds" / "round-1" / "model").state["state"]
    stage2_step = read_optimizer_state(tiny_model_dir).step
    assert {float(s["step"]) for s in adam.values()} == {stage2_step + rows["train_steps"][1]}
    assert result.optimizer_steps == sum(rows["train_steps"])
