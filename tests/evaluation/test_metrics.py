import itertools
import math

import numpy as np
import pytest

from tasks.core.metrics import (
    FamilyPairedDifference,
    Interval,
    ProblemSamples,
    bootstrap_ci,
    family_bootstrap_ci,
    family_paired_bootstrap,
    mean_pass_at_k,
    n_at_k,
    n_at_k_per_problem,
    paired_bootstrap,
    pass_at_k,
)


def _exact(n, c, k):
    return 1 - math.comb(n - c, k) / math.comb(n, k)


def test_pass_at_k_matches_exact_binomial_formula():
    for n in range(1, 40):
        for c in range(0, n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(_exact(n, c, k), abs=1e-12)


def test_pass_at_k_is_stable_for_large_n():
    n, c, k = 10_000, 37, 1000
    assert pass_at_k(n, c, k) == pytest.approx(_exact(n, c, k), rel=1e-9)


def test_pass_at_1_is_fraction_correct():
    assert pass_at_k(200, 50, 1) == pytest.approx(0.25)


def test_pass_at_k_edge_values():
    assert pass_at_k(5, 0, 3) == 0.0
    assert pass_at_k(5, 3, 3) == 1.0  # n - c < k


def test_pass_at_k_rejects_k_above_n_naming_it():
    with pytest.raises(ValueError, match="k=6 exceeds n=5"):
        pass_at_k(5, 1, 6)


@pytest.mark.parametrize("args", [(-1, 0, 1), (5, 6, 1), (5, -1, 1), (5, 1, 0)])
def test_pass_at_k_rejects_invalid_counts(args):
    with pytest.raises(ValueError):
        pass_at_k(*args)


def test_pass_at_k_rejects_float_counts():
    with pytest.raises(TypeError, match="n must be an integer"):
        pass_at_k(5.0, 1, 1)


def test_mean_pass_at_k_averages_problems():
    assert mean_pass_at_k([10, 10, 4], [0, 10, 2], 1) == pytest.approx((0 + 1 + 0.5) / 3)


def test_mean_pass_at_k_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="one per problem"):
        mean_pass_at_k([10, 10], [1], 1)


def _brute_n_at_k(p: ProblemSamples, n: int, k: int) -> float:
    """Enumerate every k-subset; pick one per cluster, largest first, ties by first index."""
    solved = []
    for subset in itertools.combinations(range(len(p)), k):
        groups: dict[int, list[int]] = {}
        for i in subset:
            if p.passed_public[i] and p.cluster_id[i] >= 0:
                groups.setdefault(int(p.cluster_id[i]), []).append(i)
        ranked = sorted(groups.values(), key=lambda g: (-len(g), g[0]))[:n]
        solved.append(any(p.hidden_pass[g[0]] for g in ranked))
    return float(np.mean(solved))


def _random_problem(rng, size):
    return ProblemSamples(
        passed_public=rng.random(size) < 0.6,
        hidden_pass=rng.random(size) < 0.3,
        cluster_id=np.where(rng.random(size) < 0.9, rng.integers(0, 3, size), -1),
    )


def test_n_at_k_uses_all_samples_exactly_when_k_is_everything():
    p = _random_problem(np.random.default_rng(3), 9)
    for n in (1, 2, 3):
        assert n_at_k([p], n, 9) == _brute_n_at_k(p, n, 9)


def test_n_at_k_monte_carlo_converges_to_enumeration():
    rng = np.random.default_rng(7)
    problems = [_random_problem(rng, 8) for _ in range(4)]
    exact = [_brute_n_at_k(p, 1, 4) for p in problems]
    estimate = n_at_k_per_problem(problems, 1, 4, draws=3000, seed=1)
    np.testing.assert_allclose(estimate, exact, atol=0.04)


def test_n_at_k_picks_largest_cluster_not_first_sample():
    # Sample 0 is alone in a wrong cluster; samples 1-2 form the larger, correct cluster.
    p = ProblemSamples([True, True, True], [False, True, True], [5, 7, 7])
    assert n_at_k([p], 1, 3) == 1.0


def test_n_at_k_ignores_samples_failing_public_tests():
    p = ProblemSamples([False, False, True], [True, True, False], [0, 0, 1])
    assert n_at_k([p], 10, 3) == 0.0


def test_n_at_k_is_deterministic_given_seed():
    rng = np.random.default_rng(11)
    problems = [_random_problem(rng, 30) for _ in range(3)]
    a = n_at_k(problems, 2, 10, draws=50, seed=4)
    assert a == n_at_k(problems, 2, 10, draws=50, seed=4)


def test_n_at_k_rejects_k_above_sample_count():
    p = ProblemSamples([True], [True], [0])
    with pytest.raises(ValueError, match="k=2 exceeds the 1 samples of problem 0"):
        n_at_k([p], 1, 2)


def test_problem_samples_rejects_unequal_arrays():
    with pytest.raises(ValueError, match="equally long"):
        ProblemSamples([True, False], [True], [0, 1])


def test_problem_samples_rejects_cluster_ids_below_minus_one():
    with pytest.raises(ValueError, match=">= -1"):
        ProblemSamples([True], [True], [-2])


def test_bootstrap_ci_brackets_the_mean():
    values = np.random.default_rng(0).normal(3.0, 1.0, 400)
    lo, hi = bootstrap_ci(values, n_boot=500)
    assert lo < values.mean() < hi
    assert hi - lo == pytest.approx(2 * 1.96 / 20, rel=0.25)  # ~ normal-theory width


