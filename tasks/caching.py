"""Prefect caching for content-addressed stage outputs.

Measured with Prefect 3.9: a cached task that returns a *path* stays "Cached" even when the
files behind it were deleted. So every cached unit here takes a ``plan`` argument (a
:class:`~tasks.core.manifest.StagePlan` or anything with ``cache_key`` and ``complete()``):
its cache key is the plan's content address, and when the plan's output is not complete the
policy first forgets the stale cache record, so the task runs again (and can resume from the
checkpoints it left in its own directory). Records and locks live under the run's own
``<root>/.prefect/`` so that a run directory carries its cache with it. SERIALIZABLE isolation
with a file lock makes a second concurrent run of the same unit wait, then read it as Cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from prefect.cache_policies import CachePolicy
from prefect.locking.filesystem import FileSystemLockManager


class CacheUnit(Protocol):
    root: str

    @property
    def cache_key(self) -> str: ...

    def complete(self) -> bool: ...


@dataclass
class ArtifactCachePolicy(CachePolicy):
    """Key = the unit's content address; an incomplete artifact is a miss, never a stale hit."""

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: Any, **kw: Any):
        unit = inputs.get("plan")
        if unit is None:
            raise TypeError("a cached stage task needs a `plan` argument (StagePlan or unit)")
        key = unit.cache_key
        if not unit.complete():
            record = keys_dir(unit.root) / key
            record.unlink(missing_ok=True)
        return key


def keys_dir(root: str | Path) -> Path:
    return Path(root) / ".prefect" / "cache-keys"


def cache_policy_for(root: str | Path) -> ArtifactCachePolicy:
    base = Path(root) / ".prefect"
    return ArtifactCachePolicy().configure(
        key_storage=keys_dir(root),
        lock_manager=FileSystemLockManager(lock_files_directory=base / "locks"),
        isolation_level="SERIALIZABLE",
    )


def cached(task_obj, root: str | Path):
    """``task_obj`` configured to cache by its ``plan`` argument under ``root``."""
    return task_obj.with_options(cache_policy=cache_policy_for(root), persist_result=True)
