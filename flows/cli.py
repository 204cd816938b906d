"""``alphacode``: the command line of the pipeline.

``alphacode run --profile NAME [--out DIR] [--set stage.field=value ...]`` validates the config
first (a bad profile, field or path exits with status 2 and one line naming the field and the
fix, before anything runs), then runs the ``alphacode-pipeline`` flow in Prefect's ephemeral
mode and prints where the stores, checkpoints and report are. Prefect and Hugging Face are
configured for this machine before they are imported: project-local ``PREFECT_HOME``, no
telemetry, offline hub, a generous ephemeral-server start-up timeout.

``alphacode seeds --profile NAME --seed 0 --seed 1`` runs it once per seed (stages 2-6 reseeded,
:mod:`tasks.core.seeds`) into one run directory and prints the spread of RL's gain.
``alphacode study --study rl`` trains each candidate of ``data/studies/rl.toml`` and scores it
on ``valid`` only (:mod:`flows.study`).
Also ``profiles``, ``serve`` (a local Prefect stack, :mod:`flows.serve`), ``doctor`` (is this
machine ready? :mod:`tasks.core.doctor`; exit 1 if a required part is missing), ``judge`` and
``humaneval`` (:mod:`flows.cli_judge`) and the ``samples`` group (:mod:`flows.cli_samples`).
Heavy libraries load inside the commands that need them: ``--help``, argument and profile
errors, ``profiles``, ``judge``, ``humaneval`` and ``samples`` import neither torch nor
transformers (``tests/pipeline/test_cli_imports.py``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer

REPO_ROOT = Path(__file__).resolve().parents[1]


def configure_environment() -> None:
    """Defaults for this machine; a value the user already set wins."""
    defaults = {
        "PREFECT_HOME": str(REPO_ROOT / ".prefect"),
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_LOGGING_LEVEL": "INFO",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "TRANSFORMERS_VERBOSITY": "error",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)


configure_environment()


def run_flow(flow_fn, **parameters):
    """Call a pipeline flow with Prefect's flow-run heartbeats off unless the user configured
    them (``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``). Measured (docs/profile-cached-rerun.md): every
    sync subflow joins its heartbeat thread on exit, which sleeps in one-second steps, 0.82 s
    per stage subflow; the project's crash recovery does not use heartbeats (tasks/recovery.py)."""
    if "PREFECT_FLOWS_HEARTBEAT_FREQUENCY" in os.environ:
        return flow_fn(**parameters)
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        return flow_fn(**parameters)


app = typer.Typer(add_completion=False, no_args_is_help=True, help="AlphaCode-style pipeline on Prefect 3.")


def fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def checked_overrides(profile: str, set_: list[str]) -> dict:
    """``--set`` overrides, checked with the profile and every path they name before anything
    runs; a bad one exits with status 2 and one line."""
    from tasks.core.config import ConfigError, load_profile, normalise_overrides, preflight

    try:
        overrides = normalise_overrides(set_)
        preflight(load_profile(profile, overrides))
    except ConfigError as err:
        fail(str(err))
    return overrides


@app.command()
def run(
    profile: str = typer.Option("default", "--profile", "-p", help="a profile in data/profiles"),
    out: str | None = typer.Option(
        None, "--out", "-o", help="run directory or s3://bucket/prefix (default: runs/<profile>)"
    ),
    set_: list[str] = typer.Option([], "--set", help="override, e.g. sample.sampling.n=8 (repeatable)"),
) -> None:
    """Run the whole pipeline: six stages, evaluation before and after RL, and a report."""
    overrides = checked_overrides(profile, set_)
    from flows.pipeline import alphacode_pipeline, default_out_dir
    from tasks.recovery import kill_orphaned_ephemeral_servers

    for pid in kill_orphaned_ephemeral_servers():
        typer.echo(
            f"ended an orphaned ephemeral Prefect server of an earlier killed run (pid {pid})", err=True
        )

    from tasks.core.store import is_url

    root = out if out and is_url(out) else str(Path(out or default_out_dir(profile)).resolve())
    result = run_flow(alphacode_pipeline, profile=profile, out_dir=str(root), overrides=overrides)
    print_summary(result)


