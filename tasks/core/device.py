"""The device policy: where models run and at what precision, chosen once for every stage.

Contract
- :class:`DeviceConfig` is what a profile asks for (top-level ``[device]``, copied into every
  stage that runs a model; see :mod:`tasks.core.config`): ``device`` = ``auto`` | ``cpu`` |
  ``cuda`` | ``cuda:N`` and ``dtype`` = ``auto`` | ``float32`` | ``bfloat16`` | ``float16``.
  Frozen pydantic; a bad value fails at validation with the field named. No torch import
  (the configuration imports this module).
- :func:`resolve` turns it into a :class:`Placement` (one concrete device and dtype) for the
  machine it runs on: ``auto`` = ``cuda:0`` when ``torch.cuda.is_available()`` else ``cpu``;
  ``cuda`` = ``cuda:0``; dtype ``auto`` = ``bfloat16`` on a GPU that supports it, ``float16`` on
  one that does not, ``float32`` on the CPU. A request the machine cannot honour (``cuda`` with no
  GPU, ``cuda:3`` on a 2-GPU machine, ``float16`` on the CPU, ``bfloat16`` on a GPU without it)
  raises :class:`DeviceError` naming the setting and the fix; nothing falls back silently.
- A :class:`Placement` is the only place the project spells device and dtype literals: training
  keeps float32 master weights and autocasts the forward pass to ``dtype``
  (:meth:`Placement.autocast`; no autocast in float32); inference (sampling, rollouts) loads
  the weights in ``dtype`` (:meth:`Placement.torch_dtype`); Hugging Face ``Trainer`` arguments
  come from :meth:`Placement.trainer_args`; vLLM gets :attr:`Placement.dtype`. Each stage that
  runs a model records :meth:`Placement.metrics` (``device``, ``dtype``) in its manifest.
- Stage keys: the *requested* policy is a config value like any other (it is in the stage
  configs, so in their keys); the *resolved* placement is not (``auto`` computed on a CPU
  machine and on a GPU machine shares a key) and is recorded in the manifest's metrics instead.

Limits: one device per process (no model or tensor parallelism here; vLLM's
``tensor_parallel_size`` is the vLLM backend's own setting). Apple ``mps`` is not supported.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator

DType = Literal["float32", "bfloat16", "float16"]
CPU = "cpu"
_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


class DeviceError(RuntimeError):
    """The device policy asks for something this machine cannot do; the message says the fix."""


class DeviceConfig(BaseModel):
    """What a profile asks for (``[device]``); resolved per machine by :func:`resolve`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    device: str = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"

    @field_validator("device")
    @classmethod
    def _known_device(cls, v: str) -> str:
        if not _DEVICE.match(v):
            raise ValueError(f"device={v!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N' (N a GPU index)")
        return v


@dataclass(frozen=True)
class Probe:
    """What the machine offers; :func:`probe` asks torch, tests pass their own."""

    cuda_devices: int
    bf16_supported: bool


def probe() -> Probe:
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return Probe(cuda_devices=n, bf16_supported=bool(n and torch.cuda.is_bf16_supported()))


