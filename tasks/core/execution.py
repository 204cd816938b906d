"""Stage 4 and the hidden-test judge: run each distinct program once per problem, in shards.

Contract:
* A *program* is a distinct ``(problem_id, code_hash)`` of the sample store; duplicate samples
  inherit its verdicts (joined back by ``code_hash``), so identical code is never run twice.
* :func:`plan_exec_shards` splits the programs deterministically into shards; each shard is one
  Parquet file of the executions dataset, written atomically, one row per
  ``(problem_id, code_hash, test_set, test_index)`` with verdict and timings. A shard file that
  exists and reads back with its expected row count is done; anything else is rewritten.
* ``test_set`` is ``public`` (stage 4 filtering), ``hidden`` (private + generated: evaluation
  and rewards) or ``generated`` (stage 5 behaviour probing; no expected output, the stdout
  hash is the behaviour). Jobs and their per-problem limits come from the one job builder,
  :func:`tasks.core.jobs.build_job` (the RL rewards use it too), via :func:`shard_jobs`.
* :func:`program_summary` reduces executions to one row per program: passed all tests? the
  first failing verdict. Tests stop at the first failure for ``public``/``hidden`` (a verdict
  of the whole program is all that filtering and pass@k need), so later tests have no row.

Limits: a shard with any SANDBOX_ERROR left after the judge's own retries raises
:class:`SandboxFailure` instead of writing rows, so the harness's failure is never scored as
a program's (the Prefect task retries the shard). Languages: what the judge supports (Python, C++).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from tasks.core.io import atomic_write_bytes
from tasks.core.jobs import TEST_SETS, LimitPolicy, build_job
from tasks.core.problems.schema import Problem
from tasks.core.sandbox import Judge
from tasks.core.sandbox.types import Job, Verdict

EXEC_SCHEMA = pa.schema(
    [
        ("problem_id", pa.string()),
        ("code_hash", pa.string()),
        ("test_set", pa.string()),
        ("test_index", pa.int32()),
        ("verdict", pa.string()),
        ("wall_s", pa.float32()),
        ("cpu_s", pa.float32()),
        ("peak_memory_kb", pa.int64()),
        ("exit_code", pa.int32()),
        ("stdout_sha256", pa.string()),
        ("sandbox_retries", pa.int32()),
    ]
)


@dataclass(frozen=True)
class Program:
    problem_id: str
    code_hash: str
    code: str


@dataclass(frozen=True)
class ExecShard:
    index: int
    programs: tuple[Program, ...]

    @property
    def name(self) -> str:
        return f"shard-{self.index:05d}.parquet"


def distinct_programs(samples: pa.Table) -> list[Program]:
    """First occurrence of each ``(problem_id, code_hash)``, in (problem, sample) order."""
    table = samples.select(["problem_id", "sample_id", "code_hash", "code"]).sort_by(
        [("problem_id", "ascending"), ("sample_id", "ascending")]
    )
    seen: set[tuple[str, str]] = set()
    out = []
    for pid, chash, code in zip(
        table.column("problem_id").to_pylist(),
        table.column("code_hash").to_pylist(),
        table.column("code").to_pylist(),
    ):
        if (pid, chash) not in seen:
            seen.add((pid, chash))
            out.append(Program(pid, chash, code))
    return out


def plan_exec_shards(programs: Sequence[Program], per_shard: int) -> list[ExecShard]:
    if per_shard <= 0:
        raise ValueError(f"programs_per_shard must be > 0, got {per_shard}")
    return [
        ExecShard(i // per_shard, tuple(programs[i : i + per_shard]))
        for i in range(0, len(programs), per_shard)
    ]


def shard_fingerprint(shard: ExecShard) -> str:
    digest = hashlib.sha256()
    for p in shard.programs:
        digest.update(f"{p.problem_id}\0{p.code_hash}\n".encode())
    return digest.hexdigest()[:16]


def shard_jobs(
    shard: ExecShard,
    problems: Mapping[str, Problem],
    test_set: str,
    policy: LimitPolicy,
    generated_inputs: Mapping[str, Sequence[str]] | None = None,
) -> list[tuple[Program, Job]]:
    """The judge jobs of ``shard`` (built by :func:`tasks.core.jobs.build_job`), with their
    programs; a program whose problem has no tests of ``test_set`` has no job."""
    if test_set not in TEST_SETS:
        raise ValueError(f"test_set must be one of {TEST_SETS}, got {test_set!r}")
    pairs = []
    for program in shard.programs:
        gen = (generated_inputs or {}).get(program.problem_id, ())
        job = build_job(problems[program.problem_id], program.code, test_set, policy, generated_inputs=gen)
        if job is not None:
            pairs.append((program, job))
    return pairs


def execute_shard(
    judge: Judge,
    shard: ExecShard,
    problems: Mapping[str, Problem],
    test_set: str,
    policy: LimitPolicy,
    generated_inputs: Mapping[str, Sequence[str]] | None = None,
) -> pa.Table:
    """Run every program of ``shard`` on its problem's ``test_set``; one row per test run.
    Each job runs under its problem's limits (``policy``, see :mod:`tasks.core.jobs`)."""
    if not isinstance(policy, LimitPolicy):
        raise ValueError(f"execute_shard needs a LimitPolicy, got {type(policy).__name__}")
    pairs = shard_jobs(shard, problems, test_set, policy, generated_inputs)
    owners = [program for program, _ in pairs]
    results = judge.run_many([job for _, job in pairs]) if pairs else []
    rows: dict[str, list] = {name: [] for name in EXEC_SCHEMA.names}
    for program, job_result in zip(owners, results):
        for index, res in enumerate(job_result.results):
            _append_row(rows, program, test_set, index, res, job_result.sandbox_retries)
    table = pa.table(rows, schema=EXEC_SCHEMA)
    failures = sum(v == Verdict.SANDBOX_ERROR.value for v in rows["verdict"])
    if failures:
        raise SandboxFailure(
            f"{failures} test runs of shard {shard.index} ended in SANDBOX_ERROR after the judge's "
            "own retries: the harness failed, not the programs; the shard is not written so a "
            "retry reruns it"
        )
    return table


