"""AlphaCode's solve-rate-versus-samples curve, with and without filtering and clustering.

Contract: from one evaluation's per-sample outcomes (per problem: passed the public tests,
behavioural cluster id or ``-1``, passed the hidden tests; :class:`~tasks.core.metrics.ProblemSamples`)
:func:`scaling_curve` computes, for every k of :func:`k_grid` (1, 2, 5, 10, 20, 50, ... up to
the smallest sample count ``n`` of the problems, and ``n`` itself), the per-problem probability
of being solved under four rules, then their mean per split and over all problems:

* ``pass@k``: any of k samples passes the hidden tests; Chen et al.'s unbiased estimator (exact).
* ``{m}@k clustering``: AlphaCode's n@k: of a random k-subset keep the public-test survivors,
  cluster them (cluster sizes counted within the subset) and submit one sample from each of the
  ``m`` largest clusters (:func:`tasks.core.metrics.n_at_k_per_problem`: the mean of ``draws``
  seeded k-subsets, exact at k = n). Cost O(draws x n log n) per problem and k.
* ``{m}@k filter``: submit ``m`` uniformly random survivors of the public tests among a random
  k-subset (all of them if fewer than ``m`` survive). Exact, by :func:`filter_solve_probability`:
  in a uniform random order of the n samples (the k-subset = the first k), the submissions are
  the first ``min(m, X)`` survivors, X the survivors among the first k; so the problem is solved
  iff R <= m and R <= X, R the survivor-rank of the first survivor that passes the hidden tests.
  R (the order of the survivors' identities) and X (the set of survivor positions) are
  independent, so P = sum_{r=1..m} P(R = r) P(X >= r), X hypergeometric. O(m) per problem and k.
* ``{m}@k random``: ``m`` uniformly random samples of the k-subset, no filter: a uniform random
  ``min(m, k)``-subset of all n samples, i.e. pass@min(m, k) (exact; flat for k >= m: without a
  filter more samples cannot help).

Each mean has a family-clustered percentile-bootstrap 95% band
(:func:`tasks.core.metrics.family_bootstrap_ci`: families resampled, then problems within each;
a group of one problem gets a zero-width band). Also: per split, the fraction of problems whose
largest cluster over all n samples is correct (its representative, the sample
:func:`tasks.core.clustering.select_submissions` would submit first, passes the hidden tests; a
problem with no survivor counts as not correct), with its band; and the gaps ``clustering -
filter`` and ``filter - random`` at each of ``gap_ks`` (default 10, 100, 1000) that the samples
reach, each with a family-clustered paired bootstrap 95% interval
(:func:`tasks.core.metrics.family_paired_bootstrap`). :func:`write_curve` writes
``curve.parquet``, ``gaps.parquet``, ``largest_cluster.parquet`` and ``curve.png`` (the "all"
curves with their bands, log k axis once k spans a factor of 10; :func:`tasks.core.report.plot_n_at_k`)
atomically.

Limits: the bands resample problems, not the clustering curve's Monte Carlo draws (its error is
about sqrt(p(1-p)/draws) per problem, less in the mean); cluster ids are taken as given
(clustered once over all n samples, as :func:`tasks.core.metrics.n_at_k` documents); k stops at
the smallest sample count, so every point of a curve averages the same problems. Pure numpy: no
Prefect, no files but those :func:`write_curve` writes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import get_type_hints

import numpy as np
import pyarrow as pa

from tasks.core.clustering import select_submissions
from tasks.core.io import write_parquet
from tasks.core.metrics import (
    ProblemSamples,
    family_bootstrap_ci,
    family_paired_bootstrap,
    n_at_k_per_problem,
    pass_at_k,
)
from tasks.core.report import plot_n_at_k

CURVE_FILE = "curve.parquet"
GAPS_FILE = "gaps.parquet"
LARGEST_FILE = "largest_cluster.parquet"
CURVE_PLOT = "curve.png"
ALL = "all"
GAP_KS = (10, 100, 1000)


def curve_names(m: int) -> tuple[str, str, str, str]:
    """The four curves' names for ``m`` submissions: pass@k, clustering, filter, random."""
    return ("pass@k", f"{m}@k clustering", f"{m}@k filter", f"{m}@k random")


@dataclass(frozen=True)
class CurvePoint:
    split: str
    curve: str
    k: int
    value: float
    lo: float
    hi: float
    problems: int
    families: int


@dataclass(frozen=True)
class Gap:
    """``gap`` = ``"clustering - filter"`` or ``"filter - random"`` at ``k`` (paired bootstrap CI)."""

    split: str
    gap: str
    k: int
    difference: float
    lo: float
    hi: float
    frac_not_positive: float
    problems: int
    families: int


@dataclass(frozen=True)
class LargestCluster:
    """Fraction of a split's problems whose largest cluster (over all samples) is correct."""

    split: str
    fraction: float
    lo: float
    hi: float
    problems: int
    with_clusters: int  # problems with at least one survivor (hence a cluster)
    families: int