def print_summary(result) -> None:
    from tasks.core.stages.sample import MODEL_DIR, STORE

    typer.echo("")
    typer.echo(f"run directory:   {result.root}")
    for name, manifest in result.stages.items():
        typer.echo(f"  {name:<16} {manifest.path}")
    typer.echo(f"sample store:    {result.sft.samples.dir / STORE}")
    typer.echo(f"checkpoints:     {result.finetune.dir / MODEL_DIR}  (RL: {result.rl.dir / MODEL_DIR})")
    typer.echo(
        f"report:          {result.report.dir.parent / 'latest' / 'report.md'}  (= {result.report.dir})"
    )
    typer.echo("RL against the best compute-matched baseline (test splits, temperatures chosen on valid):")
    for row in result.report.metrics.get("comparison", []):
        base = row["best baseline"]
        typer.echo(
            f"  {row['metric']:<8} {row['split']:<15} RL {row['rl']:.3f} vs {base} {row[base]:.3f} "
            f"({row['difference']:+.3f}, 95% CI {row['lo']:+.3f}..{row['hi']:+.3f}, "
            f"{row['problems']} problems in {row['families']} families)"
        )


@app.command()
def scaling(
    profile: str = typer.Option("scaling", "--profile", "-p", help="a profile in data/profiles"),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="run directory (default: runs/<the profile it extends, else itself>)"
    ),
    set_: list[str] = typer.Option([], "--set", help="override, e.g. sample.sampling.n=200 (repeatable)"),
) -> None:
    """Solve rate vs samples per problem: pass@k and 10@k with filtering + clustering, filtering only, neither."""
    overrides = checked_overrides(profile, set_)
    from flows.scaling import alphacode_scaling, out_dir_for

    root = (out or Path(out_dir_for(profile))).resolve()
    result = run_flow(alphacode_scaling, profile=profile, out_dir=str(root), overrides=overrides)
    typer.echo(result.report.read_text())
    typer.echo(f"curve: {result.curve.dir / 'curve.png'}  report: {result.report}")


@app.command()
def seeds(
    profile: str = typer.Option("default", "--profile", "-p", help="a profile in data/profiles"),
    seed: list[int] = typer.Option([0, 1], "--seed", "-s", help="a seed for stages 2-6 (repeatable)"),
    out: Path | None = typer.Option(None, "--out", "-o", help="run directory (default: runs/<profile>)"),
    set_: list[str] = typer.Option([], "--set", help="override, e.g. sample.sampling.n=8 (repeatable)"),
) -> None:
    """Repeat stages 2-6 under each seed into one run directory; report RL's gain across seeds."""
    if len(set(seed)) != len(seed) or any(s < 0 for s in seed):
        fail(f"--seed {seed}: give distinct seeds >= 0, e.g. --seed 0 --seed 1")
    overrides = checked_overrides(profile, set_)
    from flows.pipeline import alphacode_seeds, default_out_dir

    root = (out or Path(default_out_dir(profile))).resolve()
    path = run_flow(alphacode_seeds, profile=profile, seeds=seed, out_dir=str(root), overrides=overrides)
    typer.echo(Path(path).read_text())
    typer.echo(f"seed spread report: {path}")


@app.command()
def study(
    profile: str = typer.Option("default", "--profile", "-p", help="a profile in data/profiles"),
    name: str = typer.Option("rl", "--study", help="a study in data/studies"),
    out: Path | None = typer.Option(None, "--out", "-o", help="run directory (default: runs/<profile>)"),
    set_: list[str] = typer.Option([], "--set", help="override, e.g. select.valid_n=20 (repeatable)"),
) -> None:
    """Train each candidate of a study from the same stage-2 model; score them on valid only."""
    from tasks.core.study import load_study

    overrides = checked_overrides(profile, set_)
    try:
        load_study(name)
    except ValueError as err:
        fail(str(err))
    from flows.pipeline import default_out_dir
    from flows.study import alphacode_study

    root = (out or Path(default_out_dir(profile))).resolve()
    path = run_flow(alphacode_study, profile=profile, study=name, out_dir=str(root), overrides=overrides)
    typer.echo(Path(path).read_text())
    typer.echo(f"study report: {path}")


