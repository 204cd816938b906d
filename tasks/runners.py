"""Prefect task runners for the sharded stages (3 sampling, 4-5 and evaluation execution).

Contract: :func:`make_task_runner` turns a :class:`~tasks.core.config.RunnerConfig` into a
Prefect task runner: ``sequential`` -> a one-thread ``ThreadPoolTaskRunner`` (submitted tasks
run one at a time; the flows do not submit at all in this mode), ``thread`` -> a
``ThreadPoolTaskRunner`` with ``workers`` threads, ``dask`` -> ``prefect_dask.DaskTaskRunner``
on a local ``LocalCluster`` of ``workers`` processes (``threads_per_worker`` threads each) or
on the scheduler at ``address``, ``ray`` -> ``prefect_ray.RayTaskRunner`` on a local Ray
instance with ``workers`` CPUs or on the cluster at ``address``. prefect-dask / prefect-ray
are imported only when asked for; a missing one raises :class:`ConfigError` naming the extra
to install. :func:`is_parallel` says whether the flows should ``.submit()`` their shards.
With a local run directory, every worker must see it at the same path (local disk for a local
cluster, a shared mount such as NFS for a multi-node one). With an ``s3://`` run root nothing is
shared but the store: each shard task works in its own node's mirror and moves files through
the store (:mod:`tasks.core.nodes`), so workers may be on other machines (tested with Ray).
GPUs: ``runner.gpus`` (Ray only) is what each sampling engine asks Ray for: the sampling stage
starts one long-lived engine actor per ``gpus`` GPUs of the cluster and runs its shards in them
(:mod:`tasks.engines`); Ray places each on a node with free GPUs and sets
``CUDA_VISIBLE_DEVICES``. In a run whose root is an object store, each training stage is then
one Ray task asking for ``gpus`` (``flows.stages.placed_on_gpus``). Execution shards ask for no GPU. A
local Dask cluster's workers all see every GPU: for GPU sampling on Dask, start one worker per GPU
(``CUDA_VISIBLE_DEVICES`` set per worker) and point ``runner.address`` at its scheduler.
The Ray job carries this process's Prefect API URL to its workers (:func:`_ray_runner_class`);
:func:`runner_session` makes one Ray job serve a whole run (the pipeline's flows enter it).
Parallel execution shards multiply CPU use: up to workers x ``judge.workers`` sandboxes at once.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from tasks.core.config import ConfigError, RunnerConfig

EXTRAS = {"dask": "prefect_dask", "ray": "prefect_ray"}


def is_parallel(cfg: RunnerConfig) -> bool:
    """True when the flows submit shards to the task runner instead of running them in turn."""
    return cfg.kind != "sequential"


def require_runner(cfg: RunnerConfig) -> None:
    """Fail now, with the install command, when ``cfg.kind`` needs a package that is missing."""
    module = EXTRAS.get(cfg.kind)
    if module is not None and importlib.util.find_spec(module) is None:
        raise ConfigError(
            f"runner.kind={cfg.kind!r} needs the {module.replace('_', '-')} package: "
            f"pip install 'alphacode-pipeline[{cfg.kind}]' (or set runner.kind to sequential or thread)"
        )


def make_task_runner(cfg: RunnerConfig) -> TaskRunner:
    """A fresh Prefect task runner for ``cfg`` (Prefect starts and stops it per flow run)."""
    require_runner(cfg)
    if cfg.kind == "sequential":
        return ThreadPoolTaskRunner(max_workers=1)
    if cfg.kind == "thread":
        return ThreadPoolTaskRunner(max_workers=cfg.workers)
    if cfg.kind == "dask":
        return _dask_runner(cfg)
    return _ray_runner(cfg)


def _dask_runner(cfg: RunnerConfig) -> TaskRunner:
    from prefect_dask import DaskTaskRunner

    if cfg.address is not None:
        return DaskTaskRunner(address=cfg.address)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": cfg.workers,
            "threads_per_worker": cfg.threads_per_worker,
            "processes": True,
        }
    )


def _ray_runner(cfg: RunnerConfig) -> TaskRunner:
    if cfg.address is not None:
        return _ray_runner_class()(address=cfg.address)
    return _ray_runner_class()(init_kwargs=_local_ray(cfg))


def _local_ray(cfg: RunnerConfig) -> dict:
    """``ray.init``'s arguments for a local Ray instance of ``runner.workers`` CPUs."""
    return {"num_cpus": cfg.workers, "include_dashboard": False}


def _with_prefect_api_url(init_kwargs: dict) -> dict:
    """``init_kwargs`` whose Ray job carries this process's Prefect API URL to every worker
    (unless they name one already)."""
    runtime_env = init_kwargs.get("runtime_env", {})
    env = {"PREFECT_API_URL": _prefect_api_url(), **runtime_env.get("env_vars", {})}
    return {**init_kwargs, "runtime_env": {**runtime_env, "env_vars": env}}


@lru_cache(maxsize=1)
def _ray_runner_class():
    from prefect_ray import RayTaskRunner

    class ReportingRayTaskRunner(RayTaskRunner):
        """prefect-ray's runner whose Ray job carries this process's Prefect API URL (the
        ephemeral server's included) to every worker: a task reports its run to the API the flow
        uses, on a worker of another node too (measured: without it a task on a ``ray start``
        node times out starting an ephemeral server of its own). The URL must be reachable from
        every node: set ``PREFECT_API_URL`` to a shared Prefect server for a multi-machine run."""

        def __enter__(self):
            self.init_kwargs = _with_prefect_api_url(self.init_kwargs)
            return super().__enter__()

    return ReportingRayTaskRunner


@contextmanager
def runner_session(cfg: RunnerConfig) -> Iterator[None]:
    """For ``runner.kind = "ray"``: one Ray job for a whole run. Ray is initialised here (the
    cluster at ``address``, else a local instance of ``workers`` CPUs; the job carries this
    process's Prefect API URL) and shut down on exit; each stage's Ray task runner then joins
    this job instead of starting its own, so Ray's worker processes, with their imports and the
    model a sampling process keeps, serve every stage (a job per stage started fresh workers for
    each). Other kinds, or Ray already initialised by the caller: nothing to do."""
    if cfg.kind != "ray":
        yield
        return
    import ray

    if ray.is_initialized():
        yield
        return
    ray.init(**_with_prefect_api_url({"address": cfg.address} if cfg.address else _local_ray(cfg)))
    try:
        yield
    finally:
        ray.shutdown()


def _prefect_api_url() -> str:
    from prefect.client.orchestration import get_client

    return str(get_client(sync_client=True).api_url)
