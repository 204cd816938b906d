"""The sampling backend protocol and the checks every backend shares.

Contract: a backend (:class:`SamplingBackend`) turns prompts into :class:`Generated` texts:
``generate(prompts, n, params, seed)`` returns ``n`` completions per prompt, reproducibly for a
given seed. :func:`load_checked_tokenizer` loads a saved model directory's tokenizer after
checking it is a model with a tokenizer that fits its vocabulary; :func:`check_prompt_fits`
rejects a prompt that with ``max_new_tokens`` does not fit the model's context (no silent
truncation). Bad input raises :class:`SamplingError` naming the thing and the fix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from tasks.core.sampling.params import SampleRequest, SamplingParams

FinishReason = Literal["stop", "length", "eos"]
Progress = Callable[[int], None]  # called with the number of samples just finished (a delta)


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


def check_prompt_fits(backend: SamplingBackend, request: SampleRequest, params: SamplingParams) -> None:
    prompt_len = backend.count_prompt_tokens(request.prompt)
    limit = backend.context_length()
    if prompt_len + params.max_new_tokens > limit:
        fix = getattr(backend, "context_fix", None)  # a backend sized below the model's context
        raise SamplingError(
            f"problem {request.problem_id!r}: prompt is {prompt_len} tokens + max_new_tokens "
            f"{params.max_new_tokens} > the {'backend' if fix else 'model'}'s context of {limit} "
            "tokens; shorten the prompt (e.g. trim the description) or lower max_new_tokens"
            + (f", or {fix}" if fix else "")
        )
