"""Tokenizers and causal language models: train a byte-level BPE, build or load a model.

Contract
- :func:`train_tokenizer` trains a byte-level BPE (``tokenizers``: ByteLevel pre-tokenizer,
  decoder and post-processor, the 256 byte symbols always in the vocabulary, so any string
  round-trips exactly through encode/decode) and wraps it as a ``PreTrainedTokenizerFast``
  whose ``save_pretrained`` output loads back with ``AutoTokenizer.from_pretrained``.
  ``<|endoftext|>`` is bos and eos, ``<|pad|>`` is pad. No special token is added by
  ``encode``: the datasets in :mod:`tasks.core.training` place eos themselves.
- :class:`ModelSpec` + :func:`build_model`: ``scratch`` builds a ``LlamaForCausalLM`` from a
  preset (parameter counts with the default 4096-token vocabulary, untied embeddings):
  ``tiny`` ~1.9 M (hidden 128, 4 layers, 4 heads), ``small`` ~6.9 M (hidden 256, 6 layers,
  8 heads), ``base`` ~29.5 M (hidden 512, 8 layers, 8 heads); context 512 (base 1024) unless
  ``context_length`` is set. Weights are initialised under ``init_seed`` without touching the
  global RNG. ``pretrained`` loads any local Hugging Face causal-LM directory.
- :func:`load_model_and_tokenizer` loads a local directory only (``local_files_only=True``;
  a string that is not an existing directory is refused, never looked up on a hub). Errors
  name the directory and the fix: missing directory, no tokenizer files, tokenizer larger than
  the model's embedding matrix. A tokenizer without a pad token gets ``pad = eos``.

Limits: only causal LMs that ``AutoModelForCausalLM`` knows are loadable; models are loaded
in float32 on CPU (the training loop moves them).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from tasks.core.hparams import ModelSpec
from tasks.core.io import save_model

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
DEFAULT_SPECIAL_TOKENS = (EOS_TOKEN, PAD_TOKEN)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")

# hidden, layers, heads, intermediate, default context
PRESETS: dict[str, tuple[int, int, int, int, int]] = {
    "tiny": (128, 4, 4, 352, 512),
    "small": (256, 6, 8, 704, 512),
    "base": (512, 8, 8, 1376, 1024),
}


class ModelError(ValueError):
    """A model or tokenizer cannot be built or loaded as asked."""


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int,
    special_tokens: tuple[str, ...] = DEFAULT_SPECIAL_TOKENS,
    min_frequency: int = 2,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``texts``; the first special token is bos/eos, the second pad."""
    if len(special_tokens) < 2:
        raise ModelError("special_tokens needs at least (eos, pad), e.g. ('<|endoftext|>', '<|pad|>')")
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    floor = len(alphabet) + len(special_tokens)
    if vocab_size < floor:
        raise ModelError(f"vocab_size={vocab_size} is below the byte alphabet + specials ({floor}); raise it")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(special_tokens),
        initial_alphabet=alphabet,
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    eos, pad = special_tokens[0], special_tokens[1]
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=eos,
        eos_token=eos,
        pad_token=pad,
        clean_up_tokenization_spaces=False,
    )


def scratch_config(spec: ModelSpec, tokenizer: PreTrainedTokenizerBase) -> LlamaConfig:
    hidden, layers, heads, inter, ctx = PRESETS[spec.preset]
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=spec.context_length or ctx,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )


def build_model(spec: ModelSpec, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    """Scratch: a fresh Llama sized for ``tokenizer``. Pretrained: the model at ``spec.path``,
    checked against ``tokenizer`` (which must fit its embedding matrix)."""
    if spec.source == "pretrained":
        model = _load_model(_existing_dir(spec.path or ""))
        _check_vocab(Path(spec.path or ""), tokenizer, model)
        return model
    config = scratch_config(spec, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.init_seed)
        model = LlamaForCausalLM(config)
    return model


def prepare_model(
    spec: ModelSpec, texts: Iterable[str], tokenizer_dir: Path | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Scratch: train a tokenizer on ``texts`` then build the model; with ``tokenizer_dir`` the
    tokenizer is saved there (atomically) and read back on a resume instead of retrained.
    Pretrained: load both from ``spec.path`` (``texts`` is not read)."""
    if spec.source == "pretrained":
        return load_model_and_tokenizer(spec.path or "")
    if tokenizer_dir is not None and (Path(tokenizer_dir) / "tokenizer.json").is_file():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    else:
        tokenizer = train_tokenizer(texts, spec.vocab_size)
        if tokenizer_dir is not None:
            save_model(None, tokenizer, Path(tokenizer_dir))  # a resumed run finds all of it or none
    return build_model(spec, tokenizer), tokenizer


def load_model_and_tokenizer(path: str | Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer from a local Hugging Face directory."""
    directory = _existing_dir(path)
    if not any((directory / name).exists() for name in TOKENIZER_FILES):
        raise ModelError(
            f"model directory {str(directory)!r} has no tokenizer (none of {list(TOKENIZER_FILES)}); "
            "save it next to the weights with tokenizer.save_pretrained(that directory)"
        )
    tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    model = _load_model(directory)
    _check_vocab(directory, tokenizer, model)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelError(
                f"tokenizer in {str(directory)!r} has neither a pad nor an eos token; "
                "add one (tokenizer.add_special_tokens) and save it again"
            )
        tokenizer.pad_token = tokenizer.eos_token
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _existing_dir(path: str | Path) -> Path:
    directory = Path(path)
    if not directory.is_dir():
        raise ModelError(
            f"model.path {str(path)!r} is not an existing local directory; point it at a directory "
            "written by save_pretrained (nothing is downloaded)"
        )
    return directory


def _load_model(directory: Path) -> PreTrainedModel:
    if not (directory / "config.json").exists():
        raise ModelError(
            f"model directory {str(directory)!r} has no config.json; it must be a save_pretrained output"
        )
    return AutoModelForCausalLM.from_pretrained(directory, local_files_only=True, dtype=torch.float32)


def _check_vocab(directory: Path, tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel) -> None:
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:
        raise ModelError(
            f"tokenizer for {str(directory)!r} has {len(tokenizer)} tokens but the model's embedding "
            f"has {rows} rows; use the tokenizer the model was trained with, or call "
            "model.resize_token_embeddings(len(tokenizer)) and fine-tune"
        )
