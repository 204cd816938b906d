"""Duplicate work is harmless: the same shard computed twice at once, by two processes that
share no lock (as two hosts may when a lock is not visible to both), leaves one shard file
equal to a single run's, and no temp file.

Both processes are held at their commit point (the ``os.replace`` of the shard file) until both
have reached it, so each computes the whole shard and each commits: neither can skip the work by
finding the other's file. A process that skipped would never reach the barrier and the test would
fail on its timeout.
"""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from tests.ops.test_scaleout import exec_rows, problems_and_model, sum_problem, sum_programs

BARRIER_TIMEOUT_S = 300


def commit_together(barrier, commits: Path) -> None:
    """Patch ``os.replace`` in this process: a ``.parquet`` target waits for the other
    process at the barrier, is replaced, and leaves a note in ``commits``."""
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        if str(dst).endswith(".parquet"):
            barrier.wait(timeout=BARRIER_TIMEOUT_S)
            real(src, dst, *args, **kwargs)
            (commits / f"{os.getpid()}.commit").write_text(str(dst))
            return None
        return real(src, dst, *args, **kwargs)

    os.replace = replace


def exec_child(barrier, commits: Path, unit, problems, judge) -> None:
    from tasks.core.stages import filter as filter_stage

    commit_together(barrier, commits)
    filter_stage.run_exec_shard(unit, problems, judge)


def sample_child(barrier, commits: Path, unit, model, params, request) -> None:
    import torch

    from tasks.core.stages import sample as sample_stage

    torch.set_num_threads(1)
    commit_together(barrier, commits)
    sample_stage.run_shard(unit, model, params, request)


def run_twice_at_once(target, commits: Path, *args) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    commits.mkdir()
    procs = [ctx.Process(target=target, args=(barrier, commits, *args)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=BARRIER_TIMEOUT_S + 60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert len(list(commits.glob("*.commit"))) == 2  # both computed and committed the shard


def leftovers(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if p.is_file() and ".tmp-" in p.name]


def exec_unit(root: Path):
    from tasks.core.config import JudgeConfig
    from tasks.core.manifest import plan_stage
    from tasks.core.stages import filter as filter_stage

    judge = JudgeConfig(workers=1, programs_per_shard=6)
    plan = plan_stage(root, "filter", {"judge": judge.model_dump(mode="json")}, [], filter_stage)
    (unit,) = filter_stage.exec_units(plan, sum_programs(), "public", judge.programs_per_shard)
    return unit, {"sum": sum_problem()}, judge


def test_one_exec_shard_judged_twice_at_once_is_one_shard(tmp_path):
    from tasks.core.stages import filter as filter_stage

    once, problems, judge = exec_unit(tmp_path / "once")
    filter_stage.run_exec_shard(once, problems, judge)
    twice, _, _ = exec_unit(tmp_path / "twice")
    run_twice_at_once(exec_child, tmp_path / "commits", twice, problems, judge)
    assert [p.name for p in Path(twice.exec_dir).iterdir()] == [p.name for p in Path(once.exec_dir).iterdir()]
    assert twice.complete() and exec_rows(twice.exec_dir) == exec_rows(once.exec_dir)
    assert not leftovers(Path(twice.exec_dir))


@pytest.mark.slow
def test_one_sample_shard_sampled_twice_at_once_is_one_shard(tmp_path):
    import torch

    from tasks.core.config import SampleConfig
    from tasks.core.stages import sample as sample_stage
    from tasks.core.stages.sample import SampleInputs

    problems, model = problems_and_model(tmp_path)
    cfg = SampleConfig(sampling={"n": 2, "samples_per_shard": 2, "batch_size": 2, "max_new_tokens": 12})
    inputs = SampleInputs(cfg, ("test_instances",), model, problems)
    once_plan, twice_plan = inputs.plan(tmp_path / "once"), inputs.plan(tmp_path / "twice")
    (once, request), *_ = inputs.units(once_plan)
    (twice, _), *_ = inputs.units(twice_plan)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the children: another thread count may sample other tokens
    try:
        sample_stage.run_shard(once, model, cfg.sampling, request)
    finally:
        torch.set_num_threads(threads)
    run_twice_at_once(sample_child, tmp_path / "commits", twice, model, cfg.sampling, request)
    assert twice.complete() and not leftovers(Path(twice.store_dir))
    assert len(list(Path(twice.store_dir).rglob("*.parquet"))) == 1
    assert store_rows(twice.store_dir).equals(store_rows(once.store_dir))


def store_rows(store_dir: str):
    from tasks.core.samplestore import SampleStore

    return SampleStore(store_dir).read().drop_columns(["created_at"])
