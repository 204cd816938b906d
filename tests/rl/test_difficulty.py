"""Difficulty-aware RL problem selection: the band, its counts and its errors."""

from __future__ import annotations

import pytest

from tasks.core.config import ConfigError, load_profile
from tasks.core.rl.difficulty import band_select, pass_rates


def test_pass_rates_count_samples_per_problem():
    rates = pass_rates(["a", "a", "a", "a", "b", "b"], [True, False, False, True, False, False])
    assert rates == {"a": 0.5, "b": 0.0}


def test_band_keeps_the_closed_band_in_order_and_counts_the_rest():
    rates = {"p0": 0.0, "p1": 0.1, "p2": 0.5, "p3": 0.9, "p4": 1.0}
    chosen = band_select(["p4", "p3", "p2", "p1", "p0", "p5"], rates, (0.1, 0.9))
    assert chosen.kept == ("p3", "p2", "p1")
    assert (chosen.below, chosen.above, chosen.unsampled) == (1, 1, 1)
    assert chosen.counts()["difficulty_kept"] == 3


def test_a_bad_band_is_refused_naming_the_fix():
    with pytest.raises(ValueError, match="0 <= lo <= hi <= 1"):
        band_select(["a"], {"a": 0.5}, (0.9, 0.1))
    with pytest.raises(ConfigError, match="rl.difficulty_band"):
        load_profile("smoke", {"rl": {"difficulty_band": [0.5, 1.5]}})
