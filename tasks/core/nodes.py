"""Shard units that run on any node of a cluster whose run root is an object store.

Contract: a shard unit (a sampling shard, :class:`~tasks.core.stages.sample.SampleShardUnit`,
or an execution shard, :class:`~tasks.core.stages.filter.ExecShardUnit`) writes exactly one
file, ``unit.output``, under its run root, atomically and with deterministic rows (a
sampling shard's ``created_at`` column aside). It is planned on
the node that runs the flow, in that node's mirror of the run (:mod:`tasks.core.store`).
:func:`run_unit` runs it on whichever node this is:

* without a store URL (a local run directory) it just computes the unit, as before;
* with one, it rebinds the unit and the upstream stages it reads to *this* node's mirror of the
  same run (:func:`~tasks.core.store.working_root`; no path of the planning node is used), and
  then: a unit already complete in this mirror is uploaded if the store lacks it; a unit whose
  file is in the store is downloaded instead of computed; otherwise the upstream stages are
  pulled whole from the store (a model directory once per node), the unit is computed, and its
  file is uploaded to the same relative path in the store.

:func:`fetch_unit` brings a unit's file from the store into a mirror (the flow's node calls it
for every unit before submitting, so finished shards of an interrupted stage are never redone,
whichever node did them, and after, to collect what other nodes computed).

Duplicates are harmless: a unit computed twice (two nodes, or a task retried after its node
died) writes and uploads the same rows twice (the later upload replaces the earlier, each
atomic). A downloaded file that does
not validate as the unit's output (``unit.complete()``) is deleted and the unit is computed.
:func:`run_stage_here` does the same for a whole stage placed on another node as one task (the
training stages on a Ray GPU node): inputs rebound, upstream stages pulled, the stage computed
and pushed whole; the flow's node then pulls it. Two nodes computing the same stage at once is
not guarded (the flow places each stage once).
Limits: a unit's partial work (a shard half sampled) is not shared; only finished files travel,
so a training stage interrupted on one node resumes from its checkpoint only where Ray places
its rerun on the same node (elsewhere it starts again).
The store URL must name the same run on every node (the credentials and endpoint come from each
node's environment, see :mod:`tasks.core.store`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from tasks.core.manifest import Manifest, read_manifest
from tasks.core.store import Remote, working_root

if TYPE_CHECKING:
    from tasks.core.stages.base import StageInputs


class Unit(Protocol):
    root: str

    @property
    def output(self) -> Path: ...

    def complete(self) -> bool: ...

    def at_root(self, root: str) -> Any: ...


U = TypeVar("U", bound=Unit)


def _rel(unit: Unit) -> str:
    return Path(unit.output).relative_to(unit.root).as_posix()


def fetch_unit(unit: Unit, remote: Remote) -> bool:
    """``unit`` complete in its mirror: already, or after downloading its file from ``remote``.
    A downloaded file that does not validate is removed (False)."""
    if unit.complete():
        return True
    if not remote.get_file(_rel(unit), unit.output):
        return False
    if unit.complete():
        return True
    Path(unit.output).unlink(missing_ok=True)
    return False


def publish_unit(unit: Unit, remote: Remote) -> None:
    """Upload ``unit``'s finished file unless the store has it with the same size."""
    local = Path(unit.output)
    if not remote.has_file(_rel(unit), local.stat().st_size):
        remote.put_file(_rel(unit), local)


def pending(units: list[Unit], remote: Remote) -> list[int]:
    """Indices of the ``units`` that are neither complete in this mirror nor in the store (those
    that are in the store are downloaded on the way)."""
    return [i for i, unit in enumerate(units) if not fetch_unit(unit, remote)]


def collect(units: list[Unit], remote: Remote) -> None:
    """Every unit, computed here or on another node, complete in this mirror (downloaded from
    the store); ``RuntimeError`` naming one that is in neither."""
    missing = [unit.output for unit in units if not fetch_unit(unit, remote)]
    if missing:
        raise RuntimeError(
            f"{len(missing)} shard(s) finished without their file reaching the store {remote.url}, "
            f"e.g. {missing[0]}: rerun the flow (finished shards are kept)"
        )


def on_this_node(unit: U, url: str, upstream: tuple[Manifest, ...] = ()) -> tuple[U, tuple[Manifest, ...]]:
    """``unit`` and its upstream stages rebound to this node's mirror of the run at ``url``."""
    root = working_root(url)
    moved = tuple(m.at(Path(root) / m.relative_path) for m in upstream)
    return unit.at_root(root), moved


def pull_upstream(upstream: tuple[Manifest, ...], remote: Remote) -> None:
    """Every upstream stage complete in this node's mirror (pulled whole when missing)."""
    for m in upstream:
        if read_manifest(m.dir) is None and remote.pull(m.stage, m.key, m.dir) is None:
            raise FileNotFoundError(
                f"upstream stage {m.relative_path} is neither in this node's mirror ({m.dir}) nor "
                f"complete in the store {remote.url}: run the stage first (the flow pushes every "
                "stage it finishes) or check that every node names the same store"
            )


def run_stage_here(inputs: StageInputs, url: str) -> Manifest:
    """Compute the stage ``inputs`` declare on this node, through the store at ``url``: the
    inputs rebound to this node's mirror, every upstream stage pulled, the stage computed (or
    pulled, if the store has it complete) and pushed whole, ``manifest.json`` last. Returns the
    manifest in this node's mirror. For stages placed on another node as one task (training)."""
    remote = Remote(url)
    root = Path(working_root(url))
    inputs = inputs.moved(lambda m: m.at(root / m.relative_path))
    plan = inputs.plan(root)
    manifest = plan.manifest() or remote.pull(plan.stage, plan.key, plan.dir)
    if manifest is None:
        pull_upstream(tuple(m for _, m in inputs.upstream()), remote)
        manifest = inputs.run(plan)
    remote.push(manifest)
    return manifest


def run_unit(
    unit: U,
    url: str | None,
    compute: Callable[..., int],
    upstream: tuple[Manifest, ...] = (),
) -> int | None:
    """Run ``compute(unit, *upstream)`` for one unit on this node (see the module docstring);
    with a store ``url``, the unit's file ends up in the store. Returns ``compute``'s count, or
    None when the unit's file came from the store and nothing was computed."""
    if url is None:
        return compute(unit, *upstream)
    remote = Remote(url)
    unit, upstream = on_this_node(unit, url, upstream)
    if fetch_unit(unit, remote):
        publish_unit(unit, remote)
        return None
    pull_upstream(upstream, remote)
    count = compute(unit, *upstream)
    publish_unit(unit, remote)
    return count
