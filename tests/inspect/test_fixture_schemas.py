"""The synthetic run's Parquet files are exactly what the real stage code computes from it.

Imports the stage modules (which pull in torch via tasks.core.config): ~5-10 s.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from tasks.core.execution import program_summary, read_executions
from tasks.core.manifest import read_manifest


def _manifests(run_dir: Path):
    return tuple(
        read_manifest(run_dir / stage / key)
        for stage, key in (("sample", "sftsample001"), ("filter", "filt000001"), ("cluster", "clus000001"))
    )


def test_filter_outputs_match_stage_code(run_dir: Path):
    from tasks.core.stages.filter import per_sample, programs_of

    samples, filtered, _ = _manifests(run_dir)
    summary = program_summary(read_executions(filtered.dir / "executions"), programs_of(samples))
    assert summary.equals(pq.read_table(filtered.file("programs.parquet")))
    verdicts = per_sample(samples, summary, "passed_public")
    assert verdicts.equals(pq.read_table(filtered.file("sample_verdicts.parquet")))


def test_cluster_schema_matches_stage_code(run_dir: Path):
    from tasks.core.stages.cluster import CLUSTER_SCHEMA

    _, _, clusters = _manifests(run_dir)
    assert pq.read_schema(clusters.file("clusters.parquet")).remove_metadata().equals(CLUSTER_SCHEMA)


def test_evaluate_per_sample_matches_stage_code(run_dir: Path):
    from tasks.core.stages.evaluate import per_sample_table

    samples, filtered, clusters = _manifests(run_dir)
    evaluate_dir = run_dir / "evaluate" / "eval000001"
    table = per_sample_table(samples, filtered, clusters, evaluate_dir / "executions")
    assert table.equals(pq.read_table(evaluate_dir / "per_sample.parquet"))


def test_store_dir_name_matches_sample_stage():
    from tasks.core.inspection import STORE_DIR
    from tasks.core.stages.sample import STORE

    assert STORE_DIR == STORE
