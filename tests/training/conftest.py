"""Shared tiny fixtures: a synthetic code corpus and a small byte-level tokenizer."""

from __future__ import annotations

import pytest

from tasks.core.modeling import ModelSpec, build_model, train_tokenizer
from tasks.core.training import TrainHParams


def synthetic_code(n: int = 160) -> list[str]:
    """Deterministic, repetitive Python snippets: a corpus a tiny model can learn fast."""
    ops = ["+", "-", "*", "//"]
    return [
        f"def func_{i}(x, y):\n    z = x {ops[i % 4]} y\n    return z {ops[(i + 1) % 4]} {i % 9}\n\n"
        f"print(func_{i}({i % 5}, {i % 3 + 1}))\n"
        for i in range(n)
    ]


@pytest.fixture(scope="session")
def texts() -> list[str]:
    return synthetic_code()


@pytest.fixture(scope="session")
def tokenizer(texts):
    return train_tokenizer(texts, vocab_size=320)


@pytest.fixture()
def tiny_model(tokenizer):
    return build_model(ModelSpec(preset="tiny", vocab_size=320, context_length=64), tokenizer)


def tiny_hparams(**overrides) -> TrainHParams:
    base = dict(
        max_steps=12,
        batch_size=4,
        grad_accum=1,
        lr=3e-3,
        warmup_steps=2,
        seq_len=32,
        eval_every=4,
        eval_batches=2,
        checkpoint_every=3,
        bf16=False,
    )
    base.update(overrides)
    return TrainHParams(**base)
