"""Bundled families: catalogue size, split disjointness, determinism, instance contents."""

import time

import pytest

from tasks.core.problems import BUNDLED_SPLITS, Language, Source, bundled_problems, list_families
from tasks.core.problems.bundled import N_PRIVATE, get_family
from tasks.core.problems.splits import rl_variant, sft_variants, valid_template


def test_at_least_forty_families():
    assert len(list_families()) >= 40


def test_every_family_has_three_phrasings_and_two_variants():
    for name in list_families():
        family = get_family(name)
        assert len(family.phrasings) >= 3, name
        assert len(family.variants) >= 2, name


def test_held_out_families_are_15_to_20_percent_and_never_in_other_splits():
    held = set(list_families("test_families"))
    assert 0.15 <= len(held) / len(list_families()) <= 0.20
    for split in ("train", "rl", "valid", "test_instances", "test_templates"):
        assert held.isdisjoint({p.tags["family"] for p in bundled_problems(split, per_family=3)})
    assert {p.tags["family"] for p in bundled_problems("test_families", per_family=3)} == held


def test_split_names_are_disjoint_but_rl_oracle_names_the_rl_problems():
    names = {s: {p.name for p in bundled_problems(s, per_family=10)} for s in BUNDLED_SPLITS}
    assert names.pop("rl_oracle") == names["rl"]
    splits = tuple(names)
    for i, a in enumerate(splits):
        for b in splits[i + 1 :]:
            assert names[a].isdisjoint(names[b]), (a, b)


def test_names_are_unique_within_a_split():
    names = [p.name for p in bundled_problems("train", per_family=30)]
    assert len(names) == len(set(names))


def test_generation_is_deterministic_given_seed():
    a = list(bundled_problems("valid", seed=3, per_family=4))
    b = list(bundled_problems("valid", seed=3, per_family=4))
    c = list(bundled_problems("valid", seed=4, per_family=4))
    assert a == b
    assert [p.private_tests for p in a] != [p.private_tests for p in c]


def test_unknown_split_error_names_valid_splits():
    with pytest.raises(
        ValueError,
        match="train, rl, valid, valid_rl, test_instances, test_rl_cells, test_templates, test_families, rl_oracle",
    ):
        next(bundled_problems("dev"))


def test_per_family_must_be_positive():
    with pytest.raises(ValueError, match="per_family"):
        next(bundled_problems("train", per_family=0))


def test_instances_carry_schema_fields_and_tests():
    for p in bundled_problems("train", per_family=3):
        assert p.source is Source.UNKNOWN_SOURCE
        assert set(p.tags) >= {"family", "variant", "phrasing", "split"}
        assert p.tags["split"] == "train" and p.difficulty > 0 and p.cf_rating >= 800
        assert p.cf_tags and p.time_limit is not None and p.memory_limit_bytes > 0
        assert 1 <= len(p.public_tests) <= 2
        assert len(p.private_tests) == N_PRIVATE and len(p.generated_tests) >= 8
        assert p.solutions.language == (Language.PYTHON3,)
        assert p.incorrect_solutions.solution[0] != p.solutions.solution[0]
        assert "Input\n" in p.description and "Output\n" in p.description


def test_reference_solutions_are_short_and_formulaic():
    problems = [p for s in ("train", "test_templates") for p in bundled_problems(s, per_family=6)]
    for p in problems:
        lines = p.solutions.solution[0].strip().splitlines()
        body = [x for x in lines if not x.startswith(("import ", "t = int(input())", "for _ in", "for line"))]
        assert 1 <= len(body) <= 6, p.name
        assert "input()" in lines[0] or lines[0].startswith("import "), p.name


def test_public_examples_are_shown_in_the_statement():
    for p in bundled_problems("test_instances", per_family=2):
        for inp, out in p.public_tests.pairs():
            assert f"Input\n{inp.rstrip()}\nOutput\n{out.rstrip()}" in p.description


def test_train_covers_every_sft_variant_and_phrasing_but_not_the_valid_template():
    seen = {
        (p.tags["family"], p.tags["variant"], p.tags["phrasing"])
        for p in bundled_problems("train", per_family=9)
    }
    for name in list_families("train"):
        family = get_family(name)
        mine = {s[1:] for s in seen if s[0] == name}
        grid = {(v.name, str(p)) for v in sft_variants(family) for p in range(len(family.phrasings))}
        chosen = valid_template(family)
        assert mine == grid - {(chosen.variant.name, str(chosen.phrasing))}, name


def test_rl_cell_splits_are_stripped_and_valid_rl_is_one_per_family():
    for split in ("rl", "valid_rl", "test_rl_cells"):
        for p in bundled_problems(split, per_family=3):
            assert not p.solutions.solution and not p.incorrect_solutions.solution, p.name
            assert p.tags["variant"] == rl_variant(get_family(p.tags["family"])).name, p.name
    valid_rl = [p.tags["family"] for p in bundled_problems("valid_rl", per_family=40)]
    assert sorted(valid_rl) == sorted(list_families("valid_rl"))
    for p in bundled_problems("rl_oracle", per_family=3):
        assert p.solutions.solution and p.incorrect_solutions.solution, p.name


def test_eof_variant_has_no_count_line_and_one_answer_per_case():
    for p in bundled_problems("test_templates", per_family=2):
        assert p.tags["variant"] == "eof" and "sys.stdin" in p.solutions.solution[0]
        for inp, out in p.public_tests.pairs() + p.private_tests.pairs():
            assert len(inp.splitlines()) == len(out.splitlines()), p.name


def test_thousands_of_problems_generate_quickly():
    start = time.perf_counter()
    n = sum(1 for _ in bundled_problems("train", per_family=40))
    assert n >= 2000
    assert time.perf_counter() - start < 4.0  # ~1 s measured; slack for a loaded machine