def test_bootstrap_ci_returns_interval_and_is_seeded():
    values = [0, 1, 1, 0, 1]
    ci = bootstrap_ci(values, n_boot=200, seed=3)
    assert isinstance(ci, Interval) and ci == bootstrap_ci(values, n_boot=200, seed=3)


def test_bootstrap_ci_of_constant_is_that_constant():
    assert bootstrap_ci([0.5] * 10, n_boot=50) == (0.5, 0.5)


def test_paired_bootstrap_detects_consistent_improvement():
    rng = np.random.default_rng(1)
    b = rng.random(200)
    a = b + 0.05 + rng.normal(0, 0.01, 200)
    res = paired_bootstrap(a, b, n_boot=500)
    assert res.difference == pytest.approx(0.05, abs=0.005)
    assert 0 < res.lo < res.difference < res.hi
    assert res.frac_not_positive == 0.0


def test_paired_bootstrap_rejects_unpaired_inputs():
    with pytest.raises(ValueError, match="pair them"):
        paired_bootstrap([1, 2, 3], [1, 2])


def test_bootstrap_rejects_bad_alpha():
    with pytest.raises(ValueError, match="alpha"):
        bootstrap_ci([1.0, 2.0], alpha=1.5)


def _clustered(n_families: int, per_family: int, seed: int = 0):
    """Per-problem scores whose RL-minus-baseline difference is mostly a per-family effect."""
    rng = np.random.default_rng(seed)
    families = [f"f{i}" for i in range(n_families) for _ in range(per_family)]
    effect = np.repeat(rng.normal(0.05, 0.2, n_families), per_family)
    b = rng.random(n_families * per_family)
    return b + effect + rng.normal(0, 0.02, b.size), b, families


def test_family_bootstrap_equals_problem_bootstrap_with_one_problem_per_family():
    rng = np.random.default_rng(5)
    a, b = rng.random(40), rng.random(40)
    clustered = family_paired_bootstrap(a, b, [f"p{i}" for i in range(40)], n_boot=300, seed=7)
    plain = paired_bootstrap(a, b, n_boot=300, seed=7)
    assert (clustered.difference, clustered.lo, clustered.hi, clustered.frac_not_positive) == (
        plain.difference,
        plain.lo,
        plain.hi,
        plain.frac_not_positive,
    )
    assert (clustered.n_families, clustered.n_problems) == (40, 40)


def test_family_bootstrap_is_wider_than_problem_bootstrap_on_clustered_data():
    a, b, families = _clustered(12, 10)
    clustered = family_paired_bootstrap(a, b, families, n_boot=1000, seed=0)
    plain = paired_bootstrap(a, b, n_boot=1000, seed=0)
    assert clustered.difference == pytest.approx(plain.difference)
    assert clustered.hi - clustered.lo > 2 * (plain.hi - plain.lo)
    assert clustered.lo < clustered.difference < clustered.hi
    assert (clustered.n_families, clustered.n_problems) == (12, 120)


def test_family_bootstrap_is_deterministic_given_seed_and_frozen():
    a, b, families = _clustered(6, 5, seed=2)
    one = family_paired_bootstrap(a, b, families, n_boot=200, seed=4)
    assert isinstance(one, FamilyPairedDifference)
    assert one == family_paired_bootstrap(a, b, families, n_boot=200, seed=4)
    assert one != family_paired_bootstrap(a, b, families, n_boot=200, seed=5)
    with pytest.raises(AttributeError):
        one.lo = 0.0  # type: ignore[misc]


def test_family_bootstrap_resamples_whole_families_in_any_problem_order():
    # Within a family a and b are constant, so only the family draws matter: the clustered
    # bootstrap over interleaved problems equals the problem bootstrap over one row per family.
    rng = np.random.default_rng(8)
    fa, fb = rng.random(7), rng.random(7)
    codes = rng.permutation(np.repeat(np.arange(7), 4))
    first_seen = list(dict.fromkeys(codes))
    families = [f"fam{c}" for c in codes]
    clustered = family_paired_bootstrap(fa[codes], fb[codes], families, n_boot=400, seed=2)
    plain = paired_bootstrap(fa[first_seen], fb[first_seen], n_boot=400, seed=2)
    assert clustered.lo == pytest.approx(plain.lo) and clustered.hi == pytest.approx(plain.hi)
    assert clustered.frac_not_positive == plain.frac_not_positive
    assert (clustered.n_families, clustered.n_problems) == (7, 28)


def test_family_bootstrap_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="one of each per problem"):
        family_paired_bootstrap([1.0, 2.0], [1.0, 2.0], ["f"])
    with pytest.raises(ValueError, match="one of each per problem"):
        family_paired_bootstrap([1.0, 2.0], [1.0], ["f", "g"])


def test_family_bootstrap_ci_matches_bootstrap_ci_when_families_are_singletons_and_widens_otherwise():
    values = np.random.default_rng(4).random(30)
    assert family_bootstrap_ci(values, [str(i) for i in range(30)], n_boot=300, seed=1)[:2] == bootstrap_ci(
        values, n_boot=300, seed=1
    )
    a, _, families = _clustered(10, 8, seed=6)
    lo, hi, n_families = family_bootstrap_ci(a, families, n_boot=1000)
    plain = bootstrap_ci(a, n_boot=1000)
    assert n_families == 10 and hi - lo > 1.5 * (plain.hi - plain.lo)
    with pytest.raises(ValueError, match="one family per value"):
        family_bootstrap_ci([1.0, 2.0], ["f"])
