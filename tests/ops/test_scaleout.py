"""Scale-out: the runner config, the task runners it builds, and sharded stages that give the
same shards whether they run in turn or on a Dask LocalCluster of 2 processes (or on Ray)."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest

from tasks.core.config import ConfigError, RunnerConfig, load_profile, validate_config
from tasks.runners import make_task_runner, require_runner

EXEC_KEY_COLUMNS = [
    "problem_id",
    "code_hash",
    "test_set",
    "test_index",
    "verdict",
    "exit_code",
    "stdout_sha256",
]


def runner_error(**fields) -> str:
    with pytest.raises(ConfigError) as err:
        load_profile("smoke", [f"runner.{k}={v}" for k, v in fields.items()])
    return str(err.value)


def test_runner_defaults_to_sequential():
    assert load_profile("smoke").runner == RunnerConfig(kind="sequential")


def test_runner_overrides_parse_from_set_strings():
    cfg = load_profile("smoke", ["runner.kind=dask", "runner.workers=4", "runner.threads_per_worker=2"])
    assert cfg.runner == RunnerConfig(kind="dask", workers=4, threads_per_worker=2)


def test_unknown_runner_kind_names_the_field():
    assert "'runner.kind'" in runner_error(kind="spark")


def test_address_needs_a_cluster_kind():
    assert "runner.address only applies to runner.kind 'dask' or 'ray'" in runner_error(
        kind="thread", address="tcp://h:8786"
    )


def test_address_and_local_cluster_size_conflict():
    assert "drop one of them" in runner_error(kind="dask", address="tcp://h:8786", workers=4)


def test_workers_with_sequential_is_rejected():
    assert "no effect with runner.kind 'sequential'" in runner_error(workers=4)


def test_threads_per_worker_is_dask_only():
    assert "only applies to runner.kind 'dask'" in runner_error(kind="ray", threads_per_worker=2)


def test_zero_workers_is_rejected():
    assert "'runner.workers'" in runner_error(kind="thread", workers=0)


def test_runner_is_no_part_of_any_stage_config():
    base = load_profile("smoke")
    dask = validate_config({**base.model_dump(mode="json"), "runner": {"kind": "dask", "workers": 4}})
    stage_fields = [f for f in type(base).model_fields if f not in ("runner", "profile")]
    assert all(getattr(base, f) == getattr(dask, f) for f in stage_fields)


def test_thread_runner_has_the_worker_count():
    from prefect.task_runners import ThreadPoolTaskRunner

    runner = make_task_runner(RunnerConfig(kind="thread", workers=3))
    assert isinstance(runner, ThreadPoolTaskRunner) and runner._max_workers == 3


def test_dask_runner_starts_a_local_process_cluster():
    pytest.importorskip("prefect_dask")
    runner = make_task_runner(RunnerConfig(kind="dask", workers=3, threads_per_worker=2))
    assert runner.cluster_kwargs == {"n_workers": 3, "threads_per_worker": 2, "processes": True}
    assert runner.address is None


def test_dask_runner_connects_to_an_address():
    pytest.importorskip("prefect_dask")
    assert (
        make_task_runner(RunnerConfig(kind="dask", address="tcp://sched:8786")).address == "tcp://sched:8786"
    )


def test_ray_runner_sizes_a_local_instance():
    pytest.importorskip("prefect_ray")
    runner = make_task_runner(RunnerConfig(kind="ray", workers=3))
    assert runner.address is None and runner.init_kwargs["num_cpus"] == 3


def test_missing_extra_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "prefect_dask" else real(name, *a)
    )
    with pytest.raises(ConfigError, match=r"pip install 'alphacode-pipeline\[dask\]'"):
        require_runner(RunnerConfig(kind="dask"))


# --- sharded stages on real runners --------------------------------------------------------


def sum_problem():
    from tasks.core.problems.schema import Problem, Tests

    return Problem(
        name="sum", description="a+b", public_tests=Tests(input=("1 2\n", "4 4\n"), output=("3\n", "8\n"))
    )


def sum_programs():
    from tasks.core.execution import Program

    codes = [
        "a, b = map(int, input().split())\nprint(a + b)\n",
        "print(3)\n",
        "raise SystemExit(1)\n",
        "print(int(input().split()[0]) * 2)\n",
        "import sys\nprint(sum(map(int, sys.stdin.read().split())))\n",
        "print(input()\n",
    ]
    return [Program("sum", f"h{i}", code) for i, code in enumerate(codes)]


def make_exec_flow():
    from prefect import flow

    from flows.stages import _run_exec
    from tasks.core.config import JudgeConfig
    from tasks.core.manifest import plan_stage
    from tasks.core.stages import filter as filter_stage

    @flow(name="scaleout-exec")
    def exec_flow(root: str, parallel: bool) -> str:
        judge = JudgeConfig(workers=1, programs_per_shard=2)
        plan = plan_stage(root, "filter", {"judge": judge.model_dump(mode="json")}, [], filter_stage)
        _run_exec(plan, sum_programs(), "public", {"sum": sum_problem()}, judge, root, parallel=parallel)
        return str(plan.dir / filter_stage.EXEC_DIR)

    return exec_flow


def exec_rows(directory: str) -> list[dict]:
    from tasks.core.execution import read_executions

    table = read_executions(Path(directory)).select(EXEC_KEY_COLUMNS)
    return table.sort_by([(c, "ascending") for c in ["problem_id", "code_hash", "test_index"]]).to_pylist()


@pytest.fixture(scope="module")
def dask_cluster():
    """One LocalCluster of 2 worker processes for the module (start-up costs ~10 s here)."""
    pytest.importorskip("prefect_dask")
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        yield cluster


def executed_on_workers(cluster) -> int:
    """How many tasks the cluster's worker processes have run so far."""
    from distributed import Client

    with Client(cluster) as client:
        return sum(client.run(lambda dask_worker: dask_worker.state.executed_count).values())


