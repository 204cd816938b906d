"""Read-only queries over a pipeline run's Parquet stores (``alphacode samples ...``).

Contract:
* Which stores belong to a model is :mod:`tasks.core.runs` (:func:`resolve_stores`; its names
  are re-exported here). Missing downstream stages leave their columns NULL; asking to filter on
  them is an error.
* Queries run in DuckDB directly over the stage files: the sample store
  (``samples/problem=*/part-*.parquet``), ``filter/sample_verdicts.parquet`` and
  ``evaluate/per_sample.parquet`` joined by ``(problem_id, sample_id)``, and
  ``cluster/clusters.parquet`` joined by ``(problem_id, code_hash)``. :func:`samples_sql`
  returns the exact SQL (paths and literals inlined), so it can be pasted into ``duckdb``.
* ``selected`` is per *program*: every sample whose code is a selected program has it; use
  ``distinct=True`` to keep only the first sample of each program (the representative).
Limits: read-only, no locking (a stage being written while it is read may be seen as
incomplete); a run root whose path contains glob characters (``*?[``) is not supported.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import duckdb

from tasks.core.runs import STORE_DIR as STORE_DIR
from tasks.core.runs import InspectError, ModelStores, sample_files
from tasks.core.runs import RunInfo as RunInfo
from tasks.core.runs import StageEntry as StageEntry
from tasks.core.runs import find_runs as find_runs
from tasks.core.runs import is_run_dir as is_run_dir
from tasks.core.runs import resolve_run as resolve_run
from tasks.core.runs import resolve_stores as resolve_stores
from tasks.core.runs import scan_run as scan_run
from tasks.core.samplestore import PROBLEM_GLOB, SHARD_GLOB
from tasks.core.stages import Stage
from tasks.core.stages.cluster import CLUSTERS_FILE
from tasks.core.stages.evaluate import PER_SAMPLE_FILE
from tasks.core.stages.filter import VERDICTS_FILE

# ------------------------------------------------------------------ SQL


@dataclass(frozen=True)
class SampleFilter:
    """Which samples: None means "either" for every verdict."""

    problem_id: str | None = None
    passed_public: bool | None = None
    passed_hidden: bool | None = None
    selected: bool | None = None
    distinct: bool = False


SAMPLE_COLUMNS = (
    "problem_id",
    "sample_id",
    "code_hash",
    "finish_reason",
    "num_tokens",
    "is_first_of_code_hash",
)
VERDICT_COLUMNS = (
    "passed_public",
    "first_failure_public",
    "passed_hidden",
    "first_failure_hidden",
    "cluster_id",
    "cluster_samples",
    "selected",
    "selection_rank",
)


def _lit(text: str | Path) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def _src(path: Path) -> str:
    return f"read_parquet({_lit(path)}, hive_partitioning = false)"


def _store_source(stores: ModelStores, problem_id: str | None) -> str:
    if problem_id is None:
        return _src(stores.store_dir / PROBLEM_GLOB / SHARD_GLOB)
    files = sample_files(stores.sample.dir, problem_id)
    return f"read_parquet([{', '.join(_lit(f) for f in files)}], hive_partitioning = false)"


def _check_filter(stores: ModelStores, flt: SampleFilter) -> None:
    for flag, stage, entry in (
        (flt.passed_public, Stage.FILTER, stores.filter),
        (flt.passed_hidden, Stage.EVALUATE, stores.evaluate),
        (flt.selected, Stage.CLUSTER, stores.cluster),
    ):
        if flag is not None and entry is None:
            raise InspectError(
                f"no complete {stage} stage for sample/{stores.sample.key} in {stores.run}, so its verdicts "
                f"are unknown; finish the run with `alphacode run --out {stores.run}`"
            )


def check_problem(stores: ModelStores, problem_id: str) -> None:
    if sample_files(stores.sample.dir, problem_id):
        return
    known = sorted(unquote(d.name.split("=", 1)[1]) for d in stores.store_dir.glob(PROBLEM_GLOB))
    close = get_close_matches(problem_id, known, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise InspectError(
        f"problem {problem_id!r} is not in sample store sample/{stores.sample.key} ({len(known)} problems){hint}; "
        f"list problems with `alphacode samples stats {stores.run} --json` or check the id"
    )


def samples_sql(
    stores: ModelStores,
    flt: SampleFilter = SampleFilter(),
    *,
    code: bool = False,
    all_columns: bool = False,
    limit: int = 0,
) -> str:
    """The DuckDB query answering ``flt``: one row per sample, verdict columns NULL if unknown.

    ``flt.problem_id`` must be in the store (:func:`check_problem`): the query names its files.
    """
    cols = ["s.*"] if all_columns else [f"s.{c}" for c in SAMPLE_COLUMNS] + (["s.code"] if code else [])
    joins, verdicts = [], {c: "NULL" for c in VERDICT_COLUMNS}
    if stores.filter:
        joins.append(
            f"LEFT JOIN {_src(stores.filter.dir / VERDICTS_FILE)} v"
            " ON v.problem_id = s.problem_id AND v.sample_id = s.sample_id"
        )
        verdicts.update(passed_public="v.passed_public", first_failure_public="v.first_failure_passed_public")
    if stores.evaluate:
        joins.append(
            f"LEFT JOIN {_src(stores.evaluate.dir / PER_SAMPLE_FILE)} e"
            " ON e.problem_id = s.problem_id AND e.sample_id = s.sample_id"
        )
        verdicts.update(passed_hidden="e.passed_hidden", first_failure_hidden="e.first_failure_passed_hidden")
    if stores.cluster:
        joins.append(
            f"LEFT JOIN {_src(stores.cluster.dir / CLUSTERS_FILE)} c"
            " ON c.problem_id = s.problem_id AND c.code_hash = s.code_hash"
        )
        verdicts.update(
            cluster_id="c.cluster_id",
            cluster_samples="c.cluster_samples",
            selected="coalesce(c.selected, false)",
            selection_rank="c.selection_rank",
        )
    cols += [f"{expr} AS {name}" for name, expr in verdicts.items()]
    where = []
    if flt.problem_id is not None:
        where.append(f"s.problem_id = {_lit(flt.problem_id)}")
    for flag, column in (
        (flt.passed_public, "v.passed_public"),
        (flt.passed_hidden, "e.passed_hidden"),
        (flt.selected, "coalesce(c.selected, false)"),
    ):
        if flag is not None:
            where.append(column if flag else f"NOT {column}")
    if flt.distinct:
        where.append("s.is_first_of_code_hash")
    sql = "SELECT " + ", ".join(cols) + f"\nFROM {_store_source(stores, flt.problem_id)} s"
    sql += "".join("\n" + j for j in joins)
    sql += ("\nWHERE " + " AND ".join(where)) if where else ""
    sql += "\nORDER BY s.problem_id, s.sample_id"
    return sql + (f"\nLIMIT {int(limit)}" if limit > 0 else "")


@contextmanager
def _connect(stores: ModelStores) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB connection; its read errors become :class:`InspectError`."""
    con = duckdb.connect(":memory:")
    try:
        con.execute(f"SET threads = {max(1, min(4, os.cpu_count() or 1))}")
        yield con
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InspectError(
            f"DuckDB could not read the stores of sample/{stores.sample.key} in {stores.run} ({first}); "
            "a stage may be being rewritten: wait for it, or re-run the pipeline to repair it"
        ) from None
    finally:
        con.close()


