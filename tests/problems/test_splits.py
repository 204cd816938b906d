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
from tasks.core.problems.splits import SPLITS, template_pool

TRAINING = ("train", "rl", "valid")
NEW = ("test_templates", "test_families")


@functools.cache
def _split(name: str) -> tuple[Problem, ...]:
    cfg = load_profile("default").problems
    return tuple(load_problem_source(cfg.source, name, seed=cfg.seed, per_family=cfg.per_family))


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
    assert cfg.eval_splits == ("test_instances", "test_templates", "test_families")
    assert all(len(_split(s)) > 0 for s in (*TRAINING, *cfg.eval_splits))


@pytest.mark.parametrize("split", NEW)
@pytest.mark.parametrize(
    "what, key",
    [
        ("(family, phrasing)", lambda p: (p.tags["family"], p.tags["phrasing"])),
        ("(family, variant)", lambda p: (p.tags["family"], p.tags["variant"])),
        ("statement", lambda p: p.description),
        ("task sentence", lambda p: _paragraph(p, 0)),
        ("reference program", lambda p: p.solutions.solution[0]),
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
    assert [n for n, s in SPLITS.items() if s.role == "test"] == ["test_instances", *NEW]


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
        pools = {s: set(template_pool(family, s)) for s in ("train", "valid", "test_templates")}
        assert pools["train"] and pools["valid"] and pools["test_templates"], name
        assert pools["train"].isdisjoint(pools["valid"]), name
        assert pools["test_templates"].isdisjoint(pools["train"] | pools["valid"]), name
        assert (
            set(template_pool(family, "rl")) == set(template_pool(family, "test_instances")) == pools["train"]
        )
