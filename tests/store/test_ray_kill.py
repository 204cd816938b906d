"""A Ray worker node killed mid-sampling (tests/store/raycluster.py: two nodes on this machine,
the run root in a real S3 store): the run is then rerun and completes with every sample exactly
once, and neither the head's mirror nor the store holds a temp file or a shard outside the
stage's manifest. The driver runs in its own process (``until="sample"``), as a user's would."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tasks.core.store import Remote
from tests.ops.test_deployments import TINY
from tests.store.conftest import start_ray_cluster
from tests.store.test_s3_pipeline import node_mirror, on_ray

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
WAIT_S = 900
DRIVER = """
import json, sys
from prefect import flow
from flows.pipeline import run_pipeline
from tasks.core.config import load_profile
from tasks.core.store import working_root

@flow(name="until-sample")
def until_sample(url, overrides):
    return run_pipeline(load_profile("smoke", overrides), working_root(url), until="sample").sft.samples.key

print("SAMPLE-KEY", until_sample(sys.argv[1], json.loads(sys.argv[2])))
"""


@pytest.fixture
def cluster(s3_store, tmp_path):
    nodes = start_ray_cluster(tmp_path / "ray")
    try:
        yield nodes
    finally:
        nodes.stop()


def drive(cluster, url: str, overrides: dict, log: Path) -> subprocess.Popen:
    env = {**cluster.env(cluster.nodes["head"]), "PYTHONPATH": str(REPO)}
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-c", DRIVER, url, json.dumps(overrides)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=out,
        )


def kill_worker_once_it_has_a_shard(cluster, url: str, driver: subprocess.Popen, log: Path) -> None:
    """SIGKILL to the worker node's whole process group once it has written a sampling shard;
    the sampling stage is then still unfinished (no manifest in the head's mirror)."""
    worker = cluster.nodes["worker"]
    deadline = time.monotonic() + WAIT_S
    while not list(worker.store_cache.rglob("samples/**/*.parquet")):
        assert driver.poll() is None, "the run ended before the worker sampled: " + log.read_text()[-3000:]
        assert time.monotonic() < deadline, "no shard reached the worker node"
        time.sleep(0.2)
    worker.kill()
    finished = list((node_mirror(cluster.nodes["head"], url) / "sample").glob("*/manifest.json"))
    assert not finished, "the sampling stage finished before the worker was killed"


def stored_files(remote: Remote, prefix: str) -> set[str]:
    from pyarrow import fs

    infos = remote.fs.get_file_info(fs.FileSelector(remote.path(prefix), recursive=True))
    return {i.path[len(remote.path(prefix)) + 1 :] for i in infos if i.type == fs.FileType.File}


def test_a_worker_killed_mid_sampling_then_rerun_gives_every_sample_once(cluster, tmp_path):
    from tasks.core.samplestore import SampleStore

    url = f"s3://alphacode-test/ray-kill-{uuid.uuid4().hex[:12]}"
    sampling = {**TINY["sample"]["sampling"], "n": 4}
    overrides = {**on_ray(cluster), "sample": {"sampling": sampling}}
    first = drive(cluster, url, overrides, tmp_path / "first.log")
    kill_worker_once_it_has_a_shard(cluster, url, first, tmp_path / "first.log")
    first.wait(timeout=WAIT_S)  # it may finish (Ray retries on the head) or fail: the rerun decides
    rerun = drive(cluster, url, overrides, tmp_path / "rerun.log")
    assert rerun.wait(timeout=WAIT_S) == 0, (tmp_path / "rerun.log").read_text()[-3000:]
    key = (tmp_path / "rerun.log").read_text().split("SAMPLE-KEY ")[-1].split()[0]

    stage = node_mirror(cluster.nodes["head"], url) / "sample" / key
    table = SampleStore(stage / "samples").read(columns=["problem_id", "sample_id"])
    pairs = list(zip(table.column("problem_id").to_pylist(), table.column("sample_id").to_pylist()))
    assert pairs and len(pairs) == len(set(pairs))
    per_problem = {p: sum(1 for q, _ in pairs if q == p) for p, _ in pairs}
    assert set(per_problem.values()) == {4}
    listed = set(json.loads((stage / "manifest.json").read_text())["files"])
    on_disk = {str(p.relative_to(stage)) for p in stage.rglob("*") if p.is_file()} - {"manifest.json"}
    assert on_disk == listed, on_disk ^ listed  # no orphan shard, no temp file
    assert stored_files(Remote(url), f"sample/{key}") - {"manifest.json"} == listed
