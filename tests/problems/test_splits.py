"""The bundled splits cannot leak: proved on the default profile's problems config.

Every split is generated in full (``per_family`` instances of each family, no cap) through the
loader the problems stage uses, so the claims hold for any cap the profile applies (a capped
split is a prefix of the full one).
"""

from __future__ import annotations

import functools

import pytest

from tasks.core.config import load_profile
from tasks.core.problems import Problem, list_families, load_problem_source
from tasks.core.problems.bundled import get_family
from tasks.core.problems.families import SHAPES
from tasks.core.problems.splits import SPLITS, rl_variant, sft_variants, template_pool

TRAINING = ("train", "rl", "valid")
NEW = ("test_templates", "test_families")
SFT_SIDE = ("train", "valid", "test_instances")  # what supervised training and its selection read
RL_CELLS = ("rl", "valid_rl", "test_rl_cells")  # the RL cells' splits: no solutions


@functools.cache
def _split(name: str) -> tuple[Problem, ...]:
    cfg = load_profile("default").problems
    return tuple(load_problem_source(cfg.source, name, seed=cfg.seed, per_family=cfg.per_family))


def _program(p: Problem) -> str:
    """The reference program of ``p``, rebuilt from its tags where the loader stripped it
    (``fill`` puts ``str(k)`` into the body, so the tag's text is ``k`` enough)."""
    family = get_family(p.tags["family"])
    return family.reference(family.shape.variant(p.tags["variant"]), p.tags["k"] or None)


def _keys(split: str, key) -> set:
    return {key(p) for p in _split(split)}


def _seen(key) -> set:
    return set().union(*(_keys(s, key) for s in TRAINING))


def _template(p: Problem) -> tuple[str, str, str]:
    return p.tags["family"], p.tags["variant"], p.tags["phrasing"]


def _paragraph(p: Problem, i: int) -> str:
    return p.description.split("\n\n")[i]


def test_default_profile_uses_the_separated_splits():
    cfg = load_profile("default").problems
    assert (cfg.source, cfg.sft_split, cfg.rl_split, cfg.valid_split) == ("bundled", "train", "rl", "valid")
    assert cfg.eval_splits == ("test_instances", "test_rl_cells", "test_families")
    assert all(len(_split(s)) > 0 for s in (*TRAINING, *cfg.eval_splits))


@pytest.mark.parametrize("split", NEW)
@pytest.mark.parametrize(
    "what, key",
    [
        ("(family, phrasing)", lambda p: (p.tags["family"], p.tags["phrasing"])),
        ("(family, variant)", lambda p: (p.tags["family"], p.tags["variant"])),
        ("statement", lambda p: p.description),
        ("task sentence", lambda p: _paragraph(p, 0)),
        ("reference program", _program),
    ],
)
def test_new_splits_share_nothing_with_training_splits(split, what, key):
    shared = _keys(split, key) & _seen(key)
    assert not shared, (
        f"{split} shares {len(shared)} {what}(s) with train/rl/valid, e.g. {sorted(shared)[:2]}"
    )


def test_test_templates_input_formats_are_new_text():
    shared = _keys("test_templates", lambda p: _paragraph(p, 1)) & _seen(lambda p: _paragraph(p, 1))
    assert not shared, sorted(shared)[:2]


def test_held_out_families_never_appear_in_training_splits():
    held = _keys("test_families", lambda p: p.tags["family"])
    assert held == set(list_families("test_families")) and held
    assert held.isdisjoint(_seen(lambda p: p.tags["family"]))


def test_test_templates_covers_every_seen_family():
    assert _keys("test_templates", lambda p: p.tags["family"]) == set(list_families("train"))


def test_valid_is_disjoint_by_template_from_rl_and_train():
    valid = _keys("valid", _template)
    assert valid.isdisjoint(_keys("rl", _template))
    assert valid.isdisjoint(_keys("train", _template))


def test_test_instances_share_templates_and_are_labelled_in_distribution():
    assert _keys("test_instances", _template) <= _keys("train", _template)
    spec = SPLITS["test_instances"]
    assert spec.shares_templates_with_training and "in-distribution" in spec.label
    for name in ("valid", *NEW):
        assert not SPLITS[name].shares_templates_with_training, name
    assert [n for n, s in SPLITS.items() if s.role == "test"] == ["test_instances", "test_rl_cells", *NEW]


def test_every_family_reserves_a_phrasing_and_an_input_variant():
    for name in list_families():
        family = get_family(name)
        assert family.reserved_phrasings and family.reserved_variants, name
        assert set(family.reserved_phrasings).isdisjoint(family.phrasings), name
        training_reads = {v.read for v in family.variants}
        training_inputs = {v.input_text for v in family.variants}
        for v in family.reserved_variants:
            assert v.read not in training_reads and v.input_text not in training_inputs, (name, v.name)


