"""Typed inputs and verdicts of the judge. Pure data: no process is started here."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum

LANGUAGES = ("python", "cpp")
STYLES = ("stdio", "call", "assert")


class SandboxUnavailable(RuntimeError):
    """No sandbox can be created on this machine; the message says how to fix it."""


class SandboxError(RuntimeError):
    """The harness (not the program) failed for one job; the judge retries it."""


class Verdict(str, Enum):
    ACCEPTED = "ACCEPTED"
    WRONG_ANSWER = "WRONG_ANSWER"
    RUNTIME_ERROR = "RUNTIME_ERROR"
    TIME_LIMIT_EXCEEDED = "TIME_LIMIT_EXCEEDED"
    MEMORY_LIMIT_EXCEEDED = "MEMORY_LIMIT_EXCEEDED"
    OUTPUT_LIMIT_EXCEEDED = "OUTPUT_LIMIT_EXCEEDED"
    COMPILE_ERROR = "COMPILE_ERROR"
    SANDBOX_ERROR = "SANDBOX_ERROR"


@dataclass(frozen=True)
class Limits:
    """Per-test limits. ``time_s`` is CPU time; wall time is capped at ``wall_factor`` x it."""

    time_s: float = 2.0
    memory_mb: int = 256
    output_bytes: int = 1 << 20
    file_size_bytes: int = 1 << 20
    processes: int = 16
    open_files: int = 64
    wall_factor: float = 3.0
    compile_time_s: float = 20.0

    @property
    def wall_s(self) -> float:
        return self.time_s * self.wall_factor


@dataclass(frozen=True)
class TestCase:
    """One test. ``expected`` None means: run only, accept any clean exit (behaviour probing)."""

    __test__ = False  # not a pytest test class

    input: str = ""
    expected: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.input, str):
            raise ValueError(f"TestCase.input must be str, got {type(self.input).__name__}")
        if self.expected is not None and not isinstance(self.expected, str):
            raise ValueError(f"TestCase.expected must be str or None, got {type(self.expected).__name__}")


@dataclass(frozen=True)
class Job:
    """One program against its tests. ``language`` is ``python`` or ``cpp``.

    ``style`` is ``stdio`` (stdin/stdout, token comparison outside the sandbox), ``call``
    (``entry_point`` called with each test's JSON argument list in ``input``; ``expected`` is
    the JSON return value) or ``assert`` (Python only: the program runs, then each test's
    ``input`` runs as Python test code in the program's namespace with empty stdin; a test
    passes iff that test code ran to its end, which the runner confirms with a per-test
    nonce handshake, and the process then exited 0; ``expected`` is ignored).
    ``limits`` (optional) are the limits this job runs under; they win over the ``limits``
    given to ``Judge.run``/``run_many`` and the judge's own (see :mod:`tasks.core.jobs`,
    which sets them from the problem).
    """

    program: str
    tests: tuple[TestCase, ...] = (TestCase(),)
    language: str = "python"
    style: str = "stdio"
    entry_point: str = ""
    stop_on_first_failure: bool = False
    limits: Limits | None = None

    def __post_init__(self) -> None:
        """Validate at the boundary: a bad Job raises ValueError here, never inside a batch."""
        if not isinstance(self.program, str):
            raise ValueError(f"Job.program must be str, got {type(self.program).__name__}")
        if self.language not in LANGUAGES:
            raise ValueError(f"unknown language {self.language!r}; allowed: {', '.join(LANGUAGES)}")
        if self.style not in STYLES:
            raise ValueError(f"unknown style {self.style!r}; allowed: {', '.join(STYLES)}")
        if not isinstance(self.tests, tuple):
            object.__setattr__(self, "tests", tuple(self.tests))
        if not self.tests or not all(isinstance(t, TestCase) for t in self.tests):
            raise ValueError("Job.tests must be a non-empty sequence of TestCase")
        if self.limits is not None and not isinstance(self.limits, Limits):
            raise ValueError(f"Job.limits must be Limits or None, got {type(self.limits).__name__}")
        if self.style == "assert" and self.language != "python":
            raise ValueError("style 'assert' needs language 'python' (its tests are Python code)")
        if self.style == "call":
            self._validate_call()

    def _validate_call(self) -> None:
        if self.language != "python":
            raise ValueError("style 'call' needs language 'python'")
        if not self.entry_point.isidentifier():
            raise ValueError(f"style 'call' needs entry_point to be a Python name, got {self.entry_point!r}")
        for i, test in enumerate(self.tests):
            try:
                args = json.loads(test.input)
                if test.expected is not None:
                    json.loads(test.expected)
            except ValueError as exc:
                raise ValueError(f"call-style test {i}: input/expected must be JSON ({exc})") from None
            if not isinstance(args, list):
                raise ValueError(f"call-style test {i}: input must be a JSON list of arguments")


@dataclass(frozen=True)
class TestResult:
    __test__ = False  # not a pytest test class

    verdict: Verdict
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_memory_kb: int | None = None
    exit_code: int | None = None
    signal: int | None = None
    stdout_sha256: str = ""
    stdout_prefix: str = ""
    stderr_prefix: str = ""
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.verdict is Verdict.ACCEPTED


@dataclass(frozen=True)
class JobResult:
    results: tuple[TestResult, ...] = field(default_factory=tuple)
    sandbox_retries: int = 0

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(r.passed for r in self.results)

    @property
    def first_failure(self) -> TestResult | None:
        return next((r for r in self.results if not r.passed), None)
