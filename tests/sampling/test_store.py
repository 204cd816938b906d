import re
from collections import Counter
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tasks.core.samplestore as samplestore
from tasks.core.samplestore import (
    SCHEMA,
    SampleStore,
    ShardPlan,
    StoreError,
    derive_seed,
    plan_shards,
    sha256_hex,
    with_first_flags,
)


def make_shard(plan: ShardPlan, codes=None) -> pa.Table:
    """Synthetic store rows for ``plan``; ``codes[i]`` is the program of the i-th sample."""
    codes = codes or [f"print({s % 3})" for s in plan.sample_ids]
    k = plan.num_samples
    table = pa.table(
        {
            "problem_id": [plan.problem_id] * k,
            "sample_id": list(plan.sample_ids),
            "prompt_hash": [sha256_hex("prompt")] * k,
            "completion": [f"```python\n{c}\n```" for c in codes],
            "code": codes,
            "code_hash": [sha256_hex(c) for c in codes],
            "num_tokens": [7] * k,
            "logprob_sum": [-3.5] * k,
            "finish_reason": ["stop"] * k,
            "temperature": [0.8] * k,
            "top_p": [0.95] * k,
            "seed": [plan.seed] * k,
            "model_id": ["abc"] * k,
            "backend": ["hf"] * k,
            "created_at": [datetime.now(timezone.utc)] * k,
            "is_first_of_code_hash": [False] * k,
        },
        schema=SCHEMA,
    )
    return with_first_flags(table)


def fill(store, problems, n, per_shard):
    plans = plan_shards(problems, n, per_shard, base_seed=1)
    for plan in plans:
        store.write_shard(make_shard(plan), plan)
    return plans


def test_schema_documented_in_module_docstring():
    rows = re.findall(r"^([a-z_]+)\s{2,}(\S+(?: UTC\])?)\s{2,}\S", samplestore.__doc__, re.M)
    documented = [(name, typ) for name, typ in rows if name != "column"]
    spelled = {"double": "float64", "float": "float32"}
    actual = [(f.name, spelled.get(str(f.type), str(f.type).replace("tz=", ""))) for f in SCHEMA]
    assert documented == actual


def test_schema_types():
    types = {f.name: f.type for f in SCHEMA}
    assert types["sample_id"] == pa.int64() and types["num_tokens"] == pa.int32()
    assert types["temperature"] == pa.float32() and types["logprob_sum"] == pa.float64()
    assert types["created_at"] == pa.timestamp("us", tz="UTC")
    assert types["is_first_of_code_hash"] == pa.bool_()


def test_written_file_has_store_schema_and_zstd(tmp_path):
    store = SampleStore(tmp_path)
    [plan] = fill(store, ["p1"], 4, 4)
    path = store.shard_path("p1", 0)
    assert path == tmp_path / "problem=p1" / "part-00000.parquet"
    assert pq.read_schema(path).remove_metadata().equals(SCHEMA)
    assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "ZSTD"


def test_plan_shards_covers_problems_times_n_exactly():
    plans = plan_shards(["a", "b", "c"], 10, 4)
    pairs = Counter((p.problem_id, s) for p in plans for s in p.sample_ids)
    assert set(pairs) == {(q, s) for q in "abc" for s in range(10)}
    assert set(pairs.values()) == {1}
    assert [p.num_samples for p in plans if p.problem_id == "a"] == [4, 4, 2]


def test_plan_shards_deterministic_with_distinct_seeds():
    a, b = plan_shards(["x", "y"], 8, 4, base_seed=3), plan_shards(["x", "y"], 8, 4, base_seed=3)
    assert a == b
    assert len({p.seed for p in a}) == len(a)
    assert a[0].seed == derive_seed(3, "x", 0) != plan_shards(["x"], 8, 4, base_seed=4)[0].seed


def test_plan_shards_bad_input():
    with pytest.raises(ValueError, match="n .* must be > 0"):
        plan_shards(["a"], 0, 4)
    with pytest.raises(ValueError, match="duplicate problem ids"):
        plan_shards(["a", "a"], 1, 4)


def test_read_one_problem_and_columns(tmp_path):
    store = SampleStore(tmp_path)
    fill(store, ["a", "b"], 5, 2)
    t = store.read(["b"], columns=["sample_id", "code"])
    assert t.column_names == ["sample_id", "code"]
    assert t["sample_id"].to_pylist() == [0, 1, 2, 3, 4]


def test_odd_problem_ids_round_trip(tmp_path):
    store = SampleStore(tmp_path)
    pid = "1548_A. Book/Reading = 50%"
    fill(store, [pid], 3, 3)
    assert store.read([pid])["problem_id"].to_pylist() == [pid] * 3
    assert store.validate([pid], 3).rows == 3


