"""Stage 3: massive sampling of the evaluation problems into a Parquet sample store.

Contract: the problems of the evaluation splits are turned into prompts (``format_prompt``;
with ``randomize_metadata`` each problem's rating/tags are randomised AlphaCode-style by an
RNG seeded from the problem name, so the prompt is stable per problem), planned into shards
(``plan_shards``: a shard never spans problems, seeds derive from (seed, problem, shard)), and
each shard is one cached unit writing one file of ``<stage dir>/samples``. :func:`finish`
makes the dedup flags exact, validates exactly problems x n rows with no duplicate
``(problem_id, sample_id)``, and publishes the manifest. ``model_id`` is the model manifest's
key, so every row says which model wrote it.
Limits: prompts that do not fit the model's context fail the stage before any sampling.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from tasks.core.config import SampleConfig
from tasks.core.manifest import Manifest, StagePlan, list_files
from tasks.core.problems import Problem, format_prompt
from tasks.core.samplestore import SampleStore, ShardPlan, plan_shards
from tasks.core.sampling import SampleRequest
from tasks.core.stages.problems import load_split

MODULES = (
    "tasks/core/sampling.py",
    "tasks/core/sampling_vllm.py",
    "tasks/core/samplestore.py",
    "tasks/core/problems/prompt.py",
    "tasks/core/stages/sample.py",
)
STORE = "samples"


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
        },
    )


def store_of(manifest: Manifest) -> SampleStore:
    return SampleStore(Path(manifest.path) / STORE)
