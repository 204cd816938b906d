"""Sampling engines in long-lived Ray actors: one per ``runner.gpus`` GPUs of the cluster.

Contract: :func:`engine_pool` (inside a Ray job: the flow's Ray task runner has connected) starts
``floor(cluster GPUs / gpus)`` :class:`SamplerEngine` actors, each holding ``gpus`` GPUs for its
life, yields their handles, and kills them on exit, which frees the GPUs for the stage that
follows (an engine serves one sampling stage, i.e. one model). An engine runs a shard unit
exactly as the ``sample-shard`` task does (:func:`tasks.stages.sample_unit`: with a store URL,
through its node's mirror) in a process that keeps one backend loaded across the stage's shards
(:class:`tasks.core.stages.sample._BackendSlot`): a vLLM engine starts once per GPU and stage,
not once per shard. The ``sample-shard`` tasks stay the units Prefect tracks, caches and retries;
each hands its unit to the engine the flow assigned it (round robin) and waits for it.
Why actors: Ray gives a task that asks for GPUs ``max_calls=1``, so a GPU task's process exits
after one shard and its model is loaded again for the next (tests/ops/test_scaleout.py).
Limits: a cluster with fewer than ``gpus`` GPUs is refused (:class:`EngineUnavailable`) rather
than left waiting; with a fraction (``gpus = 0.5``) two engines share a GPU, so vLLM's
``gpu_memory_utilization`` must leave room for both; shards are assigned round robin, not to the
first free engine; a dead engine (its node lost) fails the shards assigned to it, so the stage
fails, and a rerun starts a new pool (or names the missing GPUs) and resumes from the shards
already written. Ray is not asked to restart engines: with no other node's GPUs free, a
restarting actor would leave its shards waiting forever.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


class EngineUnavailable(RuntimeError):
    pass


@dataclass(frozen=True)
class EngineStats:
    pid: int
    gpu_ids: tuple
    backends_loaded: int


class SamplerEngine:
    """One process, ``gpus`` GPUs, one loaded backend: runs the sample stage's shard units."""

    def run(self, plan, model, params, request, store_url: str | None = None) -> int | None:
        from tasks.stages import sample_unit

        return sample_unit(plan, model, params, request, store_url)

    def stats(self) -> EngineStats:
        import ray

        from tasks.core.stages.sample import backends_loaded

        return EngineStats(os.getpid(), tuple(ray.get_gpu_ids()), backends_loaded())


def engines_for(gpus: float, cluster_gpus: float) -> int:
    """How many engines of ``gpus`` GPUs each the cluster's ``cluster_gpus`` GPUs hold."""
    count = int(cluster_gpus // gpus)
    if count < 1:
        raise EngineUnavailable(
            f"runner.gpus={gpus}: the Ray cluster has {cluster_gpus:g} GPUs, so no sampling engine "
            "can start; start GPU nodes with `ray start --num-gpus=N`, or set runner.gpus=0 to "
            "sample on CPUs"
        )
    return count


@contextmanager
def engine_pool(gpus: float) -> Iterator[list]:
    """Handles of the engines (see the module docstring); every one is killed on exit."""
    import ray

    actor = ray.remote(num_gpus=gpus, max_restarts=0)(SamplerEngine)
    engines = [actor.remote() for _ in range(engines_for(gpus, ray.cluster_resources().get("GPU", 0)))]
    try:
        yield engines
    finally:
        for engine in engines:
            ray.kill(engine)
