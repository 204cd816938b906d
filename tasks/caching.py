"""Prefect caching for content-addressed stage outputs.

Measured with Prefect 3.9: a cached task that returns a *path* stays "Cached" even when the
files behind it were deleted. So every cached unit here takes a ``plan`` argument (a
:class:`~tasks.core.manifest.StagePlan` or a shard unit: anything with ``root``, ``cache_key``
and ``complete()``):
its cache key is the plan's content address, and when the plan's output is not complete the
policy first forgets the stale cache record, so the task runs again (and can resume from the
checkpoints it left in its own directory). Records, result payloads and locks
live under the run's own ``<root>/.prefect/``, so a run directory carries its cache with it
and several processes (other PREFECT_HOMEs, workers) share it. SERIALIZABLE isolation
with a file lock makes a second concurrent run of the same unit wait, then read it as Cached.

Across hosts (a run directory on a shared mount): each lock's owner file records the holder's
host and PID (:class:`LockOwner`), and the stale-lock rule judges only locks of its own host; a
lock of another host is never deleted here (that host's next run of the unit removes it if its
holder died, or a person does). Locks are an optimisation, not what makes a run correct: two
hosts that both compute a unit write the same deterministic files, each atomically, so the
duplicate work is harmless (tests/ops/test_duplicate_shards.py runs one shard twice at once).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import psutil
from prefect.cache_policies import CachePolicy
from prefect.locking.filesystem import FileSystemLockManager

UNOWNED_LOCK_GRACE_S = 60.0


@dataclass
class ArtifactCachePolicy(CachePolicy):
    """Key = the unit's content address; an incomplete artifact is a miss, never a stale hit."""

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: Any, **kw: Any):
        unit = inputs.get("plan")
        if unit is None:
            raise TypeError("a cached stage task needs a `plan` argument (StagePlan or unit)")
        key = unit.cache_key
        record = keys_dir(unit.root) / key
        if not unit.complete() or not _payload_present(record, unit.root):
            record.unlink(missing_ok=True)
        return key


@dataclass(frozen=True)
class LockOwner:
    """Who holds a lock: host name, that host's boot id (so a rebooted host's old PIDs are not
    taken for live ones) and PID. An owner file of the older format holds only a PID: its
    holder ran on this host (locks had no other host then)."""

    host: str
    boot: str
    pid: int

    @classmethod
    def here(cls) -> LockOwner:
        return cls(host=socket.gethostname(), boot=_boot_id(), pid=os.getpid())

    @classmethod
    def parse(cls, text: str) -> LockOwner:
        """The owner an owner file names; ``ValueError`` when it names none."""
        text = text.strip()
        if text.isdigit():
            return cls(host=socket.gethostname(), boot=_boot_id(), pid=int(text))
        data = json.loads(text)
        return cls(host=str(data["host"]), boot=str(data["boot"]), pid=int(data["pid"]))

    def dump(self) -> str:
        return json.dumps({"host": self.host, "boot": self.boot, "pid": self.pid})

    def dead(self) -> bool:
        """True only when this host can tell the holder is gone: same host, and either booted
        since or the PID no longer exists. Another host's holder is never judged dead here."""
        if self.host != socket.gethostname():
            return False
        return self.boot != _boot_id() or not psutil.pid_exists(self.pid)


@lru_cache(maxsize=1)
def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return str(int(psutil.boot_time()))


class PidFileLockManager(FileSystemLockManager):
    """Prefect's file lock, plus an owner file naming the holder (:class:`LockOwner`).

    Measured: a run killed with SIGKILL while holding a SERIALIZABLE lock leaves the lock
    file behind with no expiration, and the next run waits on it forever. Here a lock whose
    owner is dead on this host is stale and is removed; a lock of another host is left alone.
    A lock without a readable owner file (its holder died between creating the lock and the
    owner file, which a live holder writes at once) is stale after ``UNOWNED_LOCK_GRACE_S``.
    """

    def _owner(self, key: str) -> Path:
        return self._lock_path_for_key(key).with_suffix(".owner")

    def _stale(self, key: str) -> bool:
        lock = self._lock_path_for_key(key)
        try:
            owner = LockOwner.parse(self._owner(key).read_text())
        except (OSError, ValueError, KeyError, TypeError):
            try:
                return time.time() - lock.stat().st_mtime > UNOWNED_LOCK_GRACE_S
            except OSError:
                return False
        return owner.dead()

    def is_locked(self, key: str, use_cache: bool = False) -> bool:
        if super().is_locked(key, use_cache=use_cache) and self._stale(key):
            self._lock_path_for_key(key).unlink(missing_ok=True)
            self._owner(key).unlink(missing_ok=True)
            self._locks.pop(key, None)
            return False
        return super().is_locked(key, use_cache=use_cache)

    def acquire_lock(self, key, holder, acquire_timeout=None, hold_timeout=None) -> bool:
        acquired = super().acquire_lock(key, holder, acquire_timeout, hold_timeout)
        if acquired:
            self._owner(key).write_text(LockOwner.here().dump())
        return acquired

    def release_lock(self, key: str, holder: str) -> None:
        super().release_lock(key, holder)
        self._owner(key).unlink(missing_ok=True)


