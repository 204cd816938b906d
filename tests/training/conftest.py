"""Shared tiny fixtures: a synthetic code corpus and a small byte-level tokenizer."""

from __future__ import annotations

import pytest
import torch

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


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread: tiny models gain nothing from more, and on a shared 2-core box
    more threads only spin against other processes. Restored after each test."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
    )
    base.update(overrides)
    return TrainHParams(**base)
