from __future__ import annotations

import pytest

from tests.sampling.tiny import build_model_dir


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Tiny models gain nothing from threads; on a shared CPU extra OpenMP threads spin and crawl."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A random 2-layer Llama (hidden 64) with a 300-token ByteLevel BPE tokenizer."""
    return build_model_dir(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="session")
def uniform_model_dir(tmp_path_factory):
    """Same shape, lm_head zeroed: every next token has probability exactly 1/vocab."""
    return build_model_dir(tmp_path_factory.mktemp("uniform_model"), uniform=True)


@pytest.fixture(scope="session")
def hf_backend(tiny_model_dir):
    from tasks.core.sampling import HFBatchedBackend

    return HFBatchedBackend(tiny_model_dir)


@pytest.fixture(scope="session")
def uniform_backend(uniform_model_dir):
    from tasks.core.sampling import HFBatchedBackend

    return HFBatchedBackend(uniform_model_dir)
