"""The sandbox judge a stage runs programs with, built from the run's :class:`JudgeConfig`.

Contract: :func:`make_judge` returns a :class:`~tasks.core.sandbox.Judge` (a context manager:
its sandboxes are torn down on exit) with the configured backend, worker count and default
limits (:func:`judge_limits`: CPU time and memory per test); :func:`limit_policy` turns a
problem's own limits into the limits its tests run under. Filtering, clustering, evaluation
(:func:`tasks.core.stages.filter.run_exec_shard`) and RL (:func:`tasks.core.stages.rl.run_rl`)
build their judge here, so one config means one judge everywhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tasks.core.jobs import LimitPolicy
from tasks.core.sandbox import Judge
from tasks.core.sandbox.types import Limits

if TYPE_CHECKING:
    from tasks.core.config import JudgeConfig


def judge_limits(cfg: JudgeConfig) -> Limits:
    return Limits(time_s=cfg.time_limit_s, memory_mb=cfg.memory_mb)


def limit_policy(cfg: JudgeConfig) -> LimitPolicy:
    """How each problem's own limits become the judge's, for every stage that runs tests (the
    filter, cluster and evaluate shards and the RL rewards): one rule, so RL is rewarded under
    exactly the limits evaluation measures with."""
    return LimitPolicy.from_config(cfg)


def make_judge(cfg: JudgeConfig) -> Judge:
    return Judge(backend=cfg.backend, workers=cfg.workers, limits=judge_limits(cfg))
