"""The manifest/cache mechanism: hit, miss after a config change, miss after the artifact is
deleted, downstream invalidation, and no upstream recomputation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from prefect import flow, task

from tasks.caching import cached
from tasks.core.manifest import Manifest, Upstream, plan_stage, read_manifest

ENTRY = "tasks.core.manifest"  # the code fingerprint of these toy stages
CALLS: list[str] = []


@task
def produce(plan, value: int) -> Manifest:
    if (done := plan.manifest()) is not None:
        return done
    CALLS.append(plan.stage)
    plan.dir.mkdir(parents=True, exist_ok=True)
    (plan.dir / "payload.json").write_text(json.dumps({"value": value}))
    return plan.publish(["payload.json"], metrics={"value": value})


@flow
def two_stages(root: str, up_value: int, down_value: int):
    up_plan = plan_stage(root, "up", {"value": up_value}, [], ENTRY)
    up_state = cached(produce, root)(plan=up_plan, value=up_value, return_state=True)
    up = up_state.result().at(up_plan.dir)  # bound to this run, as flows.stages does
    down_plan = plan_stage(root, "down", {"value": down_value}, [("up", up)], ENTRY)
    down_state = cached(produce, root)(plan=down_plan, value=down_value, return_state=True)
    return up_state.name, down_state.name, up, down_state.result().at(down_plan.dir)


@pytest.fixture(autouse=True)
def _reset():
    CALLS.clear()


def test_second_run_is_cached(prefect_harness, tmp_path):
    two_stages(str(tmp_path), 1, 2)
    CALLS.clear()
    up_state, down_state, _, _ = two_stages(str(tmp_path), 1, 2)
    assert (up_state, down_state) == ("Cached", "Cached")
    assert CALLS == []


def test_config_change_reruns_only_that_stage_and_downstream(prefect_harness, tmp_path):
    two_stages(str(tmp_path), 1, 2)
    CALLS.clear()
    up_state, down_state, _, _ = two_stages(str(tmp_path), 1, 3)
    assert up_state == "Cached" and down_state != "Cached"
    assert CALLS == ["down"]


def test_upstream_change_invalidates_downstream(prefect_harness, tmp_path):
    _, _, _, first_down = two_stages(str(tmp_path), 1, 2)
    CALLS.clear()
    _, down_state, up, down = two_stages(str(tmp_path), 5, 2)
    assert CALLS == ["up", "down"]
    assert down.key != first_down.key
    assert down.upstream == (Upstream(role="up", stage="up", key=up.key),)


def test_deleted_artifact_is_a_miss_not_a_stale_hit(prefect_harness, tmp_path):
    _, _, up, _ = two_stages(str(tmp_path), 1, 2)
    (Path(up.path) / "payload.json").unlink()
    assert read_manifest(Path(up.path)) is None
    CALLS.clear()
    up_state, _, up2, _ = two_stages(str(tmp_path), 1, 2)
    assert up_state != "Cached" and CALLS == ["up"]
    assert json.loads((Path(up2.path) / "payload.json").read_text()) == {"value": 1}


def test_truncated_payload_is_incomplete(tmp_path):
    plan = plan_stage(str(tmp_path), "s", {"a": 1}, [], ENTRY)
    plan.dir.mkdir(parents=True)
    (plan.dir / "f.bin").write_bytes(b"12345")
    plan.publish(["f.bin"])
    assert plan.complete()
    (plan.dir / "f.bin").write_bytes(b"12")
    assert not plan.complete()


def test_code_change_changes_the_key(tmp_path):
    a = plan_stage(str(tmp_path), "s", {"a": 1}, [], "tasks.core.manifest")
    b = plan_stage(str(tmp_path), "s", {"a": 1}, [], "tasks.core.stages.sample")
    assert a.key != b.key


def test_lock_of_a_killed_holder_is_stale_not_forever(tmp_path):
    import subprocess
    import sys

    from tasks.caching import PidFileLockManager

    manager = PidFileLockManager(lock_files_directory=tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert manager.acquire_lock("k", holder="killed-run")
    manager._owner("k").write_text(str(dead.pid))  # as if the holder had been that dead process
    other = PidFileLockManager(lock_files_directory=tmp_path)
    assert other.acquire_lock("k", holder="next-run", acquire_timeout=2)
    assert other.is_lock_holder("k", "next-run")


def test_lock_of_a_live_holder_is_respected(tmp_path):
    from tasks.caching import PidFileLockManager

    manager = PidFileLockManager(lock_files_directory=tmp_path)
    assert manager.acquire_lock("k", holder="me")
    other = PidFileLockManager(lock_files_directory=tmp_path)
    assert not other.acquire_lock("k", holder="you", acquire_timeout=0.5)


def dead_pid() -> int:
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    return dead.pid


def test_lock_owner_file_names_host_boot_and_pid(tmp_path):
    from tasks.caching import LockOwner, PidFileLockManager

    manager = PidFileLockManager(lock_files_directory=tmp_path)
    assert manager.acquire_lock("k", holder="me")
    owner = LockOwner.parse(manager._owner("k").read_text())
    assert owner == LockOwner.here() and owner.host and owner.boot and not owner.dead()


def test_lock_of_another_host_is_never_deleted(tmp_path):
    """On a shared mount a PID of another host says nothing here: its lock stays, even if
    that PID does not exist on this host."""
    from tasks.caching import LockOwner, PidFileLockManager

    manager = PidFileLockManager(lock_files_directory=tmp_path)
    assert manager.acquire_lock("k", holder="node-b-run")
    here = LockOwner.here()
    other_host = LockOwner(host=here.host + "-node-b", boot=here.boot, pid=dead_pid())
    manager._owner("k").write_text(other_host.dump())
    other = PidFileLockManager(lock_files_directory=tmp_path)
    assert not other.acquire_lock("k", holder="node-a-run", acquire_timeout=0.5)
    assert manager._lock_path_for_key("k").is_file() and other.is_locked("k")


def test_lock_from_before_a_reboot_is_stale(tmp_path):
    from tasks.caching import LockOwner, PidFileLockManager

    manager = PidFileLockManager(lock_files_directory=tmp_path)
    assert manager.acquire_lock("k", holder="before-reboot")
    here = LockOwner.here()
    manager._owner("k").write_text(LockOwner(host=here.host, boot="an-earlier-boot", pid=here.pid).dump())
    other = PidFileLockManager(lock_files_directory=tmp_path)
    assert other.acquire_lock("k", holder="after-reboot", acquire_timeout=2)


def test_record_whose_payload_is_gone_is_a_miss(prefect_harness, tmp_path):
    two_stages(str(tmp_path), 1, 2)
    for payload in (tmp_path / ".prefect" / "results").iterdir():
        payload.unlink()
    CALLS.clear()
    up_state, down_state, _, _ = two_stages(str(tmp_path), 1, 2)
    assert up_state != "Failed" and down_state != "Failed"


def test_manifest_json_holds_no_absolute_path(tmp_path):
    plan = plan_stage(str(tmp_path), "s", {"a": 1}, [], ENTRY)
    plan.dir.mkdir(parents=True)
    (plan.dir / "x.txt").write_text("x")
    published = plan.publish(["x.txt"])
    on_disk = json.loads((plan.dir / "manifest.json").read_text())
    assert on_disk["path"] == f"s/{plan.key}"
    assert str(tmp_path) not in (plan.dir / "manifest.json").read_text()
    assert published.dir == plan.dir.resolve() == read_manifest(plan.dir).dir


def test_copied_stage_directory_reads_at_its_new_place(tmp_path):
    plan = plan_stage(str(tmp_path / "a"), "s", {"a": 1}, [], ENTRY)
    plan.dir.mkdir(parents=True)
    (plan.dir / "x.txt").write_text("x")
    plan.publish(["x.txt"])
    moved = tmp_path / "b" / "s" / plan.key
    moved.parent.mkdir(parents=True)
    plan.dir.rename(moved)
    manifest = read_manifest(moved)
    assert manifest is not None and manifest.file("x.txt") == moved.resolve() / "x.txt"


def test_legacy_manifest_with_an_absolute_path_reads_where_it_lies(tmp_path):
    plan = plan_stage(str(tmp_path), "s", {"a": 1}, [], ENTRY)
    plan.dir.mkdir(parents=True)
    (plan.dir / "x.txt").write_text("x")
    plan.publish(["x.txt"])
    legacy = json.loads((plan.dir / "manifest.json").read_text()) | {"path": "/elsewhere/s/" + plan.key}
    (plan.dir / "manifest.json").write_text(json.dumps(legacy))
    assert read_manifest(plan.dir).dir == plan.dir.resolve()


def test_copied_run_is_cached_and_reads_its_own_files(prefect_harness, tmp_path):
    """Prefect's cache records and payloads travel with the run (the original is deleted)."""
    two_stages(str(tmp_path / "a"), 1, 2)
    shutil.copytree(tmp_path / "a", tmp_path / "b", symlinks=True)
    shutil.rmtree(tmp_path / "a")
    CALLS.clear()
    up_state, down_state, up, down = two_stages(str(tmp_path / "b"), 1, 2)
    assert (up_state, down_state, CALLS) == ("Cached", "Cached", [])
    assert up.dir.parent.parent == down.dir.parent.parent == (tmp_path / "b").resolve()