def _prepare(stores: ModelStores, flt: SampleFilter) -> None:
    _check_filter(stores, flt)
    if flt.problem_id is not None:
        check_problem(stores, flt.problem_id)
    elif not sample_files(stores.sample.dir):
        raise InspectError(f"sample store {stores.store_dir} holds no Parquet files; re-run the sample stage")


# ------------------------------------------------------------------ queries


@dataclass(frozen=True)
class SampleRow:
    problem_id: str
    sample_id: int
    code_hash: str
    finish_reason: str
    num_tokens: int
    is_first_of_code_hash: bool
    passed_public: bool | None
    first_failure_public: str | None
    passed_hidden: bool | None
    first_failure_hidden: str | None
    cluster_id: int | None
    cluster_samples: int | None
    selected: bool | None
    selection_rank: int | None
    code: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "code" or v is not None}


@dataclass(frozen=True)
class QueryResult:
    stores: ModelStores
    total: int
    rows: tuple[SampleRow, ...]
    sql: str


def query_samples(
    stores: ModelStores, flt: SampleFilter = SampleFilter(), *, limit: int = 0, code: bool = False
) -> QueryResult:
    """Samples matching ``flt`` (first ``limit`` if > 0, all if 0) and how many match in all."""
    _prepare(stores, flt)
    sql = samples_sql(stores, flt, code=code)
    with _connect(stores) as con:
        total = con.execute(f"SELECT count(*) FROM ({sql})").fetchone()[0]
        cur = con.execute(sql + (f"\nLIMIT {int(limit)}" if limit > 0 else ""))
        names = [d[0] for d in cur.description]
        rows = tuple(SampleRow(**dict(zip(names, r))) for r in cur.fetchall())
    return QueryResult(stores=stores, total=int(total), rows=rows, sql=sql)


