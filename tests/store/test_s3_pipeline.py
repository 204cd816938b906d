"""The smoke pipeline (the deployment tests' smaller override of it, ``TINY``) with its run root
in a real S3 store (SeaweedFS on loopback): it
completes with every stage in the store (manifests naming no absolute path), reruns all Cached;
``alphacode samples`` reads it from another node; a copy of the run under another prefix, read
by a third node, is the same run and all Cached."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tasks.core.store import Remote
from tests.ops.test_deployments import TINY
from tests.pipeline.test_smoke_pipeline import task_runs_since

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


@pytest.fixture(scope="module")
def s3_run(prefect_harness, s3_store, tmp_path_factory):
    """The smoke pipeline once, its run root in the store, on node ``a``."""
    from flows.pipeline import alphacode_pipeline

    nodes = tmp_path_factory.mktemp("s3-nodes")
    url = "s3://alphacode-test/smoke-" + nodes.name
    with pytest.MonkeyPatch.context() as mp:
        on_node(mp, nodes, "a")
        result = alphacode_pipeline(profile="smoke", out_dir=url, overrides=TINY)
    return url, nodes, result


def test_every_stage_is_complete_in_the_store(s3_run):
    url, _, result = s3_run
    remote = Remote(url)
    for manifest in [*result.stages.values(), result.report]:
        stored = remote.manifest(manifest.stage, manifest.key)
        assert stored is not None and stored.files == manifest.files, manifest.stage
        raw = json.loads(remote.read_bytes(remote.path(manifest.stage, manifest.key, "manifest.json")))
        assert raw["path"] == f"{manifest.stage}/{manifest.key}"


def test_rerun_on_the_same_node_is_all_cached(s3_run, monkeypatch):
    from flows.pipeline import alphacode_pipeline

    url, nodes, first = s3_run
    on_node(monkeypatch, nodes, "a")
    started = datetime.now(timezone.utc)
    second = alphacode_pipeline(profile="smoke", out_dir=url, overrides=TINY)
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
