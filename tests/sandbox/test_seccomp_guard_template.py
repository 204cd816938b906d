"""The runner's guard comes from a program the job server builds once (``seccomp.warm``) with
placeholder pid slots; filling the slots must give exactly the filter ``guard_filter`` builds
for the same pids (so the per-job shortcut protects the same processes)."""

from __future__ import annotations

import struct

import pytest

from tasks.core.sandbox import seccomp


def _program(loader) -> bytes:
    buf, _fprog = loader.keepalive
    return bytes(buf)


@pytest.mark.parametrize("pid", [2, 3, 77, 4096, 65_535, 4_194_303, 0x7FFF_FFEF])
def test_filled_template_equals_a_freshly_built_guard(pid):
    fixed = (1, 1, -1)
    seccomp.warm(fixed)
    filled = _program(seccomp.guard_loader(fixed, pid))
    assert filled == seccomp.guard_filter((*fixed, pid, -pid))


def test_slots_are_refilled_for_each_pid_and_nothing_else_changes():
    fixed = (1, 1, -1)
    first = _program(seccomp.guard_loader(fixed, 1234))
    second = _program(seccomp.guard_loader(fixed, 4321))
    assert second == seccomp.guard_filter((*fixed, 4321, -4321))
    words = lambda prog: [struct.unpack_from("<I", prog, off + 4)[0] for off in range(0, len(prog), 8)]  # noqa: E731
    changed = [i for i, (a, b) in enumerate(zip(words(first), words(second))) if a != b]
    assert len(changed) == 2 * len(seccomp.PID_TARGETING)  # the pid and -pid check of each syscall
    assert 1234 not in words(second) and (-1234 & 0xFFFFFFFF) not in words(second)


def test_a_pid_that_would_merge_with_a_fixed_one_gets_a_fresh_filter():
    fixed = (1, 50, -50)
    for pid in (50, 1):  # equal to a fixed pid: the set of checks shrinks, no template shape fits
        assert _program(seccomp.guard_loader(fixed, pid)) == seccomp.guard_filter((*fixed, pid, -pid))
