"""A tiny scratch Llama + ByteLevel BPE tokenizer saved to a directory (no hub, seconds to build)."""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "def solve():\n    n = int(input())\n    print(n * 2)\n",
    "import sys\nfor line in sys.stdin:\n    a, b = map(int, line.split())\n    print(a + b)\n",
    "Given an array of n integers, print the maximum sum of a subarray.\n",
    "x = [int(t) for t in input().split()]\nprint(sorted(x))\n",
    "while True:\n    s = input()\n    if not s: break\n    print(s[::-1])\n",
]


def build_tokenizer(vocab_size: int = 300):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<eos>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS * 4, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>")


def build_model_dir(
    out: Path,
    *,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    intermediate: int = 128,
    context: int = 256,
    model_vocab: int | None = None,
    uniform: bool = False,
    tokenizer_vocab: int = 300,
    seed: int = 0,
) -> Path:
    """Save a random Llama + tokenizer to ``out``. ``uniform`` zeroes lm_head: every token has prob 1/V."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer(tokenizer_vocab)
    vocab = model_vocab if model_vocab is not None else len(tokenizer)
    config = LlamaConfig(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        intermediate_size=intermediate,
        vocab_size=vocab,
        max_position_embeddings=context,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    if uniform:
        with torch.no_grad():
            model.lm_head.weight.zero_()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