@app.command()
def reach(
    profile: str = typer.Option("default", "--profile", "-p", help="a profile in data/profiles"),
    k: int = typer.Option(8, "--k", "-k", help="samples per RL problem"),
    temperature: float = typer.Option(1.0, "--temperature", "-t", help="sampling temperature (> 0)"),
    out: Path | None = typer.Option(None, "--out", "-o", help="run directory (default: runs/<profile>)"),
    set_: list[str] = typer.Option(
        [], "--set", help="override, e.g. finetune.train.max_steps=400 (repeatable)"
    ),
) -> None:
    """Before RL: the share of RL problems the stage-2 model solves at least once in k samples."""
    if k < 1 or temperature <= 0:
        fail(f"--k {k} --temperature {temperature}: give k >= 1 and a temperature > 0, e.g. -k 8 -t 1.0")
    overrides = checked_overrides(profile, set_)
    from flows.pipeline import default_out_dir
    from flows.study import alphacode_reach

    root = (out or Path(default_out_dir(profile))).resolve()
    got = run_flow(
        alphacode_reach, profile=profile, k=k, temperature=temperature, out_dir=str(root), overrides=overrides
    )
    typer.echo(
        f"{got.solved} of {got.problems} {got.split} problems = {got.share:.3f} solved on the hidden tests "
        f"at least once in {got.k} samples at T = {got.temperature:g} (evaluation: {got.evaluation})"
    )


@app.command()
def profiles() -> None:
    """List the named profiles."""
    from tasks.core.config import available_profiles

    for name in available_profiles():
        typer.echo(name)


@app.command()
def serve(
    stop: bool = typer.Option(False, "--stop", help="stop the server and worker this command started"),
    port: int = typer.Option(4200, help="port of the local Prefect server"),
) -> None:
    """Start a local Prefect server, the `local-process` pool, all deployments and a worker."""
    from flows.serve import start_stack, stop_stack

    state = Path(os.environ["PREFECT_HOME"]) / "serve"
    if stop:
        typer.echo(f"stopped: {stop_stack(state) or 'nothing was running'}")
        return
    stack = start_stack(state, port)
    typer.echo(
        f"Prefect UI/API: {stack.api_url}  (server pid {stack.server_pid}, worker pid {stack.worker_pid})"
    )
    typer.echo(f"export PREFECT_API_URL={stack.api_url}")
    typer.echo("prefect deployment run 'alphacode-pipeline/smoke' --watch")
    typer.echo("alphacode serve --stop   # ends both by PID")


@app.command()
def doctor(
    runs: Path = typer.Option(Path("runs"), "--runs", help="where run directories go (disk check)"),
    as_json: bool = typer.Option(False, "--json", help="one JSON document on stdout"),
    profile: str | None = typer.Option(
        None, "--profile", help="resolve this profile's [device] and vLLM use (default: device auto)"
    ),
) -> None:
    """Check bubblewrap, the sandbox, user namespaces, Docker, disk, the Prefect API, torch, the
    device and dtype the device policy resolves to here, and whether vLLM is installed.

    Exit status 1 if a required part is missing (each line says what to fix), else 0."""
    from tasks.core.doctor import run_checks

    device_json, vllm_wanted = "{}", False
    if profile is not None:
        from tasks.core.config import ConfigError, load_profile

        try:
            cfg = load_profile(profile)
        except ConfigError as err:
            fail(str(err))
        device_json = cfg.device.model_dump_json()
        vllm_wanted = cfg.sample.sampling.backend == "vllm" or (
            cfg.rl.algorithm == "grpo" and cfg.rl.grpo.use_vllm
        )
    report = run_checks(runs, device_json=device_json, vllm_wanted=vllm_wanted)
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    else:
        for check in report.checks:
            optional = "" if check.required else " (optional)"
            typer.echo(f"{check.status:<8} {check.name + optional:<27} {check.detail}")
            if check.fix and check.status != "ok":
                typer.echo(f"{'':<8} {'':<27} fix: {check.fix}")
        typer.echo("ready" if report.ok else "NOT ready: fix the 'missing' lines above")
    raise typer.Exit(0 if report.ok else 1)


def _register_commands() -> None:
    from flows import cli_judge, cli_samples

    cli_judge.register(app)
    cli_samples.register(app)


_register_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
