"""The transformers backend: :class:`HFBatchedBackend`.

Contract: ``generate(prompts, n, params, seed)`` returns ``n`` :class:`Generated` per prompt, in
order. ``logprob_sum`` is the sum of the model's *untempered* log-probs (log-softmax of the raw
logits) of the generated tokens, the same quantity vLLM reports by default. Stop sequences end
generation and are cut from the text (like vLLM's default); ``num_tokens``/``logprob_sum`` count
the tokens up to and including the one that completed the stop sequence or the EOS token.
``finish_reason`` is ``stop`` (a stop sequence), ``eos`` (the EOS token) or ``length``
(``max_new_tokens`` reached).

Shared prefill (``prefill="shared"``, the default): each prompt's forward pass runs once (batch
1, no padding); an explicit decode loop then feeds one token per row per step. The prompt's
keys/values are kept once per prompt, not copied per row: decode steps run a shared-prefix
attention (registered with transformers as ``alphacode_shared_prefix_<kernel>``) that scores all
the rows sampling from a prompt against its keys in one matrix product and their own generated
keys separately, under one softmax - exact attention over prompt + generated tokens, with the
prompt read once per step instead of once per row. Rows are the ``n`` samples of prompt 0, then
of prompt 1, ...; ``params.batch_size`` is the most rows decoded together: a batch may hold the
rows of several prompts (their prompts left-padded to the longest, padding masked), and a prompt
with ``n > batch_size`` spans several batches that all reuse its one prefill. A row that
finishes (EOS, stop sequence) is dropped from the batch - its cache rows compacted away - once
at least 1/8 of the rows still in the batch have finished, so finished rows stop costing
compute. On this path ``kv_cache`` picks the cache of the generated tokens (``dynamic``:
transformers' ``DynamicCache``, grown per step; ``static``: a ``StaticCache`` of
``max_new_tokens`` slots) and ``attention`` the kernel of the prompts' forward passes (``auto``
= eager on CPU, sdpa elsewhere); tests/bench/bench_sampling.py ``--shared-prefill`` compares.
The old path, ``prefill="repeat"`` (transformers ``generate`` on ``batch_size`` left-padded
copies of the prompts, every sample paying the prompt's forward pass, ``kv_cache``/``attention``
as transformers reads them), is kept for that benchmark's comparison.

Sampling (shared path): temperature divides the logits, then top-p keeps the nucleus by the same
rule as transformers' ``TopPLogitsWarper``; top_k is disabled; a token is drawn by inversion
(one uniform ``u`` per row and step; the first token whose cumulative probability, summed in
float64, exceeds ``u`` x the total), a draw from that categorical distribution - the one
``generate(do_sample=True)`` samples from; a token of probability 0 is never drawn. Greedy:
``temperature=0`` takes the argmax of the raw logits (top_p is then ignored); since greedy
samples of one prompt are identical, each prompt is decoded once and its result repeated ``n``
times (both paths honour ``temperature=0``; the repeat path via ``do_sample=False``).

Reproducibility: the same prompts, params, seed, model and torch build give the same samples. On
the shared path batch ``b`` draws its uniforms from its own ``torch.Generator`` seeded with the
first 8 bytes of ``sha256(f"{seed}/{b}")`` (shifted right one bit), for every row of the batch
at every step whether it has finished or not, so a row's tokens do not depend on which other rows finished (nor on the
caller's RNG; the call still runs inside ``torch.random.fork_rng``). This stream is not the one
used before shared prefill (``torch.manual_seed(seed)`` then transformers' ``generate`` on the
global RNG, which the repeat path still uses): the same distribution, different draws for a
given seed. Changing ``batch_size`` changes the samples on both paths.

Device: the model runs on the backend's :class:`~tasks.core.device.Placement` (the profile's
``device`` policy, ``SamplingParams.device``), its weights in that placement's dtype (float32 on
the CPU, bfloat16 on most GPUs); ``logprob_sum`` is summed in float64 on the host either way.

Limits: single-process (torch intra-op threads only). Shared prefill needs a model whose cache
layers are all plain full-attention ``DynamicLayer``s (Llama-style); any other model (sliding
window, linear attention) falls back to the repeat path. The shared-prefix attention is plain
torch matrix products (no fused kernel); a batch mixing G prompts runs G of them per layer and
step. torch/transformers load on construction.
"""

