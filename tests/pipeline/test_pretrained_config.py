"""The pretrained-model route's configuration: max_steps = 0 only with a pretrained model, and
the bundled pretrained profile validates."""

from __future__ import annotations

import pytest

from tasks.core.config import ConfigError, load_profile


def test_zero_pretraining_steps_need_a_pretrained_model():
    with pytest.raises(ConfigError, match="source"):
        load_profile("smoke", ["pretrain.train.max_steps=0", "pretrain.train.warmup_steps=0"])


def test_zero_steps_with_a_pretrained_model_publishes_it(tmp_path):
    cfg = load_profile(
        "smoke",
        [
            "pretrain.train.max_steps=0",
            "pretrain.train.warmup_steps=0",
            "pretrain.model.source=pretrained",
            f"pretrain.model.path={tmp_path}",
        ],
    )
    assert cfg.pretrain.publishes_pretrained


def test_finetuning_must_train():
    with pytest.raises(ConfigError, match="finetune.train"):
        load_profile("smoke", ["finetune.train.max_steps=0", "finetune.train.warmup_steps=0"])


def test_pretrained_profile_shows_the_route():
    cfg = load_profile("pretrained")
    assert cfg.pretrain.publishes_pretrained and cfg.problems.source.startswith("code_contests:")
    assert cfg.sample.sampling.backend == "vllm" and cfg.sample.sampling.vllm.enable_prefix_caching
    assert cfg.rl.grpo.use_vllm and cfg.select.temperatures == ()
