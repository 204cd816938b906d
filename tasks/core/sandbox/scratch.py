"""Per-sandbox scratch tmpfs for bwrap's ``/tmp``, with an inode cap (host root only).

Contract: ``Scratch(uid, size_bytes, inodes)`` mounts a fresh tmpfs (``size``, ``nr_inodes``,
``mode=1777``, owned by host root, nosuid, nodev, private propagation) at
``$ALPHACODE_SCRATCH_DIR/<uid>`` (default ``/run/alphacode-sandbox-tmp``) for bwrap to bind on
``/tmp``; it raises ``SandboxError`` if the mount fails. ``detach()`` lazily unmounts it on the
host (``MNT_DETACH``) once bwrap has bound it: the tmpfs then lives exactly as long as the
sandbox holds it, and no mount is left on the host (only the empty mount-point directory). A mount left at the same path by a killed
process is detached before the new one is made, and the bwrap backend's probe detaches every
stale one (a uid nobody leases and no process runs as), so leftovers do not accumulate.

Why: bwrap's own ``--tmpfs`` takes no inode limit, so a job could create millions of empty files
(kernel memory, and seconds of cleanup for the next job), and ``/tmp`` would belong to the
sandbox user, who could change its mode, ACLs and extended attributes for later jobs. A
root-owned sticky ``/tmp`` with ``nr_inodes`` closes both. Limits: Linux, root only (bwrap
without root keeps its ``--tmpfs``).
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

from .types import SandboxError

ROOT = Path(os.environ.get("ALPHACODE_SCRATCH_DIR", "/run/alphacode-sandbox-tmp"))
MS_NOSUID, MS_NODEV, MS_PRIVATE, MNT_DETACH = 0x2, 0x4, 1 << 18, 0x2
_LIBC = ctypes.CDLL(None, use_errno=True)


def umount(path: Path) -> None:
    _LIBC.umount2(os.fsencode(path), MNT_DETACH)  # EINVAL when nothing is mounted: fine


class Scratch:
    def __init__(self, uid: int, size_bytes: int, inodes: int) -> None:
        self.path = ROOT / str(uid)
        self.path.mkdir(mode=0o755, parents=True, exist_ok=True)
        os.chmod(ROOT, 0o755)  # the sandbox uid must reach its mount point
        umount(self.path)  # a leftover of a killed run
        opts = f"size={int(size_bytes)},nr_inodes={int(inodes)},mode=1777,uid=0,gid=0"
        path = os.fsencode(self.path)
        if _LIBC.mount(b"tmpfs", path, b"tmpfs", MS_NOSUID | MS_NODEV, opts.encode()) != 0:
            err = ctypes.get_errno()
            raise SandboxError(f"cannot mount the scratch tmpfs at {self.path}: {os.strerror(err)}")
        _LIBC.mount(None, path, None, MS_PRIVATE, None)
        self.attached = True

    def detach(self) -> None:
        if self.attached:
            umount(self.path)
            self.attached = False
