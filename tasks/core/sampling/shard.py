"""One shard of samples: pick a backend, sample a shard's completions into store-schema rows.

Contract: :func:`make_backend` loads the backend ``params.backend`` names from a saved model
directory (vLLM imported only when asked for), on the device ``params.device`` resolves to;
:func:`backend_key` is every setting it reads, so a loaded backend serves any params of that key. :func:`sample_shard` samples
``plan.num_samples`` completions of one request under the shard's seed and returns them as
rows of the sample store's schema (:mod:`tasks.core.samplestore`), with the dedup flags of the
shard alone. Greedy decoding (``temperature == 0``) is deterministic, so it is decoded once and
the shard holds ``num_samples`` copies of that one completion (pass@k of a greedy run is then
its pass@1, as it should be, and execution dedup runs the program once) (the store's ``finalize`` makes them exact across shards). The shard loop, its
skip-if-done and its write live in the sample stage (:func:`tasks.core.stages.sample.run_shard`).
Limits: a request whose prompt does not fit the model's context fails before sampling.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa

from tasks.core.device import resolve
from tasks.core.samplestore import SCHEMA, ShardPlan, sha256_hex, with_first_flags
from tasks.core.sampling.backend import Progress, SamplingBackend, SamplingError, check_prompt_fits
from tasks.core.sampling.hf import HFBatchedBackend
from tasks.core.sampling.params import SampleRequest, SamplingParams


def backend_key(params: SamplingParams) -> tuple:
    """What :func:`make_backend` builds a backend from, besides the model directory: two params
    with the same key can share one loaded backend (temperature, n, seed, stop... are per call)."""
    if params.backend == "vllm":
        return ("vllm", params.device, params.vllm, params.max_new_tokens)
    return ("hf", params.device, params.kv_cache, params.attention)


def make_backend(params: SamplingParams, model_dir: str | Path) -> SamplingBackend:
    """The backend ``params.backend`` names, loaded from ``model_dir`` on the placement
    ``params.device`` resolves to on this machine (:func:`tasks.core.device.resolve`)."""
    placement = resolve(params.device)
    if params.backend == "vllm":
        from tasks.core.sampling.vllm import VLLMBackend

        return VLLMBackend(
            model_dir, placement=placement, options=params.vllm, max_new_tokens=params.max_new_tokens
        )
    return HFBatchedBackend(model_dir, placement, kv_cache=params.kv_cache, attention=params.attention)


def sample_shard(
    backend: SamplingBackend,
    request: SampleRequest,
    params: SamplingParams,
    plan: ShardPlan,
    model_id: str,
    extract_program: Callable[[str], str],
    progress: Progress | None = None,
) -> pa.Table:
    """Sample ``plan.num_samples`` completions of ``request`` under ``plan.seed``: store-schema rows."""
    if request.problem_id != plan.problem_id:
        raise SamplingError(
            f"request is for {request.problem_id!r} but the shard plan for {plan.problem_id!r}"
        )
    if plan.num_samples <= 0:
        raise SamplingError(f"shard {plan.problem_id}#{plan.shard_index} asks for zero samples")
    check_prompt_fits(backend, request, params)
    if params.temperature == 0:
        [gens] = backend.generate([request.prompt], 1, params, plan.seed, progress)
        gens = gens * plan.num_samples
    else:
        [gens] = backend.generate([request.prompt], plan.num_samples, params, plan.seed, progress)
    codes = [extract_program(g.text) for g in gens]
    rows = len(gens)
    table = pa.table(
        {
            "problem_id": [plan.problem_id] * rows,
            "sample_id": list(plan.sample_ids),
            "prompt_hash": [sha256_hex(request.prompt)] * rows,
            "completion": [g.text for g in gens],
            "code": codes,
            "code_hash": [sha256_hex(c) for c in codes],
            "num_tokens": [g.num_tokens for g in gens],
            "logprob_sum": [g.logprob_sum for g in gens],
            "finish_reason": [g.finish_reason for g in gens],
            "temperature": [params.temperature] * rows,
            "top_p": [params.top_p] * rows,
            "seed": [plan.seed] * rows,
            "model_id": [model_id] * rows,
            "backend": [backend.name] * rows,
            "created_at": [datetime.now(timezone.utc)] * rows,
            "is_first_of_code_hash": [False] * rows,
        },
        schema=SCHEMA,
    )
    return with_first_flags(table)
