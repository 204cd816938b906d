"""Benchmark: exact behavioural clustering of 1 M programs x 50 inputs, near-duplicate on 10 k.

Synthetic but realistic structure: behaviours drawn from a Zipf-like mix of base behaviours
(a few huge clusters, a long tail), 30 % of rows unique (buggy programs with random outputs),
and 5 % of rows with one input replaced by a timeout/crash sentinel (the fragmentation that
near-duplicate clustering repairs). Prints wall time, tracemalloc peak (numpy buffers are
traced) relative to the behaviour matrix, and the process's max RSS.

Run: ``.venv/bin/python tests/bench/bench_clustering.py [--rows 1000000] [--cols 50]``.
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

import numpy as np

from tasks.core.clustering import (
    VERDICT_SENTINELS,
    exact_clusters,
    near_duplicate_clusters,
    select_submissions,
)
from tasks.core.sandbox.types import Verdict


def synthetic_behaviour(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n_base = max(1, rows // 100)
    base = rng.integers(1 << 63, 2**64 - 1, size=(n_base, cols), dtype=np.uint64)
    weights = 1.0 / np.arange(1, n_base + 1) ** 1.1
    which = rng.choice(n_base, size=rows, p=weights / weights.sum())
    out = base[which]
    del base, which
    unique = rng.random(rows) < 0.30
    out[unique] = rng.integers(1 << 63, 2**64 - 1, size=(int(unique.sum()), cols), dtype=np.uint64)
    broken = np.flatnonzero(rng.random(rows) < 0.05)
    col = rng.integers(0, cols, size=broken.size)
    out[broken, col] = VERDICT_SENTINELS[Verdict.TIME_LIMIT_EXCEEDED]
    return out


def bench_exact(rows: int, cols: int) -> None:
    behaviour = synthetic_behaviour(rows, cols)
    matrix_mb = behaviour.nbytes / 2**20
    tracemalloc.start()
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    t0 = time.perf_counter()
    ids = exact_clusters(behaviour)
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    extra_mb = (peak - base) / 2**20
    sizes = np.bincount(ids)
    print(
        f"exact_clusters: {rows:,} x {cols} ({matrix_mb:.0f} MiB matrix): {elapsed:.2f} s, "
        f"{sizes.size:,} clusters (largest {sizes.max():,}); extra peak {extra_mb:.0f} MiB "
        f"= {extra_mb / matrix_mb:.2f}x the matrix"
    )
    t0 = time.perf_counter()
    picks = select_submissions(ids, 10)
    print(f"select_submissions(10) over {rows:,}: {time.perf_counter() - t0:.2f} s -> {picks}")


def bench_near(rows: int, cols: int) -> None:
    behaviour = synthetic_behaviour(rows, cols, seed=1)
    n_exact = int(exact_clusters(behaviour).max()) + 1
    for method in ("dbscan", "agglomerative"):
        t0 = time.perf_counter()
        ids = near_duplicate_clusters(behaviour, 0.05, method=method)
        print(
            f"near_duplicate_clusters[{method}]: {rows:,} x {cols} ({n_exact:,} unique rows)"
            f": {time.perf_counter() - t0:.2f} s, {int(ids.max()) + 1:,} clusters"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--cols", type=int, default=50)
    parser.add_argument("--near-rows", type=int, default=10_000)
    args = parser.parse_args()
    bench_exact(args.rows, args.cols)
    bench_near(args.near_rows, args.cols)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process max RSS: {rss_mb:.0f} MiB (includes building the synthetic matrix)")


if __name__ == "__main__":
    main()
