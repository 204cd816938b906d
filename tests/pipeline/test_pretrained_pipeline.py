"""The pretrained-model route end to end: a random-init Qwen2 (a real architecture's shapes,
scaled down; the project's own BPE tokenizer) saved with save_pretrained, given as
``pretrain.model.path`` with ``pretrain.train.max_steps = 0``, runs the whole smoke pipeline
(the deployment tests' smaller override of it, ``TINY``): stage 1 trains nothing and publishes
the directory as is, stage 2 fine-tunes it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pretrained_run(prefect_harness, tmp_path_factory):
    from flows.pipeline import alphacode_pipeline
    from tasks.core.config import deep_merge
    from tasks.core.problems import format_prompt
    from tasks.core.problems.bundled import bundled_problems
    from tests.gpu.random_model import save_random_model
    from tests.ops.test_deployments import TINY

    texts = [format_prompt(p) for p in bundled_problems("train", per_family=4)]
    model_dir = save_random_model(tmp_path_factory.mktemp("user_model") / "qwen2-tiny", texts)
    overrides = deep_merge(
        TINY,
        {
            "pretrain": {
                "model": {"source": "pretrained", "path": str(model_dir)},
                "train": {"max_steps": 0, "warmup_steps": 0},
            },
            "device": {"device": "auto", "dtype": "auto"},
        },
    )
    root = tmp_path_factory.mktemp("pretrained_smoke")
    return alphacode_pipeline(profile="smoke", out_dir=str(root), overrides=overrides), model_dir


def test_stage1_publishes_the_users_model_untrained(pretrained_run):
    result, model_dir = pretrained_run
    pretrain = result.stages["pretrain"]
    assert pretrain.metrics["steps"] == 0 and pretrain.metrics["source"] == "pretrained"
    assert pretrain.metrics["model_path"] == str(model_dir.resolve())
    published = pretrain.dir / "model"
    assert not (pretrain.dir / "checkpoint").exists()  # no training step ran
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (published / name).read_bytes() == (model_dir / name).read_bytes()
    assert json.loads((published / "config.json").read_text())["model_type"] == "qwen2"


def test_the_rest_of_the_pipeline_ran_on_it(pretrained_run):
    result, _ = pretrained_run
    assert result.finetune.metrics["steps"] > 0
    assert json.loads((result.finetune.dir / "model" / "config.json").read_text())["model_type"] == "qwen2"
    assert result.rl.metrics["optimizer_steps"] > 0
    assert (Path(result.report.path) / "report.md").is_file()


def test_model_stages_record_the_resolved_device(pretrained_run):
    import torch

    result, _ = pretrained_run
    expected = "cuda:0" if torch.cuda.is_available() else "cpu"
    for manifest in (result.finetune, result.rl, result.sft.samples):
        assert manifest.metrics["device"] == expected
        assert manifest.metrics["dtype"] in ("float32", "bfloat16", "float16")
    assert result.rl.metrics["generation"] == "transformers"  # smoke: use_vllm is off