@dataclass(frozen=True)
class ScalingCurve:
    n_submissions: int
    n: int  # the smallest sample count of the problems: the last k
    ks: tuple[int, ...]
    draws: int
    points: tuple[CurvePoint, ...]
    gaps: tuple[Gap, ...]
    largest: tuple[LargestCluster, ...]

    @property
    def splits(self) -> tuple[str, ...]:
        """The problems' own splits (without ``all``), in order of first appearance."""
        return tuple(dict.fromkeys(p.split for p in self.points if p.split != ALL))

    def problems(self, split: str = ALL) -> int:
        """How many problems one split's curves are over."""
        return next(p.problems for p in self.points if p.split == split)

    def series(self, name: str, split: str = ALL) -> list[CurvePoint]:
        """The points of one curve on one split, by k."""
        return sorted((p for p in self.points if p.curve == name and p.split == split), key=lambda p: p.k)


def k_grid(n: int) -> list[int]:
    """1, 2, 5, 10, 20, 50, ... up to ``n``, and ``n`` itself."""
    if n < 1:
        raise ValueError(f"k_grid needs n >= 1 samples per problem, got {n}")
    ks, scale = [], 1
    while scale <= n:
        ks += [k for k in (scale, 2 * scale, 5 * scale) if k <= n]
        scale *= 10
    return ks if ks[-1] == n else [*ks, n]


def _log_comb(a: int, b: int) -> float:
    return math.lgamma(a + 1) - math.lgamma(b + 1) - math.lgamma(a - b + 1)


def _at_least(n: int, survivors: int, k: int, r: int) -> float:
    """P(X >= r), X the survivors among a uniform random k-subset of n (hypergeometric)."""
    lo, hi = max(0, k - (n - survivors)), min(k, survivors)
    if r <= lo:
        return 1.0
    if r > hi:
        return 0.0
    total = _log_comb(n, k)
    below = sum(
        math.exp(_log_comb(survivors, x) + _log_comb(n - survivors, k - x) - total) for x in range(lo, r)
    )
    return min(1.0, max(0.0, 1.0 - below))


def filter_solve_probability(n: int, survivors: int, good: int, k: int, m: int) -> float:
    """Exact probability that ``m`` uniformly random public-test survivors of a uniformly random
    k-subset of ``n`` samples (all of its survivors if fewer) include one of the ``good``
    survivors that pass the hidden tests (derivation: the module docstring)."""
    if not 0 <= good <= survivors <= n or not 1 <= k <= n or m < 1:
        raise ValueError(
            f"filter_solve_probability needs 0 <= good <= survivors <= n, 1 <= k <= n and m >= 1; "
            f"got n={n}, survivors={survivors}, good={good}, k={k}, m={m}"
        )
    if good == 0:
        return 0.0
    bad, total, first_bad = survivors - good, 0.0, 1.0  # first_bad = P(first r-1 survivors bad)
    for r in range(1, min(m, bad + 1) + 1):
        total += first_bad * good / (survivors - r + 1) * _at_least(n, survivors, k, r)
        first_bad *= (bad - r + 1) / (survivors - r + 1)
    return min(1.0, total)


def largest_cluster_correct(p: ProblemSamples) -> bool:
    """Whether the largest cluster's representative (the first submission AlphaCode's rule
    makes from all samples) passes the hidden tests; False without a survivor."""
    picks = select_submissions(np.where(p.passed_public, p.cluster_id, -1), 1)
    return bool(picks) and bool(p.hidden_pass[picks[0]])


def per_problem_values(
    problems: Sequence[ProblemSamples], ks: Sequence[int], m: int, draws: int, seed: int
) -> dict[str, np.ndarray]:
    """Curve name -> (problems x ks) array of each problem's probability of being solved."""
    names = curve_names(m)
    out = {name: np.empty((len(problems), len(ks))) for name in names}
    for j, k in enumerate(ks):
        out[names[1]][:, j] = n_at_k_per_problem(problems, m, k, draws=draws, seed=seed)
    for i, p in enumerate(problems):
        n = len(p)
        c = int(p.hidden_pass.sum())
        survivors = int(p.passed_public.sum())
        good = int((p.passed_public & p.hidden_pass).sum())
        for j, k in enumerate(ks):
            out[names[0]][i, j] = pass_at_k(n, c, k)
            out[names[2]][i, j] = filter_solve_probability(n, survivors, good, k, m)
            out[names[3]][i, j] = pass_at_k(n, c, min(m, k))
    return out


def _band(values: np.ndarray, families: list[str], n_boot: int, seed: int) -> tuple[float, float]:
    if values.size < 2:
        return float(values.mean()), float(values.mean())
    lo, hi, _ = family_bootstrap_ci(values, families, n_boot=n_boot, seed=seed)
    return lo, hi


