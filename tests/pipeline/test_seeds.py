"""Reseeding stages 2-6 and the spread of RL's gain across seeds."""

from __future__ import annotations

import pytest

from tasks.core.config import deep_merge, load_profile
from tasks.core.seeds import seed_overrides, spread_rows, write_spread


@pytest.mark.parametrize("algorithm", ["expert-iteration", "grpo", "ppo"])
def test_seed_overrides_reseed_stages_2_to_6_only(algorithm):
    base = load_profile("default", {"rl": {"algorithm": algorithm}})
    cfg = load_profile("default", deep_merge({"rl": {"algorithm": algorithm}}, seed_overrides(algorithm, 7)))
    rl_key = algorithm.replace("-", "_")
    assert cfg.finetune.train.seed == 7 and cfg.sample.sampling.seed == 7 and cfg.cluster.seed == 7
    assert getattr(cfg.rl, rl_key).seed == 7
    # stage 1, the problems and the bootstrap stay as the profile has them
    assert cfg.pretrain == base.pretrain and cfg.problems == base.problems and cfg.evaluate == base.evaluate


def _row(split, diff, lo, hi, base="sft"):
    return {"split": split, "metric": "pass@1", "difference": diff, "lo": lo, "hi": hi, "best baseline": base}


def test_a_gain_holds_only_if_every_seed_interval_is_above_zero(tmp_path):
    rows = spread_rows(
        {
            0: [_row("a", 0.10, 0.02, 0.18), _row("b", 0.10, 0.01, 0.2)],
            1: [_row("a", 0.06, 0.01, 0.11), _row("b", 0.02, -0.03, 0.07, "sft-continue")],
        }
    )
    by_split = {r["split"]: r for r in rows}
    assert by_split["a"]["holds"] is True and by_split["b"]["holds"] is False
    assert by_split["a"]["mean difference"] == pytest.approx(0.08)
    assert by_split["b"]["min difference"] == pytest.approx(0.02)
    assert "vs sft-continue" in by_split["b"]["seed 1"]
    one_seed = spread_rows({0: [_row("a", 0.1, 0.05, 0.2)]})
    assert one_seed[0]["holds"] is False  # one seed never suffices
    report = write_spread(tmp_path / "seeds", {0: [_row("a", 0.1, 0.05, 0.2)]}, {0: "r.md"})
    assert "seed 0" in report.read_text()
