"""One resumable training loop for stage 1 (packed code LM), stage 2 (prompt -> solution) and
expert iteration's rounds (prompt -> own passing completion, KL-regularised).

Contract
- :func:`train`: AdamW (decay on matrices only), linear warm-up then cosine decay to
  ``lr * min_lr_ratio`` (:func:`lr_factor`), gradient accumulation whose loss is normalised
  by the label-token count of the whole optimizer step (so accumulation equals one big batch),
  gradient clipping, mixed precision as ``placement`` says (float32 master weights, the forward
  autocast to its dtype; none in float32), validation loss (next-token NLL) every ``eval_every`` steps and at the last step (mean over the first ``eval_batches``
  batches of ``valid_data`` in file order). The loss is pluggable (:mod:`.losses`; default
  :class:`~.losses.NextTokenNLL`); the metrics report its NLL as ``loss`` and its regulariser,
  if any, as ``kl``. Writes ``metrics.parquet`` (one row per step), ``loss.png`` and ``model/``
  (``save_pretrained`` of model and tokenizer), each atomically (:mod:`tasks.core.io`).
- Continue, don't restart: ``train(save_optimizer=True)`` also writes ``model/optimizer.pt``
  (:data:`OPTIMIZER_FILE`): the AdamW state after the last step and the learning rate the next
  step would take (the schedule's final one, ``lr * min_lr_ratio`` for warm-up + cosine).
  ``train(continue_from=<such a model dir>)`` starting fresh (no checkpoint of its own) loads
  that AdamW state (moments and step counts, not a fresh AdamW) and keeps this run's
  hyper-parameters (lr, weight decay, betas); the caller pairs it with ``hp.schedule =
  "constant"`` and ``hp.lr`` = :func:`read_optimizer_state`'s ``lr`` (no new warm-up), which is
  how SFT-continue and expert iteration continue stage 2. The model weights must be that dir's.
- Resume: every ``checkpoint_every`` steps and at the last step, ``out_dir/checkpoint/`` is
  written in the format of :func:`tasks.core.io.save_checkpoint` (temp dir renamed into place,
  ``COMPLETE`` marker last; only the newest is kept): model, optimizer, scheduler, RNG states
  (python, numpy, torch), data position, step, tokens seen, elapsed time and the metrics so
  far. On start, a complete ``out_dir/checkpoint/`` is resumed (no other directory is
  considered); it must have been written with the same hparams and the same data (a
  fingerprint of the token ids), else :class:`TrainError`. A rerun after the last step trains
  nothing and rewrites the outputs. If the process dies in the instant between the two renames
  that swap checkpoints, no ``checkpoint/`` exists and the rerun starts from step 0 (correct,
  only slower); stale temp dirs are removed on start.
- Devices: ``placement`` (:class:`tasks.core.device.Placement`; default: the device policy's
  ``auto`` resolved here, i.e. the first GPU in bfloat16 when there is one, else the CPU in
  float32) says where and in what precision; an ``accelerate.Accelerator`` (``cpu=True`` for a
  CPU placement; a single process first makes ``placement.device`` the current CUDA device)
  places the model; autocast is ours (create no Accelerator with another mixed precision in the
  same process). :attr:`TrainResult.placement` records what ran. Under ``accelerate launch`` with N processes, each
  process takes its own ``batch_size`` slice of every micro-batch, gradients are all-reduced
  (``no_sync`` on all but the last micro-batch) and the loss is normalised by the global token
  count; only the main process writes files.

Tested here (CPU only, one process): fp32 and bf16-autocast (an explicit CPU bfloat16
placement) steps, loss going down, accumulation,
resume after an in-process crash and after SIGKILL of a subprocess (that test is marked
``slow``) giving the same final loss as an uninterrupted run, the KL-regularised loss through
expert iteration (tests/rl). NOT tested: CUDA, multi-process ``accelerate launch``/``torchrun``
(DDP), FSDP (would need ``accelerator.prepare`` with an FSDP plugin and sharded-state
checkpointing, which this module does not implement).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

from tasks.core import io
from tasks.core.device import Placement, resolve
from tasks.core.hparams import TrainHParams
from tasks.core.plots import plot_curves
from tasks.core.training.data import DataPosition, IndexedDataset, TrainError
from tasks.core.training.losses import NextTokenNLL, TokenLoss, token_nll_sum

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"
COMPLETE_MARKER = io.CHECKPOINT_MARKER
OPTIMIZER_FILE = "optimizer.pt"


@dataclass(frozen=True)
class StepMetrics:
    step: int
    loss: float  # next-token NLL per label token (the objective's NLL part)
    lr: float
    tokens: int  # cumulative input tokens (all processes)
    tok_per_s: float  # this step's tokens / this step's wall time (excluding eval, checkpoint)
    valid_loss: float | None
    elapsed: float  # wall seconds of the loop up to this step (incl. eval), summed over resumed runs
    kl: float | None = None  # the loss's regulariser per label token (KL-regularised loss only)


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
    final_kl: float | None = None
    placement: Placement | None = None  # where and in what precision it trained


@dataclass(frozen=True)
class OptimizerState:
    """What ``model/optimizer.pt`` holds: the AdamW state dict after ``step`` steps and the
    learning rate the schedule gives the next step."""

    state: dict
    lr: float
    step: int


def read_optimizer_state(model_dir: Path) -> OptimizerState:
    """The optimizer state saved with the model in ``model_dir`` (see the module docstring)."""
    path = Path(model_dir) / OPTIMIZER_FILE
    if not path.is_file():
        raise TrainError(
            f"{path} does not exist: the model in {model_dir} was saved without its optimizer state; "
            "retrain the stage that made it with this code (stage 2 saves it) to continue from it"
        )
    saved = io.load_tensors(path)
    return OptimizerState(state=saved["optimizer"], lr=float(saved["lr"]), step=int(saved["step"]))


def _save_optimizer(optimizer: torch.optim.Optimizer, step: int, directory: Path) -> None:
    lr = float(optimizer.param_groups[0]["lr"])
    torch.save(
        {"optimizer": optimizer.state_dict(), "lr": lr, "step": step}, Path(directory) / OPTIMIZER_FILE
    )


def _continue_optimizer(optimizer: torch.optim.Optimizer, saved: OptimizerState) -> None:
    """Load ``saved``'s AdamW moments and step counts into ``optimizer``, keeping its own
    hyper-parameters (lr, weight decay, betas) and no ``initial_lr`` (the scheduler sets it)."""
    own = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    try:
        optimizer.load_state_dict(saved.state)
    except ValueError as exc:
        raise TrainError(f"the saved optimizer state does not fit this model: {exc}") from exc
    for group, hyper in zip(optimizer.param_groups, own, strict=True):
        group.pop("initial_lr", None)
        group.update(hyper)


@dataclass
class _State:
    step: int = 0
    position: DataPosition = DataPosition()
    tokens_seen: int = 0
    elapsed: float = 0.0
    metrics: list[StepMetrics] = field(default_factory=list)


def lr_factor(step: int, hp: TrainHParams) -> float:
    """Multiplier of ``hp.lr`` for the update made at 0-based ``step`` (1 for ``constant``)."""
    if hp.schedule == "constant":
        return 1.0
    if step < hp.warmup_steps:
        return (step + 1) / hp.warmup_steps
    span = max(1, hp.max_steps - hp.warmup_steps)
    progress = min(1.0, (step - hp.warmup_steps) / span)
    return hp.min_lr_ratio + (1 - hp.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


# ----------------------------------------------------------------------------- loop


@dataclass
class _Run:
    """What one call of :func:`train` works with."""

    model: object
    optimizer: torch.optim.Optimizer
    scheduler: object
    accelerator: object
    train_data: IndexedDataset
    valid_data: IndexedDataset | None
    hp: TrainHParams
    loss: TokenLoss
    ckpt: Path
    placement: Placement


def train(
    model,
    tokenizer,
    train_data: IndexedDataset,
    valid_data: IndexedDataset | None,
    hp: TrainHParams,
    out_dir: Path,
    progress: Callable[[StepMetrics], None] | None = None,
    loss: TokenLoss | None = None,
    placement: Placement | None = None,
    save_optimizer: bool = False,
    continue_from: Path | None = None,
) -> TrainResult:
    """Train ``model`` for ``hp.max_steps`` optimizer steps with ``loss`` (default: next-token
    NLL) on ``placement`` (default: the policy's ``auto`` resolved here), resuming
    ``out_dir/checkpoint``; ``save_optimizer`` writes ``model/optimizer.pt``, ``continue_from``
    starts from the optimizer state saved in that model dir (module docstring)."""
    from accelerate import Accelerator

    out_dir = Path(out_dir)
    _check_inputs(model, tokenizer, train_data, valid_data, hp)
    placement = placement or resolve()
    placement.activate()
    accelerator = Accelerator(cpu=not placement.is_cuda)
    out_dir.mkdir(parents=True, exist_ok=True)
    io.remove_stale(out_dir)
    optimizer = _optimizer(model, hp)
    found = io.read_checkpoint(out_dir / CHECKPOINT_DIR)
    if found is None and continue_from is not None:
        _continue_optimizer(optimizer, read_optimizer_state(continue_from))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, hp))
    state, resumed_from = _State(), None
    if found is not None:
        state = _resume(found, model, optimizer, scheduler, hp, train_data, valid_data)
        resumed_from = state.step
        log.info("resuming %s from step %d", found.path, state.step)
    else:
        _seed_everything(hp.seed)
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()
    run = _Run(
        model,
        optimizer,
        scheduler,
        accelerator,
        train_data,
        valid_data,
        hp,
        loss or NextTokenNLL(),
        out_dir / CHECKPOINT_DIR,
        placement,
    )
    tokens, seconds = _loop(run, state, progress)
    keep = partial(_save_optimizer, optimizer, state.step) if save_optimizer else None
    result = _finish(accelerator, model, tokenizer, out_dir, state, resumed_from, tokens, seconds, keep)
    return replace(result, placement=placement)


def _loop(run: _Run, state: _State, progress) -> tuple[int, float]:
    """Steps until ``hp.max_steps``; returns the tokens trained and the training seconds."""
    hp = run.hp
    trained_tokens, train_time = 0, 0.0
    elapsed_base, loop_start = state.elapsed, time.perf_counter()
    while state.step < hp.max_steps:
        t0 = time.perf_counter()
        lr = run.optimizer.param_groups[0]["lr"]
        loss, kl, n_tokens = _train_step(run, state)
        dt = time.perf_counter() - t0
        trained_tokens, train_time = trained_tokens + n_tokens, train_time + dt
        state.step += 1
        state.tokens_seen += n_tokens
        valid_loss = None
        if run.valid_data is not None and (state.step % hp.eval_every == 0 or state.step == hp.max_steps):
            valid_loss = evaluate(run.model, run.valid_data, hp, run.accelerator, run.placement)
        state.elapsed = elapsed_base + time.perf_counter() - loop_start
        metrics = StepMetrics(
            step=state.step,
            loss=loss,
            lr=lr,
            tokens=state.tokens_seen,
            tok_per_s=n_tokens / dt if dt > 0 else 0.0,
            valid_loss=valid_loss,
            elapsed=state.elapsed,
            kl=kl,
        )
        state.metrics.append(metrics)
        if progress is not None:
            progress(metrics)
        if state.step % hp.checkpoint_every == 0 or state.step == hp.max_steps:
            if run.accelerator.is_main_process:
                _save_checkpoint(run, state)
            run.accelerator.wait_for_everyone()
    return trained_tokens, train_time


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


def continued_optimizer(model, model_dir: Path) -> torch.optim.Optimizer:
    """The AdamW that trained ``model_dir`` (stage 2), continued: its parameter groups over
    ``model`` (loaded from that directory, on its device) with the saved moments, step counts and
    hyper-parameters, every group at the saved final learning rate. For trainers outside
    :func:`train` (GRPO, PPO) that continue stage 2 at a constant rate; a scheduler they add must
    keep the rate constant."""
    saved = read_optimizer_state(model_dir)
    optimizer = _optimizer(model, TrainHParams(lr=saved.lr, max_steps=1, warmup_steps=0))
    try:
        optimizer.load_state_dict(saved.state)
    except ValueError as exc:
        raise TrainError(f"the optimizer state saved in {model_dir} does not fit its model: {exc}") from exc
    for group in optimizer.param_groups:
        group.pop("initial_lr", None)
        group["lr"] = saved.lr
    return optimizer


def _train_step(run: _Run, state: _State) -> tuple[float, float | None, int]:
    """One optimizer step: (NLL per label token, KL per label token or None, input tokens)."""
    hp, data, accelerator = run.hp, run.train_data, run.accelerator
    world, rank = accelerator.num_processes, accelerator.process_index
    micro = []
    for _ in range(hp.grad_accum):
        indices, state.position = data.draw(state.position, hp.batch_size * world)
        micro.append(data.collate(indices[rank * hp.batch_size : (rank + 1) * hp.batch_size]))
    global_label_tokens = _all_sum(accelerator, sum(b.n_label_tokens for b in micro))
    if global_label_tokens == 0:
        raise TrainError("a training step has no label token; check the dataset's targets")
    nll_total, kl_total = 0.0, None
    for i, batch in enumerate(micro):
        batch = batch.to(accelerator.device)
        sync = nullcontext() if i == len(micro) - 1 else accelerator.no_sync(run.model)
        with sync:
            sums = run.loss(run.model, batch, run.placement)
            # DDP averages gradients over processes, hence the * world.
            accelerator.backward(sums.objective * world / global_label_tokens)
        nll_total += sums.nll.item()
        if sums.kl is not None:
            kl_total = (kl_total or 0.0) + sums.kl.item()
    accelerator.clip_grad_norm_(run.model.parameters(), hp.max_grad_norm)
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    n_input = _all_sum(accelerator, sum(b.n_input_tokens for b in micro))
    kl = None if kl_total is None else _all_sum(accelerator, kl_total) / global_label_tokens
    return _all_sum(accelerator, nll_total) / global_label_tokens, kl, int(n_input)


def _all_sum(accelerator, value: float | int) -> float | int:
    if accelerator.num_processes == 1:
        return value
    t = torch.tensor(float(value), device=accelerator.device)
    total = accelerator.reduce(t, reduction="sum").item()
    return int(total) if isinstance(value, int) else total


@torch.no_grad()
def evaluate(
    model, data: IndexedDataset, hp: TrainHParams, accelerator=None, placement: Placement | None = None
) -> float:
    """Mean per-token next-token NLL over the first ``hp.eval_batches`` batches of ``data``
    (autocast as ``placement`` says; default: the policy's ``auto``)."""
    placement = placement or resolve()
    device = accelerator.device if accelerator is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for batch in data.eval_batches(hp.batch_size, hp.eval_batches):
        total += token_nll_sum(model, batch.to(device), placement).item()
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


def _save_checkpoint(run: _Run, state: _State) -> None:
    states = {
        "model": run.accelerator.unwrap_model(run.model).state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
    }
    meta = {
        "epoch": state.position.epoch,
        "index": state.position.index,
        "tokens_seen": state.tokens_seen,
        "elapsed": state.elapsed,
        "hparams": run.hp.model_dump(),
        "data": _fingerprints(run.train_data, run.valid_data),
        "metrics": [asdict(m) for m in state.metrics],
    }
    io.save_checkpoint(run.ckpt, state.step, states, meta)


def _resume(ckpt: io.Checkpoint, model, optimizer, scheduler, hp, train_data, valid_data) -> _State:
    meta = ckpt.meta
    if meta["hparams"] != hp.model_dump():
        diff = sorted(k for k in hp.model_dump() if meta["hparams"].get(k) != hp.model_dump()[k])
        raise TrainError(
            f"checkpoint {ckpt.path} was written with other hparams (differ: {diff}); "
            "use a fresh out_dir or delete that checkpoint to start over"
        )
    if meta["data"] != _fingerprints(train_data, valid_data):
        raise TrainError(
            f"checkpoint {ckpt.path} was written for other data (fingerprints {meta['data']}); "
            "use a fresh out_dir or delete that checkpoint to start over"
        )
    model.load_state_dict(ckpt.state("model"))
    optimizer.load_state_dict(ckpt.state("optimizer"))
    scheduler.load_state_dict(ckpt.state("scheduler"))
    ckpt.restore_rng()
    return _State(
        step=ckpt.step,
        position=DataPosition(meta["epoch"], meta["index"]),
        tokens_seen=meta["tokens_seen"],
        elapsed=meta["elapsed"],
        metrics=[StepMetrics(**m) for m in meta["metrics"]],
    )


# ----------------------------------------------------------------------------- outputs


def _finish(
    accelerator, model, tokenizer, out_dir: Path, state: _State, resumed_from, tokens, seconds, extra
):
    metrics = state.metrics
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
        final_kl=metrics[-1].kl,
    )
    if accelerator.is_main_process:
        io.save_model(accelerator.unwrap_model(model), tokenizer, result.model_dir, extra)
        write_step_metrics(result.metrics_path, metrics)
        plot_losses(metrics, result.plot_path)
    accelerator.wait_for_everyone()
    return result


def _metrics_schema(with_kl: bool):
    import pyarrow as pa

    columns = [
        ("step", pa.int64()),
        ("loss", pa.float64()),
        ("lr", pa.float64()),
        ("tokens", pa.int64()),
        ("tok_per_s", pa.float64()),
        ("valid_loss", pa.float64()),
        ("elapsed", pa.float64()),
    ]
    return pa.schema(columns + ([("kl", pa.float64())] if with_kl else []))


def write_step_metrics(path: Path, metrics: list[StepMetrics]) -> None:
    """``metrics.parquet``: one row per step; a ``kl`` column only when the loss has one."""
    with_kl = any(m.kl is not None for m in metrics)
    rows = [{k: v for k, v in asdict(m).items() if with_kl or k != "kl"} for m in metrics]
    io.write_metrics(path, rows, schema=_metrics_schema(with_kl))


def read_metrics(path: Path) -> list[StepMetrics]:
    import pyarrow.parquet as pq

    return [StepMetrics(**row) for row in pq.read_table(path).to_pylist()]


def plot_losses(metrics: list[StepMetrics], path: Path) -> Path:
    """Train loss per step, validation loss where computed (and KL, if any), as a PNG."""
    steps = [m.step for m in metrics]
    loss = {"train": (steps, [m.loss for m in metrics])}
    valid = [m for m in metrics if m.valid_loss is not None]
    if valid:
        loss["valid"] = ([m.step for m in valid], [m.valid_loss for m in valid])
    panels = {"loss (nats/token)": loss}
    if any(m.kl is not None for m in metrics):
        panels["KL to reference (nats/token)"] = {"kl": (steps, [m.kl for m in metrics])}
    return plot_curves(panels, path, title="training")
