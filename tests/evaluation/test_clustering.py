import numpy as np
import pytest

import tasks.core.clustering as clustering
from tasks.core.clustering import (
    VERDICT_SENTINELS,
    ClusterSummary,
    exact_clusters,
    hash_output,
    hash_outputs,
    hash_results,
    near_duplicate_clusters,
    select_submissions,
    sentinel,
    summarize_clusters,
)
from tasks.core.sandbox.types import TestResult as SandboxResult
from tasks.core.sandbox.types import Verdict


def test_hash_outputs_ignores_whitespace_layout():
    assert hash_output("1 2\n3\n") == hash_output(b"1  2 3")
    assert hash_output("1 2") != hash_output("1 3")


def test_hash_outputs_can_keep_whitespace():
    assert hash_output("1\n", normalise_whitespace=False) != hash_output("1", False)


def test_hash_outputs_maps_verdicts_to_distinct_sentinels():
    row = hash_outputs(["7", Verdict.TIME_LIMIT_EXCEEDED, Verdict.RUNTIME_ERROR])
    assert row.dtype == np.uint64
    assert row[1] == VERDICT_SENTINELS[Verdict.TIME_LIMIT_EXCEEDED]
    assert row[2] == VERDICT_SENTINELS[Verdict.RUNTIME_ERROR]
    assert len(set(VERDICT_SENTINELS.values())) == len(VERDICT_SENTINELS)


def test_output_hashes_never_equal_sentinels():
    hashes = hash_outputs([str(i) for i in range(2000)])
    assert (hashes >= np.uint64(1 << 63)).all()
    assert max(VERDICT_SENTINELS.values()) < np.uint64(1 << 63)


def test_sentinel_refuses_clean_verdicts():
    with pytest.raises(ValueError, match="hash its stdout"):
        sentinel(Verdict.ACCEPTED)


def test_hash_results_uses_stdout_digest_for_clean_runs():
    digest = "ab" * 32
    row = hash_results(
        [
            SandboxResult(Verdict.ACCEPTED, stdout_sha256=digest),
            SandboxResult(Verdict.WRONG_ANSWER, stdout_sha256=digest),
            SandboxResult(Verdict.TIME_LIMIT_EXCEEDED),
        ]
    )
    assert row[0] == row[1] == np.uint64(int(digest[:16], 16) | (1 << 63))
    assert row[2] == VERDICT_SENTINELS[Verdict.TIME_LIMIT_EXCEEDED]


def test_exact_clusters_groups_identical_rows_by_first_appearance():
    b = np.array([[5, 6], [1, 2], [5, 6], [1, 3], [1, 2]], dtype=np.uint64)
    assert exact_clusters(b).tolist() == [0, 1, 0, 2, 1]


def test_exact_clusters_matches_numpy_unique_on_random_data():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**64 - 1, size=(40, 7), dtype=np.uint64)
    b = base[rng.integers(0, 40, 5000)]
    ids = exact_clusters(b)
    _, inverse = np.unique(b, axis=0, return_inverse=True)
    # Same partition: a bijection between our ids and numpy's.
    pairs = set(zip(ids.tolist(), inverse.reshape(-1).tolist()))
    assert len(pairs) == len(set(ids.tolist())) == len(set(inverse.reshape(-1).tolist()))


def test_exact_clusters_survives_key_collisions(monkeypatch):
    monkeypatch.setattr(clustering, "_row_keys", lambda arr: np.zeros(arr.shape[0], np.uint64))
    b = np.array([[1, 2], [3, 4], [1, 2], [3, 5]], dtype=np.uint64)
    assert exact_clusters(b).tolist() == [0, 1, 0, 2]


def test_exact_clusters_accepts_signed_int64_and_handles_empty():
    assert exact_clusters(np.array([[-1], [-1], [2]], dtype=np.int64)).tolist() == [0, 0, 1]
    assert exact_clusters(np.zeros((0, 3), np.uint64)).size == 0
    assert exact_clusters(np.zeros((3, 0), np.uint64)).tolist() == [0, 0, 0]


