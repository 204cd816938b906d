import pyarrow.parquet as pq

from tasks.core.samplestore import SCHEMA, SampleStore, plan_shards
from tasks.core.sampling import SampleRequest, SamplingParams, sample_shard, sample_to_store, samples_of

PARAMS = SamplingParams(n=5, max_new_tokens=12, batch_size=4, samples_per_shard=3, stop=("\n",), seed=11)
REQUESTS = {
    "p1": SampleRequest(problem_id="p1", prompt="def solve():\n"),
    "p2": SampleRequest(problem_id="p2", prompt="import sys\n"),
}


def first_char(completion: str) -> str:
    return completion[:1]  # a coarse "program" so that duplicates occur


def run(backend, store, progress=None):
    plans = plan_shards(sorted(REQUESTS), PARAMS.n, PARAMS.samples_per_shard, PARAMS.seed)
    return plans, sample_to_store(backend, store, REQUESTS, plans, PARAMS, "model-hash", first_char, progress)


def test_sample_shard_rows_in_store_schema(hf_backend):
    [plan, _] = plan_shards(["p1"], 5, 3, 0)
    table = sample_shard(hf_backend, REQUESTS["p1"], PARAMS, plan, "model-hash", first_char)
    assert table.schema.equals(SCHEMA)
    assert table["sample_id"].to_pylist() == [0, 1, 2]
    assert set(table["backend"].to_pylist()) == {"hf"} and set(table["seed"].to_pylist()) == {plan.seed}
    assert table["code"].to_pylist() == [c[:1] for c in table["completion"].to_pylist()]
    assert [s.sample_id for s in samples_of(table)] == [0, 1, 2]


def test_loop_fills_store_and_validates(hf_backend, tmp_path):
    store = SampleStore(tmp_path)
    done = []
    plans, sampled = run(hf_backend, store, done.append)
    assert sampled == len(plans) == 4
    assert sum(done) == 10
    summary = store.validate(["p1", "p2"], 5)
    assert summary.rows == 10 and 1 <= summary.unique_programs <= 10


def test_loop_resumes_and_rewrites_only_broken_shard(hf_backend, tmp_path):
    store = SampleStore(tmp_path)
    run(hf_backend, store)
    before = store.read()
    broken = store.shard_path("p2", 1)
    broken.write_bytes(b"PAR1 garbage")
    untouched = store.shard_path("p1", 0).stat().st_mtime_ns
    _, sampled = run(hf_backend, store)
    assert sampled == 1
    assert store.shard_path("p1", 0).stat().st_mtime_ns == untouched
    after = store.read()
    assert after.drop(["created_at"]).equals(before.drop(["created_at"]))  # same seed, same samples
    assert pq.read_metadata(broken).num_rows == 2
