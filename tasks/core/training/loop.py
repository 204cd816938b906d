"""One resumable training loop for stage 1 (packed code LM) and stage 2 (prompt -> solution).

Contract
- Data: :class:`PackedLMDataset` (texts tokenized, each followed by eos, concatenated and cut
  into ``seq_len`` blocks; the last partial block is dropped; every token is a label) and
  :class:`PromptCompletionDataset` (prompt + target + eos; labels are -100 on prompt tokens and
  padding, so the loss is on target tokens only; padding to the longest example of each batch,
  on the right). Too long examples: the prompt is cut from the LEFT (its end, next to the
  target, is kept); the target (with its eos) is cut on the right only when keeping it whole
  would leave the prompt fewer than ``min(len(prompt), max_len // 2)`` positions.
- Order: each epoch visits the items in ``torch.randperm`` order seeded by ``(seed, epoch)``;
  a :class:`DataPosition` ``(epoch, index)`` says where the next batch starts, so the stream
  resumes exactly. Batches wrap across epoch ends.
- :func:`train`: AdamW (decay on matrices only), linear warm-up then cosine decay to
  ``lr * min_lr_ratio`` (:func:`lr_factor`), gradient accumulation whose loss is normalised
  by the label-token count of the whole optimizer step (so accumulation equals one big batch),
  gradient clipping, bf16 autocast when ``hp.bf16`` (CPU or CUDA), validation loss every
  ``eval_every`` steps and at the last step (mean over the first ``eval_batches`` batches of
  ``valid_data`` in file order). Writes ``metrics.parquet`` (one row per step), ``loss.png``
  and ``model/`` (``save_pretrained`` of model and tokenizer), each atomically.
- Resume: every ``checkpoint_every`` steps and at the last step, ``out_dir/checkpoint/`` is
  written to a temp dir and renamed into place; its ``COMPLETE`` marker is written last, and
  only the newest checkpoint is kept. It holds model, optimizer, scheduler, RNG states
  (python, numpy, torch), data position, step, tokens seen, elapsed time and the metrics so
  far. On start, a complete ``out_dir/checkpoint/`` is resumed (no other directory is
  considered); it must have been written with the same hparams and the same data (a
  fingerprint of the token ids), else :class:`TrainError`. A rerun after the last step trains
  nothing and rewrites the outputs. If the process dies in the instant between the two renames
  that swap checkpoints, no ``checkpoint/`` exists and the rerun starts from step 0 (correct,
  only slower); stale temp dirs are removed on start.
- Devices: an ``accelerate.Accelerator`` places the model (CPU, or one CUDA device when
  present); bf16 autocast is ours, driven by ``hp.bf16`` (create no Accelerator with another
  mixed precision in the same process). Under ``accelerate launch`` with N processes, each
  process takes its own ``batch_size`` slice of every micro-batch, gradients are all-reduced
  (``no_sync`` on all but the last micro-batch) and the loss is normalised by the global token
  count; only the main process writes files.

Tested here (CPU only, one process): fp32 and bf16 steps, loss going down, accumulation,
resume after an in-process crash and after SIGKILL of a subprocess (that test is marked
``slow``) giving the same final loss as an uninterrupted run. NOT tested: CUDA, multi-process ``accelerate launch``/``torchrun``
(DDP), FSDP (would need ``accelerator.prepare`` with an FSDP plugin and sharded-state
checkpointing, which this module does not implement).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tasks.core.hparams import TrainHParams

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
CHECKPOINT_DIR = "checkpoint"
COMPLETE_MARKER = "COMPLETE"


class TrainError(ValueError):
    """Training cannot start or resume as asked."""


# ----------------------------------------------------------------------------- data


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


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class StepMetrics:
    step: int
    loss: float
    lr: float
    tokens: int  # cumulative input tokens (all processes)
    tok_per_s: float  # this step's tokens / this step's wall time (excluding eval, checkpoint)
    valid_loss: float | None
    elapsed: float  # wall seconds of the loop up to this step (incl. eval), summed over resumed runs


@dataclass(frozen=True)
class TrainResult:
    final_train_loss: float
    final_valid_loss: float | None
    steps: int
    tokens_seen: int
    tokens_per_s: float  # tokens trained in THIS call / its training time (0.0 if none)
    model_dir: Path
    metrics_path: Path
    plot_path: Path
    resumed_from_step: int | None


@dataclass
class _State:
    step: int = 0
    position: DataPosition = DataPosition()
    tokens_seen: int = 0
    elapsed: float = 0.0
    metrics: list[StepMetrics] | None = None


def lr_factor(step: int, hp: TrainHParams) -> float:
    """Multiplier of ``hp.lr`` for the update made at 0-based ``step``."""
    if step < hp.warmup_steps:
        return (step + 1) / hp.warmup_steps
    span = max(1, hp.max_steps - hp.warmup_steps)
    progress = min(1.0, (step - hp.warmup_steps) / span)
    return hp.min_lr_ratio + (1 - hp.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


# ----------------------------------------------------------------------------- loop


def train(
    model,
    tokenizer,
    train_data: IndexedDataset,
    valid_data: IndexedDataset | None,
    hp: TrainHParams,
    out_dir: Path,
    progress: Callable[[StepMetrics], None] | None = None,
) -> TrainResult:
    """Train ``model`` for ``hp.max_steps`` optimizer steps, resuming ``out_dir/checkpoint``."""
    from accelerate import Accelerator

    out_dir = Path(out_dir)
    _check_inputs(model, tokenizer, train_data, valid_data, hp)
    accelerator = Accelerator()
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale(out_dir)
    optimizer = _optimizer(model, hp)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, hp))
    state = _State(metrics=[])
    ckpt = out_dir / CHECKPOINT_DIR
    resumed_from = None
    if (ckpt / COMPLETE_MARKER).exists():
        state = _load_checkpoint(ckpt, model, optimizer, scheduler, hp, train_data, valid_data)
        resumed_from = state.step
        log.info("resuming %s from step %d", ckpt, state.step)
    else:
        _seed_everything(hp.seed)
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()
    trained_tokens, train_time = 0, 0.0
    elapsed_base, loop_start = state.elapsed, time.perf_counter()
    while state.step < hp.max_steps:
        t0 = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        loss, n_tokens = _train_step(model, optimizer, scheduler, train_data, hp, state, accelerator)
        dt = time.perf_counter() - t0
        trained_tokens, train_time = trained_tokens + n_tokens, train_time + dt
        state.step += 1
        state.tokens_seen += n_tokens
        valid_loss = None
        if valid_data is not None and (state.step % hp.eval_every == 0 or state.step == hp.max_steps):
            valid_loss = evaluate(model, valid_data, hp, accelerator)
        state.elapsed = elapsed_base + time.perf_counter() - loop_start
        metrics = StepMetrics(
            step=state.step,
            loss=loss,
            lr=lr,
            tokens=state.tokens_seen,
            tok_per_s=n_tokens / dt if dt > 0 else 0.0,
            valid_loss=valid_loss,
            elapsed=state.elapsed,
        )
        state.metrics.append(metrics)
        if progress is not None:
            progress(metrics)
        if state.step % hp.checkpoint_every == 0 or state.step == hp.max_steps:
            if accelerator.is_main_process:
                _save_checkpoint(
                    ckpt,
                    accelerator.unwrap_model(model),
                    optimizer,
                    scheduler,
                    hp,
                    state,
                    train_data,
                    valid_data,
                )
            accelerator.wait_for_everyone()
    return _finish(
        accelerator, model, tokenizer, hp, out_dir, state, resumed_from, trained_tokens, train_time
    )


def _check_inputs(model, tokenizer, train_data, valid_data, hp: TrainHParams) -> None:
    ctx = getattr(model.config, "max_position_embeddings", None)
    for name, data in (("train_data", train_data), ("valid_data", valid_data)):
        if data is None:
            continue
        if data.max_len > hp.seq_len:
            raise TrainError(
                f"{name} has sequences of up to {data.max_len} tokens but hp.seq_len={hp.seq_len}; "
                "build the dataset with seq_len/max_len = hp.seq_len"
            )
        if ctx is not None and data.max_len > ctx:
            raise TrainError(
                f"{name} sequences ({data.max_len}) exceed the model context ({ctx}); lower hp.seq_len"
            )
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:
        raise TrainError(
            f"tokenizer has {len(tokenizer)} tokens, model embedding {rows} rows; they must match"
        )


def _optimizer(model, hp: TrainHParams) -> torch.optim.Optimizer:
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=hp.lr, betas=(0.9, 0.95), eps=1e-8)


def _autocast(device: torch.device, enabled: bool):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def _token_loss_sum(model, batch: Batch, bf16: bool, device: torch.device) -> torch.Tensor:
    with _autocast(device, bf16):
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    logits = logits[:, :-1].float()
    labels = batch.labels[:, 1:]
    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
    )


def _train_step(
    model, optimizer, scheduler, data, hp: TrainHParams, state: _State, accelerator
) -> tuple[float, int]:
    world, rank = accelerator.num_processes, accelerator.process_index
    micro = []
    for _ in range(hp.grad_accum):
        indices, state.position = data.draw(state.position, hp.batch_size * world)
        micro.append(data.collate(indices[rank * hp.batch_size : (rank + 1) * hp.batch_size]))
    local_label_tokens = sum(b.n_label_tokens for b in micro)
    global_label_tokens = _all_sum(accelerator, local_label_tokens)
    if global_label_tokens == 0:
        raise TrainError("a training step has no label token; check the dataset's targets")
    loss_total = 0.0
    for i, batch in enumerate(micro):
        batch = batch.to(accelerator.device)
        sync = nullcontext() if i == len(micro) - 1 else accelerator.no_sync(model)
        with sync:
            loss_sum = _token_loss_sum(model, batch, hp.bf16, accelerator.device)
            # DDP averages gradients over processes, hence the * world.
            accelerator.backward(loss_sum * world / global_label_tokens)
        loss_total += loss_sum.item()
    accelerator.clip_grad_norm_(model.parameters(), hp.max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    n_input = _all_sum(accelerator, sum(b.n_input_tokens for b in micro))
    return _all_sum(accelerator, loss_total) / global_label_tokens, int(n_input)


def _all_sum(accelerator, value: float | int) -> float | int:
    if accelerator.num_processes == 1:
        return value
    t = torch.tensor(float(value), device=accelerator.device)
    total = accelerator.reduce(t, reduction="sum").item()
    return int(total) if isinstance(value, int) else total


@torch.no_grad()
def evaluate(model, data: IndexedDataset, hp: TrainHParams, accelerator=None) -> float:
    """Mean per-token loss over the first ``hp.eval_batches`` batches of ``data``."""
    device = accelerator.device if accelerator is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for batch in data.eval_batches(hp.batch_size, hp.eval_batches):
        total += _token_loss_sum(model, batch.to(device), hp.bf16, device).item()
        count += batch.n_label_tokens
    model.train(was_training)
    return total / max(count, 1)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------- checkpoint


def _fingerprints(train_data, valid_data) -> dict[str, str | None]:
    return {
        "train": train_data.fingerprint,
        "valid": valid_data.fingerprint if valid_data is not None else None,
    }


def _save_checkpoint(
    ckpt: Path, model, optimizer, scheduler, hp, state: _State, train_data, valid_data
) -> None:
    tmp = ckpt.parent / f"{CHECKPOINT_DIR}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    torch.save(model.state_dict(), tmp / "model.pt")
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    torch.save({"torch": torch.get_rng_state(), "cuda": _cuda_rng()}, tmp / "rng.pt")
    np_state = np.random.get_state()
    meta = {
        "step": state.step,
        "epoch": state.position.epoch,
        "index": state.position.index,
        "tokens_seen": state.tokens_seen,
        "elapsed": state.elapsed,
        "hparams": hp.model_dump(),
        "data": _fingerprints(train_data, valid_data),
        "python_rng": _jsonable(random.getstate()),
        "numpy_rng": [np_state[0], np_state[1].tolist(), *np_state[2:]],
    }
    _write_json(tmp / "state.json", meta)
    _write_metrics(tmp / "metrics.parquet", state.metrics or [])
    _fsync_dir_files(tmp)
    (tmp / COMPLETE_MARKER).write_text(f"step {state.step}\n")
    _fsync_dir_files(tmp)
    old = ckpt.parent / f"{CHECKPOINT_DIR}.old-{os.getpid()}"
    if ckpt.exists():
        os.replace(ckpt, old)
    os.replace(tmp, ckpt)
    shutil.rmtree(old, ignore_errors=True)


def _load_checkpoint(ckpt: Path, model, optimizer, scheduler, hp, train_data, valid_data) -> _State:
    meta = json.loads((ckpt / "state.json").read_text())
    if meta["hparams"] != hp.model_dump():
        diff = sorted(k for k in hp.model_dump() if meta["hparams"].get(k) != hp.model_dump()[k])
        raise TrainError(
            f"checkpoint {ckpt} was written with other hparams (differ: {diff}); "
            "use a fresh out_dir or delete that checkpoint to start over"
        )
    if meta["data"] != _fingerprints(train_data, valid_data):
        raise TrainError(
            f"checkpoint {ckpt} was written for other data (fingerprints {meta['data']}); "
            "use a fresh out_dir or delete that checkpoint to start over"
        )
    model.load_state_dict(torch.load(ckpt / "model.pt", weights_only=True))
    optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(ckpt / "scheduler.pt", weights_only=True))
    rng = torch.load(ckpt / "rng.pt", weights_only=True)
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    random.setstate(_tupled(meta["python_rng"]))
    kind, keys, *rest = meta["numpy_rng"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
    return _State(
        step=meta["step"],
        position=DataPosition(meta["epoch"], meta["index"]),
        tokens_seen=meta["tokens_seen"],
        elapsed=meta["elapsed"],
        metrics=read_metrics(ckpt / "metrics.parquet"),
    )


def _cuda_rng():
    return torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None


def _jsonable(obj):
    return [_jsonable(x) for x in obj] if isinstance(obj, (tuple, list)) else obj


def _tupled(obj):
    return tuple(_tupled(x) for x in obj) if isinstance(obj, list) else obj


def _remove_stale(out_dir: Path) -> None:
    for pattern in (f"{CHECKPOINT_DIR}.tmp-*", f"{CHECKPOINT_DIR}.old-*", "model.tmp-*", "model.old-*"):
        for stale in out_dir.glob(pattern):
            shutil.rmtree(stale, ignore_errors=True)


def _fsync_dir_files(directory: Path) -> None:
    for path in directory.iterdir():
        with open(path, "rb") as f:
            os.fsync(f.fileno())


# ----------------------------------------------------------------------------- outputs


def _finish(
    accelerator, model, tokenizer, hp, out_dir: Path, state: _State, resumed_from, tokens, seconds
) -> TrainResult:
    metrics = state.metrics or []
    final_valid = next((m.valid_loss for m in reversed(metrics) if m.valid_loss is not None), None)
    result = TrainResult(
        final_train_loss=metrics[-1].loss,
        final_valid_loss=final_valid,
        steps=state.step,
        tokens_seen=state.tokens_seen,
        tokens_per_s=tokens / seconds if seconds > 0 else 0.0,
        model_dir=out_dir / "model",
        metrics_path=out_dir / "metrics.parquet",
        plot_path=out_dir / "loss.png",
        resumed_from_step=resumed_from,
    )
    if accelerator.is_main_process:
        _save_model(accelerator.unwrap_model(model), tokenizer, result.model_dir)
        _write_metrics(result.metrics_path, metrics)
        plot_losses(metrics, result.plot_path)
    accelerator.wait_for_everyone()
    return result


def _save_model(model, tokenizer, target: Path) -> None:
    tmp = target.parent / f"{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    old = target.parent / f"{target.name}.old-{os.getpid()}"
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


def _write_metrics(path: Path, metrics: list[StepMetrics]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("step", pa.int64()),
            ("loss", pa.float64()),
            ("lr", pa.float64()),
            ("tokens", pa.int64()),
            ("tok_per_s", pa.float64()),
            ("valid_loss", pa.float64()),
            ("elapsed", pa.float64()),
        ]
    )
    table = pa.Table.from_pylist([asdict(m) for m in metrics], schema=schema)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def read_metrics(path: Path) -> list[StepMetrics]:
    import pyarrow.parquet as pq

    return [StepMetrics(**row) for row in pq.read_table(path).to_pylist()]


def plot_losses(metrics: list[StepMetrics], path: Path) -> None:
    """Train loss per step and validation loss where computed, as a PNG (atomic write)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([m.step for m in metrics], [m.loss for m in metrics], label="train", lw=1)
    valid = [m for m in metrics if m.valid_loss is not None]
    if valid:
        ax.plot([m.step for m in valid], [m.valid_loss for m in valid], "o-", label="valid")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.legend()
    ax.grid(alpha=0.3)
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
