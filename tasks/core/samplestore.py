"""The Parquet sample store: every sampled program, one row per sample, Hive-partitioned by problem.

Layout (zstd-compressed Parquet, readable as-is by pyarrow, pandas and DuckDB)::

    <root>/problem=<percent-encoded id>/part-<shard_index:05d>.parquet

A *shard* is a contiguous range of sample ids of ONE problem (see :func:`plan_shards`). One shard is
one cached unit and writes exactly one file, atomically (temp file in the same directory, then
``os.replace``); the temp name starts with ``.`` and does not end in ``.parquet`` so no reader ever
sees it. Reading one problem touches one directory. The directory key is ``problem`` (the problem id,
``urllib.parse.quote(id, safe="")``), not ``problem_id``, so a Hive-aware reader (pandas, DuckDB with
``hive_partitioning=true``) adds a ``problem`` column instead of clashing with the exact
``problem_id`` column stored in every file.

Schema (:data:`SCHEMA`; every column non-null, files sorted by ``sample_id``):

======================== ======================= ==============================================
column                   type                    meaning
======================== ======================= ==============================================
problem_id               string                  the problem (``Problem.name``)
sample_id                int64                   0..n-1 within the problem
prompt_hash              string                  sha256 hex of the prompt text
completion               string                  decoded model output, stop sequence cut off
code                     string                  the program extracted from ``completion``
code_hash                string                  sha256 hex of ``code``
num_tokens               int32                   generated tokens (incl. EOS / stop tokens)
logprob_sum              float64                 sum of the model's log-probs of those tokens
finish_reason            string                  ``stop`` | ``length`` | ``eos``
temperature              float32                 sampling temperature
top_p                    float32                 nucleus mass
seed                     int64                   the shard's seed (see :func:`derive_seed`)
model_id                 string                  the model's manifest hash
backend                  string                  ``hf`` | ``vllm``
created_at               timestamp[us, UTC]      when the shard was sampled
is_first_of_code_hash    bool                    first (lowest sample_id) row of its code_hash
                                                 within its problem; rows are never dropped
======================== ======================= ==============================================

Dedup exactness: a shard computes ``is_first_of_code_hash`` within itself, which is exact when a
problem fits in one shard (``n <= samples_per_shard``). When a problem spans several shards,
:meth:`SampleStore.finalize` recomputes the flag over the whole problem (reading only three columns
of that problem's directory) and atomically rewrites just the files whose flags change; it is
idempotent. :meth:`SampleStore.validate` checks the flags and tells you to run ``finalize`` if
they are stale (e.g. after a shard was re-sampled).

DuckDB one-liners (``root`` = the store root)::

    duckdb -c "select problem_id, count(*) n, count(distinct code_hash) uniq from read_parquet('root/**/*.parquet', hive_partitioning=true) group by 1 order by 1"
    duckdb -c "select finish_reason, count(*), avg(num_tokens) from read_parquet('root/**/*.parquet') group by 1"
    duckdb -c "select sample_id, code from read_parquet('root/problem=PROBLEM/*.parquet') where is_first_of_code_hash order by sample_id"

Limits: no locking — two writers of the same shard race harmlessly (last ``os.replace`` wins) but
``finalize`` must not run concurrently with writers of the same problem. ``has_shard`` reads the
whole shard to prove it is intact, so keep shards modest (thousands of rows, not millions).
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from tasks.core.io import write_parquet

SCHEMA = pa.schema(
    [
        ("problem_id", pa.string()),
        ("sample_id", pa.int64()),
        ("prompt_hash", pa.string()),
        ("completion", pa.string()),
        ("code", pa.string()),
        ("code_hash", pa.string()),
        ("num_tokens", pa.int32()),
        ("logprob_sum", pa.float64()),
        ("finish_reason", pa.string()),
        ("temperature", pa.float32()),
        ("top_p", pa.float32()),
        ("seed", pa.int64()),
        ("model_id", pa.string()),
        ("backend", pa.string()),
        ("created_at", pa.timestamp("us", tz="UTC")),
        ("is_first_of_code_hash", pa.bool_()),
    ]
)
FINISH_REASONS = ("stop", "length", "eos")
PROBLEM_PREFIX, SHARD_PREFIX = "problem=", "part-"  # <root>/problem=<id>/part-<index>.parquet
PROBLEM_GLOB, SHARD_GLOB = f"{PROBLEM_PREFIX}*", f"{SHARD_PREFIX}*.parquet"
COMPRESSION = "zstd"


class StoreError(ValueError):
    """The store or a shard is not what it must be; the message says what and how to fix it."""


@dataclass(frozen=True)
class ShardPlan:
    """Samples ``sample_offset .. sample_offset+num_samples-1`` of one problem, with its own seed."""

    problem_id: str
    shard_index: int
    sample_offset: int
    num_samples: int
    seed: int

    @property
    def sample_ids(self) -> range:
        return range(self.sample_offset, self.sample_offset + self.num_samples)


@dataclass(frozen=True)
class StoreSummary:
    problems: int
    rows: int
    unique_programs: int


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def derive_seed(base_seed: int, problem_id: str, shard_index: int) -> int:
    """A 63-bit seed from (base seed, shard key): independent of shard order and of other problems."""
    digest = hashlib.sha256(f"{base_seed}\0{problem_id}\0{shard_index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def plan_shards(
    problem_ids: Sequence[str], n: int, samples_per_shard: int, base_seed: int = 0
) -> list[ShardPlan]:
    """Deterministic shards covering exactly ``problem_ids x range(n)``; a shard never spans problems."""
    if n <= 0:
        raise ValueError(f"n (samples per problem) must be > 0, got {n}; ask for at least one sample")
    if samples_per_shard <= 0:
        raise ValueError(f"samples_per_shard must be > 0, got {samples_per_shard}")
    if not problem_ids:
        raise ValueError("plan_shards got no problem ids; pass at least one problem")
    dupes = sorted(p for p, c in Counter(problem_ids).items() if c > 1)
    if dupes:
        raise ValueError(f"duplicate problem ids {dupes[:5]}; each problem must appear once")
    plans = []
    for pid in problem_ids:
        for k, offset in enumerate(range(0, n, samples_per_shard)):
            size = min(samples_per_shard, n - offset)
            plans.append(ShardPlan(pid, k, offset, size, derive_seed(base_seed, pid, k)))
    return plans


def first_of_code_hash(problem_ids: pa.Array, sample_ids: pa.Array, code_hashes: pa.Array) -> pa.Array:
    """Flag, per row, whether it is the lowest sample_id of its (problem_id, code_hash) group."""
    table = pa.table({"p": problem_ids, "s": sample_ids, "h": code_hashes})
    firsts = table.group_by(["p", "h"]).aggregate([("s", "min")])
    keys = {(p, s) for p, s in zip(firsts["p"].to_pylist(), firsts["s_min"].to_pylist())}
    return pa.array(
        [(p, s) in keys for p, s in zip(problem_ids.to_pylist(), sample_ids.to_pylist())], pa.bool_()
    )


def with_first_flags(table: pa.Table) -> pa.Table:
    """``table`` with ``is_first_of_code_hash`` (re)computed over the rows it holds."""
    flags = first_of_code_hash(
        table["problem_id"].combine_chunks(),
        table["sample_id"].combine_chunks(),
        table["code_hash"].combine_chunks(),
    )
    index = table.schema.get_field_index("is_first_of_code_hash")
    if index < 0:
        return table.append_column("is_first_of_code_hash", flags)
    return table.set_column(index, "is_first_of_code_hash", flags)


def _check_shard_table(table: pa.Table, plan: ShardPlan) -> pa.Table:
    if table.schema.names != SCHEMA.names:
        raise StoreError(
            f"shard {plan.problem_id}#{plan.shard_index} has columns {table.schema.names}; "
            f"the store needs exactly {SCHEMA.names} (build rows with sampling.sample_shard)"
        )
    try:
        table = table.cast(SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise StoreError(f"shard {plan.problem_id}#{plan.shard_index} has wrong column types: {exc}") from exc
    nulls = [c for c in SCHEMA.names if table[c].null_count]
    if nulls:
        raise StoreError(f"shard {plan.problem_id}#{plan.shard_index} has nulls in {nulls}")
    if table.num_rows != plan.num_samples:
        raise StoreError(
            f"shard {plan.problem_id}#{plan.shard_index} has {table.num_rows} rows, plan says {plan.num_samples}"
        )
    if set(table["problem_id"].to_pylist()) - {plan.problem_id}:
        raise StoreError(f"shard {plan.problem_id}#{plan.shard_index} holds rows of other problems")
    table = table.sort_by("sample_id")
    if table["sample_id"].to_pylist() != list(plan.sample_ids):
        raise StoreError(
            f"shard {plan.problem_id}#{plan.shard_index} sample ids are not exactly "
            f"{plan.sample_ids.start}..{plan.sample_ids.stop - 1}"
        )
    bad = set(table["finish_reason"].to_pylist()) - set(FINISH_REASONS)
    if bad:
        raise StoreError(f"shard {plan.problem_id}#{plan.shard_index} has finish reasons {bad}")
    return table


class SampleStore:
    """A directory of sample shards; see the module docstring for layout and schema."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    def problem_dir(self, problem_id: str) -> Path:
        return self.root / f"{PROBLEM_PREFIX}{quote(problem_id, safe='')}"

    def shard_path(self, problem_id: str, shard_index: int) -> Path:
        return self.problem_dir(problem_id) / f"{SHARD_PREFIX}{shard_index:05d}.parquet"

    def write_shard(self, table: pa.Table, plan: ShardPlan) -> Path:
        """Validate ``table`` against ``plan`` and write it atomically; returns the file path."""
        table = _check_shard_table(table, plan)
        path = self.shard_path(plan.problem_id, plan.shard_index)
        write_parquet(path, table, compression=COMPRESSION)
        return path

    def has_shard(self, plan: ShardPlan) -> bool:
        """True only if the shard file is complete, readable and holds exactly the planned rows."""
        path = self.shard_path(plan.problem_id, plan.shard_index)
        if not path.is_file():
            return False
        try:
            table = pq.read_table(path)
            _check_shard_table(table, plan)
        except (OSError, pa.ArrowException, StoreError):
            return False
        return True

    def files(self, problem_ids: Iterable[str] | None = None) -> list[Path]:
        """The shard files of the given problems (all if None), in problem then shard order."""
        if problem_ids is None:
            dirs = sorted(self.root.glob(PROBLEM_GLOB)) if self.root.is_dir() else []
        else:
            dirs = [self.problem_dir(p) for p in problem_ids]
        return [f for d in dirs if d.is_dir() for f in sorted(d.glob(SHARD_GLOB))]

    def read(
        self, problem_ids: Iterable[str] | None = None, columns: Sequence[str] | None = None
    ) -> pa.Table:
        """Rows of the given problems (all if None), sorted by (problem_id, sample_id)."""
        unknown = set(columns or ()) - set(SCHEMA.names)
        if unknown:
            raise StoreError(f"unknown columns {sorted(unknown)}; the store has {SCHEMA.names}")
        files = [str(f) for f in self.files(problem_ids)]
        dataset = ds.dataset(files, schema=SCHEMA, format="parquet")
        wanted = list(columns) if columns else SCHEMA.names
        need = list(dict.fromkeys([*wanted, "problem_id", "sample_id"]))
        table = dataset.to_table(columns=need).sort_by(
            [("problem_id", "ascending"), ("sample_id", "ascending")]
        )
        return table.select(wanted)

    def finalize(self, problem_ids: Iterable[str] | None = None) -> int:
        """Make ``is_first_of_code_hash`` exact across each problem's shards; returns files rewritten."""
        if problem_ids is None:
            problem_ids = self.read(columns=["problem_id"])["problem_id"].unique().to_pylist()
        rewritten = 0
        for pid in problem_ids:
            keys = self.read([pid], columns=["problem_id", "sample_id", "code_hash"])
            flags = first_of_code_hash(*(keys[c].combine_chunks() for c in keys.column_names))
            truth = dict(zip(keys["sample_id"].to_pylist(), flags.to_pylist()))
            for path in self.files([pid]):
                shard = pq.read_table(path)
                want = pa.array([truth[s] for s in shard["sample_id"].to_pylist()], pa.bool_())
                if not shard["is_first_of_code_hash"].combine_chunks().equals(want):
                    col = shard.schema.get_field_index("is_first_of_code_hash")
                    fixed = shard.set_column(col, "is_first_of_code_hash", want)
                    write_parquet(Path(path), fixed, COMPRESSION)
                    rewritten += 1
        return rewritten

    def validate(self, expected_problems: Sequence[str], n: int) -> StoreSummary:
        """Exactly ``n`` rows (ids 0..n-1) per expected problem, nothing else, exact dedup flags."""
        table = self.read(columns=["problem_id", "sample_id", "code_hash", "is_first_of_code_hash"])
        expected = set(expected_problems)
        got = set(table["problem_id"].unique().to_pylist())
        if got - expected:
            raise StoreError(f"store {self.root} holds unexpected problems {sorted(got - expected)[:5]}")
        counts = table.group_by(["problem_id", "sample_id"]).aggregate([("sample_id", "count")])
        dup = counts.filter(pc.greater(counts["sample_id_count"], 1))
        if dup.num_rows:
            first = dup.slice(0, 1).to_pylist()[0]
            raise StoreError(
                f"store {self.root} has {dup.num_rows} duplicate (problem_id, sample_id) pairs, e.g. "
                f"{first['problem_id']!r}#{first['sample_id']}; delete the stray shard file and re-run"
            )
        ids_by_problem: dict[str, set[int]] = {p: set() for p in expected}
        for p, s in zip(table["problem_id"].to_pylist(), table["sample_id"].to_pylist()):
            ids_by_problem[p].add(s)
        for p in sorted(expected):
            missing = set(range(n)) - ids_by_problem[p]
            extra = ids_by_problem[p] - set(range(n))
            if missing or extra:
                raise StoreError(
                    f"problem {p!r} has {len(ids_by_problem[p])} samples, expected {n} "
                    f"(missing ids {sorted(missing)[:5]}, unexpected ids {sorted(extra)[:5]}); "
                    "re-run sampling to fill the missing shards"
                )
        flags = first_of_code_hash(
            table["problem_id"].combine_chunks(),
            table["sample_id"].combine_chunks(),
            table["code_hash"].combine_chunks(),
        )
        if not table["is_first_of_code_hash"].combine_chunks().equals(flags):
            raise StoreError(
                f"store {self.root}: is_first_of_code_hash is stale (a problem spans shards written "
                "separately); run SampleStore.finalize() and validate again"
            )
        return StoreSummary(len(expected), table.num_rows, int(pc.sum(flags).as_py() or 0))