@pytest.fixture
def one_torch_thread():
    """Dask workers run torch on 1 thread (the nanny sets OMP_NUM_THREADS=1): match it here, as
    float reductions over another thread count may round differently and sample other tokens."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def on_dask(stage_flow, cluster):
    return stage_flow.with_options(
        task_runner=make_task_runner(RunnerConfig(kind="dask", address=cluster.scheduler_address))
    )


@pytest.mark.slow
def test_dask_execution_shards_equal_sequential(prefect_harness, dask_cluster, tmp_path):
    exec_flow = make_exec_flow()
    seq = exec_flow(str(tmp_path / "seq"), parallel=False)
    before = executed_on_workers(dask_cluster)
    par = on_dask(exec_flow, dask_cluster)(str(tmp_path / "dask"), parallel=True)
    assert executed_on_workers(dask_cluster) - before == 3  # the 3 shards ran in the worker processes
    assert Path(seq).relative_to(tmp_path / "seq") == Path(par).relative_to(
        tmp_path / "dask"
    )  # same stage key
    assert sorted(p.name for p in Path(par).glob("shard-*")) == sorted(
        p.name for p in Path(seq).glob("shard-*")
    )
    assert len(list(Path(par).glob("shard-*"))) == 3
    rows = exec_rows(seq)
    assert rows == exec_rows(par)
    assert {r["verdict"] for r in rows} >= {"ACCEPTED", "WRONG_ANSWER", "RUNTIME_ERROR"}


@pytest.mark.slow
def test_dask_sample_shards_equal_sequential(prefect_harness, dask_cluster, one_torch_thread, tmp_path):
    from flows.stages import sample_flow
    from tasks.core.config import SampleConfig
    from tasks.core.stages.sample import SampleInputs

    problems, model = problems_and_model(tmp_path)
    cfg = SampleConfig(
        sampling={"n": 4, "samples_per_shard": 2, "batch_size": 2, "max_new_tokens": 12, "seed": 7}
    )
    inputs = SampleInputs(cfg, ("test_instances",), model, problems)
    seq = sample_flow(inputs, str(tmp_path / "seq"))
    before = executed_on_workers(dask_cluster)
    par = on_dask(sample_flow, dask_cluster)(inputs, str(tmp_path / "dask"), parallel=True)
    assert executed_on_workers(dask_cluster) - before == 4  # 2 problems x 2 shards, in the worker processes
    assert seq.key == par.key and par.metrics["samples"] == 8
    assert sorted_store(seq).equals(sorted_store(par))


def sorted_store(manifest):
    from tasks.core.samplestore import SampleStore
    from tasks.core.stages.sample import STORE

    table = SampleStore(Path(manifest.path) / STORE).read().drop_columns(["created_at"])
    return table.sort_by([("problem_id", "ascending"), ("sample_id", "ascending")])


def test_thread_runner_sample_shards_equal_sequential(prefect_harness, one_torch_thread, tmp_path):
    from flows.stages import sample_flow
    from tasks.core.config import SampleConfig
    from tasks.core.stages.sample import SampleInputs

    problems, model = problems_and_model(tmp_path)
    cfg = SampleConfig(
        sampling={"n": 4, "samples_per_shard": 1, "batch_size": 1, "max_new_tokens": 12, "seed": 3}
    )
    inputs = SampleInputs(cfg, ("test_instances",), model, problems)
    seq = sample_flow(inputs, str(tmp_path / "seq"))
    threads = sample_flow.with_options(task_runner=make_task_runner(RunnerConfig(kind="thread", workers=4)))
    par = threads(inputs, str(tmp_path / "thread"), parallel=True)
    assert sorted_store(seq).equals(sorted_store(par))


def problems_and_model(tmp_path: Path):
    """A 2-problem set and a tiny random Llama published as a stage (context 4096 for real prompts)."""
    from tasks.core.config import ProblemsConfig
    from tasks.core.manifest import plan_stage, publish
    from tasks.core.stages import problems as problems_stage
    from tests.sampling.tiny import build_model_dir

    cfg = ProblemsConfig(per_family=1, max_eval_problems=2, eval_splits=("test_instances",))
    problems = problems_stage.build_problem_set(
        plan_stage(tmp_path / "shared", "problems", cfg, [], problems_stage), cfg
    )
    model_dir = tmp_path / "shared" / "finetune" / "tiny"
    build_model_dir(model_dir / "model", context=4096)
    files = [str(p.relative_to(model_dir)) for p in (model_dir / "model").iterdir()]
    model = publish(model_dir, stage="finetune", key="tiny", config={}, upstream=[], code="test", files=files)
    return problems, model


def make_failing_flow():
    from prefect import flow, task

    from flows.stages import _run_units

    @task
    def shard(path: str, fail: bool) -> str:
        if fail:
            raise RuntimeError(f"shard {path} failed")
        Path(path).write_text("done")
        return path

    @flow(name="scaleout-failing")
    def failing(paths: list[str]) -> list[str]:
        return _run_units(
            shard,
            [dict(path=p, fail=i == 0) for i, p in enumerate(paths)],
            parallel=True,
            description="test shards",
        )

    return failing


def test_parallel_failure_reraises_after_every_shard_finished(prefect_harness, tmp_path):
    paths = [str(tmp_path / f"s{i}") for i in range(4)]
    with pytest.raises(RuntimeError, match="shard .*s0 failed"):
        make_failing_flow().with_options(
            task_runner=make_task_runner(RunnerConfig(kind="thread", workers=2))
        )(paths)
    assert all(Path(p).read_text() == "done" for p in paths[1:])


@pytest.mark.slow
def test_ray_execution_shards_equal_sequential(prefect_harness, tmp_path):
    pytest.importorskip(
        "prefect_ray", reason="prefect-ray is not installed: pip install 'alphacode-pipeline[ray]'"
    )
    exec_flow = make_exec_flow()
    seq = exec_flow(str(tmp_path / "seq"), parallel=False)
    ray_flow = exec_flow.with_options(task_runner=make_task_runner(RunnerConfig(kind="ray", workers=2)))
    par = ray_flow(str(tmp_path / "ray"), parallel=True)
    assert exec_rows(seq) == exec_rows(par)


@pytest.mark.slow
def test_pipeline_runs_sample_and_filter_on_the_configured_runner(
    prefect_harness, dask_cluster, one_torch_thread, tmp_path
):
    from flows.pipeline import _evaluate
    from tasks.core.stages import Stage

    problems, model = problems_and_model(tmp_path)
    overrides = {
        "problems": {"eval_splits": ["test_instances"]},
        "sample": {"sampling": {"n": 2, "samples_per_shard": 1, "batch_size": 2, "max_new_tokens": 8}},
        "judge": {"workers": 1, "programs_per_shard": 2},
    }
    runs = {}
    for kind, runner in (("seq", {}), ("dask", {"kind": "dask", "address": dask_cluster.scheduler_address})):
        cfg = load_profile("smoke", {**overrides, "runner": runner})
        before = executed_on_workers(dask_cluster)
        t = cfg.sample.sampling.temperature
        run = _evaluate("sft", cfg, t, model, problems, str(tmp_path / kind), Stage.FILTER)
        runs[kind] = (run, executed_on_workers(dask_cluster) - before)
    (seq, seq_tasks), (dask, dask_tasks) = runs["seq"], runs["dask"]
    assert seq_tasks == 0 and dask_tasks >= 4  # 4 sample shards + at least 1 exec shard on the workers
    assert seq.samples.key == dask.samples.key and seq.filtered.key == dask.filtered.key
    assert seq.clusters is None and seq.filtered.metrics == dask.filtered.metrics


def test_gpus_are_a_ray_setting():
    assert "runner.gpus only applies to runner.kind 'ray'" in runner_error(kind="dask", gpus=1)
    assert load_profile("smoke", ["runner.kind=ray", "runner.gpus=0.5"]).runner.gpus == 0.5


def test_a_cluster_without_the_gpus_is_refused_naming_the_fix():
    from tasks.engines import EngineUnavailable, engines_for

    assert engines_for(1, 4) == 4 and engines_for(0.5, 1) == 2 and engines_for(2, 5) == 2
    with pytest.raises(
        EngineUnavailable, match=r"runner.gpus=1: the Ray cluster has 0 GPUs.*ray start --num-gpus"
    ):
        engines_for(1, 0)


@pytest.mark.slow
def test_ray_samples_in_one_engine_per_gpu(prefect_harness, one_torch_thread, tmp_path):
    """Sampling with ``runner.gpus = 1`` on a local Ray told it has one GPU (Ray accounts GPUs, it
    does not probe them): the flows' submit path runs shards in engines; an engine holds GPU 0
    and loads the model once for all its shards; the stage those shards make equals a sequential
    run's; the engines go with their stage (the GPU is free again). And why engines: a task that
    itself asks Ray for a GPU gets a new process per call (``max_calls=1``)."""
    pytest.importorskip("prefect_ray")
    import ray
    from prefect import flow, task
    from prefect_ray.context import remote_options

    from flows.stages import _submit_all, sample_flow
    from tasks.core.config import SampleConfig
    from tasks.core.stages.sample import SampleInputs
    from tasks.engines import engine_pool
    from tasks.progress import StageProgress
    from tasks.runners import _ray_runner_class
    from tasks.stages import sample_shard_task

    problems, model = problems_and_model(tmp_path)
    cfg = SampleConfig(sampling={"n": 4, "samples_per_shard": 2, "batch_size": 2, "max_new_tokens": 12})
    inputs = SampleInputs(cfg, ("test_instances",), model, problems)
    root = str(tmp_path / "ray")
    units = [
        dict(plan=u, model=model, params=cfg.sampling, request=r) for u, r in inputs.units(inputs.plan(root))
    ]
    assert len(units) == 4  # 2 problems x 2 shards

    @task
    def pid(i: int) -> int:
        import os

        return os.getpid()

    def gpus_free() -> float:
        deadline = time.monotonic() + 30
        while ray.available_resources().get("GPU", 0) < 1 and time.monotonic() < deadline:
            time.sleep(0.2)  # ray.kill is asynchronous
        return ray.available_resources().get("GPU", 0)

    runner = _ray_runner_class()(init_kwargs={"num_cpus": 2, "num_gpus": 1, "include_dashboard": False})

    @flow(task_runner=runner)
    def on_ray() -> tuple:
        with StageProgress(4, "engines") as bar:
            counts = _submit_all(sample_shard_task, units[:2], [2, 2], bar, gpus=1)
        free_after_stage = gpus_free()
        with engine_pool(1) as [engine]:
            more = ray.get([engine.run.remote(**kwargs) for kwargs in units[2:]])
            stats = ray.get(engine.stats.remote())
        with remote_options(num_gpus=1):
            pids = [pid.submit(i).result() for i in range(2)]
        return counts + more, stats, free_after_stage, pids

    counts, stats, free_after_stage, pids = on_ray()
    assert counts == [2, 2, 2, 2]
    assert stats.gpu_ids == (0,) and stats.backends_loaded == 1  # two shards, one load
    assert free_after_stage == 1
    assert pids[0] != pids[1]
    seq = sample_flow(inputs, str(tmp_path / "seq"))
    finished = sample_flow(inputs, root)  # every shard is there: it only publishes
    assert finished.key == seq.key and sorted_store(finished).equals(sorted_store(seq))


@pytest.mark.slow
def test_one_ray_job_serves_every_stage_of_a_run(prefect_harness):
    """``runner_session`` starts Ray once for a run; each stage's Ray task runner joins that job
    (does not start or shut down its own), and the session ends it."""
    pytest.importorskip("prefect_ray")
    import ray

    from tasks.runners import runner_session

    cfg = RunnerConfig(kind="ray", workers=1)
    with runner_session(cfg):
        job = ray.get_runtime_context().get_job_id()
        for _ in range(2):  # two stages
            with make_task_runner(cfg) as runner:
                assert runner._owns_ray is False
                assert ray.get_runtime_context().get_job_id() == job
            assert ray.is_initialized()
    assert not ray.is_initialized()
    with runner_session(RunnerConfig(kind="thread", workers=2)):
        assert not ray.is_initialized()
