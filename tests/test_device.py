"""The device policy (tasks.core.device): validation, resolution on fake and real machines, the
profile's [device] reaching every stage that runs a model, and no literal elsewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tasks.core.config import ConfigError, load_profile
from tasks.core.device import DeviceConfig, DeviceError, Placement, Probe, recorded, resolve

CPU_ONLY = Probe(cuda_devices=0, bf16_supported=False)
AMPERE_X2 = Probe(cuda_devices=2, bf16_supported=True)
TURING = Probe(cuda_devices=1, bf16_supported=False)
ROOT = Path(__file__).resolve().parents[1]


def test_auto_resolves_to_cpu_float32_without_a_gpu():
    assert resolve(DeviceConfig(), CPU_ONLY) == Placement("cpu", "float32")


def test_auto_resolves_to_cpu_here():
    import torch  # a project dependency: a broken install fails here, never skips

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    placement = resolve()
    assert placement == Placement("cpu", "float32")
    assert placement.metrics() == {"device": "cpu", "dtype": "float32"}
    assert placement.trainer_args() == {"use_cpu": True, "bf16": False, "fp16": False}
    assert not placement.mixed_precision


@pytest.mark.parametrize(
    ("device", "dtype", "machine", "expected"),
    [
        ("auto", "auto", AMPERE_X2, Placement("cuda:0", "bfloat16")),
        ("auto", "auto", TURING, Placement("cuda:0", "float16")),
        ("cuda", "auto", AMPERE_X2, Placement("cuda:0", "bfloat16")),
        ("cuda:1", "float32", AMPERE_X2, Placement("cuda:1", "float32")),
        ("cpu", "auto", AMPERE_X2, Placement("cpu", "float32")),
        ("cpu", "bfloat16", CPU_ONLY, Placement("cpu", "bfloat16")),
    ],
)
def test_resolution(device, dtype, machine, expected):
    assert resolve(DeviceConfig(device=device, dtype=dtype), machine) == expected


def test_gpu_index():
    assert Placement("cuda:3", "bfloat16").gpu_index == 3 and Placement("cpu", "float32").gpu_index is None


def test_gpu_placement_sets_trainer_precision():
    assert Placement("cuda:0", "bfloat16").trainer_args() == {"use_cpu": False, "bf16": True, "fp16": False}
    assert Placement("cuda:0", "float16").trainer_args() == {"use_cpu": False, "bf16": False, "fp16": True}


@pytest.mark.parametrize(
    ("device", "dtype", "machine", "says"),
    [
        ("cuda", "auto", CPU_ONLY, "no CUDA GPU"),
        ("cuda:2", "auto", AMPERE_X2, "2 GPU"),
        ("cpu", "float16", AMPERE_X2, "float16"),
        ("auto", "bfloat16", TURING, "does not support bfloat16"),
    ],
)
def test_impossible_requests_fail_with_the_fix(device, dtype, machine, says):
    with pytest.raises(DeviceError, match=says):
        resolve(DeviceConfig(device=device, dtype=dtype), machine)


def test_recorded_falls_back_to_the_request_where_it_cannot_resolve():
    assert recorded(DeviceConfig(device="cuda"), CPU_ONLY)["device_note"]
    assert recorded(DeviceConfig(), CPU_ONLY) == {"device": "cpu", "dtype": "float32"}


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "CUDA", "mps"])
def test_bad_device_strings_are_refused_at_validation(bad):
    with pytest.raises(ConfigError, match="device"):
        load_profile("smoke", [f"device.device={bad}"])


def test_profile_device_reaches_every_model_stage():
    cfg = load_profile("smoke", ["device.device=cpu", "device.dtype=bfloat16"])
    wanted = DeviceConfig(device="cpu", dtype="bfloat16")
    assert cfg.device == wanted
    for section in (cfg.pretrain, cfg.finetune, cfg.sample.sampling, cfg.rl):
        assert section.device == wanted


def test_a_stage_may_set_its_own_device():
    cfg = load_profile("smoke", ["device.dtype=bfloat16", "sample.sampling.device.device=cpu"])
    assert cfg.sample.sampling.device == DeviceConfig(device="cpu")
    assert cfg.finetune.device == DeviceConfig(dtype="bfloat16")


def test_device_policy_is_part_of_the_stage_config_and_round_trips():
    cfg = load_profile("smoke", ["device.dtype=float32"])
    assert cfg.finetune.model_dump(mode="json")["device"] == {"device": "auto", "dtype": "float32"}
    assert type(cfg).model_validate(cfg.model_dump(exclude_unset=True)) == cfg


LITERAL = re.compile(r"""["']cuda|["']cpu["']|torch\.(float32|bfloat16|float16)\b|\bbf16\s*=|use_cpu\s*=""")


def test_no_device_or_dtype_literal_outside_the_policy():
    dirs = ["tasks/core/rl", "tasks/core/sampling", "tasks/core/training"]
    hits = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for d in dirs
        for path in sorted((ROOT / d).rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if LITERAL.search(line)
    ]
    assert hits == []
