"""The smoke pipeline end to end under a temporary Prefect API, then again: all Cached.

Also checks what the stores promise: exactly problems x n samples with unique ids, and the
evaluation's numbers recompute identically from the Parquet files alone.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tasks.core.config import load_profile

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke_run(smoke_pipeline):
    """The session's smoke run (``tests/conftest.py``), then the same pipeline again."""
    from flows.pipeline import alphacode_pipeline

    first = smoke_pipeline
    started = datetime.now(timezone.utc)
    second = alphacode_pipeline(profile="smoke", out_dir=first.root)
    return first, second, started


def task_runs_since(started, settle_s: float = 30.0) -> list:
    """Task runs created after ``started``, without the stand-ins Prefect records for subflows.

    Prefect 3 records a flow's task runs from the events its client emits, asynchronously: a
    run read right after its flow returned can still show its first state. Read again until every
    state is final (a run recorded without any state yet counts as not final), for at most
    ``settle_s`` (then whatever is there, so a stuck run fails)."""
    import time

    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + settle_s
    while True:
        runs: list = []
        with get_client(sync_client=True) as client:
            while page := client.read_task_runs(limit=200, offset=len(runs)):
                runs += page
        runs = [
            r
            for r in runs
            if r.created
            and r.created >= started
            and (r.state is None or r.state.state_details.child_flow_run_id is None)
        ]  # a run recorded without its first state yet has none: read again
        if all(r.state is not None and r.state.is_final() for r in runs) or time.monotonic() > deadline:
            return runs
        time.sleep(0.5)


def test_every_stage_published(smoke_run):
    first, _, _ = smoke_run
    models = {"sft", "sft-continue", "oracle-sft", "rl"}
    assert {"problems", "pretrain", "finetune", "rl", "sft-continue", "oracle-sft"} <= set(first.stages)
    assert {f"select ({m})" for m in models} == {k for k in first.stages if k.startswith("select")}
    assert {label.split(" T=")[0] for label in first.evaluations} == models
    for label in [first.sft.label, *first.evaluations]:
        assert {f"{s} ({label})" for s in ("sample", "filter", "cluster", "evaluate")} <= set(first.stages)
    for manifest in [*first.stages.values(), first.report]:
        assert (Path(manifest.path) / "manifest.json").is_file()
    for stage in (first.finetune, first.rl, first.sft_continue, first.oracle_sft):
        assert (stage.dir / "model" / "config.json").is_file()
    assert first.stages[f"sample ({first.rl_eval.label})"] == first.rl_eval.samples
    assert first.stages["rl"] == first.rl
    assert first.sft_continue.metrics["steps"] == first.rl.metrics["optimizer_steps"] > 0
    # the oracle trains on the rl problems' solutions, with the baseline's budget
    assert first.oracle_sft.metrics["steps"] == first.sft_continue.metrics["steps"]
    assert (
        first.oracle_sft.config["sft_split"] == "rl_oracle" and first.oracle_sft.key != first.sft_continue.key
    )
    cfg = load_profile("smoke")
    assert first.rl_difficulty.samples.metrics["samples"] == cfg.problems.max_rl_problems * 2
    assert (
        first.rl.metrics["difficulty_kept"] == first.rl.metrics["rl_problems"] == cfg.problems.max_rl_problems
    )
    report = (first.report.dir / "report.md").read_text()
    assert report.startswith("# AlphaCode pipeline report") and "best baseline" in report
    comparison = first.report.metrics["comparison"]
    assert {r["split"] for r in comparison} == {*load_profile("smoke").problems.eval_splits, "all"}
    for split in {r["split"] for r in comparison}:  # both plots of every split, linked and published
        for plot in (f"pass_at_k_{split}.png", f"n_at_k_{split}.png"):
            assert f"]({plot})" in report and plot in first.report.files
    assert all(r["best baseline"] in ("sft", "sft-continue") for r in comparison)  # never the oracle
    assert all("gap closed" in r and "oracle-sft" in r for r in comparison)


def test_second_run_is_all_cached(smoke_run):
    first, second, started = smoke_run
    assert {k: m.key for k, m in first.stages.items()} == {k: m.key for k, m in second.stages.items()}
    runs = task_runs_since(started)
    assert runs, "the second run created no task run"
    assert {r.state.name for r in runs} == {"Cached"}, [
        (r.name, r.state.name) for r in runs if r.state.name != "Cached"
    ]


def test_sample_store_has_exactly_problems_times_n(smoke_run):
    first, _, _ = smoke_run
    cfg = load_profile("smoke")
    samples = first.sft.samples
    table = pq.read_table(samples.dir / "samples")
    n_problems = samples.metrics["problems"]
    assert n_problems == cfg.problems.max_eval_problems * len(cfg.problems.eval_splits)
    assert table.num_rows == n_problems * cfg.sample.sampling.n
    keys = set(zip(table["problem_id"].to_pylist(), table["sample_id"].to_pylist()))
    assert len(keys) == table.num_rows