@dataclass(frozen=True)
class Placement:
    """One concrete device (``cpu`` or ``cuda:N``) and dtype; build it with :func:`resolve`."""

    device: str
    dtype: DType

    @property
    def is_cuda(self) -> bool:
        return self.device != CPU

    @property
    def gpu_index(self) -> int | None:
        """N of ``cuda:N``; None on the CPU."""
        return int(self.device.split(":", 1)[1]) if self.is_cuda else None

    @property
    def mixed_precision(self) -> bool:
        """Training autocasts to :attr:`dtype` (float32 master weights)."""
        return self.dtype != "float32"

    def torch_device(self) -> Any:
        import torch

        return torch.device(self.device)

    def torch_dtype(self) -> Any:
        import torch

        return getattr(torch, self.dtype)

    def master_dtype(self) -> Any:
        """The dtype of weights that are trained (and of their frozen references): float32 on
        every placement; mixed precision is the forward pass's autocast."""
        import torch

        return torch.float32

    def autocast(self, enabled: bool = True) -> AbstractContextManager:
        """The forward pass's autocast: to :attr:`dtype` on :attr:`device`, off in float32."""
        import torch

        device_type = "cuda" if self.is_cuda else CPU
        on = enabled and self.mixed_precision
        return torch.autocast(device_type=device_type, dtype=self.torch_dtype(), enabled=on)

    def activate(self) -> None:
        """Single process on a GPU: make :attr:`device` the current CUDA device (what
        ``accelerate`` and ``.to("cuda")`` then use). A no-op on the CPU and under a distributed
        launcher (``LOCAL_RANK`` set), where the launcher assigns each process its GPU."""
        import os

        import torch

        if self.is_cuda and "LOCAL_RANK" not in os.environ:
            torch.cuda.set_device(self.torch_device())

    def trainer_args(self) -> dict[str, Any]:
        """The precision/placement fields of a transformers ``TrainingArguments`` (TRL configs)."""
        return {
            "use_cpu": not self.is_cuda,
            "bf16": self.dtype == "bfloat16",
            "fp16": self.dtype == "float16",
        }

    def metrics(self) -> dict[str, str]:
        """What a stage's manifest records: the device and dtype it ran with."""
        return {"device": self.device, "dtype": self.dtype}


def resolve(cfg: DeviceConfig | None = None, machine: Probe | Callable[[], Probe] = probe) -> Placement:
    """The :class:`Placement` ``cfg`` (default: ``auto``/``auto``) means on this machine."""
    cfg = cfg or DeviceConfig()
    found = machine() if callable(machine) else machine
    device = _device(cfg.device, found)
    return Placement(device, _dtype(cfg.dtype, device, found))


def _device(requested: str, found: Probe) -> str:
    if requested == "auto":
        return "cuda:0" if found.cuda_devices else CPU
    if requested == CPU:
        return CPU
    index = int(requested.split(":", 1)[1]) if ":" in requested else 0
    if not found.cuda_devices:
        raise DeviceError(
            f"device.device={requested!r} but torch sees no CUDA GPU here (a CPU-only torch build or "
            "no driver): set device.device='auto' or 'cpu', or install a CUDA build of torch"
        )
    if index >= found.cuda_devices:
        raise DeviceError(
            f"device.device={requested!r} but this machine has {found.cuda_devices} GPU(s) "
            f"(cuda:0..cuda:{found.cuda_devices - 1}): pick one of those or 'auto'"
        )
    return f"cuda:{index}"


def _dtype(requested: str, device: str, found: Probe) -> DType:
    gpu = device != CPU
    if requested == "auto":
        if not gpu:
            return "float32"
        return "bfloat16" if found.bf16_supported else "float16"
    if requested == "float16" and not gpu:
        raise DeviceError(
            "device.dtype='float16' on the CPU: CPU kernels have no fast float16; use 'float32' or "
            "'bfloat16' (or 'auto')"
        )
    if requested == "bfloat16" and gpu and not found.bf16_supported:
        raise DeviceError(
            f"device.dtype='bfloat16' but the GPU {device} does not support bfloat16 (pre-Ampere): "
            "use 'float16' or 'auto'"
        )
    return requested  # type: ignore[return-value]


def recorded(cfg: DeviceConfig, machine: Probe | Callable[[], Probe] = probe) -> dict[str, str]:
    """What a stage whose work may have run in other processes records: ``cfg`` resolved in this
    one, or - where this process cannot resolve it (a GPU asked for, none here) - the request as
    written, with a note saying so."""
    try:
        return resolve(cfg, machine).metrics()
    except DeviceError:
        return {"device": cfg.device, "dtype": cfg.dtype, "device_note": "requested; not resolvable here"}
