"""The in-sandbox job server and runner refuse to run on a host (their sweeps SIGKILL every
process they can signal), and the host end of the server protocol parses envelopes."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tasks.core.sandbox import runner
from tasks.core.sandbox.envelopes import ENVELOPE, Envelopes

HERE = Path(__file__).resolve().parents[2] / "tasks" / "core" / "sandbox"


def test_server_refuses_to_run_outside_a_sandbox():
    proc = subprocess.run(
        ["/usr/bin/python3", "-I", "-S", str(HERE / "server.py")], input=b"", capture_output=True, timeout=30
    )
    assert proc.returncode == 1 and b"only inside an alphacode sandbox" in proc.stderr


def test_runner_refuses_to_run_outside_a_sandbox():
    proc = subprocess.run(
        ["/usr/bin/python3", "-I", "-S", str(HERE / "runner.py")], input=b"", capture_output=True, timeout=30
    )
    assert proc.returncode == 1 and b"only inside an alphacode sandbox" in proc.stderr


def envelope(seq: int, kind: int, data: bytes) -> bytes:
    return ENVELOPE.pack(seq, kind, len(data)) + data


def test_envelopes_keep_only_the_current_job_and_reassemble_split_frames():
    frame = runner.encode_frame({"kind": "test", "index": 0}, b"out")
    stream = (
        envelope(1, 0, b"stale frame bytes of an aborted job")
        + envelope(1, 1, b'{"status": 9}')
        + envelope(2, 0, frame[:5])
        + envelope(2, 0, frame[5:])
        + envelope(2, 1, b'{"status": 0}')
    )
    env = Envelopes()
    env.start(2)
    for i in range(0, len(stream), 7):  # arrives in odd-sized chunks
        env.feed(stream[i : i + 7])
    assert list(env.next_frames()) == [({"kind": "test", "index": 0}, b"out")]
    assert env.ended == {"status": 0}
