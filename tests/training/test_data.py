import numpy as np
import pytest
import torch

from tasks.core.training import (
    IGNORE_INDEX,
    DataPosition,
    PackedLMDataset,
    PromptCompletionDataset,
    TrainError,
)


def test_packing_makes_full_blocks_with_eos_between_documents(texts, tokenizer):
    data = PackedLMDataset(texts, tokenizer, seq_len=32)
    n_tokens = sum(len(tokenizer.encode(t)) + 1 for t in texts)
    assert data.blocks.shape == (n_tokens // 32, 32)
    batch = data.collate([0, 1, 2])
    assert batch.input_ids.shape == (3, 32) and torch.equal(batch.labels, batch.input_ids)
    stream = data.blocks.reshape(-1)
    first_doc = tokenizer.encode(texts[0])
    assert stream[len(first_doc)] == tokenizer.eos_token_id
    assert list(stream[: len(first_doc)]) == first_doc


def test_too_small_corpus_is_refused(tokenizer):
    with pytest.raises(TrainError, match="seq_len"):
        PackedLMDataset(["x = 1"], tokenizer, seq_len=64)


def test_draw_resumes_exactly_and_covers_each_epoch(texts, tokenizer):
    data = PackedLMDataset(texts, tokenizer, seq_len=32, seed=5)
    n = len(data)
    whole, end = data.draw(DataPosition(), 2 * n + 3)
    head, mid = data.draw(DataPosition(), n - 1)
    tail, end2 = data.draw(mid, n + 4)
    assert head + tail == whole and end == end2 == DataPosition(2, 3)
    assert sorted(whole[:n]) == list(range(n)) and sorted(whole[n : 2 * n]) == list(range(n))
    assert whole[:n] != whole[n : 2 * n]  # a new order each epoch


def test_shuffle_depends_on_seed(texts, tokenizer):
    a = PackedLMDataset(texts, tokenizer, seq_len=32, seed=0).draw(DataPosition(), 10)[0]
    b = PackedLMDataset(texts, tokenizer, seq_len=32, seed=1).draw(DataPosition(), 10)[0]
    assert a != b


def test_prompt_tokens_and_padding_carry_no_label(tokenizer):
    pairs = [("Solve: add two numbers\n", "print(a + b)\n"), ("Q\n", "x = 1\n")]
    data = PromptCompletionDataset(pairs, tokenizer, max_len=64)
    batch = data.collate([0, 1])
    for row, (prompt, target) in enumerate(pairs):
        p = tokenizer.encode(prompt)
        t = tokenizer.encode(target) + [tokenizer.eos_token_id]
        n = len(p) + len(t)
        assert batch.input_ids[row, :n].tolist() == p + t
        assert batch.labels[row, : len(p)].eq(IGNORE_INDEX).all()
        assert batch.labels[row, len(p) : n].tolist() == t
        assert batch.labels[row, n:].eq(IGNORE_INDEX).all()
        assert batch.attention_mask[row].sum() == n
        assert batch.input_ids[row, n:].eq(tokenizer.pad_token_id).all()
    assert batch.input_ids.shape[1] == max(
        len(tokenizer.encode(p)) + len(tokenizer.encode(t)) + 1 for p, t in pairs
    )


def test_long_prompt_is_cut_from_the_left(tokenizer):
    prompt = "".join(f"line {i}\n" for i in range(40))
    target = "answer = 42\n"
    data = PromptCompletionDataset([(prompt, target)], tokenizer, max_len=24)
    ids, n_prompt = data.examples[0]
    t = tokenizer.encode(target) + [tokenizer.eos_token_id]
    p = tokenizer.encode(prompt)
    assert len(ids) == 24 and data.truncated == 1
    assert list(ids[n_prompt:]) == t
    assert list(ids[:n_prompt]) == p[len(p) - n_prompt :]


def test_long_target_keeps_half_the_window_for_the_prompt(tokenizer):
    data = PromptCompletionDataset([("prompt " * 20, "x = 1\n" * 40)], tokenizer, max_len=20)
    ids, n_prompt = data.examples[0]
    assert len(ids) == 20 and n_prompt == 10
    assert isinstance(ids, np.ndarray)
