"""Host end of the job-server protocol (``server.py``), shared by the bwrap and Docker backends.

Contract: :func:`message` encodes one host -> server message. :class:`Envelopes` takes the
server's output bytes as they arrive (``feed``), keeps only the envelopes of the current job
(``start(seq)``; tails of an earlier, aborted job are dropped) and yields that job's complete
runner frames ``(meta, blob)`` from ``next_frames()``; ``ended`` holds the job's end envelope
(``{"status": wait status}``) once it came. Frames are parsed with ``json`` (never ``marshal``
or ``pickle``: the bytes come from inside the sandbox); an envelope or frame header that does
not decode is a :class:`SandboxError` (the harness broke; the judge retries), never another
exception. Program output travels only in frame blobs, which are never parsed here.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path

from . import runner as runner_mod
from .types import SandboxError

HERE = Path(__file__).resolve().parent
SERVER = (HERE / "server.py").read_text()

ENVELOPE = struct.Struct(">IBI")  # server -> host: job seq, kind (0 data, 1 end), length


def message(obj: dict) -> bytes:
    body = json.dumps(obj, ensure_ascii=True).encode("ascii")
    return runner_mod.REQUEST.pack(len(body)) + body


def setup_message(base_filter: bool) -> bytes:
    """The server's first message: runner and seccomp sources, the programs' environment, and
    whether the server must load the base seccomp filter itself."""
    return message(
        {
            "runner": (HERE / "runner.py").read_text(),
            "seccomp": (HERE / "seccomp.py").read_text(),
            "env": dict(runner_mod.ENV, PWD="/tmp"),
            "base_filter": base_filter,
        }
    )


def handle_frame(meta: dict, blob: bytes, on_frame: Callable[[dict, bytes], object]) -> bool:
    """Dispatch one runner frame; True when the job is over: the runner said ``done``, or
    ``on_frame`` returned False to stop early. A ``fatal`` frame is a harness failure
    (SandboxError), never a verdict."""
    kind = meta.get("kind")
    if kind == "done":
        return True
    if kind == "fatal":
        raise SandboxError(f"runner failed: {meta.get('error', '')}")
    return on_frame(meta, blob) is False


def serve_frames(
    envelopes: Envelopes,
    on_frame: Callable[[dict, bytes], object],
    stderr: Callable[[], str],
    abort: Callable[[], None],
) -> bool:
    """Hand the frames received so far to ``on_frame``; True once the job is over (after
    ``abort()`` when it stopped early). A job the server ended before the runner said ``done``
    is a SandboxError."""
    for meta, blob in envelopes.next_frames():
        if handle_frame(meta, blob, on_frame):
            if meta.get("kind") != "done":
                abort()
            return True
    if envelopes.ended is not None:
        raise SandboxError(
            f"runner exited (wait status {envelopes.ended.get('status')}) "
            f"before finishing: {stderr() or 'no stderr'}"
        )
    return False


class Envelopes:
    def __init__(self) -> None:
        self.out = bytearray()  # unparsed envelope bytes
        self.frames = bytearray()  # runner frames of the current job
        self.seq = 0
        self.ended: dict | None = None

    def start(self, seq: int) -> None:
        self.seq = seq
        self.frames.clear()
        self.ended = None

    def feed(self, data: bytes) -> None:
        self.out += data
        while len(self.out) >= ENVELOPE.size:
            env_seq, kind, size = ENVELOPE.unpack_from(self.out)
            total = ENVELOPE.size + size
            if len(self.out) < total:
                return
            data = bytes(self.out[ENVELOPE.size : total])
            del self.out[:total]
            if env_seq != self.seq:
                continue  # the tail of an earlier, stopped job
            if kind == 1:
                self.ended = _json(data, "end envelope")
            else:
                self.frames += data

    def next_frames(self):
        """Yield the complete runner frames ``(meta, blob)`` received so far."""
        head = runner_mod.FRAME.size
        while len(self.frames) >= head:
            meta_len, blob_len = runner_mod.FRAME.unpack_from(self.frames)
            total = head + meta_len + blob_len
            if len(self.frames) < total:
                return
            meta = _json(bytes(self.frames[head : head + meta_len]), "frame header")
            blob = bytes(self.frames[head + meta_len : total])
            del self.frames[:total]
            yield meta, blob


def _json(data: bytes, what: str) -> dict:
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise SandboxError(f"runner sent a malformed {what}: {type(exc).__name__}") from None
    if not isinstance(obj, dict):
        raise SandboxError(f"runner sent a {what} that is not an object")
    return obj
