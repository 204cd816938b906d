"""The shard loop production runs: :func:`tasks.core.stages.sample.run_shard` per planned unit, then
:func:`tasks.core.stages.sample.finish` (exactly what ``flows.stages.sample_flow`` wires, minus Prefect)."""

import shutil

import pyarrow.parquet as pq
import pytest

from tasks.core.config import SampleConfig
from tasks.core.manifest import plan_stage, publish
from tasks.core.problems import extract_program
from tasks.core.samplestore import SCHEMA, SampleStore, plan_shards
from tasks.core.sampling import SampleRequest, SamplingParams, sample_shard
from tasks.core.stages import Stage
from tasks.core.stages import sample as sample_stage

CFG = SampleConfig(
    sampling=SamplingParams(n=5, max_new_tokens=12, batch_size=4, samples_per_shard=3, stop=("\n",), seed=11)
)
REQUESTS = {
    "p1": SampleRequest(problem_id="p1", prompt="def solve():\n"),
    "p2": SampleRequest(problem_id="p2", prompt="import sys\n"),
}


def first_char(completion: str) -> str:
    return completion[:1]  # a coarse "program" so that duplicates occur


@pytest.fixture(scope="module")
def model(tiny_model_dir, tmp_path_factory):
    """The tiny model published as an upstream stage (``<stage dir>/model``), as stage 2 leaves it."""
    stage_dir = tmp_path_factory.mktemp("finetune") / "tiny"
    shutil.copytree(tiny_model_dir, stage_dir / sample_stage.MODEL_DIR)
    files = [f"{sample_stage.MODEL_DIR}/{p.name}" for p in (stage_dir / sample_stage.MODEL_DIR).iterdir()]
    return publish(
        stage_dir, stage=Stage.FINETUNE, key="tiny", config={}, upstream=[], code="test", files=files
    )


def run_stage(root, model):
    """Plan the stage, run every shard unit, finish: the production loop."""
    plan = plan_stage(root, Stage.SAMPLE, CFG, [model], sample_stage)
    ids = sorted(REQUESTS)
    units = sample_stage.shard_units(plan, ids, CFG)
    counts = [sample_stage.run_shard(u, model, CFG.sampling, REQUESTS[u.shard.problem_id]) for u in units]
    return plan, units, counts, sample_stage.finish(plan, ids, CFG)


def test_sample_shard_rows_in_store_schema(hf_backend):
    [plan, _] = plan_shards(["p1"], 5, 3, 0)
    table = sample_shard(hf_backend, REQUESTS["p1"], CFG.sampling, plan, "model-hash", first_char)
    assert table.schema.equals(SCHEMA)
    assert table["sample_id"].to_pylist() == [0, 1, 2]
    assert set(table["backend"].to_pylist()) == {"hf"} and set(table["seed"].to_pylist()) == {plan.seed}
    assert table["code"].to_pylist() == [c[:1] for c in table["completion"].to_pylist()]


def test_stage_loop_fills_store_validates_and_publishes(model, tmp_path):
    plan, units, counts, manifest = run_stage(tmp_path, model)
    assert len(units) == 4 and counts == [3, 2, 3, 2]
    store = sample_stage.store_of(manifest)
    summary = store.validate(["p1", "p2"], 5)
    assert summary.rows == 10 and 1 <= summary.unique_programs <= 10
    assert manifest.metrics["samples"] == 10 and plan.complete()
    table = store.read()
    assert set(table["model_id"].to_pylist()) == {"tiny"}
    assert table["code"].to_pylist() == [extract_program(c) for c in table["completion"].to_pylist()]


def test_stage_loop_skips_done_shards_and_rewrites_only_a_broken_one(model, tmp_path):
    plan, units, _, _ = run_stage(tmp_path, model)
    store = SampleStore(plan.dir / sample_stage.STORE)
    before = store.read()
    broken = store.shard_path("p2", 1)
    broken.write_bytes(b"PAR1 garbage")
    (plan.dir / "manifest.json").unlink()  # the stage is incomplete again; its shards stay
    untouched = {
        u.shard: store.shard_path(u.shard.problem_id, u.shard.shard_index).stat().st_mtime_ns for u in units
    }
    run_stage(tmp_path, model)
    rewritten = [
        u.shard
        for u in units
        if store.shard_path(u.shard.problem_id, u.shard.shard_index).stat().st_mtime_ns != untouched[u.shard]
    ]
    assert [(s.problem_id, s.shard_index) for s in rewritten] == [("p2", 1)]
    assert store.read().drop(["created_at"]).equals(before.drop(["created_at"]))  # same seed, same samples
    assert pq.read_metadata(broken).num_rows == 2
