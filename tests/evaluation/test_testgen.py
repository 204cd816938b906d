import numpy as np
import pytest

from tasks.core.testgen import InputGenerator, MutationInputGenerator, keep_valid_inputs

SEEDS = ["3\n1 5 3\n", "4\n2 2 9 1\n", "5\n7 1 4 4 8\n"]


def _shape(text):
    return [len(line.split()) for line in text.split("\n")]


def test_generator_satisfies_protocol():
    assert isinstance(MutationInputGenerator(), InputGenerator)


def test_generate_is_deterministic_given_seed():
    g = MutationInputGenerator()
    assert g.generate(SEEDS, 20, seed=1) == g.generate(SEEDS, 20, seed=1)
    assert g.generate(SEEDS, 20, seed=1) != g.generate(SEEDS, 20, seed=2)


def test_generate_returns_distinct_non_seed_inputs_of_requested_count():
    out = MutationInputGenerator().generate(SEEDS, 30, seed=0)
    assert len(out) == 30
    assert len(set(out)) == 30
    assert not set(out) & set(SEEDS)


def test_values_mode_keeps_line_structure_and_counts():
    out = MutationInputGenerator("values").generate(SEEDS, 50, seed=0)
    shapes = {tuple(_shape(s)) for s in SEEDS}
    for text in out:
        assert tuple(_shape(text)) in shapes
        first, second = text.split("\n")[:2]
        assert int(first) == len(second.split())  # the count was not mutated


def test_values_mode_keeps_nonnegative_integers_nonnegative():
    out = MutationInputGenerator("values").generate(SEEDS, 50, seed=3)
    assert all(int(tok) >= 0 for text in out for tok in text.split())


def test_values_mode_resamples_within_observed_range_or_by_one():
    out = MutationInputGenerator("values", max_mutations=1).generate(SEEDS, 80, seed=4)
    values = [int(tok) for text in out for tok in text.split("\n")[1].split()]
    assert min(values) >= 0 and max(values) <= 10  # observed range [1, 9], one step of +-1
    assert len(set(values)) > 5


def test_structure_mode_changes_sizes():
    out = MutationInputGenerator("structure").generate(SEEDS, 60, seed=0)
    shapes = {tuple(_shape(s)) for s in SEEDS}
    assert any(tuple(_shape(text)) not in shapes for text in out)


def test_strings_keep_length_and_alphabet_in_values_mode():
    seeds = ["abcab\n", "bbcaa\n"]
    out = MutationInputGenerator("values").generate(seeds, 10, seed=0)
    assert out
    for text in out:
        assert len(text.strip()) == 5 and set(text.strip()) <= set("abc")


def test_floats_keep_their_decimals():
    out = MutationInputGenerator().generate(["2.500 1.25\n"], 10, seed=0)
    for text in out:
        a, b = text.split()
        assert len(a.split(".")[1]) == 3 and len(b.split(".")[1]) == 2


def test_preserves_trailing_newline_and_spacing():
    out = MutationInputGenerator().generate(["x  y\n"], 5, seed=0)
    assert out and all(t.endswith("\n") and "  " in t for t in out)


def test_returns_fewer_when_seeds_allow_few_mutants():
    out = MutationInputGenerator().generate(["a\n"], 50, seed=0)
    assert len(out) < 50 and len(set(out)) == len(out)


def test_rejects_a_bare_string_and_bad_mode():
    with pytest.raises(TypeError, match="sequence of str"):
        MutationInputGenerator().generate("1 2", 3, seed=0)
    with pytest.raises(ValueError, match="mode"):
        MutationInputGenerator("wild")


def test_keep_valid_inputs_follows_reference_when_given():
    clean = np.array([[True, False, True], [True, False, False]])
    assert keep_valid_inputs(["a", "b", "c"], clean, [False, True, True]) == [1, 2]


def test_keep_valid_inputs_uses_strict_majority_otherwise():
    clean = np.array([[True, True, False], [True, False, False], [True, False, True]])
    assert keep_valid_inputs(["a", "b", "c"], clean) == [0]


def test_keep_valid_inputs_checks_shapes():
    with pytest.raises(ValueError, match="programs x inputs"):
        keep_valid_inputs(["a", "b"], np.ones((2, 3), bool))
    with pytest.raises(ValueError, match="nothing to vote"):
        keep_valid_inputs(["a"], np.ones((0, 1), bool))