def test_template_pools_partition_each_seen_family():
    for name in list_families("train"):
        family = get_family(name)
        pools = {s: set(template_pool(family, s)) for s in ("train", "valid", "rl", "test_templates")}
        assert all(pools.values()), name
        for a, b in (("train", "valid"), ("train", "rl"), ("valid", "rl")):
            assert pools[a].isdisjoint(pools[b]), (name, a, b)
        assert pools["test_templates"].isdisjoint(pools["train"] | pools["valid"] | pools["rl"]), name
        assert set(template_pool(family, "test_instances")) == pools["train"], name
        for split in ("valid_rl", "test_rl_cells", "rl_oracle"):
            assert set(template_pool(family, split)) == pools["rl"], (name, split)
        every = {(v, p) for v in family.variants for p in range(len(family.phrasings))}
        assert {(t.variant, t.phrasing) for t in pools["train"] | pools["valid"] | pools["rl"]} == every, name


# ----------------------------------------------------------------------------- RL cells


def _cell(p: Problem) -> tuple[str, str]:
    return p.tags["family"], p.tags["variant"]


def test_every_seen_family_has_exactly_one_rl_cell():
    for split in RL_CELLS:
        cells = _keys(split, _cell)
        assert {f for f, _ in cells} == set(list_families("train")), split
        assert len(cells) == len(list_families("train")), f"{split}: a family has more than one RL cell"
    assert _keys("rl", _cell) == {(n, rl_variant(get_family(n)).name) for n in list_families("train")}
    assert all(rl_variant(get_family(n)) is None for n in list_families("test_families"))


@pytest.mark.parametrize(
    "what, key",
    [
        ("(family, variant) cell", _cell),
        ("statement", lambda p: p.description),
        ("reference program", _program),
    ],
)
def test_no_rl_cell_reaches_sft_or_its_selection_or_test_instances(what, key):
    rl_side = set().union(*(_keys(s, key) for s in (*RL_CELLS, "rl_oracle")))
    for split in SFT_SIDE:
        shared = _keys(split, key) & rl_side
        assert not shared, f"{split} holds {len(shared)} RL-cell {what}(s), e.g. {sorted(shared)[:1]}"


def test_rl_cell_splits_carry_no_program():
    for split in RL_CELLS:
        assert not SPLITS[split].solutions, split
        for p in _split(split):
            assert p.solutions.solution == () and p.incorrect_solutions.solution == (), p.name
            assert len(p.hidden_tests) > 0 and len(p.public_tests) > 0, p.name


def test_program_rebuilt_from_tags_is_the_reference():
    for p in _split("rl_oracle")[:200] + _split("train")[:200]:
        assert _program(p) == p.solutions.solution[0], p.name


def test_rl_oracle_is_rl_with_solutions_and_no_default_role_reads_it():
    rl, oracle = _split("rl"), _split("rl_oracle")
    assert [p.name for p in oracle] == [p.name for p in rl]
    for a, b in zip(rl, oracle):
        assert (a.description, a.public_tests, a.hidden_tests) == (
            b.description,
            b.public_tests,
            b.hidden_tests,
        )
        assert b.solutions.solution == (_program(a),), a.name
    assert {p.tags["split"] for p in oracle} == {"rl_oracle"}
    oracles = [n for n, s in SPLITS.items() if s.role == "oracle"]
    assert oracles == ["rl_oracle"]
    for profile in ("default", "smoke", "scaling"):
        cfg = load_profile(profile).problems
        roles = (cfg.sft_split, cfg.rl_split, cfg.valid_split, *cfg.eval_splits)
        assert not set(roles) & set(oracles), profile
    # the only split holding an RL cell's program is the oracle one
    cells = _keys("rl", _cell)
    holders = {
        name
        for name, spec in SPLITS.items()
        if spec.families == "seen" and any(_cell(p) in cells and p.solutions.solution for p in _split(name))
    }
    assert holders == {"rl_oracle"}


def test_every_input_variant_is_still_read_in_sft_through_other_families():
    train = _keys("train", lambda p: (get_family(p.tags["family"]).shape.name, p.tags["variant"]))
    for shape in SHAPES.values():
        assert {(shape.name, v.name) for v in shape.variants} <= train, shape.name


def test_rl_cells_are_a_latin_square_within_each_shape():
    for shape in SHAPES.values():
        seen = [n for n in list_families("train") if get_family(n).shape.name == shape.name]
        counts = {v.name: 0 for v in shape.variants}
        for name in seen:
            family = get_family(name)
            counts[rl_variant(family).name] += 1
            assert rl_variant(family) not in sft_variants(family), name
            assert len(sft_variants(family)) == len(family.variants) - 1, name
        assert max(counts.values()) - min(counts.values()) <= 1, (shape.name, counts)


def test_valid_rl_holds_one_problem_per_family_and_test_rl_cells_new_instances():
    families = list_families("train")
    assert sorted(p.tags["family"] for p in _split("valid_rl")) == sorted(families)
    rl_tests = _keys("rl", lambda p: p.hidden_tests)
    assert _keys("test_rl_cells", lambda p: p.hidden_tests).isdisjoint(rl_tests)
    assert _keys("valid_rl", lambda p: p.hidden_tests).isdisjoint(rl_tests)
    assert SPLITS["test_rl_cells"].label and SPLITS["valid_rl"].role == "selection"
