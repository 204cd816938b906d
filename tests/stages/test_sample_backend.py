"""The sample stage's one loaded backend per process (``_BackendSlot``): reused across the
per-call settings (temperature, n, seed), replaced - the old one closed first - when the model
or an engine setting changes. A vLLM engine takes most of a GPU, so two in one process fail."""

from __future__ import annotations

import pytest

from tasks.core.sampling.params import SamplingParams, VLLMOptions
from tasks.core.stages import sample as sample_stage


class Recorder:
    def __init__(self, events: list, model_dir: str, params: SamplingParams):
        self.events, self.model_dir, self.params = events, model_dir, params
        events.append(("load", model_dir, params.backend))

    def close(self) -> None:
        self.events.append(("close", self.model_dir, self.params.backend))


@pytest.fixture
def events(monkeypatch):
    seen: list = []
    monkeypatch.setattr(
        sample_stage, "make_backend", lambda params, model_dir: Recorder(seen, model_dir, params)
    )
    return seen


def test_per_call_settings_share_the_loaded_backend(events):
    slot = sample_stage._BackendSlot()
    first = slot.get("m1", SamplingParams(n=4, temperature=0.8, seed=0))
    for params in (SamplingParams(n=1, temperature=0.0), SamplingParams(n=9, temperature=0.4, seed=3)):
        assert slot.get("m1", params) is first
    assert events == [("load", "m1", "hf")]


def test_another_model_closes_the_loaded_one_before_loading(events):
    slot = sample_stage._BackendSlot()
    params = SamplingParams(n=2, backend="vllm")
    slot.get("stage2", params)
    slot.get("rl", params)
    assert events == [("load", "stage2", "vllm"), ("close", "stage2", "vllm"), ("load", "rl", "vllm")]


def test_an_engine_setting_is_part_of_the_key(events):
    slot = sample_stage._BackendSlot()
    slot.get("m", SamplingParams(n=2, backend="vllm", max_new_tokens=64))
    slot.get("m", SamplingParams(n=2, backend="vllm", max_new_tokens=64, temperature=0.2))
    slot.get("m", SamplingParams(n=2, backend="vllm", max_new_tokens=128))  # max_model_len differs
    slot.get(
        "m", SamplingParams(n=2, backend="vllm", max_new_tokens=128, vllm=VLLMOptions(enforce_eager=True))
    )
    assert [e[0] for e in events] == ["load", "close", "load", "close", "load"]


def test_a_failed_load_leaves_the_slot_empty(monkeypatch):
    slot = sample_stage._BackendSlot()
    closed = []
    monkeypatch.setattr(
        sample_stage, "make_backend", lambda params, model_dir: Recorder(closed, model_dir, params)
    )
    slot.get("ok", SamplingParams(n=1))

    def broken(params, model_dir):
        raise RuntimeError(f"cannot load {model_dir}")

    monkeypatch.setattr(sample_stage, "make_backend", broken)
    with pytest.raises(RuntimeError, match="cannot load bad"):
        slot.get("bad", SamplingParams(n=1))
    assert closed[-1] == ("close", "ok", "hf")  # the old one went first; nothing half-loaded is kept
    monkeypatch.setattr(
        sample_stage, "make_backend", lambda params, model_dir: Recorder(closed, model_dir, params)
    )
    assert slot.get("ok", SamplingParams(n=1)).model_dir == "ok"