def test_pass_at_k_recomputes_from_parquet(smoke_run):
    first, _, _ = smoke_run
    evaluation = first.sft.evaluation
    per_sample = pq.read_table(evaluation.dir / "per_sample.parquet").to_pylist()
    metrics = pq.read_table(evaluation.dir / "metrics.parquet").to_pylist()
    counts: dict[str, list[int]] = {}
    for row in per_sample:
        nc = counts.setdefault(row["problem_id"], [0, 0])
        nc[0] += 1
        nc[1] += bool(row["passed_hidden"])
    for row in (r for r in metrics if r["metric"] == "pass@k" and r["split"] == "all"):
        k = row["k"]
        exact = [1.0 if n - c < k else 1 - math.comb(n - c, k) / math.comb(n, k) for n, c in counts.values()]
        assert row["value"] == pytest.approx(sum(exact) / len(exact), abs=1e-12)


def test_reevaluate_appends_history_and_reuses_cache(smoke_run):
    from flows.reevaluate import reevaluate
    from tasks.core.history import read_history

    first, _, _ = smoke_run
    one = reevaluate(run_dir=first.root, profile="smoke", split="test_instances", model_stage="rl")
    assert one["model_key"] == first.rl.key
    started = datetime.now(timezone.utc)
    two = reevaluate(run_dir=first.root, profile="smoke", split="test_instances", model_stage="rl")
    assert two["evaluation"] == one["evaluation"]
    runs = task_runs_since(started)
    assert runs and {r.state.name for r in runs} == {"Cached"}  # no sample redrawn, no program re-run
    history = read_history(Path(first.root) / "history" / "metrics.parquet")
    assert len(set(history.column("evaluated_at").to_pylist())) == 2
    assert set(history.column("split").to_pylist()) == {"test_instances", "all"}
    assert (Path(first.root) / "history" / "report.md").is_file()


def test_study_scores_a_candidate_against_its_own_sft_continue_twin(smoke_run, tmp_path, monkeypatch):
    """The study flow on the smoke run: the candidate (the smoke profile's own RL settings) and its
    twin are the pipeline's own RL and SFT-continue models, each judged on ``valid_rl``."""
    import json

    import tasks.core.study as study_mod
    from flows.study import alphacode_study

    first, _, _ = smoke_run
    (tmp_path / "one.toml").write_text('[candidates.same]\nrl.algorithm = "grpo"\n')
    monkeypatch.setattr(study_mod, "STUDIES_DIR", tmp_path)
    report = Path(alphacode_study(profile="smoke", study="one", out_dir=first.root))
    rows = {r["candidate"]: r for r in pq.read_table(report.parent / study_mod.STUDY_FILE).to_pylist()}
    assert set(rows) == {"stage-2", "same", "sft-continue[same]"}
    cand, twin = rows["same"], rows["sft-continue[same]"]
    assert cand["matched"] == "sft-continue[same]" and cand["best"] and not twin["best"]
    assert cand["vs matched"] == pytest.approx(cand["valid pass@1"] - twin["valid pass@1"], abs=1e-12)

    def role(manifest: dict, name: str) -> dict:
        return next(u for u in manifest["upstream"] if u["role"] == name)

    def model_of(label: str) -> dict:  # evaluation -> its sample stage -> the model it sampled
        source = next(line for line in report.read_text().splitlines() if line.startswith(f"- {label}: "))
        evaluation = json.loads((Path(source.split(": ", 1)[1]) / "manifest.json").read_text())
        sample = Path(first.root) / "sample" / role(evaluation, "samples")["key"] / "manifest.json"
        return role(json.loads(sample.read_text()), "model")

    assert model_of("same") == {"role": "model", "stage": "rl", "key": first.rl.key}
    assert model_of("sft-continue[same]")["key"] == first.sft_continue.key
    assert model_of("stage-2")["key"] == first.finetune.key


def test_changing_only_sft_continue_gives_the_report_a_new_key(smoke_run, monkeypatch):
    """Through the real flows: the SFT-continue stage's code changes (its fingerprint, as an edit
    of tasks/core/stages/sft_continue.py would), nothing else. Its model, its evaluations, its
    temperature choice and the report re-key; RL and stage 2's evaluations stay Cached. (Keyed
    by stage name, the report saw one of its six evaluations and came back Cached, stale.)"""
    import tasks.core.manifest as manifest_mod
    from flows.pipeline import alphacode_pipeline

    first, _, _ = smoke_run
    real = manifest_mod.fingerprint

    def edited(entry):
        found = real(entry)
        name = entry if isinstance(entry, str) else entry.__name__
        if name == "tasks.core.stages.sft_continue":
            return found.__class__(entry=found.entry, files=found.files, digest="edited-" + found.digest)
        return found

    monkeypatch.setattr(manifest_mod, "fingerprint", edited)
    again = alphacode_pipeline(profile="smoke", out_dir=first.root)
    assert again.sft_continue.key != first.sft_continue.key
    assert again.selections["sft-continue"].key != first.selections["sft-continue"].key
    assert again.report.key != first.report.key
    for same in ("rl", "finetune"):
        assert getattr(again, same).key == getattr(first, same).key
    assert again.selections["rl"].key == first.selections["rl"].key
    roles = {u.role: u.key for u in again.report.upstream}
    sft_continue_runs = [r for label, r in again.evaluations.items() if label.startswith("sft-continue")]
    assert {r.evaluation.key for r in sft_continue_runs} <= set(roles.values())
    assert roles["stages[sft-continue]"] == again.sft_continue.key
