"""Massive sampling: n completions per problem from a saved causal LM, into Parquet shard tables.

Contract:
  * :class:`SamplingParams` fixes everything that changes the samples (n, temperature, top_p,
    max_new_tokens, stop sequences, seed, batch size, shard size, backend).
  * A backend (:class:`SamplingBackend`) turns prompts into :class:`Generated` texts.
    :class:`HFBatchedBackend` runs transformers ``generate`` on ``batch_size`` left-padded sequences
    at a time (``do_sample=True``, top_k disabled; by default a static KV cache and, on CPU, eager
    attention: ``kv_cache``/``attention`` in the params); ``logprob_sum`` is the sum of the model's
    *untempered* log-probs (log-softmax of the raw logits) of the generated tokens, the same
    quantity vLLM reports by default. Stop sequences end generation and are cut from the text
    (like vLLM's default); ``num_tokens``/``logprob_sum`` count the tokens up to and including the
    one that completed the stop sequence or the EOS token. ``finish_reason`` is ``stop`` (a stop
    sequence), ``eos`` (the EOS token) or ``length`` (``max_new_tokens`` reached).
  * Reproducibility: a shard is sampled under ``torch.manual_seed(shard seed)`` inside
    ``torch.random.fork_rng`` (the caller's RNG state is untouched), so the same shard plan, params,
    model and torch build give the same samples. Changing ``batch_size`` changes the samples.
  * :func:`sample_shard` returns rows in the store schema (:mod:`tasks.core.samplestore`);
    :func:`sample_to_store` is the resumable loop: it skips shards already complete on disk.
  * :class:`tasks.core.sampling_vllm.VLLMBackend` is the optional vLLM backend (lazy import).

Bad input fails early with a message naming the thing and the fix: zero samples, a model dir
without a tokenizer or config, a tokenizer larger than the model's vocabulary, a prompt that with
``max_new_tokens`` does not fit the model's context (no silent truncation).

Limits: HF sampling is single-process (torch intra-op threads only); repeated prompts in a batch are
recomputed, not prefix-cached (vLLM does cache them).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal, Protocol

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator

from tasks.core.samplestore import SCHEMA, SampleStore, ShardPlan, sha256_hex, with_first_flags

FinishReason = Literal["stop", "length", "eos"]
Progress = Callable[[int], None]  # called with the number of samples just finished (a delta)


class SamplingParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    n: int = Field(gt=0, description="samples per problem")
    temperature: float = Field(default=0.8, gt=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
    max_new_tokens: int = Field(default=256, gt=0)
    stop: tuple[str, ...] = ()
    seed: int = Field(default=0, ge=0)
    batch_size: int = Field(default=32, gt=0, description="sequences per generate call")
    samples_per_shard: int = Field(default=256, gt=0)
    backend: Literal["hf", "vllm"] = "hf"
    kv_cache: Literal["static", "dynamic"] = Field(
        default="static", description="hf backend: preallocated KV cache (static) or grown per step"
    )
    attention: Literal["auto", "eager", "sdpa"] = Field(
        default="auto",
        description="hf backend: auto = eager on CPU (faster for one-token decode "
        "steps, tests/bench/bench_sampling.py), sdpa on GPUs",
    )

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


class Sample(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    problem_id: str
    sample_id: int = Field(ge=0)
    completion: str
    num_tokens: int = Field(ge=0)
    logprob_sum: float
    finish_reason: FinishReason


@dataclass(frozen=True)
class Generated:
    """One completion as a backend returns it (no ids yet)."""

    text: str
    num_tokens: int
    logprob_sum: float
    finish_reason: FinishReason


class SamplingError(ValueError):
    """Bad sampling input; the message names the thing and the fix."""


class SamplingBackend(Protocol):
    name: str

    def context_length(self) -> int: ...

    def count_prompt_tokens(self, prompt: str) -> int: ...

    def generate(
        self,
        prompts: list[str],
        n: int,
        params: SamplingParams,
        seed: int,
        progress: Progress | None = None,
    ) -> list[list[Generated]]: ...


# ---------------------------------------------------------------- model dir checks

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def load_checked_tokenizer(model_dir: str | Path):
    """The tokenizer saved in ``model_dir``, after checking the dir is a model with a tokenizer."""
    from transformers import AutoConfig, AutoTokenizer

    path = Path(model_dir)
    if not (path / "config.json").is_file():
        raise SamplingError(
            f"{path} is not a saved model (no config.json); save it with model.save_pretrained('{path}')"
        )
    if not any((path / f).is_file() for f in _TOKENIZER_FILES):
        raise SamplingError(
            f"model dir {path} has no tokenizer (none of {list(_TOKENIZER_FILES)}); "
            f"save it next to the model with tokenizer.save_pretrained('{path}')"
        )
    tokenizer = AutoTokenizer.from_pretrained(path)
    vocab = AutoConfig.from_pretrained(path).vocab_size
    if len(tokenizer) > vocab:
        raise SamplingError(
            f"tokenizer in {path} has {len(tokenizer)} tokens but the model's vocab_size is {vocab}; "
            "they were not built together - save the tokenizer the model was trained with"
        )
    if tokenizer.eos_token_id is None:
        raise SamplingError(f"tokenizer in {path} has no eos_token; set one and save it again")
    return tokenizer


# ---------------------------------------------------------------- HF backend


class _SampledLogprobs:
    """Logits processor (first in line, so it sees raw logits) that accumulates, per sequence, the
    log-prob of each token as it appears in ``input_ids`` at the next step; O(batch x vocab) memory."""

    def __init__(self, prompt_len: int):
        self.prompt_len = prompt_len
        self.prev = None  # log-softmax of the previous step's raw logits
        self.steps: list = []  # per step: log-prob of the token sampled at that step, shape (B,)

    def __call__(self, input_ids, scores):
        import torch

        if self.prev is not None:
            self.steps.append(self.prev.gather(1, input_ids[:, -1:]).squeeze(1))
        self.prev = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def finish(self, sequences):
        import torch

        if self.prev is not None and sequences.shape[1] > self.prompt_len + len(self.steps):
            self.steps.append(self.prev.gather(1, sequences[:, -1:]).squeeze(1))
        if not self.steps:
            return torch.zeros(sequences.shape[0], 0)
        return torch.stack(self.steps, dim=1)


def _first_stop(text: str, stops: Sequence[str]) -> int:
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(hits) if hits else -1


class HFBatchedBackend:
    """transformers ``generate`` with ``batch_size`` sequences per call, on CPU (or ``device``)."""

    name = "hf"

    def __init__(
        self,
        model_dir: str | Path,
        device: str = "cpu",
        kv_cache: Literal["static", "dynamic"] = "static",
        attention: Literal["auto", "eager", "sdpa"] = "auto",
    ):
        import torch
        from transformers import AutoModelForCausalLM

        self.model_dir = Path(model_dir)
        self.tokenizer = load_checked_tokenizer(self.model_dir)
        self.tokenizer.padding_side = "left"
        if attention == "auto":
            attention = "eager" if device == "cpu" else "sdpa"
        self.model = AutoModelForCausalLM.from_pretrained(
            self.model_dir, dtype=torch.float32, attn_implementation=attention
        )
        self.model.to(device).eval()
        self.device = device
        self.kv_cache = kv_cache  # static: no per-step cache growth (a copy of the whole cache)
        self.pad_id = (
            self.tokenizer.pad_token_id
            if self.tokenizer.pad_token_id is not None
            else self.tokenizer.eos_token_id
        )

    def context_length(self) -> int:
        return int(self.model.config.max_position_embeddings)

    def count_prompt_tokens(self, prompt: str) -> int:
        return len(self.tokenizer(prompt)["input_ids"])

    def generate(self, prompts, n, params, seed, progress=None):
        import torch

        if n <= 0:
            raise SamplingError(f"n={n}: zero samples requested; ask for at least one")
        encoded = [self.tokenizer(p)["input_ids"] for p in prompts]
        jobs = [(i, ids) for i, ids in enumerate(encoded) for _ in range(n)]
        out: list[list[Generated]] = [[] for _ in prompts]
        with torch.random.fork_rng(devices=[]), torch.inference_mode():
            torch.manual_seed(seed)
            for start in range(0, len(jobs), params.batch_size):
                chunk = jobs[start : start + params.batch_size]
                for (i, _), gen in zip(chunk, self._batch([ids for _, ids in chunk], params)):
                    out[i].append(gen)
                if progress:
                    progress(len(chunk))
        return out

    def _batch(self, prompt_ids: list[list[int]], params: SamplingParams) -> list[Generated]:
        import torch

        width = max(len(p) for p in prompt_ids)
        input_ids = torch.tensor([[self.pad_id] * (width - len(p)) + p for p in prompt_ids])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompt_ids])
        recorder = _SampledLogprobs(width)
        sequences = self.model.generate(
            input_ids=input_ids.to(self.device),
            attention_mask=mask.to(self.device),
            do_sample=True,
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=0,
            max_new_tokens=params.max_new_tokens,
            stop_strings=list(params.stop) or None,
            tokenizer=self.tokenizer if params.stop else None,
            logits_processor=[recorder],
            pad_token_id=self.pad_id,
            eos_token_id=self.tokenizer.eos_token_id,
            **self._cache_args(width + params.max_new_tokens),
            disable_compile=True,  # no torch.compile on first use (minutes on CPU)
        )
        logprobs = recorder.finish(sequences).cpu()
        new_tokens = sequences[:, width:].cpu()
        return [self._finish(row.tolist(), lp.tolist(), params.stop) for row, lp in zip(new_tokens, logprobs)]

    def _cache_args(self, max_len: int) -> dict:
        """A fresh static cache sized for this call (transformers would otherwise keep one on the
        model and reuse it when it is big enough, so a call's numerics - and, rarely, its sampled
        tokens - would depend on the calls before it); or transformers' dynamic cache."""
        if self.kv_cache == "dynamic":
            return {"cache_implementation": "dynamic"}
        from transformers import StaticCache
        from transformers.generation import utils

        # transformers 5.2x renamed generate's ``past_key_values`` to ``cache``
        name = "cache" if "cache" in getattr(utils, "ALL_CACHE_NAMES", ()) else "past_key_values"
        return {name: StaticCache(config=self.model.config, max_cache_len=max_len)}

    def _finish(self, tokens: list[int], logprobs: list[float], stops: Sequence[str]) -> Generated:
        eos = self.tokenizer.eos_token_id
        end = tokens.index(eos) if eos in tokens else len(tokens)
        decode = lambda k: self.tokenizer.decode(tokens[:k], skip_special_tokens=True)  # noqa: E731
        text = decode(end)
        cut = _first_stop(text, stops)
        if cut >= 0:
            lo, hi = 1, end  # smallest k whose decoded prefix contains a stop sequence
            while lo < hi:
                mid = (lo + hi) // 2
                lo, hi = (lo, mid) if _first_stop(decode(mid), stops) >= 0 else (mid + 1, hi)
            count, reason, text = lo, "stop", text[:cut]
        elif end < len(tokens):
            count, reason = end + 1, "eos"
        else:
            count, reason = len(tokens), "length"
        return Generated(text, count, float(math.fsum(logprobs[:count])), reason)