def scaling_curve(
    problems: Sequence[ProblemSamples],
    families: Sequence[str],
    splits: Sequence[str],
    n_submissions: int = 10,
    draws: int = 100,
    seed: int = 0,
    n_boot: int = 1000,
    gap_ks: Sequence[int] = GAP_KS,
) -> ScalingCurve:
    """The curves, gaps and largest-cluster fractions of the module docstring; ``families[i]``
    and ``splits[i]`` describe ``problems[i]``."""
    if not problems:
        raise ValueError("scaling_curve needs at least one problem's samples")
    if not len(problems) == len(families) == len(splits):
        raise ValueError(
            f"problems, families and splits must describe the same problems, got {len(problems)}, "
            f"{len(families)} and {len(splits)} entries: give one of each per problem"
        )
    if n_submissions < 1 or draws < 1:
        raise ValueError(f"n_submissions and draws must be >= 1, got {n_submissions} and {draws}")
    n = min(len(p) for p in problems)
    ks = k_grid(n)
    values = per_problem_values(problems, ks, n_submissions, draws, seed)
    correct = np.array([largest_cluster_correct(p) for p in problems], dtype=np.float64)
    clustered = np.array([bool((p.passed_public & (p.cluster_id >= 0)).any()) for p in problems])
    names = curve_names(n_submissions)
    points, gaps, largest = [], [], []
    for split in [*sorted(set(splits)), ALL]:
        idx = np.array([i for i, s in enumerate(splits) if split in (ALL, s)])
        fams = [families[i] for i in idx]
        n_fam = len(set(fams))
        for name in names:
            for j, k in enumerate(ks):
                v = values[name][idx, j]
                lo, hi = _band(v, fams, n_boot, seed)
                points.append(CurvePoint(split, name, k, float(v.mean()), lo, hi, int(idx.size), n_fam))
        for k in (k for k in gap_ks if k in ks):
            j = ks.index(k)
            for gap, (a, b) in (("clustering - filter", names[1:3]), ("filter - random", names[2:4])):
                x, y = values[a][idx, j], values[b][idx, j]
                if idx.size < 2:
                    d = float(x.mean() - y.mean())
                    gaps.append(Gap(split, gap, k, d, d, d, float(d <= 0), int(idx.size), n_fam))
                    continue
                diff = family_paired_bootstrap(x, y, fams, n_boot=n_boot, seed=seed)
                gaps.append(
                    Gap(
                        split,
                        gap,
                        k,
                        diff.difference,
                        diff.lo,
                        diff.hi,
                        diff.frac_not_positive,
                        int(idx.size),
                        n_fam,
                    )
                )
        lo, hi = _band(correct[idx], fams, n_boot, seed)
        largest.append(
            LargestCluster(
                split, float(correct[idx].mean()), lo, hi, int(idx.size), int(clustered[idx].sum()), n_fam
            )
        )
    return ScalingCurve(n_submissions, n, tuple(ks), draws, tuple(points), tuple(gaps), tuple(largest))


_TYPES = {int: pa.int64(), float: pa.float64(), str: pa.string()}


def _table(rows: Sequence[object], kind: type) -> pa.Table:
    """``rows`` (dataclasses of ``kind``) as a table whose schema holds even with no row."""
    schema = pa.schema([(name, _TYPES[t]) for name, t in get_type_hints(kind).items()])
    return pa.Table.from_pylist([asdict(r) for r in rows], schema=schema)


def split_plot(split: str) -> str:
    """The file name of one split's curve plot (``curve.png`` is the ``all`` one)."""
    return CURVE_PLOT if split == ALL else f"curve-{split}.png"


def write_curve(
    directory: Path, result: ScalingCurve, title: str = "Solve rate vs samples per problem"
) -> list[Path]:
    """``curve.parquet``, ``gaps.parquet``, ``largest_cluster.parquet``, ``curve.png`` (the
    ``all`` curves with their bands) and, when there are several splits, ``curve-<split>.png``
    per split, in ``directory``, each written atomically; each plot's title is ``title`` with
    its own split and problem count."""
    directory = Path(directory)
    paths = [directory / name for name in (CURVE_FILE, GAPS_FILE, LARGEST_FILE)]
    write_parquet(paths[0], _table(result.points, CurvePoint))
    write_parquet(paths[1], _table(result.gaps, Gap))
    write_parquet(paths[2], _table(result.largest, LargestCluster))
    splits = result.splits
    for split in [ALL, *splits] if len(splits) > 1 else [ALL]:
        curves = {}
        for name in curve_names(result.n_submissions):
            pts = result.series(name, split)
            curves[name] = (
                [p.k for p in pts],
                [p.value for p in pts],
                [p.lo for p in pts],
                [p.hi for p in pts],
            )
        count = result.problems(split)
        where = f"{count} problems" if split == ALL else f"{split}, {count} problems"
        paths.append(plot_n_at_k(curves, directory / split_plot(split), title=f"{title} ({where})"))
    return paths
