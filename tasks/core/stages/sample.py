"""Stage 3: massive sampling of the evaluation problems into a Parquet sample store.

Contract: the problems of the evaluation splits are turned into prompts (``format_prompt``;
with ``randomize_metadata`` each problem's rating/tags are randomised AlphaCode-style by an
RNG seeded from the problem name, so the prompt is stable per problem), planned into shards
(``plan_shards``: a shard never spans problems, seeds derive from (seed, problem, shard)), and
each shard is one cached unit writing one file of ``<stage dir>/samples`` (:func:`run_shard`:
skip a shard already on disk, sample it, write it). :func:`finish`
makes the dedup flags exact, validates exactly problems x n rows with no duplicate
``(problem_id, sample_id)``, and publishes the manifest. ``model_id`` is the model manifest's
key, so every row says which model wrote it.
Thread safety: :func:`run_shard` samples under one process-wide lock. Sampling seeds torch's
process-global RNG per shard, so two shards sampled at once by threads of one process (thread
runner, Dask workers with threads_per_worker > 1) would interleave draws and break per-shard
reproducibility: a process samples one shard at a time. The lock and the backend cache are
module-level, and Dask pickles module-level functions by reference, so every task of a process
shares them.
Device: each shard's backend runs where ``cfg.sampling.device`` (the profile's ``[device]``)
resolves in the process sampling it (:mod:`tasks.core.device`); the manifest records ``device``
and ``dtype`` as resolved in the process that finishes the stage (the same machine unless the
shards ran on a cluster), or the request with a ``device_note`` where that process cannot.
Limits: a prompt that does not fit the model's context fails its shard before any sampling; a
process keeps one backend loaded (``_BackendSlot``): interleaving two models' shards in one
process reloads each time (the flows sample one model per stage, so they do not).
"""

from __future__ import annotations

import hashlib
import random
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from tasks.core.device import recorded
from tasks.core.manifest import Manifest, StagePlan, list_files
from tasks.core.problems import Problem, extract_program, format_prompt
from tasks.core.samplestore import SampleStore, ShardPlan, plan_shards
from tasks.core.sampling import (
    SampleRequest,
    SamplingBackend,
    SamplingParams,
    backend_key,
    make_backend,
    sample_shard,
)
from tasks.core.stages import Stage
from tasks.core.stages.base import Advance, StageInputs
from tasks.core.stages.problems import load_split

if TYPE_CHECKING:
    from tasks.core.config import SampleConfig

STORE = "samples"  # the sample store's directory inside the stage directory
MODEL_DIR = "model"  # the model inside an upstream (finetune, rl) stage directory
_SAMPLING_LOCK = threading.Lock()