# ---------------------------------------------------------------- shards


def make_backend(params: SamplingParams, model_dir: str | Path) -> SamplingBackend:
    """The backend ``params.backend`` names, loaded from ``model_dir``."""
    if params.backend == "vllm":
        from tasks.core.sampling_vllm import VLLMBackend

        return VLLMBackend(model_dir)
    return HFBatchedBackend(model_dir, kv_cache=params.kv_cache, attention=params.attention)


def check_prompt_fits(backend: SamplingBackend, request: SampleRequest, params: SamplingParams) -> None:
    prompt_len = backend.count_prompt_tokens(request.prompt)
    limit = backend.context_length()
    if prompt_len + params.max_new_tokens > limit:
        raise SamplingError(
            f"problem {request.problem_id!r}: prompt is {prompt_len} tokens + max_new_tokens "
            f"{params.max_new_tokens} > the model's context of {limit} tokens; shorten the prompt "
            "(e.g. trim the description) or lower max_new_tokens"
        )


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


def samples_of(table: pa.Table) -> list[Sample]:
    """Store rows back as :class:`Sample` objects."""
    cols = ["problem_id", "sample_id", "completion", "num_tokens", "logprob_sum", "finish_reason"]
    return [Sample(**row) for row in table.select(cols).to_pylist()]


def sample_to_store(
    backend: SamplingBackend,
    store: SampleStore,
    requests: Mapping[str, SampleRequest],
    plans: Sequence[ShardPlan],
    params: SamplingParams,
    model_id: str,
    extract_program: Callable[[str], str],
    progress: Progress | None = None,
) -> int:
    """Sample every planned shard not already complete in ``store``, then finalize dedup flags.

    Returns the number of shards sampled (skipped ones report their samples to ``progress`` too).
    """
    missing = sorted({p.problem_id for p in plans} - set(requests))
    if missing:
        raise SamplingError(f"no prompt for planned problems {missing[:5]}")
    for plan in plans:  # fail before sampling anything if a prompt cannot fit
        check_prompt_fits(backend, requests[plan.problem_id], params)
    done = 0
    for plan in plans:
        if store.has_shard(plan):
            if progress:
                progress(plan.num_samples)
            continue
        table = sample_shard(
            backend, requests[plan.problem_id], params, plan, model_id, extract_program, progress
        )
        store.write_shard(table, plan)
        done += 1
    store.finalize(sorted({p.problem_id for p in plans}))
    return done