def _payload_present(record: Path, root: str) -> bool:
    """A cache record is usable only if its payload is in this run's results directory (a
    record from before that layout, or one whose payload was deleted, would fail the read)."""
    try:
        storage_key = json.loads(record.read_text())["storage_key"]
    except FileNotFoundError:
        return True  # no record: nothing to forget
    except (OSError, ValueError, KeyError):
        return False
    results = (Path(root) / ".prefect" / "results").resolve()
    payload = Path(storage_key) if Path(storage_key).is_absolute() else results / storage_key
    return payload.is_file() and results in payload.resolve().parents


def push_record(root: str | Path, cache_key: str, remote) -> bool:
    """Copy a unit's cache record and its payload from ``root`` (a store's mirror) to the
    ``remote`` store (:class:`tasks.core.store.Remote`) under ``.prefect/``, payload first, so a
    mirror of the same run on another node, or of a copy of it, finds the unit Cached. False
    when ``root`` has no usable record (nothing is written then)."""
    record = keys_dir(root) / cache_key
    try:
        storage_key = json.loads(record.read_text())["storage_key"]
    except (OSError, ValueError, KeyError):
        return False
    payload = Path(root) / ".prefect" / "results" / storage_key
    if Path(storage_key).is_absolute() or not _payload_present(record, str(root)):
        return False
    remote.write_bytes(remote.path(".prefect", "results", storage_key), payload.read_bytes())
    remote.write_bytes(remote.path(".prefect", "cache-keys", cache_key), record.read_bytes())
    return True


def pull_record(root: str | Path, cache_key: str, remote) -> bool:
    """The reverse of :func:`push_record` into ``root``, payload then record, each written
    atomically; a record already in ``root`` is kept. False when the store has none."""
    from tasks.core.io import atomic_write_bytes

    record = keys_dir(root) / cache_key
    if record.is_file():
        return True
    raw = remote.read_bytes(remote.path(".prefect", "cache-keys", cache_key))
    try:
        storage_key = json.loads(raw)["storage_key"] if raw is not None else None
    except (ValueError, KeyError):
        return False
    if storage_key is None or Path(storage_key).is_absolute():
        return False
    payload = remote.read_bytes(remote.path(".prefect", "results", storage_key))
    if payload is None:
        return False
    atomic_write_bytes(Path(root) / ".prefect" / "results" / storage_key, payload)
    atomic_write_bytes(record, raw)
    return True


def keys_dir(root: str | Path) -> Path:
    return Path(root) / ".prefect" / "cache-keys"


def cache_policy_for(root: str | Path) -> ArtifactCachePolicy:
    base = Path(root) / ".prefect"
    return ArtifactCachePolicy().configure(
        key_storage=keys_dir(root),
        lock_manager=PidFileLockManager(lock_files_directory=base / "locks"),
        isolation_level="SERIALIZABLE",
    )


@lru_cache(maxsize=64)
def _results_block(root: str, api: str):
    """A saved LocalFileSystem block for ``<root>/.prefect/results`` in the current API.

    Measured: with results in the default ``$PREFECT_HOME/storage``, a second process with
    another PREFECT_HOME finds the shared cache record but not its payload ("outside of the
    base path") and fails. Keeping payloads beside the records, in the run directory, makes
    the run directory self-contained. Prefect needs the block saved server-side to use it.
    """
    from prefect.filesystems import LocalFileSystem

    block = LocalFileSystem(basepath=str(Path(root) / ".prefect" / "results"))
    block.save(name="alphacode-results-" + hashlib.sha256(root.encode()).hexdigest()[:16], overwrite=True)
    return block


def cached(task_obj, root: str | Path):
    """``task_obj`` configured to cache by its ``plan`` argument, records and payloads in ``root``."""
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME

    api = str(PREFECT_API_URL.value() or PREFECT_HOME.value())
    return task_obj.with_options(
        cache_policy=cache_policy_for(root),
        persist_result=True,
        result_storage=_results_block(str(Path(root).resolve()), api),
    )