class SampleShardUnit(BaseModel):
    """One shard of one sampling stage: the cached unit of stage 3."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    root: str
    stage_key: str
    store_dir: str
    shard: ShardPlan

    @property
    def cache_key(self) -> str:
        problem = hashlib.sha256(self.shard.problem_id.encode()).hexdigest()[:16]
        return f"sample-{self.stage_key}-{problem}-{self.shard.shard_index}"

    def complete(self) -> bool:
        return SampleStore(self.store_dir).has_shard(self.shard)

    @property
    def output(self) -> Path:
        """The one file this unit writes."""
        return SampleStore(self.store_dir).shard_path(self.shard.problem_id, self.shard.shard_index)

    def at_root(self, root: str) -> SampleShardUnit:
        """This unit planned under another run root (the same run's mirror on another node)."""
        rel = Path(self.store_dir).relative_to(self.root)
        return self.model_copy(update={"root": root, "store_dir": str(Path(root) / rel)})


def eval_problems(problems: Manifest, splits: tuple[str, ...]) -> list[Problem]:
    return [p for split in splits for p in load_split(problems, split)]


def build_requests(problems: list[Problem], cfg: SampleConfig) -> dict[str, SampleRequest]:
    requests = {}
    for problem in problems:
        rng = random.Random(f"{cfg.sampling.seed}:{problem.name}") if cfg.randomize_metadata else None
        requests[problem.name] = SampleRequest(
            problem_id=problem.name, prompt=format_prompt(problem, rng=rng)
        )
    return requests


def shard_units(plan: StagePlan, problem_ids: list[str], cfg: SampleConfig) -> list[SampleShardUnit]:
    params = cfg.sampling
    shards = plan_shards(problem_ids, params.n, params.samples_per_shard, base_seed=params.seed)
    store_dir = str(plan.dir / STORE)
    return [SampleShardUnit(root=plan.root, stage_key=plan.key, store_dir=store_dir, shard=s) for s in shards]


class _BackendSlot:
    """The one sampling backend a process keeps loaded, keyed by (model dir, :func:`backend_key`):
    a shard at another temperature, n or seed reuses it; another model or engine setting closes
    it (``close()``, where the backend has one) before the next loads, so a vLLM engine sized to
    most of a GPU never meets a second one in the same process."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._backend: SamplingBackend | None = None
        self.loaded = 0  # backends this slot has loaded, for callers that report it

    def get(self, model_dir: str, params: SamplingParams) -> SamplingBackend:
        key = (model_dir, backend_key(params))
        if key != self._key or self._backend is None:
            self.release()
            self._backend = make_backend(params, model_dir)
            self._key = key
            self.loaded += 1
        return self._backend

    def release(self) -> None:
        backend, self._backend, self._key = self._backend, None, None
        close = getattr(backend, "close", None)
        if close is not None:
            close()


_BACKEND = _BackendSlot()


def backends_loaded() -> int:
    """How many sampling backends this process has loaded (a process keeps one at a time)."""
    return _BACKEND.loaded


def run_shard(unit: SampleShardUnit, model: Manifest, params: SamplingParams, request: SampleRequest) -> int:
    """Sample one shard into the store unless it is already there; the number of samples it holds.

    ``model`` is the upstream model stage (its ``model/`` is sampled, its key is every row's
    ``model_id``). One shard at a time per process (see the module docstring)."""
    store = SampleStore(unit.store_dir)
    if store.has_shard(unit.shard):
        return unit.shard.num_samples
    with _SAMPLING_LOCK:
        backend = _BACKEND.get(str(model.dir / MODEL_DIR), params)
        table = sample_shard(backend, request, params, unit.shard, model.key, extract_program)
    store.write_shard(table, unit.shard)
    return table.num_rows


def finish(plan: StagePlan, problem_ids: list[str], cfg: SampleConfig) -> Manifest:
    store = SampleStore(plan.dir / STORE)
    store.finalize(problem_ids)
    summary = store.validate(problem_ids, cfg.sampling.n)
    table = store.read(columns=["num_tokens", "finish_reason"])
    reasons = table.group_by("finish_reason").aggregate([("finish_reason", "count")]).to_pylist()
    return plan.publish(
        list_files(plan.dir),
        metrics={
            "problems": summary.problems,
            "samples": summary.rows,
            "unique_programs": summary.unique_programs,
            "generated_tokens": int(sum(table.column("num_tokens").to_pylist())),
            "finish_reasons": {r["finish_reason"]: r["finish_reason_count"] for r in reasons},
            "backend": cfg.sampling.backend,
            **recorded(cfg.sampling.device),
        },
    )


def store_of(manifest: Manifest) -> SampleStore:
    return SampleStore(Path(manifest.path) / STORE)


@dataclass(frozen=True)
class SampleInputs(StageInputs):
    """Stage 3: ``model`` (a finetune, RL or SFT-continue stage) sampled on ``splits``."""

    STAGE = Stage.SAMPLE
    sample: SampleConfig
    splits: tuple[str, ...]
    model: Manifest
    problems: Manifest

    def eval_problems(self) -> list[Problem]:
        return eval_problems(self.problems, self.splits)

    def units(self, plan: StagePlan) -> list[tuple[SampleShardUnit, SampleRequest]]:
        """Every shard of the stage with its problem's request."""
        chosen = self.eval_problems()
        requests = build_requests(chosen, self.sample)
        units = shard_units(plan, [p.name for p in chosen], self.sample)
        return [(u, requests[u.shard.problem_id]) for u in units]

    def run(self, plan: StagePlan, progress: Advance | None = None) -> Manifest:
        return finish(plan, [p.name for p in self.eval_problems()], self.sample)