def test_exact_clusters_spans_several_chunks(monkeypatch):
    monkeypatch.setattr(clustering, "_CHUNK_ROWS", 3)
    b = np.tile(np.array([[1, 2], [3, 4]], np.uint64), (5, 1))
    assert exact_clusters(b).tolist() == [0, 1] * 5


def test_exact_clusters_rejects_non_2d_and_floats():
    with pytest.raises(ValueError, match="2-D"):
        exact_clusters(np.zeros(3, np.uint64))
    with pytest.raises(ValueError, match="integer hashes"):
        exact_clusters(np.zeros((2, 2)))


def _fragmented():
    rng = np.random.default_rng(5)
    a = rng.integers(1 << 63, 2**64 - 1, size=20, dtype=np.uint64)
    b = rng.integers(1 << 63, 2**64 - 1, size=20, dtype=np.uint64)
    rows = [a, a.copy(), a.copy(), b, b.copy()]
    rows[1][3] = VERDICT_SENTINELS[Verdict.TIME_LIMIT_EXCEEDED]  # 1/20 differs from a
    rows[4][0] = VERDICT_SENTINELS[Verdict.RUNTIME_ERROR]  # 1/20 differs from b
    return np.stack(rows)


@pytest.mark.parametrize("method", ["dbscan", "agglomerative"])
def test_near_duplicates_merge_rows_fragmented_by_timeouts(method):
    beh = _fragmented()
    assert exact_clusters(beh).tolist() == [0, 1, 0, 2, 3]
    ids = near_duplicate_clusters(beh, max_hamming_fraction=0.05, method=method)
    assert ids.tolist() == [0, 0, 0, 1, 1]


def test_near_duplicates_keep_distant_rows_apart():
    ids = near_duplicate_clusters(_fragmented(), max_hamming_fraction=0.0)
    assert ids.tolist() == [0, 1, 0, 2, 3]


def test_agglomerative_bounds_every_pair_while_dbscan_chains():
    # r0-r1 and r1-r2 differ in 1 of 4 columns, r0-r2 in 2 of 4.
    beh = np.array([[1, 1, 1, 1], [2, 1, 1, 1], [2, 2, 1, 1]], dtype=np.uint64)
    assert near_duplicate_clusters(beh, 0.25, method="dbscan").tolist() == [0, 0, 0]
    agg = near_duplicate_clusters(beh, 0.25, method="agglomerative").tolist()
    assert len(set(agg)) == 2


def test_near_duplicates_refuse_too_many_unique_rows():
    beh = np.arange(30, dtype=np.uint64).reshape(15, 2)
    with pytest.raises(ValueError, match="max_unique=10"):
        near_duplicate_clusters(beh, max_unique=10)


def test_near_duplicates_reject_unknown_method():
    with pytest.raises(ValueError, match="method"):
        near_duplicate_clusters(_fragmented(), method="kmeans")


def test_select_submissions_takes_largest_clusters_first():
    ids = [2, 0, 0, 1, 1, 1, 3]
    assert select_submissions(ids, n=2) == [3, 1]


def test_select_submissions_breaks_size_ties_by_first_member():
    ids = [4, 9, 9, 4, 7]
    assert select_submissions(ids, n=3) == [0, 1, 4]


def test_select_submissions_uses_order_for_the_representative():
    ids = [0, 0, 1]
    assert select_submissions(ids, n=1, order=[2, 1, 0]) == [1]


def test_select_submissions_skips_filtered_rows_and_returns_fewer():
    assert select_submissions([-1, -1, 5], n=10) == [2]
    assert select_submissions([-1, -1], n=10) == []


def test_select_submissions_rejects_non_permutation_order():
    with pytest.raises(ValueError, match="permutation"):
        select_submissions([0, 1], order=[0, 0])


def test_summarize_clusters_reports_sizes_and_representatives():
    assert summarize_clusters([1, 1, 0]) == [ClusterSummary(1, 2, 0), ClusterSummary(0, 1, 2)]
