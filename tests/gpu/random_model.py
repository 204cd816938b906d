"""A randomly initialised causal LM with a real architecture's shapes, saved like a user's model.

:func:`save_random_model` writes a Qwen2 (Qwen2.5-Coder style: grouped-query attention, tied
embeddings, RMSNorm, SwiGLU, rope theta 1e6) with random weights and the project's own byte-level
BPE tokenizer (:func:`tasks.core.modeling.train_tokenizer`, trained on the texts given) to a
directory with ``save_pretrained``: what a user's pretrained model directory looks like, built
with nothing downloaded. :data:`QWEN2_0_5B` are the shapes of Qwen2.5-0.5B's ``config.json``
(~494 M parameters with its 151,936-row embedding); :data:`QWEN2_TINY` is the same
architecture scaled down for CPU tests (head_dim 64: vLLM's CPU kernels need >= 32).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

QWEN2_0_5B: dict[str, Any] = {
    "hidden_size": 896,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "intermediate_size": 4864,
    "vocab_size": 151936,
    "max_position_embeddings": 32768,
}
QWEN2_TINY: dict[str, Any] = {
    "hidden_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "intermediate_size": 256,
    "vocab_size": 1024,
    "max_position_embeddings": 2048,
}


def save_random_model(
    out: Path,
    texts: Iterable[str],
    shapes: dict[str, Any] | None = None,
    tokenizer_vocab: int = 1024,
    seed: int = 0,
) -> Path:
    """Random-init Qwen2 of ``shapes`` (default :data:`QWEN2_TINY`) + a BPE tokenizer of at most
    ``tokenizer_vocab`` tokens trained on ``texts``, saved to ``out``; returns ``out``."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from tasks.core.modeling import train_tokenizer

    shapes = {**(shapes or QWEN2_TINY)}
    tokenizer = train_tokenizer(texts, min(tokenizer_vocab, shapes["vocab_size"]))
    if len(tokenizer) > shapes["vocab_size"]:
        raise ValueError(f"tokenizer of {len(tokenizer)} tokens exceeds vocab_size {shapes['vocab_size']}")
    config = Qwen2Config(
        **shapes,
        rope_theta=1_000_000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def parameters(shapes: dict[str, Any]) -> int:
    """Parameter count of a tied-embedding Qwen2 of ``shapes`` (q/k/v biases included)."""
    h, layers, inter = shapes["hidden_size"], shapes["num_hidden_layers"], shapes["intermediate_size"]
    kv = h // shapes["num_attention_heads"] * shapes["num_key_value_heads"]
    attn = h * h + h + 2 * (h * kv + kv) + h * h
    return shapes["vocab_size"] * h + layers * (attn + 3 * h * inter + 2 * h) + h