def test_write_rejects_rows_not_matching_plan(tmp_path):
    store = SampleStore(tmp_path)
    [plan] = plan_shards(["a"], 4, 4)
    short = make_shard(ShardPlan("a", 0, 0, 3, plan.seed))
    with pytest.raises(StoreError, match="has 3 rows, plan says 4"):
        store.write_shard(short, plan)


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    store = SampleStore(tmp_path)
    [plan] = fill(store, ["a"], 4, 4)
    before = store.shard_path("a", 0).read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(samplestore.pq, "write_table", boom)
    with pytest.raises(OSError):
        store.write_shard(make_shard(plan), plan)
    assert store.shard_path("a", 0).read_bytes() == before
    assert [f.name for f in store.problem_dir("a").iterdir()] == ["part-00000.parquet"]


def test_has_shard_requires_complete_file(tmp_path):
    store = SampleStore(tmp_path)
    [plan] = plan_shards(["a"], 4, 4)
    assert not store.has_shard(plan)
    store.write_shard(make_shard(plan), plan)
    assert store.has_shard(plan)
    assert not store.has_shard(ShardPlan("a", 0, 0, 5, plan.seed))


def test_truncated_shard_detected_and_rewritten(tmp_path):
    store = SampleStore(tmp_path)
    [plan] = fill(store, ["a"], 4, 4)
    path = store.shard_path("a", 0)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert not store.has_shard(plan)
    store.write_shard(make_shard(plan), plan)
    assert store.has_shard(plan)
    assert store.validate(["a"], 4).rows == 4


def test_validate_catches_missing_rows(tmp_path):
    store = SampleStore(tmp_path)
    plans = fill(store, ["a", "b"], 6, 3)
    store.shard_path("b", 1).unlink()
    with pytest.raises(StoreError, match=r"problem 'b' has 3 samples, expected 6 \(missing ids \[3, 4, 5\]"):
        store.validate(["a", "b"], 6)
    assert len(plans) == 4


def test_validate_catches_missing_problem(tmp_path):
    store = SampleStore(tmp_path)
    fill(store, ["a"], 2, 2)
    with pytest.raises(StoreError, match="problem 'zz' has 0 samples"):
        store.validate(["a", "zz"], 2)


def test_validate_catches_duplicates(tmp_path):
    store = SampleStore(tmp_path)
    fill(store, ["a"], 4, 2)
    stray = store.problem_dir("a") / "part-00099.parquet"
    stray.write_bytes(store.shard_path("a", 0).read_bytes())
    with pytest.raises(StoreError, match=r"2 duplicate \(problem_id, sample_id\) pairs, e.g. 'a'#0"):
        store.validate(["a"], 4)


def test_dedup_flags_exact_across_shards_after_finalize(tmp_path):
    store = SampleStore(tmp_path)
    codes = ["A", "B", "A", "C", "B", "A"]
    plans = plan_shards(["p"], 6, 2)
    for plan in reversed(plans):  # write order must not matter
        store.write_shard(make_shard(plan, codes[plan.sample_offset : plan.sample_offset + 2]), plan)
    with pytest.raises(StoreError, match="run SampleStore.finalize"):
        store.validate(["p"], 6)
    assert store.finalize() == 2
    flags = store.read(["p"], columns=["is_first_of_code_hash"])["is_first_of_code_hash"].to_pylist()
    assert flags == [True, True, False, True, False, False]
    assert store.validate(["p"], 6).unique_programs == 3
    assert store.finalize() == 0


def test_duckdb_reads_store(tmp_path):
    duckdb = pytest.importorskip("duckdb")
    store = SampleStore(tmp_path)
    fill(store, ["a", "b c"], 5, 2)
    root = tmp_path.as_posix()
    count = duckdb.sql(f"select count(*) from read_parquet('{root}/**/*.parquet', hive_partitioning=true)")
    assert count.fetchall() == [(10,)]
    per = duckdb.sql(
        f"select problem_id, count(*) from read_parquet('{root}/**/*.parquet', hive_partitioning=true) "
        "group by 1 order by 1"
    ).fetchall()
    assert per == [("a", 5), ("b c", 5)]


def test_pandas_reads_store(tmp_path):
    pd = pytest.importorskip("pandas")
    store = SampleStore(tmp_path)
    fill(store, ["a"], 3, 3)
    frame = pd.read_parquet(tmp_path)
    assert len(frame) == 3 and set(frame["problem_id"]) == {"a"}
