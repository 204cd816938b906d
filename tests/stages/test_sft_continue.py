"""The SFT-continue baseline is matched to the RL stage's recorded compute."""

from __future__ import annotations

from tasks.core.config import load_profile
from tasks.core.manifest import Manifest, plan_stage
from tasks.core.stages import Stage, sft_continue


def _manifest(tmp_path, name: str, metrics: dict) -> Manifest:
    (tmp_path / name).mkdir(exist_ok=True)
    return Manifest(
        stage=name,
        key=name,
        path=str(tmp_path / name),
        config={},
        code_version="x",
        created_at="",
        files={},
        metrics=metrics,
    )


def test_matched_hparams_take_rl_steps_and_batch_size_at_the_constant_continued_rate(tmp_path):
    cfg = load_profile("default").finetune
    rl = _manifest(tmp_path, "rl", {"optimizer_steps": 37, "batch_size": 4, "train_tokens": 1000})
    hp = sft_continue.matched_hparams(cfg, rl, 1e-4)
    assert (hp.max_steps, hp.batch_size) == (37, 4)
    assert (hp.lr, hp.warmup_steps, hp.schedule) == (1e-4, 0, "constant")  # no new warm-up
    assert hp.seq_len == cfg.train.seq_len and hp.seed == cfg.train.seed + 1
    no_batch = _manifest(tmp_path, "rl2", {"optimizer_steps": 10, "batch_size": None})
    assert sft_continue.matched_hparams(cfg, no_batch, 1e-4).batch_size == cfg.train.batch_size


def test_zero_rl_steps_publish_the_stage2_model_untrained(tmp_path):
    finetuned = _manifest(tmp_path, "finetune", {})
    (finetuned.dir / "model").mkdir()
    (finetuned.dir / "model" / "config.json").write_text("{}")
    rl = _manifest(tmp_path, "rl", {"optimizer_steps": 0, "train_tokens": 0})
    plan = plan_stage(
        str(tmp_path / "run"),
        Stage.SFT_CONTINUE,
        {"x": 1},
        [("finetuned", finetuned), ("rl", rl)],
        sft_continue,
    )
    out = sft_continue.run_sft_continue(
        plan, load_profile("smoke").finetune, finetuned, rl, None, "train", "valid"
    )
    assert out.metrics["steps"] == 0 and out.metrics["rl_optimizer_steps"] == 0
    assert (out.dir / "model" / "config.json").read_text() == "{}"
