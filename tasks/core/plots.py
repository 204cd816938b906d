"""Figures: the one curve plotter (training losses, RL curves, metric trends) and the PNG writer.

Contract: figures are drawn on matplotlib's Agg canvas (no pyplot, no display, no global
backend change) and written atomically as PNG (:func:`tasks.core.io.atomic_write_bytes`); the
path written is returned. :func:`plot_curves` draws one panel per entry of ``panels`` (own y
scale, shared x), one line per series in a panel. None/NaN points are dropped from their line
(so a sparse series, e.g. a validation loss every N steps, is still drawn); a line of more than
20 points is drawn faint with an EMA on top, a line of at most 20 points gets markers. Bad input
(no panel, unequal x/y lengths) raises ``ValueError`` naming it; a series with no point leaves
its panel empty (a training run's figure must not fail the run).

Limits: figures are 1000 px wide, 2.4 in per panel; more than 10 lines in a panel reuse
matplotlib's default colour cycle.
"""

from __future__ import annotations

import io as _bytes_io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tasks.core.io import atomic_write_bytes

Series = tuple[Sequence[float], Sequence[float | None]]  # (x, y)
_DPI = 100
_SMOOTH_ABOVE = 20


def new_figure(height: float = 6.0) -> Figure:
    fig = Figure(figsize=(10, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | os.PathLike) -> Path:
    """``fig`` as PNG at ``path``, written atomically."""
    buf = _bytes_io.BytesIO()
    fig.savefig(buf, format="png")
    target = Path(path)
    atomic_write_bytes(target, buf.getvalue())
    return target


def ema(values: np.ndarray, span: int) -> np.ndarray:
    """Exponential moving average with ``alpha = 2 / (span + 1)``; NaN values keep the last mean."""
    alpha, out, acc = 2.0 / (span + 1), np.empty_like(values), math.nan
    for i, v in enumerate(values):
        acc = v if math.isnan(acc) else (acc if math.isnan(v) else acc + alpha * (v - acc))
        out[i] = acc
    return out


def _points(name: str, series: Series) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = series
    if len(xs) != len(ys):
        raise ValueError(f"plot_curves: series {name!r} has {len(ys)} values for {len(xs)} x positions")
    x = np.asarray(xs, dtype=float)
    y = np.asarray([math.nan if v is None else v for v in ys], dtype=float)
    keep = ~np.isnan(y)
    return x[keep], y[keep]


def plot_curves(
    panels: Mapping[str, Mapping[str, Series]],
    path: str | os.PathLike,
    title: str = "",
    xlabel: str = "step",
) -> Path:
    """One panel per ``panels`` item (y label -> {line label -> (x, y)}); see the module docstring."""
    lines = {(p, n): _points(n, s) for p, series in panels.items() for n, s in series.items()}
    if not panels:
        raise ValueError(f"plot_curves: {title or path}: give at least one panel")
    fig = new_figure(max(3.0, 2.4 * len(panels)))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (panel, series) in zip(axes, panels.items(), strict=True):
        for name in series:
            x, y = lines[(panel, name)]
            smooth = y.size > _SMOOTH_ABOVE
            marker = None if smooth else "o"
            (line,) = ax.plot(x, y, marker=marker, markersize=3, alpha=0.35 if smooth else 1.0, label=name)
            if smooth:
                ax.plot(x, ema(y, max(5, y.size // 20)), color=line.get_color(), label=f"{name} (EMA)")
        ax.set_ylabel(panel)
        ax.grid(True, alpha=0.3)
        if len(series) > 1 or any(lines[(panel, n)][1].size > _SMOOTH_ABOVE for n in series):
            ax.legend(loc="best")
    axes[0].set_title(title)
    axes[-1].set_xlabel(xlabel)
    return save_figure(fig, path)
