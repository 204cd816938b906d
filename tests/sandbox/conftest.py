"""Shared fixtures: one Judge per module. A missing or broken sandbox FAILS these tests; they
skip only when bwrap is absent AND ALPHACODE_ALLOW_NO_SANDBOX=1."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager

import pytest

from tasks.core.sandbox import Judge, Limits

FAST = Limits(time_s=1.0, memory_mb=128, wall_factor=2.0)


def _skip_if_allowed() -> None:
    if shutil.which("bwrap") is None and os.environ.get("ALPHACODE_ALLOW_NO_SANDBOX") == "1":
        pytest.skip("bwrap absent and ALPHACODE_ALLOW_NO_SANDBOX=1")


@pytest.fixture(scope="module")
def judge():
    _skip_if_allowed()
    with Judge(backend="bwrap", workers=2, limits=FAST) as j:
        yield j


@pytest.fixture(autouse=False)
def needs_sandbox():
    _skip_if_allowed()


BACKENDS = ["bwrap", pytest.param("docker", marks=pytest.mark.docker)]


@contextmanager
def one_worker_judge(backend: str):
    """A judge with one worker, so every job of a test runs in the same warm sandbox; skips
    when the backend is unavailable here."""
    if backend == "docker":
        from tasks.core.sandbox import SandboxUnavailable
        from tasks.core.sandbox.docker_backend import connect, ensure_image

        try:
            ensure_image(connect(timeout_s=10))
        except SandboxUnavailable as exc:
            pytest.skip(str(exc))
    else:
        _skip_if_allowed()
    with Judge(backend=backend, workers=1, limits=FAST) as judge:
        yield judge
