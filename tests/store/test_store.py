"""Stage directories in a real S3 store (SeaweedFS on loopback): pushed whole with the manifest
last, complete only when every listed object has its size, pulled whole into another node's
mirror, credentials from the environment or a profile section."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from tasks.core.manifest import plan_stage, read_manifest
from tasks.core.store import Remote, is_url, mirror_dir, remote_of, working_root

ENTRY = "tasks.core.manifest"


def published_stage(root: str, value: int = 1):
    """A stage with a nested model directory, published in ``root``."""
    plan = plan_stage(root, "finetune", {"value": value}, [], ENTRY)
    (plan.dir / "model").mkdir(parents=True)
    (plan.dir / "model" / "weights.bin").write_bytes(bytes(range(256)) * 40)
    (plan.dir / "metrics.json").write_text(json.dumps({"value": value}))
    (plan.dir / "split.jsonl.gz").write_bytes(gzip.compress(b'{"name": "p"}\n'))  # bytes kept as they are
    return plan, plan.publish(["model/weights.bin", "metrics.json", "split.jsonl.gz"])


def use_node(monkeypatch, tmp_path: Path, name: str) -> Path:
    cache = tmp_path / name
    monkeypatch.setenv("ALPHACODE_STORE_CACHE", str(cache))
    return cache


def test_local_roots_are_left_alone(tmp_path):
    assert not is_url(tmp_path) and working_root(tmp_path) == str(tmp_path.resolve())
    assert remote_of(tmp_path) is None


def test_push_then_pull_on_another_node(s3_url, monkeypatch, tmp_path):
    use_node(monkeypatch, tmp_path, "node-a")
    root_a = working_root(s3_url)
    assert Path(root_a) == mirror_dir(s3_url).resolve() and remote_of(root_a) == Remote(s3_url)
    plan, manifest = published_stage(root_a)
    remote = Remote(s3_url)
    assert remote.manifest(plan.stage, plan.key) is None
    assert remote.push(manifest) and not remote.push(manifest)  # the second push finds it there
    stored = json.loads(remote.read_bytes(remote.path(plan.stage, plan.key, "manifest.json")))
    assert stored["path"] == f"finetune/{plan.key}"

    use_node(monkeypatch, tmp_path, "node-b")
    root_b = working_root(s3_url)
    assert root_b != root_a
    pulled = remote.pull(plan.stage, plan.key, Path(root_b) / plan.stage / plan.key)
    assert pulled is not None and pulled.key == manifest.key and pulled.dir.is_relative_to(root_b)
    assert (pulled.dir / "model" / "weights.bin").read_bytes() == (
        plan.dir / "model" / "weights.bin"
    ).read_bytes()
    assert (pulled.dir / "split.jsonl.gz").read_bytes() == (plan.dir / "split.jsonl.gz").read_bytes()
    assert read_manifest(pulled.dir) == pulled
    assert not list(pulled.dir.parent.glob(".*tmp-*"))


def test_a_missing_or_resized_object_makes_the_stage_incomplete(s3_url, monkeypatch, tmp_path):
    use_node(monkeypatch, tmp_path, "node-a")
    plan, manifest = published_stage(working_root(s3_url))
    remote = Remote(s3_url)
    remote.push(manifest)
    weights = remote.path(plan.stage, plan.key, "model", "weights.bin")
    remote.write_bytes(weights, b"short")
    assert remote.manifest(plan.stage, plan.key) is None
    remote.fs.delete_file(weights)
    assert remote.manifest(plan.stage, plan.key) is None
    use_node(monkeypatch, tmp_path, "node-b")
    target = Path(working_root(s3_url)) / plan.stage / plan.key
    assert remote.pull(plan.stage, plan.key, target) is None and not target.exists()


def test_objects_without_a_manifest_are_no_stage(s3_url, monkeypatch, tmp_path):
    use_node(monkeypatch, tmp_path, "node-a")
    plan, _ = published_stage(working_root(s3_url))
    remote = Remote(s3_url)
    remote.write_bytes(remote.path(plan.stage, plan.key, "metrics.json"), b"{}")
    assert remote.manifest(plan.stage, plan.key) is None
    assert remote.stage_keys(plan.stage) == [plan.key]


def test_credentials_from_a_profile_section(s3_store, s3_url, monkeypatch, tmp_path):
    credentials = tmp_path / "credentials"
    credentials.write_text(
        "[default]\naws_access_key_id = wrong\naws_secret_access_key = wrong\n\n"
        f"[alphacode]\naws_access_key_id = {s3_store['AWS_ACCESS_KEY_ID']}\n"
        f"aws_secret_access_key = {s3_store['AWS_SECRET_ACCESS_KEY']}\n"
    )
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_PROFILE", "alphacode")
    remote = Remote(s3_url)
    remote.write_bytes(remote.path("probe"), b"via profile")
    assert remote.read_bytes(remote.path("probe")) == b"via profile"
    monkeypatch.setenv("AWS_PROFILE", "default")
    with pytest.raises(OSError):
        Remote(s3_url).write_bytes(remote.path("probe2"), b"x")


def test_an_object_deleted_during_a_pull_leaves_nothing_behind(s3_url, monkeypatch, tmp_path):
    """The store's copy loses a file after its manifest was read: the pull gives up cleanly."""
    use_node(monkeypatch, tmp_path, "node-a")
    plan, manifest = published_stage(working_root(s3_url))
    remote = Remote(s3_url)
    remote.push(manifest)
    real = Remote.manifest

    def manifest_then_delete(self, stage, key):
        found = real(self, stage, key)
        self.fs.delete_file(self.path(stage, key, "metrics.json"))
        return found

    monkeypatch.setattr(Remote, "manifest", manifest_then_delete)
    use_node(monkeypatch, tmp_path, "node-b")
    target = Path(working_root(s3_url)) / plan.stage / plan.key
    assert remote.pull(plan.stage, plan.key, target) is None
    assert not target.exists() and not list(target.parent.glob(".*"))
