"""Stage 5: behavioural clustering of the programs that survived filtering, and selection.

Contract:
1. :func:`generate_inputs` mutates the public test inputs (the only tests a contestant sees;
   hidden tests are never used here) of each problem with a surviving program into
   ``num_inputs`` new inputs with the configured :class:`~tasks.core.testgen.InputGenerator`,
   deterministically from the seed, and writes ``generated_inputs.json``.
2. Every surviving program runs on its problem's generated inputs (sharded units of
   :mod:`tasks.core.stages.filter`, test set ``generated``; no expected outputs).
3. :func:`finish` keeps the inputs on which the majority of survivors run cleanly,
   builds the behaviour matrix (stdout hash per input, verdict sentinels otherwise), clusters
   (exact, or near-duplicate with scikit-learn), and picks one program from each of the
   ``n_submissions`` largest clusters (the representative is the lowest sample id).
   ``clusters.parquet`` has one row per surviving distinct program with its cluster id, the
   cluster's size in *samples* (duplicates count, as in AlphaCode) and whether it was selected.
Limits: a problem with no survivors gets no clusters; with no valid generated input all
survivors share one cluster (no behaviour told them apart).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.core.clustering import exact_clusters, hash_results, near_duplicate_clusters, select_submissions
from tasks.core.execution import Program, read_executions
from tasks.core.io import atomic_write_text, write_parquet
from tasks.core.manifest import Manifest, StagePlan, list_files
from tasks.core.problems import Problem
from tasks.core.sandbox.types import TestResult, Verdict
from tasks.core.stages import Stage
from tasks.core.stages.base import Advance, StageInputs
from tasks.core.stages.filter import EXEC_DIR, PROGRAMS_FILE, programs_of
from tasks.core.stages.sample import eval_problems, store_of
from tasks.core.testgen import MutationInputGenerator, keep_valid_inputs

if TYPE_CHECKING:
    from tasks.core.config import ClusterConfig, JudgeConfig

INPUTS_FILE = "generated_inputs.json"
CLUSTERS_FILE = "clusters.parquet"
CLUSTER_SCHEMA = pa.schema(
    [
        ("problem_id", pa.string()),
        ("code_hash", pa.string()),
        ("cluster_id", pa.int64()),
        ("cluster_samples", pa.int64()),
        ("selected", pa.bool_()),
        ("selection_rank", pa.int32()),
    ]
)


def survivors(filter_manifest: Manifest, samples: Manifest) -> list[Program]:
    """Distinct programs that passed the public tests, in order of their first sample."""
    table = pq.read_table(filter_manifest.file(PROGRAMS_FILE))
    passed = {
        (p, h)
        for p, h, ok in zip(
            table["problem_id"].to_pylist(), table["code_hash"].to_pylist(), table["passed"].to_pylist()
        )
        if ok
    }
    return [p for p in programs_of(samples) if (p.problem_id, p.code_hash) in passed]


def sample_counts(samples: Manifest) -> dict[tuple[str, str], int]:
    """How many samples share each distinct program (AlphaCode counts cluster size in samples)."""
    table = store_of(samples).read(columns=["problem_id", "code_hash"])
    counts = table.group_by(["problem_id", "code_hash"]).aggregate([("code_hash", "count")])
    return {
        (p, h): int(c)
        for p, h, c in zip(
            counts["problem_id"].to_pylist(),
            counts["code_hash"].to_pylist(),
            counts["code_hash_count"].to_pylist(),
        )
    }


def generate_inputs(
    plan: StagePlan, cfg: ClusterConfig, problems: dict[str, Problem], survivors_: list[Program]
) -> dict[str, list[str]]:
    """Generated inputs of every problem with a surviving program (read back once written)."""
    path = plan.dir / INPUTS_FILE
    if path.is_file():
        return json.loads(path.read_text())
    generator = MutationInputGenerator()
    inputs = {
        pid: generator.generate(list(problems[pid].public_tests.input), cfg.num_inputs, cfg.seed)
        for pid in sorted({p.problem_id for p in survivors_})
    }
    atomic_write_text(path, json.dumps(inputs))
    return inputs


def _behaviour_rows(
    executions: pa.Table, programs: list[Program], width: int
) -> dict[tuple[str, str], list[TestResult]]:
    rows: dict[tuple[str, str], list[TestResult | None]] = {
        (p.problem_id, p.code_hash): [None] * width for p in programs
    }
    for pid, chash, idx, verdict, sha in zip(
        *(
            executions.column(c).to_pylist()
            for c in ("problem_id", "code_hash", "test_index", "verdict", "stdout_sha256")
        )
    ):
        slot = rows.get((pid, chash))
        if slot is not None and idx < width:
            slot[idx] = TestResult(verdict=Verdict(verdict), stdout_sha256=sha)
    missing = TestResult(verdict=Verdict.RUNTIME_ERROR)
    return {k: [r or missing for r in v] for k, v in rows.items()}


def _cluster_problem(matrix: np.ndarray, clean: np.ndarray, cfg: ClusterConfig) -> np.ndarray:
    keep = keep_valid_inputs([""] * matrix.shape[1], clean) if matrix.shape[1] else []
    behaviour = matrix[:, keep] if keep else np.zeros((matrix.shape[0], 1), dtype=np.uint64)
    if cfg.method == "exact":
        return exact_clusters(behaviour)
    return near_duplicate_clusters(behaviour, method=cfg.method)


def _select(ids: np.ndarray, weights: np.ndarray, n: int) -> tuple[dict[int, int], np.ndarray]:
    """Rank of each selected program row, and cluster sizes in samples (programs are in
    first-sample order, so the representative of a cluster is its earliest sample)."""
    owner = np.repeat(np.arange(ids.size), weights)
    chosen = select_submissions(np.repeat(ids, weights), n=n)
    counts = np.bincount(np.repeat(ids, weights), minlength=int(ids.max()) + 1)
    return {int(owner[row]): rank for rank, row in enumerate(chosen)}, counts


def finish(plan: StagePlan, cfg: ClusterConfig, samples: Manifest, filtered: Manifest) -> Manifest:
    """Cluster the survivors of ``filtered`` by their behaviour on the generated inputs, select."""
    survivors_, counts_by_program = survivors(filtered, samples), sample_counts(samples)
    executions = read_executions(plan.dir / EXEC_DIR)
    inputs = json.loads((plan.dir / INPUTS_FILE).read_text())
    out: dict[str, list] = {name: [] for name in CLUSTER_SCHEMA.names}
    by_problem: dict[str, list[Program]] = {}
    for prog in survivors_:
        by_problem.setdefault(prog.problem_id, []).append(prog)
    sizes: list[int] = []
    for pid, progs in sorted(by_problem.items()):
        width = len(inputs.get(pid, []))
        results = _behaviour_rows(executions, progs, width)
        rows = [results[(p.problem_id, p.code_hash)] for p in progs]
        matrix = np.array([hash_results(r) for r in rows], dtype=np.uint64).reshape(len(progs), width)
        clean = np.array([[x.verdict is Verdict.ACCEPTED for x in r] for r in rows], dtype=bool).reshape(
            len(progs), width
        )
        ids = _cluster_problem(matrix, clean, cfg)
        weights = np.array([counts_by_program[(p.problem_id, p.code_hash)] for p in progs])
        rank, counts = _select(ids, weights, cfg.n_submissions)
        sizes.extend(int(c) for c in counts if c)
        for row, prog in enumerate(progs):
            out["problem_id"].append(pid)
            out["code_hash"].append(prog.code_hash)
            out["cluster_id"].append(int(ids[row]))
            out["cluster_samples"].append(int(counts[ids[row]]))
            out["selected"].append(row in rank)
            out["selection_rank"].append(rank.get(row, -1))
    write_parquet(plan.dir / CLUSTERS_FILE, pa.table(out, schema=CLUSTER_SCHEMA))
    metrics = {
        "problems_clustered": len(by_problem),
        "clusters": len(sizes),
        "largest_cluster": max(sizes, default=0),
        "selected": int(sum(out["selected"])),
        "cluster_sizes": sorted(sizes, reverse=True)[:500],
    }
    return plan.publish(list_files(plan.dir), metrics=metrics)


@dataclass(frozen=True)
class ClusterInputs(StageInputs):
    """Stage 5: the public-test survivors of ``filtered`` run on generated inputs and grouped."""

    STAGE = Stage.CLUSTER
    cluster: ClusterConfig
    judge: JudgeConfig
    splits: tuple[str, ...]
    samples: Manifest
    filtered: Manifest
    problems: Manifest

    def by_id(self) -> dict[str, Problem]:
        return {p.name: p for p in eval_problems(self.problems, self.splits)}

    def run(self, plan: StagePlan, progress: Advance | None = None) -> Manifest:
        return finish(plan, self.cluster, self.samples, self.filtered)
