"""The judge: runs untrusted programs against tests in a sandbox and returns typed verdicts.

Contract: ``Judge(backend, workers, limits)`` is cheap to build (no process starts until the
first job) and safe to share between threads; at most ``workers`` sandboxes run at once per
Judge. ``run(job)`` returns a ``JobResult`` with one ``TestResult`` per test, in order (fewer when
``job.stop_on_first_failure`` stops at the first non-ACCEPTED test). ``run_many(jobs)`` runs
them in parallel over the worker slots and keeps the order.

Verdict rule per test, first match wins: OUTPUT_LIMIT_EXCEEDED (stdout or stderr over
``limits.output_bytes``, or killed by SIGXFSZ); TIME_LIMIT_EXCEEDED (wall time over
``limits.wall_s``, CPU time over ``limits.time_s`` or SIGXCPU); MEMORY_LIMIT_EXCEEDED (a failed run
whose stderr ends in ``MemoryError`` / mentions ``std::bad_alloc``, or whose peak RSS reached the
limit — RLIMIT_AS makes allocations fail, so other out-of-memory crashes read as
RUNTIME_ERROR); RUNTIME_ERROR (non-zero exit or signal); then the style's check: ``stdio``
compares stdout with ``compare_outputs`` (``expected`` None accepts any clean exit), ``call``
compares the JSON return value with ``compare_json`` (a return value that is not valid UTF-8
JSON, nests too deeply or holds an integer too long to convert is WRONG_ANSWER with a detail:
whatever a program writes is data, never an exception on the host), ``assert`` accepts a clean
exit only if the runner saw the test code complete (its nonce handshake, see ``runner.py``);
a clean exit before that is RUNTIME_ERROR ("exited before the test code finished").
C++ that does not compile gives COMPILE_ERROR for every test. SANDBOX_ERROR means the harness
failed: the whole job is retried up to ``max_retries`` times (``JobResult.sandbox_retries``
counts them) and only reported if every attempt failed. Invalid jobs raise ValueError when the
``Job`` is built (see ``types.Job``), so a batch never fails half-way. Limits: a job's own
``Job.limits`` win over the ``limits`` passed to ``run``/``run_many``, which win over the judge's. ``backend="docker"`` runs
the same runner in warm Docker containers (``docker_backend.py``; same verdict rules).
"""

from __future__ import annotations

import hashlib
import json
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .bwrap import BwrapBackend, SandboxError, SandboxUnavailable
from .compare import compare_json, compare_outputs
from .types import Job, JobResult, Limits, TestCase, TestResult, Verdict

PREFIX_BYTES = 1024
BACKENDS = ("bwrap", "docker")


def validate_limits(limits: Limits) -> Limits:
    for name in (
        "time_s",
        "memory_mb",
        "output_bytes",
        "file_size_bytes",
        "processes",
        "open_files",
        "wall_factor",
        "compile_time_s",
    ):
        value = getattr(limits, name)
        if not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"Limits.{name} must be a positive number, got {value!r}")
    if limits.open_files < 16:
        raise ValueError("Limits.open_files must be at least 16 (the runtime needs a few)")
    return limits


def build_request(job: Job, limits: Limits) -> dict:
    """The JSON request for the in-sandbox runner (test inputs only, never expected outputs)."""
    return {
        "language": job.language,
        "style": job.style,
        "entry_point": job.entry_point,
        "program": job.program,
        "inputs": [t.input for t in job.tests],
        "limits": {
            "time_s": float(limits.time_s),
            "wall_s": float(limits.wall_s),
            "memory_bytes": int(limits.memory_mb) << 20,
            "output_bytes": int(limits.output_bytes),
            "file_size_bytes": int(limits.file_size_bytes),
            "processes": int(limits.processes),
            "open_files": int(limits.open_files),
            "compile_time_s": float(limits.compile_time_s),
        },
    }


