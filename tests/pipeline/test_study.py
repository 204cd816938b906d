"""Studies: candidates from a TOML file, scored on a selection split with family-clustered intervals."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tasks.core.config import load_profile
from tasks.core.study import load_study, study_rows


def test_the_shipped_rl_study_loads_and_every_candidate_is_a_valid_config():
    candidates = load_study("rl")
    assert len(candidates) >= 2
    base = load_profile("default")
    for extra in candidates.values():
        cfg = load_profile("default", extra)
        assert (cfg.problems, cfg.pretrain, cfg.finetune) == (base.problems, base.pretrain, base.finetune)


def test_an_unknown_study_names_the_known_ones():
    with pytest.raises(ValueError, match="choose one of .*rl"):
        load_study("nosuch")


def test_rows_carry_intervals_paired_differences_and_the_winner():
    family_of = {f"p{i}": f"f{i // 2}" for i in range(8)}
    values = {
        "stage-2": {f"p{i}": 0.2 for i in range(8)},
        "a": {f"p{i}": 0.3 for i in range(8)},
        "b": {f"p{i}": (0.45 if i < 4 else 0.1) for i in range(8)},
    }
    rows = study_rows(values, "stage-2", family_of, n_boot=200)
    by = {r["candidate"]: r for r in rows}
    assert rows[0]["candidate"] == "stage-2" and "vs stage-2" not in rows[0]
    assert by["a"]["vs stage-2"] == pytest.approx(0.1) and by["a"]["diff lo"] == pytest.approx(0.1)
    assert by["a"]["best"] and not by["b"]["best"] and not by["stage-2"]["best"]
    assert by["b"]["families"] == 4 and by["b"]["diff lo"] < 0 < by["b"]["diff hi"]


def test_a_candidate_is_compared_with_its_compute_matched_baseline_which_never_wins():
    family_of = {f"p{i}": f"f{i // 2}" for i in range(8)}
    values = {
        "stage-2": {f"p{i}": 0.2 for i in range(8)},
        "a": {f"p{i}": 0.3 for i in range(8)},  # beats stage 2 ...
        "sft-continue[a]": {f"p{i}": 0.5 for i in range(8)},  # ... but not more SFT
        "b": {f"p{i}": 0.25 for i in range(8)},
        "sft-continue[b]": {f"p{i}": 0.15 for i in range(8)},
    }
    matched = {"a": "sft-continue[a]", "b": "sft-continue[b]"}
    rows = study_rows(values, "stage-2", family_of, n_boot=200, matched=matched)
    by = {r["candidate"]: r for r in rows}
    assert by["a"]["vs stage-2"] == pytest.approx(0.1) and by["a"]["vs matched"] == pytest.approx(-0.2)
    assert by["a"]["matched"] == "sft-continue[a]" and not by["a"]["beats matched"]
    assert by["b"]["vs matched"] == pytest.approx(0.1) and by["b"]["beats matched"]
    # b wins on its gain over more SFT though a has the higher pass@1; baselines (0.5) never win
    assert by["b"]["best"] and not by["a"]["best"] and not by["sft-continue[a]"]["best"]
    assert "vs matched" not in by["sft-continue[a]"]


def test_an_empty_difficulty_band_means_no_band_so_a_candidate_can_undo_the_profiles():
    base = load_profile("default")
    assert base.rl.difficulty_band is not None  # the default trains on a band today
    assert load_profile("default", {"rl": {"difficulty_band": []}}).rl.difficulty_band is None
    with pytest.raises(ValueError, match="difficulty_band"):
        load_profile("default", {"rl": {"difficulty_band": [0.9, 0.1]}})


def test_the_study_table_keeps_every_column_though_the_baseline_row_has_fewer(tmp_path):
    import pyarrow.parquet as pq

    from tasks.core.study import STUDY_FILE, write_study

    values = {"stage-2": {"p0": 0.1, "p1": 0.2}, "a": {"p0": 0.3, "p1": 0.4}, "t": {"p0": 0.0, "p1": 0.1}}
    rows = study_rows(values, "stage-2", {"p0": "f0", "p1": "f1"}, n_boot=200, matched={"a": "t"})
    write_study(tmp_path, "x", rows, {})
    table = pq.read_table(tmp_path / STUDY_FILE).to_pylist()
    assert {"vs stage-2", "vs matched", "beats matched", "matched"} <= set(table[0])
    by = {r["candidate"]: r for r in table}
    assert by["stage-2"]["vs stage-2"] is None and by["a"]["vs matched"] == pytest.approx(0.3)


@pytest.mark.slow
def test_a_study_scores_every_model_on_valid_rl_at_its_own_best_temperature(smoke_pipeline, tmp_path):
    """The study flow on the smoke run (stages 1-2 Cached): one candidate, two temperatures."""
    from flows.study import alphacode_study

    study = tmp_path / "one.toml"
    study.write_text('[candidates.grpo-1step]\nrl.algorithm = "grpo"\nrl.grpo.steps = 1\n')
    report = alphacode_study(
        profile="smoke",
        study=str(study),
        out_dir=smoke_pipeline.root,
        overrides={"select": {"temperatures": [0.0, 0.8]}},
    )
    assert Path(report) == Path(smoke_pipeline.root) / "study" / "one" / "report.md"  # named by the file
    text = Path(report).read_text()
    assert "scored on `valid_rl` only" in text
    rows = pq.read_table(Path(report).parent / "study.parquet").to_pylist()
    assert [r["candidate"] for r in rows] == ["stage-2", "grpo-1step", "sft-continue[grpo-1step]"]
    # every model was scored at a temperature of the grid, chosen on valid_rl by a select stage
    assert all(r["temperature"] in (0.0, 0.8) for r in rows)
    chosen = [
        json.loads(p.read_text()) for p in (Path(smoke_pipeline.root) / "select").glob("*/manifest.json")
    ]
    assert {m["config"]["split"] for m in chosen} >= {"valid", "valid_rl"}


@pytest.mark.slow
def test_reach_counts_rl_problems_solved_at_least_once(smoke_pipeline):
    """``alphacode reach`` on the smoke run: k = 2 at T = 1.0 are the very samples of the RL
    stage's difficulty estimate (smoke: 2 samples at GRPO's T = 1.0), so both count alike."""
    from flows.study import alphacode_reach
    from tasks.core.stages.evaluate import PER_SAMPLE_FILE

    got = alphacode_reach(profile="smoke", k=2, temperature=1.0, out_dir=smoke_pipeline.root)
    assert (got.split, got.k, got.problems) == ("rl", 2, load_profile("smoke").problems.max_rl_problems)
    difficulty = smoke_pipeline.rl_difficulty
    assert Path(got.evaluation) != difficulty.evaluation.path  # its own evaluation (ks [1, 2]) ...
    table = pq.read_table(difficulty.evaluation.file(PER_SAMPLE_FILE)).to_pylist()
    solved = {r["problem_id"] for r in table if r["passed_hidden"]}
    assert got.solved == len(solved) and 0 <= got.share <= 1  # ... of the same samples