from __future__ import annotations

import hashlib
import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tasks.core.device import Placement, resolve
from tasks.core.sampling.backend import Generated, SamplingError, load_checked_tokenizer
from tasks.core.sampling.params import SamplingParams

COMPACT_FRACTION = 8  # drop finished rows once >= 1/8 of the batch's rows have finished


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


@dataclass(frozen=True)
class _Prefill:
    """One prompt's forward pass: per-layer keys/values of shape (1, heads, length, head_dim) and
    the raw logits of the next token (vocab,)."""

    length: int
    keys: tuple[Any, ...]
    values: tuple[Any, ...]
    logits: Any


def _first_stop(text: str, stops: Sequence[str]) -> int:
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(hits) if hits else -1


def batch_seed(seed: int, batch_index: int) -> int:
    """The seed of shared-prefill batch ``batch_index``'s noise generator under call seed ``seed``."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{batch_index}".encode()).digest()[:8], "big") >> 1


def top_p_filter(scores, top_p: float):
    """``scores`` with the tokens outside the top-p nucleus set to -inf: transformers'
    ``TopPLogitsWarper`` rule (sort ascending, drop while the cumulative probability <= 1 - top_p,
    always keep the most likely token)."""
    import torch

    if top_p >= 1.0:
        return scores
    sorted_logits, sorted_indices = torch.sort(scores, descending=False)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    remove_sorted = cumulative <= (1 - top_p)
    remove_sorted[..., -1:] = False
    remove = remove_sorted.scatter(1, sorted_indices, remove_sorted)
    return scores.masked_fill(remove, -math.inf)


@dataclass
class _SharedPrefix:
    """What the decode attention reads besides the (generated-tokens-only) cache: per layer the
    prompt keys/values of the batch's G distinct prompts, left-padded to one width and repeated to
    the query heads, (G, heads, width, head_dim); which batch rows sample from which prompt; the
    padding to mask; and how many cache slots hold generated tokens (a static cache has more)."""

    keys: list
    values: list
    groups: list  # per prompt: a LongTensor of its rows' batch positions, or None for "all rows"
    pad: Any  # (rows, width) bool, True on padding; None when no prompt is padded
    row_group: Any  # (rows,) the prompt (index into keys/values) of each batch row
    suffix_len: int = 0


def _shared_prefix_attention(base):
    """An attention function that, given ``shared_prefix`` (a :class:`_SharedPrefix`) in its
    kwargs, attends each query over its prompt's keys - read once per prompt, one matrix product
    for all the rows sampling from it - and over its own generated keys, with one softmax across
    both (exact attention over the concatenation); without it (the prompt's prefill) it is
    ``base``."""

    def attention(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
        import torch
        from transformers.models.llama.modeling_llama import repeat_kv

        state = kwargs.get("shared_prefix")
        if state is None:
            return base(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs)
        layer = module.layer_idx
        pk, pv = state.keys[layer], state.values[layer]
        rows, heads, q_len, dim = query.shape
        width = pk.shape[2]
        kv_groups = getattr(module, "num_key_value_groups", 1)
        key = repeat_kv(key[:, :, : state.suffix_len], kv_groups)
        value = repeat_kv(value[:, :, : state.suffix_len], kv_groups)

        prefix = query.new_empty((rows, heads, q_len, width))
        for g, members in enumerate(state.groups):
            if members is not None and not len(members):
                continue
            q = query if members is None else query[members]  # this prompt's rows
            n = q.shape[0]
            q = q.transpose(0, 1).reshape(heads, n * q_len, dim)
            part = torch.matmul(q, pk[g].transpose(1, 2)).reshape(heads, n, q_len, width).transpose(0, 1)
            if members is None:
                prefix = part
            else:
                prefix[members] = part
        scores = torch.cat([prefix, torch.matmul(query, key.transpose(2, 3))], dim=-1) * scaling
        if state.pad is not None:
            scores[..., :width].masked_fill_(state.pad[:, None, None, :], -math.inf)
        probs = torch.softmax(scores.float(), dim=-1).to(query.dtype)
        out = torch.matmul(probs[..., width:], value)
        for g, members in enumerate(state.groups):
            if members is not None and not len(members):
                continue
            p = probs[..., :width] if members is None else probs[members][..., :width]
            n = p.shape[0]
            part = torch.matmul(p.transpose(0, 1).reshape(heads, -1, width), pv[g])
            part = part.reshape(heads, n, q_len, dim).transpose(0, 1)
            if members is None:
                out += part
            else:
                out[members] += part
        return out.transpose(1, 2).contiguous(), None

    return attention


def _register_shared_prefix_attention(base_name: str) -> str:
    """Register (once) the shared-prefix attention over transformers' ``base_name`` kernel, with
    ``base_name``'s mask builder; returns its name for ``attn_implementation``."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    from transformers.models.llama.modeling_llama import eager_attention_forward

    # public registries (transformers' "attention interface" API): read and extended, never
    # written to directly
    name = f"alphacode_shared_prefix_{base_name}"
    if name not in ALL_ATTENTION_FUNCTIONS:
        base = eager_attention_forward if base_name == "eager" else ALL_ATTENTION_FUNCTIONS[base_name]
        AttentionInterface.register(name, _shared_prefix_attention(base))
        AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS[base_name])
    return name


