"""Profile inheritance: ``extends = "other"`` deep-merges a profile over another.

Toy profiles are written to a temporary profiles directory (``PROFILES_DIR`` patched); the real
``scaling`` profile is checked against the real ``default`` one.
"""

from __future__ import annotations

import pytest

from tasks.core import config
from tasks.core.config import ConfigError, load_profile, profile_extends

BASE = """
[problems]
eval_splits = ["test_instances", "test_templates", "test_families"]
max_eval_problems = 61

[pretrain.train]
max_steps = 150
lr = 1e-3

[finetune.train]
max_steps = 200

[sample.sampling]
n = 20
temperature = 0.8
batch_size = 20
"""


@pytest.fixture
def profiles(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "PROFILES_DIR", tmp_path)

    def write(name: str, text: str) -> None:
        (tmp_path / f"{name}.toml").write_text(text)

    write("base", BASE)
    return write


def test_a_child_deep_merges_over_its_base_tables_by_key_lists_replaced(profiles):
    profiles(
        "child",
        'extends = "base"\n[problems]\neval_splits = ["test_templates"]\n[sample.sampling]\nn = 1000\n',
    )
    base, child = load_profile("base"), load_profile("child")
    assert child.profile == "child"
    assert child.pretrain == base.pretrain and child.finetune == base.finetune
    assert child.sample.sampling.n == 1000
    assert child.sample.sampling.temperature == 0.8 and child.sample.sampling.batch_size == 20
    assert child.problems.eval_splits == ("test_templates",)  # a list replaces, never appends
    assert child.problems.max_eval_problems == 61
    assert profile_extends("child") == "base" and profile_extends("base") is None


def test_chains_merge_in_order_and_overrides_win_over_all(profiles):
    profiles("mid", 'extends = "base"\n[pretrain.train]\nmax_steps = 100\n')
    profiles("leaf", 'extends = "mid"\n[pretrain.train]\nlr = 5e-4\n')
    leaf = load_profile("leaf", ["pretrain.train.lr=1e-4", "sample.sampling.n=3"])
    assert leaf.pretrain.train.max_steps == 100  # from mid
    assert leaf.pretrain.train.lr == 1e-4  # the override over leaf's 5e-4
    assert leaf.finetune.train.max_steps == 200  # from base
    assert leaf.sample.sampling.n == 3


def test_unknown_base_cycle_and_non_string_extends_are_config_errors(profiles):
    profiles("orphan", 'extends = "nosuch"\n')
    with pytest.raises(ConfigError, match=r"unknown profile 'nosuch' \(extended by 'orphan'\)"):
        load_profile("orphan")
    profiles("a", 'extends = "b"\n')
    profiles("b", 'extends = "a"\n')
    with pytest.raises(ConfigError, match=r"cycle \(a -> b -> a\)"):
        load_profile("a")
    profiles("self", 'extends = "self"\n')
    with pytest.raises(ConfigError, match="cycle"):
        load_profile("self")
    profiles("number", "extends = 3\n")
    with pytest.raises(ConfigError, match="must name a profile"):
        load_profile("number")


def test_an_unknown_field_in_a_child_still_fails_validation(profiles):
    profiles("typo", 'extends = "base"\n[sample.sampling]\ntempreature = 1.0\n')
    with pytest.raises(ConfigError, match="tempreature"):
        load_profile("typo")


def test_the_scaling_profile_keeps_the_default_stage_1_2_settings():
    default, scaling = load_profile("default"), load_profile("scaling")
    assert profile_extends("scaling") == "default"
    assert scaling.pretrain == default.pretrain and scaling.finetune == default.finetune
    assert scaling.problems.model_dump(exclude={"eval_splits", "max_eval_problems"}) == (
        default.problems.model_dump(exclude={"eval_splits", "max_eval_problems"})
    )
    assert scaling.problems.eval_splits == ("test_templates", "test_instances")
    assert scaling.problems.max_eval_problems == 15 and scaling.sample.sampling.n == 1000
