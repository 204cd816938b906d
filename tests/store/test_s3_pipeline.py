"""The smoke pipeline (the deployment tests' smaller override of it, ``TINY``) with its run root
in a real S3 store (SeaweedFS on loopback), its shards on a Ray cluster of two nodes on this
machine (tests/store/raycluster.py: a head and a worker, each with its own store cache; with
bwrap the worker cannot even see the head's directory): it completes with every stage in the
store (manifests naming no absolute path); the worker declares one GPU and the run asks for it
(``runner.gpus = 1``), so the training stages run on the worker and sampling runs in an engine
actor there, and the head collects everything through the store; a rerun on the
cluster is all Cached; ``alphacode samples`` reads it from another node; a copy of the run under
another prefix, read by a third node without Ray, is the same run and all Cached."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tasks.core.store import CACHE_ENV, Remote, mirror_dir
from tests.ops.test_deployments import TINY
from tests.pipeline.test_smoke_pipeline import task_runs_since
from tests.store.raycluster import as_driver

pytestmark = pytest.mark.slow


def on_node(monkeypatch, tmp_path: Path, name: str) -> None:
    """From now on this process is node ``name``: its own store cache (mirrors, Prefect records)."""
    monkeypatch.setenv("ALPHACODE_STORE_CACHE", str(tmp_path / name))


def all_cached(started) -> None:
    runs = task_runs_since(started)
    assert runs and {r.state.name for r in runs} == {"Cached"}, [
        (r.name, r.state.name) for r in runs if r.state.name != "Cached"
    ]


def copy_prefix(remote: Remote, to: Remote) -> int:
    from pyarrow import fs

    infos = remote.fs.get_file_info(fs.FileSelector(remote.base, recursive=True))
    files = [i.path for i in infos if i.type == fs.FileType.File]
    for path in files:
        remote.fs.copy_file(path, to.base + path[len(remote.base) :])
    return len(files)


def on_ray(cluster, gpus: float = 0) -> dict:
    runner = {"kind": "ray", "address": cluster.address} | ({"gpus": gpus} if gpus else {})
    return {**TINY, "runner": runner}


def node_mirror(node, url: str) -> Path:
    """``node``'s mirror of the run at ``url`` (where that node keeps its stages and shards)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CACHE_ENV, str(node.store_cache))
        return mirror_dir(url)


def sample_shards(node, url: str) -> dict[str, bytes]:
    """Every sampling shard file in ``node``'s mirror of ``url``, by path relative to the run."""
    root = node_mirror(node, url)
    return {str(p.relative_to(root)): p.read_bytes() for p in root.glob("sample/*/samples/**/*.parquet")}


def shard_rows(data: bytes) -> list[dict]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pq.read_table(pa.BufferReader(data)).drop_columns(["is_first_of_code_hash"]).to_pylist()


@pytest.fixture(scope="module")
def s3_run(prefect_harness, ray_cluster, tmp_path_factory):
    """The smoke pipeline once, its run root in the store, driven from the head node."""
    from flows.pipeline import alphacode_pipeline

    nodes = tmp_path_factory.mktemp("s3-nodes")
    url = f"s3://alphacode-test/smoke-{uuid.uuid4().hex[:12]}"  # a fresh run, whatever the store holds
    with pytest.MonkeyPatch.context() as mp:
        as_driver(mp, ray_cluster)
        result = alphacode_pipeline(profile="smoke", out_dir=url, overrides=on_ray(ray_cluster, gpus=1))
    return url, nodes, result


def test_every_stage_is_complete_in_the_store(s3_run):
    url, _, result = s3_run
    remote = Remote(url)
    for manifest in [*result.stages.values(), result.report]:
        stored = remote.manifest(manifest.stage, manifest.key)
        assert stored is not None and stored.files == manifest.files, manifest.stage
        raw = json.loads(remote.read_bytes(remote.path(manifest.stage, manifest.key, "manifest.json")))
        assert raw["path"] == f"{manifest.stage}/{manifest.key}"


def test_the_worker_node_samples_from_the_store_and_the_head_collects(s3_run, ray_cluster):
    url, _, result = s3_run
    worker, head = ray_cluster.nodes["worker"], ray_cluster.nodes["head"]
    on_worker, on_head = sample_shards(worker, url), sample_shards(head, url)
    assert on_worker, "no sampling shard ran on the worker node"
    # the head's copy is the worker's file, but for the dedup flags the stage's finish makes exact
    assert all(shard_rows(on_head[rel]) == shard_rows(data) for rel, data in on_worker.items())
    model = result.sft.samples.upstream_keys("finetune")[0]
    assert (node_mirror(worker, url) / "finetune" / model / "model").is_dir()
    assert not node_mirror(worker, url).is_relative_to(head.home)


def test_training_stages_run_on_the_gpu_node_and_reach_the_head(s3_run, ray_cluster):
    """With runner.gpus = 1 and the GPU on the worker, Ray places every training stage there:
    what a stage leaves where it ran and never publishes (its checkpoints) is in the worker's
    mirror only; the head's copy is the published stage, pulled from the store."""
    url, _, result = s3_run
    worker, head = ray_cluster.nodes["worker"], ray_cluster.nodes["head"]
    trained = [result.stages[s] for s in ("pretrain", "finetune", "rl", "sft-continue", "oracle-sft")]
    for manifest in trained:
        rel = Path(manifest.stage) / manifest.key
        on_worker, on_head = node_mirror(worker, url) / rel, node_mirror(head, url) / rel
        published = {Path(f).parts[0] for f in manifest.files} | {"manifest.json"}
        assert {p.name for p in on_head.iterdir()} == published, rel
        assert {p.name for p in on_worker.iterdir()} - published, f"{rel} was not computed on the worker"


def test_rerun_on_the_cluster_is_all_cached(s3_run, ray_cluster, monkeypatch):
    from flows.pipeline import alphacode_pipeline

    url, nodes, first = s3_run
    as_driver(monkeypatch, ray_cluster)
    started = datetime.now(timezone.utc)
    second = alphacode_pipeline(profile="smoke", out_dir=url, overrides=on_ray(ray_cluster, gpus=1))
    all_cached(started)
    assert {k: m.key for k, m in second.stages.items()} == {k: m.key for k, m in first.stages.items()}


def test_samples_cli_reads_the_run_on_another_node(s3_run, monkeypatch):
    from tests.inspect.test_inspect import invoke

    url, nodes, first = s3_run
    on_node(monkeypatch, nodes, "b")
    stats = invoke("stats", url, "--json")
    assert stats.exit_code == 0, stats.output
    assert json.loads(stats.output)["samples"] == first.sft.samples.metrics["samples"]
    listing = invoke("runs", "--root", url, "--json")
    assert listing.exit_code == 0, listing.output
    (run,) = json.loads(listing.output)
    assert run["run"].startswith(str(nodes / "b")) and all(s["complete"] for s in run["stages"])


def test_copy_under_another_prefix_is_the_same_run_and_cached(s3_run, monkeypatch):
    from flows.pipeline import alphacode_pipeline

    url, nodes, first = s3_run
    copy = Remote(url + "-copy")
    assert copy_prefix(Remote(url), copy) > len(first.stages)
    on_node(monkeypatch, nodes, "c")
    started = datetime.now(timezone.utc)
    rerun = alphacode_pipeline(profile="smoke", out_dir=copy.url, overrides=TINY)
    all_cached(started)
    assert rerun.report.key == first.report.key
    assert rerun.report.dir.is_relative_to(nodes / "c")
    assert (rerun.report.dir / "report.md").read_text() == (first.report.dir / "report.md").read_text()