class HFBatchedBackend:
    """Batched transformers sampling on ``placement`` (default: the device policy's ``auto``,
    :func:`tasks.core.device.resolve`; the weights are loaded in its dtype): shared prefill + an
    explicit decode loop by default, or ``generate`` on repeated prompts (``prefill="repeat"``)."""

    name = "hf"

    def __init__(
        self,
        model_dir: str | Path,
        placement: Placement | None = None,
        kv_cache: Literal["static", "dynamic"] = "static",
        attention: Literal["auto", "eager", "sdpa"] = "auto",
        prefill: Literal["shared", "repeat"] = "shared",
    ):
        from transformers import AutoModelForCausalLM

        if prefill not in ("shared", "repeat"):
            raise SamplingError(f"prefill={prefill!r}: use 'shared' (default) or 'repeat'")
        self.placement = placement or resolve()
        self.model_dir = Path(model_dir)
        self.tokenizer = load_checked_tokenizer(self.model_dir)
        self.tokenizer.padding_side = "left"
        if attention == "auto":
            attention = "sdpa" if self.placement.is_cuda else "eager"
        self.attention = attention  # the kernel of the prompts' forward passes (and of the repeat path)
        kernel = _register_shared_prefix_attention(attention) if prefill == "shared" else attention
        self.model = AutoModelForCausalLM.from_pretrained(
            self.model_dir, dtype=self.placement.torch_dtype(), attn_implementation=kernel
        )
        self.device = self.placement.torch_device()
        self.model.to(self.device).eval()
        self.kv_cache = kv_cache
        self.prefill = prefill
        self.pad_id = (
            self.tokenizer.pad_token_id
            if self.tokenizer.pad_token_id is not None
            else self.tokenizer.eos_token_id
        )
        params = inspect.signature(self.model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"  # transformers >= 5.2x: cache

    def context_length(self) -> int:
        return int(self.model.config.max_position_embeddings)

    def count_prompt_tokens(self, prompt: str) -> int:
        return len(self.tokenizer(prompt)["input_ids"])

    def generate(self, prompts, n, params, seed, progress=None):
        import torch

        if n <= 0:
            raise SamplingError(f"n={n}: zero samples requested; ask for at least one")
        encoded = [self.tokenizer(p)["input_ids"] for p in prompts]
        if any(not ids for ids in encoded):
            raise SamplingError("a prompt encodes to zero tokens; give every prompt some text")
        greedy = params.temperature == 0
        copies = 1 if greedy else n  # greedy samples of one prompt are identical: decode once
        jobs = [i for i in range(len(encoded)) for _ in range(copies)]
        out: list[list[Generated]] = [[] for _ in prompts]
        with torch.random.fork_rng(devices=[]), torch.inference_mode():
            torch.manual_seed(seed)
            shared = self.prefill == "shared" and self._supports_shared_prefill()
            prefills: dict[int, _Prefill] = {}
            for b, start in enumerate(range(0, len(jobs), params.batch_size)):
                chunk = jobs[start : start + params.batch_size]
                if shared:
                    for i in dict.fromkeys(chunk):
                        if i not in prefills:
                            prefills[i] = self._prefill(encoded[i])
                    gens = self._shared_batch(chunk, prefills, params, batch_seed(seed, b))
                    for i in [i for i in prefills if i < chunk[-1]]:
                        del prefills[i]  # rows are in prompt order: no later batch needs it
                else:
                    gens = self._batch([encoded[i] for i in chunk], params)
                for i, gen in zip(chunk, gens):
                    out[i].extend([gen] * (n if greedy else 1))
                if progress:
                    progress(len(chunk) * (n if greedy else 1))
        return out

    # -- shared prefill ---------------------------------------------------------------------------

    def _supports_shared_prefill(self) -> bool:
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer

        layers = DynamicCache(config=self.model.config).layers
        return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)

    def _prefill(self, ids: list[int]) -> _Prefill:
        import torch
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        out = self.model(
            input_ids=torch.tensor([ids], device=self.device),
            use_cache=True,
            logits_to_keep=1,
            **{self._cache_kw: cache},
        )
        return _Prefill(
            length=len(ids),
            keys=tuple(layer.keys for layer in cache.layers),
            values=tuple(layer.values for layer in cache.layers),
            logits=out.logits[0, -1].float(),
        )

    def _shared_prefix(self, chunk: list[int], prefills: dict[int, _Prefill], width: int) -> _SharedPrefix:
        """The decode attention's view of the batch's prompts (see :class:`_SharedPrefix`)."""
        import torch
        from transformers.models.llama.modeling_llama import repeat_kv

        order = list(dict.fromkeys(chunk))  # the batch's distinct prompts
        heads = self.model.config.num_attention_heads
        keys, values = [], []
        for layer in range(len(prefills[order[0]].keys)):
            for field, into in (("keys", keys), ("values", values)):
                one = getattr(prefills[order[0]], field)[layer]
                if len(order) == 1:
                    stacked = one
                else:
                    stacked = one.new_zeros((len(order), one.shape[1], width, one.shape[3]))
                    for g, i in enumerate(order):
                        stacked[g, :, width - prefills[i].length :] = getattr(prefills[i], field)[layer][0]
                into.append(repeat_kv(stacked, heads // stacked.shape[1]))
        lengths = torch.tensor([prefills[i].length for i in chunk], device=self.device)
        pad = None
        if int(lengths.min()) != width:
            pad = torch.arange(width, device=self.device)[None, :] < (width - lengths)[:, None]
        group = torch.tensor([order.index(i) for i in chunk], device=self.device)
        state = _SharedPrefix(keys=keys, values=values, groups=[], pad=pad, row_group=group)
        self._regroup(state, len(order))
        return state

    @staticmethod
    def _regroup(state: _SharedPrefix, prompts: int) -> None:
        if prompts == 1:
            state.groups = [None]
        else:
            state.groups = [(state.row_group == g).nonzero()[:, 0] for g in range(prompts)]

    def _shared_batch(
        self, chunk: list[int], prefills: dict[int, _Prefill], params: SamplingParams, noise_seed: int
    ) -> list[Generated]:
        import torch
        from transformers import DynamicCache, StaticCache

        rows = [prefills[i] for i in chunk]
        total = len(rows)
        lengths = torch.tensor([p.length for p in rows], device=self.device)
        width = int(lengths.max())
        steps = params.max_new_tokens
        prefix = self._shared_prefix(chunk, prefills, width)
        prompts = len(prefix.keys[0])
        if self.kv_cache == "static":  # the cache holds the generated tokens only
            cache = StaticCache(config=self.model.config, max_cache_len=steps)
        else:
            cache = DynamicCache(config=self.model.config)
        logits = torch.stack([p.logits for p in rows])
        greedy = params.temperature == 0
        gen = torch.Generator(device=self.device).manual_seed(noise_seed)
        tokens = torch.full((total, steps), self.pad_id, dtype=torch.long)
        logprobs = torch.zeros((total, steps), dtype=torch.float64)
        count = torch.zeros(total, dtype=torch.long)
        eos = self.tokenizer.eos_token_id
        live = torch.arange(total)  # batch position -> row of this chunk
        alive = torch.ones(total, dtype=torch.bool)  # per batch position: still generating
        for step in range(steps):
            logp = torch.log_softmax(logits, dim=-1)
            if greedy:
                chosen = logits.argmax(dim=-1)
            else:
                draw = torch.rand(total, generator=gen, device=self.device, dtype=torch.float64)
                probs = top_p_filter(logits / params.temperature, params.top_p).softmax(dim=-1)
                cdf = probs.double().cumsum(dim=-1)
                total_mass = cdf[:, -1:].contiguous()
                chosen = torch.searchsorted(cdf, draw[live, None] * total_mass, right=True)[:, 0]
                last = torch.searchsorted(cdf, total_mass)[:, 0]  # if u x total rounded up to total
                chosen = torch.minimum(chosen, last)
            picked = logp.gather(1, chosen[:, None])[:, 0]
            rows_now = live[alive]
            tokens[rows_now, step] = chosen[alive].cpu()
            logprobs[rows_now, step] = picked[alive].double().cpu()
            count[rows_now] = step + 1
            done = alive & (chosen.cpu() == eos)
            if params.stop:
                check = (alive & ~done).nonzero()[:, 0]
                texts = self.tokenizer.batch_decode(
                    [tokens[live[k], : step + 1].tolist() for k in check.tolist()], skip_special_tokens=True
                )
                for k, text in zip(check.tolist(), texts):
                    if _first_stop(text, params.stop) >= 0:
                        done[k] = True
            alive &= ~done
            if step == steps - 1 or not bool(alive.any()):
                break
            finished = int((~alive).sum())
            if finished and finished * COMPACT_FRACTION >= len(alive):
                keep = alive.nonzero()[:, 0]
                on_device = keep.to(self.device)
                cache.reorder_cache(on_device)
                live, alive, chosen, lengths = live[keep], alive[keep], chosen[on_device], lengths[on_device]
                prefix.row_group = prefix.row_group[on_device]
                prefix.pad = None if prefix.pad is None else prefix.pad[on_device]
                self._regroup(prefix, prompts)
            prefix.suffix_len = step + 1
            out = self.model(
                input_ids=chosen[:, None],
                position_ids=(lengths + step)[:, None],
                use_cache=True,
                logits_to_keep=1,
                shared_prefix=prefix,
                **{self._cache_kw: cache},
            )
            logits = out.logits[:, -1].float()
        return [
            self._finish(tokens[r, :k].tolist(), logprobs[r, :k].tolist(), params.stop)
            for r, k in enumerate(count.tolist())
        ]

    # -- repeated prompts through transformers' generate -----------------------------------------

    def _batch(self, prompt_ids: list[list[int]], params: SamplingParams) -> list[Generated]:
        import torch

        width = max(len(p) for p in prompt_ids)
        input_ids = torch.tensor([[self.pad_id] * (width - len(p)) + p for p in prompt_ids])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompt_ids])
        recorder = _SampledLogprobs(width)
        sample = params.temperature > 0
        sequences = self.model.generate(
            input_ids=input_ids.to(self.device),
            attention_mask=mask.to(self.device),
            do_sample=sample,
            temperature=params.temperature if sample else None,
            top_p=params.top_p if sample else None,
            top_k=0 if sample else None,
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
