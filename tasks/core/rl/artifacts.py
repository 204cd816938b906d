"""Outputs shared by the RL trainers: the result record, metrics Parquet, curve PNG, final model.

Contract: every file is written atomically (temp path in the same directory + ``os.replace``),
so a crash leaves either the previous artifact or none, never a partial one. The final model
directory is swapped in by rename; an older one at the same path is removed after the swap.
Limits: metrics rows are flat ``{name: float}`` dicts; non-numeric values are dropped.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ProgressFn = Callable[[int, int, Mapping[str, float]], None]
"""``progress(step, total_steps, metrics_of_that_step)``; called after each optimiser step."""

MODEL_DIR = "model"
METRICS_FILE = "metrics.parquet"
PLOT_FILE = "rl_curve.png"
CHECKPOINTS_DIR = "checkpoints"


@dataclass(frozen=True)
class RLResult:
    model_dir: Path
    steps: int
    metrics_path: Path
    plot_path: Path
    final_reward_mean: float
    resumed_from_step: int | None


def check_inputs(model_dir: Path, problems: Sequence[Any], trainer: str) -> None:
    """The checks every trainer makes before loading anything: a saved model, some problems."""
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir} has no config.json; pass a save_pretrained model dir")
    if not problems:
        raise ValueError(f"{trainer} needs at least one problem")


def numeric_row(row: Mapping[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in row.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        out[key] = float(value)
    return out


def write_metrics(rows: Sequence[Mapping[str, float]], path: Path) -> Path:
    """One row per optimiser step; columns are the union of keys (missing -> null)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = sorted({k for row in rows for k in row})
    table = pa.table({c: pa.array([row.get(c) for row in rows], type=pa.float64()) for c in columns})
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _series(rows: Sequence[Mapping[str, float]], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for row in rows:
        value = row.get(key)
        if value is not None and not math.isnan(value):
            xs.append(row["step"])
            ys.append(value)
    return xs, ys


def plot_curve(rows: Sequence[Mapping[str, float]], path: Path, keys: Sequence[str], title: str) -> Path:
    """Line plot of ``keys`` against ``step`` (absent keys are skipped), saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for key in keys:
        xs, ys = _series(rows, key)
        if xs:
            ax.plot(xs, ys, marker="o", markersize=3, label=key)
    ax.set_xlabel("step")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=100)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def save_model_atomic(
    model: Any, tokenizer: Any, target: Path, extra: Callable[[Path], None] | None = None
) -> Path:
    """``save_pretrained`` model + tokenizer (+ ``extra(tmp_dir)``) into a temp dir, then rename
    it to ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if extra is not None:
            extra(tmp)
        old = None
        if target.exists():
            old = target.parent / f".{target.name}.old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def last_checkpoint(checkpoints: Path, prefix: str, marker: str) -> tuple[Path, int] | None:
    """The complete ``<prefix><step>`` directory with the highest step under ``checkpoints``.

    A directory counts as complete when it holds the ``marker`` file (written last on save).
    """
    if not checkpoints.is_dir():
        return None
    found = []
    for child in checkpoints.iterdir():
        suffix = child.name[len(prefix) :]
        complete = (child / marker).is_file()
        if child.is_dir() and child.name.startswith(prefix) and suffix.isdigit() and complete:
            found.append((int(suffix), child))
    if not found:
        return None
    step, path = max(found)
    return path, step
