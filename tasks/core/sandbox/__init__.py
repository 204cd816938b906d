"""Execution sandbox and judge: run untrusted programs against tests, return typed verdicts.

Public API: ``Judge`` (``run``/``run_many``), ``SandboxUnavailable``, ``compare_outputs`` and the
types from ``types.py``. See ``judge.py`` for the verdict rules and ``bwrap.py`` for isolation.
Importing this package starts no process.
"""

from .compare import compare_json, compare_outputs
from .judge import Judge
from .types import Job, JobResult, Limits, SandboxError, SandboxUnavailable, TestCase, TestResult, Verdict

__all__ = [
    "Judge",
    "SandboxUnavailable",
    "SandboxError",
    "compare_outputs",
    "compare_json",
    "Job",
    "JobResult",
    "Limits",
    "TestCase",
    "TestResult",
    "Verdict",
]
