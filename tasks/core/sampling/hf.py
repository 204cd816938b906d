"""The transformers backend: :class:`HFBatchedBackend`.

Contract: runs transformers ``generate`` on ``batch_size`` left-padded sequences at a time
(``do_sample=True``, top_k disabled; by default a static KV cache and, on CPU, eager attention:
``kv_cache``/``attention`` in the params). ``logprob_sum`` is the sum of the model's *untempered*
log-probs (log-softmax of the raw logits) of the generated tokens, the same quantity vLLM reports
by default. Stop sequences end generation and are cut from the text (like vLLM's default);
``num_tokens``/``logprob_sum`` count the tokens up to and including the one that completed the
stop sequence or the EOS token. ``finish_reason`` is ``stop`` (a stop sequence), ``eos`` (the EOS
token) or ``length`` (``max_new_tokens`` reached).
Reproducibility: a call samples under ``torch.manual_seed(seed)`` inside
``torch.random.fork_rng`` (the caller's RNG state is untouched), so the same prompts, params,
seed, model and torch build give the same samples. Changing ``batch_size`` changes the samples.
Limits: single-process (torch intra-op threads only); repeated prompts in a batch are
recomputed, not prefix-cached (vLLM does cache them). torch/transformers load on construction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from tasks.core.sampling.backend import Generated, SamplingError, load_checked_tokenizer
from tasks.core.sampling.params import SamplingParams


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