def job_timeout(job: Job, limits: Limits) -> float:
    """Overall harness deadline for one job; past it the job is a SANDBOX_ERROR."""
    compile_s = 2 * limits.compile_time_s if job.language == "cpp" else 0.0
    return 15.0 + compile_s + len(job.tests) * (limits.wall_s + 1.0)


def _decode(data: bytes) -> str:
    return data[:PREFIX_BYTES].decode("utf-8", "replace")


def _common(meta: dict, blob: bytes) -> dict:
    return {
        "wall_s": float(meta.get("wall_s", 0.0)),
        "cpu_s": float(meta.get("cpu_s", 0.0)),
        "peak_memory_kb": meta.get("maxrss_kb"),
        "exit_code": meta.get("exit_code"),
        "signal": meta.get("signal"),
        "stdout_sha256": hashlib.sha256(blob).hexdigest(),
        "stdout_prefix": _decode(blob),
        "stderr_prefix": meta.get("stderr_prefix", "")[:PREFIX_BYTES],
    }


def _limit_verdict(meta: dict, limits: Limits) -> tuple[Verdict, str] | None:
    sig = meta.get("signal")
    if meta.get("output_exceeded") or sig == signal.SIGXFSZ:
        return Verdict.OUTPUT_LIMIT_EXCEEDED, "output or file size limit exceeded"
    if meta.get("timed_out"):
        return Verdict.TIME_LIMIT_EXCEEDED, f"wall time over {limits.wall_s:g} s"
    if meta.get("cpu_s", 0.0) > limits.time_s or sig == signal.SIGXCPU:
        return Verdict.TIME_LIMIT_EXCEEDED, f"CPU time over {limits.time_s:g} s"
    failed = sig is not None or meta.get("exit_code") != 0
    rss_kb = meta.get("maxrss_kb") or 0
    if failed and (meta.get("memory_error") or rss_kb >= limits.memory_mb * 1024):
        return Verdict.MEMORY_LIMIT_EXCEEDED, f"memory limit {limits.memory_mb} MiB"
    if failed:
        what = f"signal {sig}" if sig is not None else f"exit code {meta.get('exit_code')}"
        return Verdict.RUNTIME_ERROR, what
    return None


def _style_verdict(job: Job, test: TestCase, meta: dict, blob: bytes) -> tuple[Verdict, str]:
    if job.style == "assert":
        if meta.get("completed") is True:
            return Verdict.ACCEPTED, ""
        return Verdict.RUNTIME_ERROR, "exited before the test code finished (no completion handshake)"
    if test.expected is None:
        return Verdict.ACCEPTED, ""
    if job.style == "stdio":
        ok = compare_outputs(blob.decode("utf-8", "replace"), test.expected)
        return (Verdict.ACCEPTED, "") if ok else (Verdict.WRONG_ANSWER, "output differs")
    if not blob:
        return Verdict.WRONG_ANSWER, f"{job.entry_point} returned nothing (exited early)"
    try:
        actual = decode_result(blob)
    except MalformedResult as exc:
        return Verdict.WRONG_ANSWER, f"return value is not decodable JSON: {exc}"
    ok = compare_json(actual, json.loads(test.expected))
    return (Verdict.ACCEPTED, "") if ok else (Verdict.WRONG_ANSWER, "return value differs")


class MalformedResult(ValueError):
    """A call-style result the host cannot decode; a WRONG_ANSWER, never a host failure."""


def decode_result(blob: bytes) -> object:
    """Decode a program's JSON return value; any failure raises :class:`MalformedResult`."""
    try:
        return json.loads(blob.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError, MemoryError) as exc:
        raise MalformedResult(f"{type(exc).__name__}: {str(exc)[:200]}") from None


def test_result(job: Job, test: TestCase, meta: dict, blob: bytes, limits: Limits) -> TestResult:
    """Map one runner frame to a TestResult (raises SandboxError if the harness broke)."""
    if not meta.get("setup_ok", False):
        raise SandboxError(f"test child setup failed: {meta.get('stderr_prefix', '')[:500]}")
    verdict, detail = _limit_verdict(meta, limits) or _style_verdict(job, test, meta, blob)
    return TestResult(verdict=verdict, detail=detail, **_common(meta, blob))


