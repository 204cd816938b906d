"""Training data: indexed datasets served in a seeded, resumable order.

Contract
- :class:`PackedLMDataset` (stage 1): texts tokenized, each followed by eos, concatenated and
  cut into ``seq_len`` blocks; the last partial block is dropped; every token is a label.
- :class:`PromptCompletionDataset` (stage 2, expert iteration): prompt + target + eos; labels
  are -100 on prompt tokens and padding, so the loss is on target tokens only; padding to the
  longest example of each batch, on the right. Too long examples: the prompt is cut from the
  LEFT (its end, next to the target, is kept); the target (with its eos) is cut on the right
  only when keeping it whole would leave the prompt fewer than ``min(len(prompt), max_len // 2)``
  positions.
- Order: each epoch visits the items in ``torch.randperm`` order seeded by ``(seed, epoch)``;
  a :class:`DataPosition` ``(epoch, index)`` says where the next batch starts, so the stream
  resumes exactly. Batches wrap across epoch ends. ``fingerprint`` hashes the token ids (a
  checkpoint is only resumed on the same data).

Limits: everything is tokenized up front and held in memory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

IGNORE_INDEX = -100


class TrainError(ValueError):
    """Training cannot start or resume as asked."""


@dataclass(frozen=True)
class DataPosition:
    epoch: int = 0
    index: int = 0


@dataclass(frozen=True)
class Batch:
    input_ids: torch.Tensor  # [B, T] int64
    attention_mask: torch.Tensor  # [B, T] int64
    labels: torch.Tensor  # [B, T] int64, IGNORE_INDEX where no loss

    @property
    def n_input_tokens(self) -> int:
        return int(self.attention_mask.sum())

    @property
    def n_label_tokens(self) -> int:
        return int((self.labels[:, 1:] != IGNORE_INDEX).sum())

    def to(self, device: torch.device) -> Batch:
        return Batch(self.input_ids.to(device), self.attention_mask.to(device), self.labels.to(device))


class IndexedDataset:
    """Items addressable by index, served in a seeded per-epoch order."""

    seed: int
    max_len: int
    fingerprint: str

    def __len__(self) -> int:
        raise NotImplementedError

    def collate(self, indices: Sequence[int]) -> Batch:
        raise NotImplementedError

    def epoch_order(self, epoch: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(len(self), generator=gen)

    def draw(self, pos: DataPosition, count: int) -> tuple[list[int], DataPosition]:
        """The next ``count`` item indices from ``pos`` and the position after them."""
        indices: list[int] = []
        epoch, index = pos.epoch, pos.index
        while len(indices) < count:
            order = self.epoch_order(epoch)
            take = order[index : index + count - len(indices)].tolist()
            indices.extend(take)
            index += len(take)
            if index >= len(self):
                epoch, index = epoch + 1, 0
        return indices, DataPosition(epoch, index)

    def eval_batches(self, batch_size: int, max_batches: int) -> Iterator[Batch]:
        """The first ``max_batches`` batches in file order (no shuffle), for validation."""
        for start in range(0, min(len(self), batch_size * max_batches), batch_size):
            yield self.collate(range(start, min(start + batch_size, len(self))))


class PackedLMDataset(IndexedDataset):
    """Stage 1: ``seq_len`` blocks of concatenated ``text + eos`` token streams."""

    def __init__(self, texts: Iterable[str], tokenizer, seq_len: int, seed: int = 0, chunk: int = 256):
        if tokenizer.eos_token_id is None:
            raise TrainError("tokenizer has no eos token; PackedLMDataset needs one to separate documents")
        eos = np.array([tokenizer.eos_token_id], dtype=np.int32)
        parts: list[np.ndarray] = []
        buffer: list[str] = []
        for text in texts:
            buffer.append(text)
            if len(buffer) == chunk:
                parts.extend(_encode_with_eos(tokenizer, buffer, eos))
                buffer = []
        parts.extend(_encode_with_eos(tokenizer, buffer, eos))
        stream = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
        n_blocks = len(stream) // seq_len
        if n_blocks == 0:
            raise TrainError(
                f"corpus has {len(stream)} tokens, fewer than one block of seq_len={seq_len}; "
                "add text or lower seq_len"
            )
        self.blocks = stream[: n_blocks * seq_len].reshape(n_blocks, seq_len)
        self.seed, self.max_len = seed, seq_len
        self.fingerprint = hashlib.sha256(self.blocks.tobytes()).hexdigest()[:16]

    def __len__(self) -> int:
        return self.blocks.shape[0]

    @property
    def n_tokens(self) -> int:
        return int(self.blocks.size)

    def collate(self, indices: Sequence[int]) -> Batch:
        ids = torch.from_numpy(self.blocks[list(indices)].astype(np.int64))
        return Batch(ids, torch.ones_like(ids), ids.clone())


def _encode_with_eos(tokenizer, texts: list[str], eos: np.ndarray) -> list[np.ndarray]:
    if not texts:
        return []
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    out: list[np.ndarray] = []
    for ids in encoded:
        out.append(np.asarray(ids, dtype=np.int32))
        out.append(eos)
    return out


class PromptCompletionDataset(IndexedDataset):
    """Stage 2: ``prompt + target + eos`` with the loss on ``target + eos`` only."""

    def __init__(self, pairs: Iterable[tuple[str, str]], tokenizer, max_len: int, seed: int = 0):
        if tokenizer.eos_token_id is None or tokenizer.pad_token_id is None:
            raise TrainError("tokenizer needs eos and pad tokens; load it with load_model_and_tokenizer")
        pairs = list(pairs)
        if not pairs:
            raise TrainError("PromptCompletionDataset got no (prompt, target) pair")
        if max_len < 4:
            raise TrainError(f"max_len={max_len} is too small; use at least 4")
        prompts = tokenizer([p for p, _ in pairs], add_special_tokens=False)["input_ids"]
        targets = tokenizer([t for _, t in pairs], add_special_tokens=False)["input_ids"]
        self.examples: list[tuple[np.ndarray, int]] = []
        self.truncated = 0
        for p, t in zip(prompts, targets):
            ids, n_prompt, cut = _fit(p, t + [tokenizer.eos_token_id], max_len)
            self.examples.append((ids, n_prompt))
            self.truncated += cut
        self.pad_id = tokenizer.pad_token_id
        self.seed, self.max_len = seed, max_len
        digest = hashlib.sha256()
        for ids, n_prompt in self.examples:
            digest.update(ids.tobytes() + n_prompt.to_bytes(4, "little"))
        self.fingerprint = digest.hexdigest()[:16]

    def __len__(self) -> int:
        return len(self.examples)

    def collate(self, indices: Sequence[int]) -> Batch:
        rows = [self.examples[i] for i in indices]
        width = max(len(ids) for ids, _ in rows)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        for r, (ids, n_prompt) in enumerate(rows):
            t = torch.from_numpy(ids.astype(np.int64))
            input_ids[r, : len(t)] = t
            mask[r, : len(t)] = 1
            labels[r, n_prompt : len(t)] = t[n_prompt:]
        return Batch(input_ids, mask, labels)


def _fit(prompt: list[int], target: list[int], max_len: int) -> tuple[np.ndarray, int, int]:
    """Concatenate, cutting the prompt from the left (and the target on the right only if it
    would leave the prompt fewer than ``min(len(prompt), max_len // 2)`` positions). Returns
    ids, prompt length, and 1 if anything was cut."""
    if len(prompt) + len(target) <= max_len:
        return np.asarray(prompt + target, dtype=np.int32), len(prompt), 0
    keep_prompt = max(max_len - len(target), min(len(prompt), max_len // 2))
    kept_prompt = prompt[len(prompt) - keep_prompt :] if keep_prompt else []
    kept_target = target[: max_len - len(kept_prompt)]
    return np.asarray(kept_prompt + kept_target, dtype=np.int32), len(kept_prompt), 1
