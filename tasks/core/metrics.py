"""Evaluation metrics: pass@k, AlphaCode's n@k, bootstrap confidence intervals.

Contract:

* :func:`pass_at_k` is the unbiased estimator of Chen et al. (2021),
  ``1 - C(n-c, k) / C(n, k)``, computed as a stable product (no huge binomials).
* :func:`n_at_k` estimates AlphaCode's n@k: the fraction of problems solved when ``n``
  submissions are chosen from ``k`` samples. Per problem and per draw: take ``k`` of the
  problem's samples uniformly without replacement, keep those that pass the public tests
  *and* have a cluster id (``-1`` = filtered out), group them by cluster id (cluster sizes
  are counted within the draw), submit one sample from each of the ``n`` largest clusters
  (:func:`tasks.core.clustering.select_submissions`: ties by smallest sample index, the
  representative is the cluster's smallest sample index), and count the problem solved iff
  a submission passes the hidden tests. The per-problem value is the mean over ``draws``
  seeded draws; it is exact (one draw) when ``k`` equals the problem's sample count.
  Limits: cluster ids are taken as given (clustered over all samples, not re-clustered per
  draw); a problem with fewer clusters than ``n`` gets fewer submissions; Monte Carlo error
  is about ``sqrt(p(1-p)/draws)`` per problem.
* :func:`bootstrap_ci` and :func:`paired_bootstrap` are percentile bootstraps over problems.
* :func:`family_paired_bootstrap` is the paired percentile bootstrap for clustered problems
  (problems of one family share a template, so their outcomes are correlated): each resample
  draws the families with replacement, then the problems of each drawn family with replacement
  within it, and takes ``stat(a) - stat(b)`` over the drawn problems (so families weigh by
  their size). With one problem per family it equals :func:`paired_bootstrap` for the same
  seed, draw for draw. Limits: few families give unstable percentiles (report the count, as
  :class:`FamilyPairedDifference` does); the family draws use ``seed``, the within-family draws
  an independent stream seeded by ``(seed, 1)``. :func:`family_bootstrap_ci` is the same
  resampling for one model's interval (equal to :func:`bootstrap_ci` with one problem per family).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from tasks.core.clustering import select_submissions


class Interval(NamedTuple):
    """A confidence interval; unpacks as ``(lo, hi)``."""

    lo: float
    hi: float


@dataclass(frozen=True)
class PairedDifference:
    """``stat(a) - stat(b)`` over the same problems, with a paired percentile bootstrap CI.

    ``frac_not_positive`` is the fraction of resamples whose difference is <= 0: a rough
    one-sided bootstrap p-value for "a is better than b".
    """

    difference: float
    lo: float
    hi: float
    frac_not_positive: float


class FamilyInterval(NamedTuple):
    """A family-clustered confidence interval; unpacks as ``(lo, hi, n_families)``."""

    lo: float
    hi: float
    n_families: int


@dataclass(frozen=True)
class FamilyPairedDifference:
    """:class:`PairedDifference` from the family-clustered bootstrap, with its cluster counts."""

    difference: float
    lo: float
    hi: float
    frac_not_positive: float
    n_families: int
    n_problems: int


def _count(name: str, value: int) -> int:
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r}") from None


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of ``k`` of ``n`` samples (``c`` correct) is correct."""
    n, c, k = _count("n", n), _count("c", c), _count("k", k)
    if n < 0:
        raise ValueError(f"n (samples) must be >= 0, got {n}")
    if not 0 <= c <= n:
        raise ValueError(f"c (correct samples) must be in [0, n={n}], got {c}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if k > n:
        raise ValueError(f"k={k} exceeds n={n} samples: draw at least k samples per problem")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def mean_pass_at_k(ns: Sequence[int], cs: Sequence[int], k: int) -> float:
    """Mean of :func:`pass_at_k` over problems (``ns[i]`` samples, ``cs[i]`` correct)."""
    if len(ns) != len(cs):
        raise ValueError(f"ns has {len(ns)} problems but cs has {len(cs)}; give one per problem")
    if len(ns) == 0:
        raise ValueError("mean_pass_at_k needs at least one problem")
    return float(np.mean([pass_at_k(n, c, k) for n, c in zip(ns, cs)]))


@dataclass(frozen=True, eq=False)
class ProblemSamples:
    """Per-sample outcomes of one problem (parallel 1-D arrays, one entry per sample)."""

    passed_public: np.ndarray
    hidden_pass: np.ndarray
    cluster_id: np.ndarray

    def __post_init__(self) -> None:
        arrays = {
            "passed_public": np.asarray(self.passed_public, dtype=bool),
            "hidden_pass": np.asarray(self.hidden_pass, dtype=bool),
            "cluster_id": np.asarray(self.cluster_id),
        }
        sizes = {name: a.shape for name, a in arrays.items()}
        if any(a.ndim != 1 for a in arrays.values()) or len(set(sizes.values())) != 1:
            raise ValueError(f"ProblemSamples arrays must be 1-D and equally long, got {sizes}")
        ids = arrays["cluster_id"]
        if ids.size and (ids.dtype.kind not in "iu" or ids.min() < -1):
            raise ValueError("cluster_id must hold integers >= -1 (-1 = filtered out)")
        for name, value in arrays.items():
            object.__setattr__(self, name, value)

    def __len__(self) -> int:
        return int(self.passed_public.size)


def _solved_once(p: ProblemSamples, chosen: np.ndarray, n: int) -> bool:
    ids = np.where(p.passed_public[chosen], p.cluster_id[chosen], -1)
    picks = select_submissions(ids, n)
    return bool(p.hidden_pass[chosen[picks]].any())


def n_at_k_per_problem(
    problems: Sequence[ProblemSamples], n: int, k: int, draws: int = 100, seed: int = 0
) -> np.ndarray:
    """Per-problem probability of being solved with ``n`` submissions from ``k`` samples."""
    if n < 1 or k < 1 or draws < 1:
        raise ValueError(f"n, k and draws must be >= 1, got n={n}, k={k}, draws={draws}")
    out = np.empty(len(problems), dtype=np.float64)
    for i, p in enumerate(problems):
        if k > len(p):
            raise ValueError(f"k={k} exceeds the {len(p)} samples of problem {i}")
        if k == len(p):
            out[i] = _solved_once(p, np.arange(k), n)
            continue
        rng = np.random.default_rng((seed, i))
        hits = [_solved_once(p, np.sort(rng.choice(len(p), size=k, replace=False)), n) for _ in range(draws)]
        out[i] = np.mean(hits)
    return out


def n_at_k(problems: Sequence[ProblemSamples], n: int, k: int, draws: int = 100, seed: int = 0) -> float:
    """AlphaCode's n@k: mean over problems of :func:`n_at_k_per_problem`."""
    if len(problems) == 0:
        raise ValueError("n_at_k needs at least one problem")
    return float(np.mean(n_at_k_per_problem(problems, n, k, draws, seed)))


def _values(name: str, values: Sequence[float] | np.ndarray) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of numbers")
    return arr


def _check_boot(n_boot: int, alpha: float) -> None:
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    stat: Callable[[np.ndarray], float] = np.mean,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap ``(1 - alpha)`` interval of ``stat`` over ``values``."""
    arr = _values("values", values)
    _check_boot(n_boot, alpha)
    rng = np.random.default_rng(seed)
    stats = [stat(arr[rng.integers(0, arr.size, arr.size)]) for _ in range(n_boot)]
    lo, hi = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return Interval(float(lo), float(hi))


def paired_bootstrap(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    stat: Callable[[np.ndarray], float] = np.mean,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> PairedDifference:
    """Bootstrap of ``stat(a) - stat(b)`` resampling problems jointly (``a[i]``, ``b[i]``)."""
    x, y = _values("a", a), _values("b", b)
    if x.size != y.size:
        raise ValueError(f"a has {x.size} problems but b has {y.size}: pair them per problem")
    _check_boot(n_boot, alpha)
    rng = np.random.default_rng(seed)
    diffs = np.empty(n_boot)
    for i in range(n_boot):
        idx = rng.integers(0, x.size, x.size)
        diffs[i] = stat(x[idx]) - stat(y[idx])
    lo, hi = np.quantile(diffs, [alpha / 2, 1 - alpha / 2])
    return PairedDifference(
        difference=float(stat(x) - stat(y)),
        lo=float(lo),
        hi=float(hi),
        frac_not_positive=float(np.mean(diffs <= 0)),
    )


def _family_layout(families: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Problem indices grouped by family (families in order of first appearance), each family's
    start in that order and its size."""
    _, first, codes = np.unique(np.asarray(families, dtype=object), return_index=True, return_inverse=True)
    rank = np.empty(first.size, dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(first.size)
    codes = rank[codes.reshape(-1)]
    order = np.argsort(codes, kind="stable")
    sizes = np.bincount(codes, minlength=first.size)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    return order, starts, sizes


def _family_resamples(families: Sequence[str], n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """``n_boot`` index arrays: families drawn with replacement, then problems within each."""
    order, starts, sizes = _family_layout(families)
    fam_rng, within_rng = np.random.default_rng(seed), np.random.default_rng((seed, 1))
    for _ in range(n_boot):
        drawn = fam_rng.integers(0, sizes.size, sizes.size)
        each = np.repeat(drawn, sizes[drawn])
        offsets = np.floor(within_rng.random(each.size) * sizes[each]).astype(np.int64)
        yield order[starts[each] + offsets]


def family_bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    families: Sequence[str],
    stat: Callable[[np.ndarray], float] = np.mean,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> FamilyInterval:
    """Percentile ``(1 - alpha)`` interval of ``stat`` over ``values``, resampling families, then
    problems within each drawn family; equals :func:`bootstrap_ci` with one problem per family."""
    arr = _values("values", values)
    if len(families) != arr.size:
        raise ValueError(
            f"values and families must describe the same problems, got {arr.size} and "
            f"{len(families)} entries: give one family per value"
        )
    _check_boot(n_boot, alpha)
    stats = [stat(arr[idx]) for idx in _family_resamples(families, n_boot, seed)]
    lo, hi = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return FamilyInterval(float(lo), float(hi), len(set(families)))


def family_paired_bootstrap(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    families: Sequence[str],
    stat: Callable[[np.ndarray], float] = np.mean,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> FamilyPairedDifference:
    """Paired bootstrap of ``stat(a) - stat(b)`` resampling families, then problems within each
    drawn family (``a[i]``, ``b[i]`` and ``families[i]`` describe problem ``i``)."""
    x, y = _values("a", a), _values("b", b)
    if x.size != y.size or len(families) != x.size:
        raise ValueError(
            f"a, b and families must describe the same problems, got {x.size}, {y.size} and "
            f"{len(families)} entries: give one of each per problem"
        )
    _check_boot(n_boot, alpha)
    diffs = np.array([stat(x[idx]) - stat(y[idx]) for idx in _family_resamples(families, n_boot, seed)])
    lo, hi = np.quantile(diffs, [alpha / 2, 1 - alpha / 2])
    return FamilyPairedDifference(
        difference=float(stat(x) - stat(y)),
        lo=float(lo),
        hi=float(hi),
        frac_not_positive=float(np.mean(diffs <= 0)),
        n_families=len(set(families)),
        n_problems=int(x.size),
    )