def compile_error_results(job: Job, meta: dict) -> tuple[TestResult, ...]:
    detail = "compilation timed out" if meta.get("timed_out") else "compilation failed"
    one = TestResult(verdict=Verdict.COMPILE_ERROR, detail=detail, **_common(meta, b""))
    return tuple(one for _ in job.tests)


@dataclass
class _Collector:
    """Turns streamed frames into TestResults; tells the backend when to stop early."""

    job: Job
    limits: Limits
    results: list[TestResult] = field(default_factory=list)
    compile_failed: bool = False

    def __call__(self, meta: dict, blob: bytes) -> bool:
        if meta.get("kind") == "compile":
            if not meta.get("setup_ok", False):
                raise SandboxError("compiler child setup failed")
            if not meta.get("ok"):
                self.results = list(compile_error_results(self.job, meta))
                self.compile_failed = True
                return False
            return True
        index = meta.get("index")
        if index != len(self.results):
            raise SandboxError(f"runner sent test {index}, expected {len(self.results)}")
        result = test_result(self.job, self.job.tests[index], meta, blob, self.limits)
        self.results.append(result)
        return not (self.job.stop_on_first_failure and not result.passed)

    def complete(self) -> bool:
        stopped = self.results and not self.results[-1].passed and self.job.stop_on_first_failure
        return self.compile_failed or bool(stopped) or len(self.results) == len(self.job.tests)


class Judge:
    """Thread-safe front door: ``run``/``run_many`` with retries of harness failures."""

    def __init__(
        self, backend: str = "bwrap", workers: int = 2, limits: Limits = Limits(), max_retries: int = 2
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; allowed: {', '.join(BACKENDS)}")
        if not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive int, got {workers!r}")
        self.limits = validate_limits(limits)
        self.workers, self.max_retries = workers, max_retries
        self._slots = threading.BoundedSemaphore(workers)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        if backend == "docker":
            from .docker_backend import DockerBackend

            self._backend = DockerBackend(workers=workers, limits=self.limits)
        else:
            self._backend = BwrapBackend()

    def __enter__(self) -> Judge:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        close = getattr(self._backend, "close", None)
        if close is not None:
            close()

    def run(self, job: Job, limits: Limits | None = None) -> JobResult:
        if not isinstance(job, Job):
            raise ValueError(f"run() needs a Job, got {type(job).__name__}")
        limits = job.limits if job.limits is not None else limits
        limits = validate_limits(limits) if limits is not None else self.limits
        self._backend.probe()
        with self._slots:
            return self._run_with_retries(job, limits)

    def run_many(self, jobs: list[Job], limits: Limits | None = None) -> list[JobResult]:
        jobs = list(jobs)
        for i, job in enumerate(jobs):
            if not isinstance(job, Job):
                raise ValueError(f"run_many() item {i} is a {type(job).__name__}, not a Job")
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="judge")
            pool = self._pool
        return list(pool.map(lambda job: self.run(job, limits), jobs))

    def _run_with_retries(self, job: Job, limits: Limits) -> JobResult:
        request = build_request(job, limits)
        errors: list[str] = []
        for attempt in range(self.max_retries + 1):
            collector = _Collector(job, limits)
            try:
                self._backend.execute(request, job_timeout(job, limits), collector)
                if not collector.complete():
                    raise SandboxError(
                        f"runner finished after {len(collector.results)} of {len(job.tests)} tests"
                    )
                return JobResult(results=tuple(collector.results), sandbox_retries=attempt)
            except SandboxError as exc:
                errors.append(str(exc))
        detail = f"sandbox failed {len(errors)} times; last: {errors[-1]}"[:2000]
        failed = TestResult(verdict=Verdict.SANDBOX_ERROR, detail=detail)
        return JobResult(results=tuple(failed for _ in job.tests), sandbox_retries=self.max_retries)


__all__ = ["Judge", "SandboxUnavailable", "SandboxError", "compare_outputs", "validate_limits"]
