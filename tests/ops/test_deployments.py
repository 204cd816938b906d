"""From a fresh PREFECT_HOME: a real local server, the pool, `prefect deploy --all`, a worker,
then `prefect deployment run 'alphacode-pipeline/smoke' --watch` completes, parameter
overrides reach the stage configs, and a bad value fails the run naming the field."""

from __future__ import annotations

import json
import os
import socket
import subprocess

import pytest

from flows.serve import REPO_ROOT, prefect_bin, stack_env, start_stack, stop_stack

pytestmark = pytest.mark.slow

# A smaller smoke: the point here is the deployment path, not the model. Valid is cut too
# (2 problems, 2 samples each, one temperature): the smoke profile's 8 x 5 valid samples per
# model at each of 2 temperatures were about two thirds of this run's sampling shards, and one
# temperature also means one test-split evaluation per model (the grid is the smoke run's).
TINY = {
    "problems": {"max_eval_problems": 2, "max_rl_problems": 4, "max_valid_problems": 2, "per_family": 2},
    "pretrain": {"train": {"max_steps": 3, "warmup_steps": 1}},
    "finetune": {"train": {"max_steps": 3, "warmup_steps": 1}},
    "sample": {"sampling": {"n": 2, "samples_per_shard": 2, "batch_size": 2, "max_new_tokens": 16}},
    "rl": {"grpo": {"steps": 1, "num_generations": 2, "prompts_per_step": 1, "max_completion_length": 16}},
    "select": {"valid_n": 2, "temperatures": [0.8]},
    "evaluate": {"ks": [1, 2], "n_at_k": [1, 2]},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect-home")
    old = os.environ.get("PREFECT_HOME")
    os.environ["PREFECT_HOME"] = str(home)
    try:
        started = start_stack(home / "serve", free_port())
        yield started
    finally:
        stop_stack(home / "serve")
        if old is None:
            os.environ.pop("PREFECT_HOME", None)
        else:
            os.environ["PREFECT_HOME"] = old


def deployment_run(stack, name: str, params: dict, timeout: int = 540) -> subprocess.CompletedProcess:
    args = [prefect_bin(), "deployment", "run", name, "--watch", "--watch-timeout", str(timeout)]
    for key, value in params.items():
        args += ["--param", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
    return subprocess.run(
        args,
        cwd=REPO_ROOT,
        env=stack_env(stack.api_url),
        capture_output=True,
        text=True,
        timeout=timeout + 60,
    )


def test_smoke_deployment_completes_with_overrides(stack, tmp_path):
    out = tmp_path / "run"
    proc = deployment_run(stack, "alphacode-pipeline/smoke", {"out_dir": str(out), "overrides": TINY})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    manifests = [json.loads(p.read_text()) for p in (out / "sample").glob("*/manifest.json")]
    on_test = [m for m in manifests if all(s.startswith("test") for s in m["config"]["splits"])]
    assert on_test, [m["config"]["splits"] for m in manifests]
    # the override reached every test-split sampling stage (valid sampling uses select.valid_n)
    assert {m["config"]["sample"]["sampling"]["n"] for m in on_test} == {2}
    assert (out / "report").is_dir()


def test_bad_parameter_fails_fast_naming_the_field(stack, tmp_path):
    bad = {**TINY, "sample": {"sampling": {"n": 0}}}
    proc = deployment_run(
        stack, "alphacode-pipeline/smoke", {"out_dir": str(tmp_path / "bad"), "overrides": bad}, timeout=120
    )
    assert proc.returncode != 0
    log = (stack.state_dir / "worker.log").read_text()
    assert "sample.sampling.n" in log
    assert not (tmp_path / "bad" / "pretrain").exists()


def test_stop_leaves_no_process(tmp_path):
    home = tmp_path / "serve"
    home.mkdir()
    assert stop_stack(home) == []