def export_jsonl(stores: ModelStores, out: Path | str, flt: SampleFilter = SampleFilter()) -> int:
    """Write every matching sample (all store columns + verdicts) as JSONL, atomically; rows written."""
    _prepare(stores, flt)
    out = Path(out)
    if not out.parent.is_dir():
        raise InspectError(f"output directory {out.parent} does not exist; create it or pass another --out")
    sql = samples_sql(stores, flt, all_columns=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with _connect(stores) as con:
            con.execute(f"COPY ({sql}) TO {_lit(tmp)} (FORMAT JSON)")
            count = con.execute(f"SELECT count(*) FROM ({sql})").fetchone()[0]
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return int(count)


@dataclass(frozen=True)
class StoreStats:
    """Summary of one model's samples; rates are over samples, None when the stage is absent."""

    model: str
    sample_key: str
    problems: int
    samples: int
    distinct_programs: int
    dedup_ratio: float  # fraction of samples whose code repeats an earlier sample's
    finish_reasons: dict[str, int]
    mean_tokens: float
    public_pass_rate: float | None
    hidden_pass_rate: float | None
    problems_solved_hidden: int | None
    clusters_per_problem: float | None  # mean over all problems (0 for a problem with no survivor)
    selected_programs: int | None
    problem_ids: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["problem_ids"] = list(self.problem_ids)
        return out


def store_stats(stores: ModelStores) -> StoreStats:
    _prepare(stores, SampleFilter())
    joined = samples_sql(stores)
    with _connect(stores) as con:
        base = con.execute(
            f"""SELECT count(*), count(DISTINCT problem_id),
                       count(DISTINCT problem_id || chr(0) || code_hash), avg(num_tokens),
                       avg(passed_public::DOUBLE), avg(passed_hidden::DOUBLE),
                       count(DISTINCT CASE WHEN passed_hidden THEN problem_id END),
                       count(DISTINCT CASE WHEN cluster_id IS NOT NULL THEN problem_id || chr(0) || cluster_id::VARCHAR END),
                       count(DISTINCT CASE WHEN selected THEN problem_id || chr(0) || code_hash END)
                FROM ({joined})"""
        ).fetchone()
        reasons = dict(
            con.execute(f"SELECT finish_reason, count(*) FROM ({joined}) GROUP BY 1 ORDER BY 1").fetchall()
        )
        problems = tuple(
            r[0] for r in con.execute(f"SELECT DISTINCT problem_id FROM ({joined}) ORDER BY 1").fetchall()
        )
    n, n_problems, distinct, mean_tokens, public, hidden, solved, clusters, selected = base
    return StoreStats(
        model=stores.model,
        sample_key=stores.sample.key,
        problems=int(n_problems),
        samples=int(n),
        distinct_programs=int(distinct),
        dedup_ratio=1 - distinct / n if n else 0.0,
        finish_reasons={str(k): int(v) for k, v in reasons.items()},
        mean_tokens=float(mean_tokens or 0.0),
        public_pass_rate=None if stores.filter is None else float(public or 0.0),
        hidden_pass_rate=None if stores.evaluate is None else float(hidden or 0.0),
        problems_solved_hidden=None if stores.evaluate is None else int(solved),
        clusters_per_problem=None if stores.cluster is None else clusters / max(1, n_problems),
        selected_programs=None if stores.cluster is None else int(selected),
        problem_ids=problems,
    )
