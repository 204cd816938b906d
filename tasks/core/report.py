"""Report figures (PNG) and Markdown tables for evaluation results: pass@k and n@k curves, the
filtering funnel, cluster sizes. (Training and trend curves: :func:`tasks.core.plots.plot_curves`.)

Contract: every ``plot_*`` function draws one figure with matplotlib's Agg canvas (no
pyplot, no display, no global backend change), writes it atomically
(:func:`tasks.core.plots.save_figure`) and returns the path written. Parent directories are
created. Inputs are validated; an empty series raises ``ValueError``.

Limits: figures are 1000 px wide (height grows with the number of stages); curves with many
series reuse matplotlib's default colour cycle (10 colours).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from tasks.core.plots import new_figure, save_figure

# (ks, values, lo, hi); lo/hi may be None when there is no confidence band.
CurveData = tuple[Sequence[float], Sequence[float], Sequence[float] | None, Sequence[float] | None]


def _curves(curves: Mapping[str, CurveData], name: str) -> None:
    if not curves:
        raise ValueError(f"{name}: give at least one curve (label -> (ks, values, lo, hi))")
    for label, curve in curves.items():
        if len(curve) != 4:
            raise ValueError(f"{name}: curve {label!r} must be (ks, values, lo, hi)")
        ks, values, lo, hi = curve
        sizes = {len(ks), len(values)} | {len(b) for b in (lo, hi) if b is not None}
        if len(sizes) != 1 or not len(ks):
            raise ValueError(f"{name}: curve {label!r} has empty or unequal-length arrays")


def _plot_curves(curves: Mapping[str, CurveData], path, title: str, ylabel: str) -> Path:
    _curves(curves, title)
    fig = new_figure()
    ax = fig.add_subplot()
    for label, (ks, values, lo, hi) in curves.items():
        (line,) = ax.plot(ks, values, marker="o", label=label)
        if lo is not None and hi is not None:
            ax.fill_between(ks, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.annotate(
            f"{values[-1]:.1%}",
            (ks[-1], values[-1]),
            textcoords="offset points",
            xytext=(5, 0),
            va="center",
            color=line.get_color(),
        )
    all_k = [k for ks, *_ in curves.values() for k in ks]
    if min(all_k) > 0 and max(all_k) / min(all_k) >= 10:
        ax.set_xscale("log")
    ax.set_xlabel("k (samples per problem)")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1)
    ax.yaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(title)
    ax.legend(loc="upper left")
    return save_figure(fig, path)


def plot_pass_at_k(curves: Mapping[str, CurveData], path: str | os.PathLike, title: str = "pass@k") -> Path:
    """One line per system (label -> (ks, values, lo, hi)), shaded confidence band."""
    return _plot_curves(curves, path, title, "pass@k (fraction of problems)")


def plot_n_at_k(
    curves: Mapping[str, CurveData],
    path: str | os.PathLike,
    title: str = "n@k (n submissions from k samples)",
) -> Path:
    """n@k curves, e.g. ``{"10@k": (ks, values, lo, hi), "10@k no clustering": ...}``."""
    return _plot_curves(curves, path, title, "problems solved")


def plot_filter_funnel(
    stages: Sequence[tuple[str, int]], path: str | os.PathLike, title: str = "Sample filtering funnel"
) -> Path:
    """Horizontal bars, one per stage (top = first), with count and % of the first stage;
    log x axis when the non-zero counts span a factor of 100 or more."""
    if not stages:
        raise ValueError("plot_filter_funnel: give at least one (label, count) stage")
    labels = [str(label) for label, _ in stages]
    counts = np.array([count for _, count in stages], dtype=float)
    if (counts < 0).any():
        raise ValueError("plot_filter_funnel: stage counts must be >= 0")
    fig = new_figure(max(2.5, 0.8 * len(stages) + 1.5))
    ax = fig.add_subplot()
    y = np.arange(len(stages))[::-1]
    ax.barh(y, counts, color="tab:blue", alpha=0.8)
    top = counts[0] if counts[0] > 0 else 1.0
    positive = counts[counts > 0]
    log = bool(positive.size and positive.max() / positive.min() >= 100)
    for yi, count in zip(y, counts):
        x = max(count, 0.5) if log else count
        ax.text(x, yi, f" {int(count):,} ({count / top:.2%})", va="center")
    ax.set_yticks(y, labels)
    if log:  # counts span orders of magnitude
        ax.set_xscale("log")
        ax.set_xlim(0.5, positive.max() * 20)
    else:
        ax.set_xlim(0, max(counts.max(), 1) * 1.3)
        ax.xaxis.set_major_formatter(lambda v, _: f"{v:,.0f}")
    ax.set_xlabel("programs")
    ax.set_title(title)
    return save_figure(fig, path)


def plot_cluster_sizes(
    sizes: Sequence[int],
    path: str | os.PathLike,
    highlight: int = 10,
    title: str = "Cluster sizes (rank vs size)",
) -> Path:
    """Rank-size plot (log-log) of cluster sizes; the ``highlight`` largest are marked."""
    arr = np.sort(np.asarray(sizes, dtype=float))[::-1]
    if arr.size == 0 or (arr <= 0).any():
        raise ValueError("plot_cluster_sizes: give at least one cluster size, all > 0")
    ranks = np.arange(1, arr.size + 1)
    fig = new_figure()
    ax = fig.add_subplot()
    ax.plot(ranks, arr, color="tab:gray", marker=".", linestyle="-")
    top = min(highlight, arr.size)
    ax.scatter(ranks[:top], arr[:top], color="tab:red", zorder=3, label=f"{top} largest (submitted)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    share = arr[:top].sum() / arr.sum()
    ax.set_title(f"{title}: {arr.size:,} clusters, {int(arr.sum()):,} programs, top {top} hold {share:.1%}")
    ax.set_xlabel("cluster rank")
    ax.set_ylabel("programs in cluster")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def _cell(value: object) -> str:
    if isinstance(value, float):
        text = "" if math.isnan(value) else f"{value:.4g}"
    else:
        text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: Sequence[Mapping[str, object]]) -> str:
    """GitHub Markdown table; columns are the union of keys in first-seen order, floats
    printed with 4 significant digits, missing/None/NaN cells empty. No rows: ``""``."""
    columns: list[str] = []
    for row in rows:
        columns += [str(k) for k in row if str(k) not in columns]
    if not rows:
        return ""
    lines = [
        "| " + " | ".join(_cell(c) for c in columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for row in rows:
        by_name = {str(k): v for k, v in row.items()}
        lines.append("| " + " | ".join(_cell(by_name.get(c)) for c in columns) + " |")
    return "\n".join(lines) + "\n"