class SandboxFailure(RuntimeError):
    """The harness (not a program) failed; never scored, the shard is retried as a whole."""


def _append_row(
    rows: dict[str, list], program: Program, test_set: str, index: int, res, retries: int
) -> None:
    rows["problem_id"].append(program.problem_id)
    rows["code_hash"].append(program.code_hash)
    rows["test_set"].append(test_set)
    rows["test_index"].append(index)
    rows["verdict"].append(res.verdict.value)
    rows["wall_s"].append(res.wall_s)
    rows["cpu_s"].append(res.cpu_s)
    rows["peak_memory_kb"].append(res.peak_memory_kb)
    rows["exit_code"].append(res.exit_code)
    rows["stdout_sha256"].append(res.stdout_sha256)
    rows["sandbox_retries"].append(retries)


def write_shard(directory: Path, shard: ExecShard, table: pa.Table) -> Path:
    path = Path(directory) / shard.name
    sink = pa.BufferOutputStream()
    pq.write_table(
        table.replace_schema_metadata({"fingerprint": shard_fingerprint(shard), "rows": str(table.num_rows)}),
        sink,
        compression="zstd",
    )
    atomic_write_bytes(path, sink.getvalue().to_pybytes())
    return path


def shard_done(directory: Path, shard: ExecShard) -> bool:
    """True iff the shard's file is readable, is for these programs, and has all its rows."""
    path = Path(directory) / shard.name
    try:
        meta = pq.read_metadata(path)
    except (OSError, pa.ArrowInvalid):
        return False
    kv = {k.decode(): v.decode() for k, v in (meta.metadata or {}).items()}
    return kv.get("fingerprint") == shard_fingerprint(shard) and kv.get("rows") == str(meta.num_rows)


def read_executions(directory: Path) -> pa.Table:
    files = sorted(Path(directory).glob("shard-*.parquet"))
    if not files:
        return EXEC_SCHEMA.empty_table()
    return ds.dataset([str(f) for f in files], schema=EXEC_SCHEMA, format="parquet").to_table()


PROGRAM_SCHEMA = pa.schema(
    [
        ("problem_id", pa.string()),
        ("code_hash", pa.string()),
        ("passed", pa.bool_()),
        ("first_failure", pa.string()),
        ("tests_run", pa.int32()),
        ("sandbox_errors", pa.int32()),
    ]
)


def program_summary(executions: pa.Table, programs: Iterable[Program]) -> pa.Table:
    """One row per program: ``passed`` iff it ran and every executed test was ACCEPTED.

    A program with no test rows (its problem has no tests of that set) is ``passed=False``
    with ``first_failure='NO_TESTS'``, so it can never count as solved by accident.
    """
    by_program: dict[tuple[str, str], list[str]] = {}
    for pid, chash, verdict in zip(
        executions.column("problem_id").to_pylist(),
        executions.column("code_hash").to_pylist(),
        executions.column("verdict").to_pylist(),
    ):
        by_program.setdefault((pid, chash), []).append(verdict)
    rows: dict[str, list] = {name: [] for name in PROGRAM_SCHEMA.names}
    for prog in programs:
        verdicts = by_program.get((prog.problem_id, prog.code_hash), [])
        failing = [v for v in verdicts if v != Verdict.ACCEPTED.value]
        rows["problem_id"].append(prog.problem_id)
        rows["code_hash"].append(prog.code_hash)
        rows["passed"].append(bool(verdicts) and not failing)
        rows["first_failure"].append(failing[0] if failing else ("NO_TESTS" if not verdicts else ""))
        rows["tests_run"].append(len(verdicts))
        rows["sandbox_errors"].append(sum(v == Verdict.SANDBOX_ERROR.value for v in verdicts))
    return pa.table(rows, schema=PROGRAM_SCHEMA)


def verdict_histogram(executions: pa.Table) -> dict[str, int]:
    if executions.num_rows == 0:
        return {}
    counts = pc.value_counts(executions.column("verdict")).to_pylist()
    return {c["values"]: int(c["counts"]) for c in counts}
