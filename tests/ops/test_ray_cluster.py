"""The smoke pipeline on a Ray cluster of two nodes (tests/ops/raycluster.py: a head and a
worker on this machine, each with its own store cache; with bwrap, the worker cannot even see
the head's directory), its run root in a real S3 store (SeaweedFS on loopback):

* it completes, the worker node computes shards from the model it pulled from the store, the
  head collects them through the store, and a rerun is all Cached;
* a worker node killed mid-sampling: the run is rerun and completes, every sample exactly once,
  no temp file and no shard outside a manifest anywhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tasks.core.store import CACHE_ENV, Remote, mirror_dir
from tests.ops.raycluster import Cluster
from tests.ops.test_deployments import TINY
from tests.store.test_s3_pipeline import all_cached

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster(s3_store, tmp_path_factory):
    pytest.importorskip("prefect_ray", reason="pip install 'alphacode-pipeline[ray]'")
    nodes = Cluster(tmp_path_factory.mktemp("ray-cluster")).start()
    try:
        yield nodes
    finally:
        nodes.stop()


@pytest.fixture
def on_head(cluster, monkeypatch):
    """This process is the driver, on the head's machine: the head's store cache, the token."""
    for key, value in cluster.env(cluster.nodes["head"]).items():
        if os.environ.get(key) != value:
            monkeypatch.setenv(key, value)
    return cluster


def ray_overrides(cluster: Cluster) -> dict:
    return {**TINY, "runner": {"kind": "ray", "address": cluster.address}}


def node_mirror(node, url: str) -> Path:
    """``node``'s mirror of the run at ``url`` (where that node's stages and shards are)."""
    saved = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(node.store_cache)
    try:
        return mirror_dir(url)
    finally:
        if saved is None:
            os.environ.pop(CACHE_ENV, None)
        else:
            os.environ[CACHE_ENV] = saved


def sample_shards(node, url: str) -> dict[str, bytes]:
    """Every sampling shard file in ``node``'s mirror of ``url``, by path relative to the run."""
    root = node_mirror(node, url)
    return {str(p.relative_to(root)): p.read_bytes() for p in root.glob("sample/*/samples/**/*.parquet")}


@pytest.fixture(scope="module")
def two_node_run(cluster, s3_store, tmp_path_factory):
    from flows.pipeline import alphacode_pipeline

    url = "s3://alphacode-test/ray-" + tmp_path_factory.mktemp("ray-run").name
    with pytest.MonkeyPatch.context() as mp:
        for key, value in cluster.env(cluster.nodes["head"]).items():
            mp.setenv(key, value)
        result = alphacode_pipeline(profile="smoke", out_dir=url, overrides=ray_overrides(cluster))
    return url, result


def test_the_worker_node_computes_shards_the_head_collects_through_the_store(two_node_run, on_head):
    url, result = two_node_run
    worker, head = on_head.nodes["worker"], on_head.nodes["head"]
    on_worker, on_head_node = sample_shards(worker, url), sample_shards(head, url)
    assert on_worker, "no sampling shard ran on the worker node"
    assert all(on_head_node[rel] == data for rel, data in on_worker.items())
    model = result.sft.samples.upstream_keys("finetune")[0]
    assert (node_mirror(worker, url) / "finetune" / model / "model").is_dir()


def test_every_stage_is_in_the_store_with_relative_paths(two_node_run, on_head):
    url, result = two_node_run
    remote = Remote(url)
    for manifest in [*result.stages.values(), result.report]:
        raw = json.loads(remote.read_bytes(remote.path(manifest.stage, manifest.key, "manifest.json")))
        assert raw["path"] == f"{manifest.stage}/{manifest.key}"
        assert remote.manifest(manifest.stage, manifest.key).files == manifest.files


def test_rerun_on_the_cluster_is_all_cached(two_node_run, on_head):
    from flows.pipeline import alphacode_pipeline

    url, first = two_node_run
    started = datetime.now(timezone.utc)
    second = alphacode_pipeline(profile="smoke", out_dir=url, overrides=ray_overrides(on_head))
    all_cached(started)
    assert second.report.key == first.report.key


DRIVER = """
import json, sys
from prefect import flow
from flows.pipeline import run_pipeline
from tasks.core.config import load_profile
from tasks.core.store import working_root

@flow(name="until-sample")
def until_sample(url, overrides):
    run = run_pipeline(load_profile("smoke", overrides), working_root(url), until="sample")
    return run.stages["sample"].key if "sample" in run.stages else None

print("SAMPLE-KEY", until_sample(sys.argv[1], json.loads(sys.argv[2])))
"""


def drive(cluster: Cluster, url: str, overrides: dict, log: Path) -> subprocess.Popen:
    env = {**cluster.env(cluster.nodes["head"]), "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", DRIVER, url, json.dumps(overrides)],
        cwd=REPO,
        env=env,
        stdout=open(log, "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )


def test_a_worker_killed_mid_sampling_then_rerun_gives_every_sample_once(cluster, tmp_path):
    from tasks.core.samplestore import SampleStore

    url = "s3://alphacode-test/ray-kill-" + tmp_path.name
    over = {**ray_overrides(cluster), "sample": {"sampling": {**TINY["sample"]["sampling"], "n": 4}}}
    worker = cluster.nodes["worker"]
    first = drive(cluster, url, over, tmp_path / "first.log")
    deadline = time.monotonic() + 900
    while not list(worker.store_cache.rglob("samples/**/*.parquet")):
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "no shard reached the worker node in 15 minutes"
        time.sleep(0.5)
    worker.kill()  # mid-sampling: the worker has written one shard, others are planned or running
    first.wait(timeout=900)
    rerun = drive(cluster, url, over, tmp_path / "rerun.log")
    assert rerun.wait(timeout=900) == 0, (tmp_path / "rerun.log").read_text()[-3000:]
    key = (tmp_path / "rerun.log").read_text().split("SAMPLE-KEY ")[-1].split()[0]

    stage = node_mirror(cluster.nodes["head"], url) / "sample" / key
    table = SampleStore(stage / "samples").read(columns=["problem_id", "sample_id"])
    pairs = list(zip(table.column("problem_id").to_pylist(), table.column("sample_id").to_pylist()))
    assert len(pairs) == len(set(pairs)) and pairs
    per_problem = {}
    for problem, _ in pairs:
        per_problem[problem] = per_problem.get(problem, 0) + 1
    assert set(per_problem.values()) == {4}
    listed = set(json.loads((stage / "manifest.json").read_text())["files"])
    on_disk = {str(p.relative_to(stage)) for p in stage.rglob("*") if p.is_file()} - {"manifest.json"}
    assert on_disk == listed, on_disk ^ listed  # no orphan shard, no temp file
    remote = Remote(url)
    from pyarrow import fs

    stored = remote.fs.get_file_info(fs.FileSelector(remote.path("sample", key), recursive=True))
    in_store = {i.path[len(remote.path("sample", key)) + 1 :] for i in stored if i.type == fs.FileType.File}
    assert in_store - {"manifest.json"} == listed
