"""Classic-BPF seccomp filters for x86_64, built with the standard library only.

Contract: ``base_filter()`` returns the raw ``struct sock_filter`` array that ``bwrap --seccomp
FD`` loads before it execs the in-sandbox runner; every process in the sandbox inherits it.
``guard_filter(protected)`` returns a second filter the runner installs in each test child
(via ``prepare(...)``) so a program cannot signal, re-limit or pidfd-grab the runner or pid 1.
``warm(fixed)`` builds, in the job server before it forks any runner, the ctypes objects and a
guard program with placeholder slots for one more pid; ``guard_loader(fixed, pid)`` then gives
each runner the loader of exactly ``guard_filter((*fixed, pid, -pid))`` by filling the slots,
instead of building the program anew in every freshly forked runner.

What the base filter does: kills the process for any non-x86_64 syscall ABI (i386 ``int 0x80``
and x32); fails with EPERM the namespace, mount, ptrace, module, kexec, bpf, perf, keyring,
userfaultfd, io_uring, swap, reboot, clock-setting and process_vm_* syscalls, SysV IPC and
POSIX message queues (state that would outlive a job in a warm sandbox), and ``clone``
with any namespace flag; fails ``clone3`` with ENOSYS (glibc then falls back to ``clone``,
whose flags are visible to BPF); fails ``socket`` for every domain except AF_UNIX with
EAFNOSUPPORT. Scheduling state of other processes: ``setpriority``, ``sched_setparam``,
``sched_setscheduler``, ``sched_setaffinity``, ``sched_setattr``, ``ioprio_set``,
``migrate_pages`` and ``move_pages`` fail with EPERM unless they name the caller itself (pid 0,
``PRIO_PROCESS``/``IOPRIO_WHO_PROCESS`` 0), so a job cannot slow the job server or the runner for
later jobs. Signal routes other than ``kill``: ``fcntl`` ``F_SETOWN``/``F_SETSIG``/``F_SETOWN_EX``
and ``ioctl`` ``FIOSETOWN``/``SIOCSPGRP`` (SIGIO/SIGURG, or any chosen signal, to a named
process) fail with EPERM. Everything else is allowed.

Limits: x86_64 only (``base_filter`` raises ``RuntimeError`` elsewhere); syscall numbers are
hard-coded from ``asm/unistd_64.h``. This module must stay stdlib-only: the runner imports it
inside the sandbox under ``/usr/bin/python3 -I -S``.
"""

from __future__ import annotations

import platform
import struct

# BPF opcodes and seccomp return values (linux/filter.h, linux/seccomp.h).
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06
RET_ALLOW = 0x7FFF0000
RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000
EPERM, ENOSYS, EAFNOSUPPORT = 1, 38, 97
AUDIT_ARCH_X86_64 = 0xC000003E
_X32_SYSCALL_BIT = 0x40000000
_OFF_NR, _OFF_ARCH, _OFF_ARG0_LO, _OFF_ARG1_LO = 0, 4, 16, 24

NR = {
    "ioctl": 16,
    "socket": 41,
    "fcntl": 72,
    "setpriority": 141,
    "sched_setparam": 142,
    "sched_setscheduler": 144,
    "sched_setaffinity": 203,
    "ioprio_set": 251,
    "migrate_pages": 256,
    "move_pages": 279,
    "sched_setattr": 314,
    "clone": 56,
    "kill": 62,
    "ptrace": 101,
    "syslog": 103,
    "rt_sigqueueinfo": 129,
    "uselib": 134,
    "vhangup": 153,
    "pivot_root": 155,
    "adjtimex": 159,
    "chroot": 161,
    "acct": 163,
    "settimeofday": 164,
    "mount": 165,
    "umount2": 166,
    "swapon": 167,
    "swapoff": 168,
    "reboot": 169,
    "iopl": 172,
    "ioperm": 173,
    "init_module": 175,
    "delete_module": 176,
    "quotactl": 179,
    "nfsservctl": 180,
    "tkill": 200,
    "lookup_dcookie": 212,
    "clock_settime": 227,
    "tgkill": 234,
    "kexec_load": 246,
    "add_key": 248,
    "request_key": 249,
    "keyctl": 250,
    "unshare": 272,
    "rt_tgsigqueueinfo": 297,
    "perf_event_open": 298,
    "fanotify_init": 300,
    "prlimit64": 302,
    "name_to_handle_at": 303,
    "open_by_handle_at": 304,
    "clock_adjtime": 305,
    "setns": 308,
    "process_vm_readv": 310,
    "process_vm_writev": 311,
    "kcmp": 312,
    "finit_module": 313,
    "kexec_file_load": 320,
    "bpf": 321,
    "userfaultfd": 323,
    "pidfd_send_signal": 424,
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "pidfd_open": 434,
    "clone3": 435,
    "pidfd_getfd": 438,
    "mount_setattr": 442,
    "quotactl_fd": 443,
    "shmget": 29,
    "shmat": 30,
    "shmctl": 31,
    "semget": 64,
    "semop": 65,
    "semctl": 66,
    "shmdt": 67,
    "msgget": 68,
    "msgsnd": 69,
    "msgrcv": 70,
    "msgctl": 71,
    "semtimedop": 220,
    "mq_open": 240,
    "mq_unlink": 241,
    "mq_timedsend": 242,
    "mq_timedreceive": 243,
    "mq_notify": 244,
    "mq_getsetattr": 245,
}

# SysV IPC and POSIX message queues: state that would outlive a job in a warm sandbox.
DENIED_IPC = (
    "shmget",
    "shmat",
    "shmctl",
    "semget",
    "semop",
    "semctl",
    "shmdt",
    "msgget",
    "msgsnd",
    "msgrcv",
    "msgctl",
    "semtimedop",
    "mq_open",
    "mq_unlink",
    "mq_timedsend",
    "mq_timedreceive",
    "mq_notify",
    "mq_getsetattr",
)

DENIED_EPERM = (
    "ptrace",
    "syslog",
    "uselib",
    "vhangup",
    "pivot_root",
    "adjtimex",
    "chroot",
    "acct",
    "settimeofday",
    "mount",
    "umount2",
    "swapon",
    "swapoff",
    "reboot",
    "iopl",
    "ioperm",
    "init_module",
    "delete_module",
    "quotactl",
    "nfsservctl",
    "lookup_dcookie",
    "clock_settime",
    "kexec_load",
    "add_key",
    "request_key",
    "keyctl",
    "unshare",
    "perf_event_open",
    "fanotify_init",
    "name_to_handle_at",
    "open_by_handle_at",
    "clock_adjtime",
    "setns",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "finit_module",
    "kexec_file_load",
    "bpf",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "quotactl_fd",
)

# CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET | NEWTIME
CLONE_NAMESPACE_FLAGS = (
    0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000 | 0x00000080
)
AF_UNIX = 1

# Scheduling syscalls allowed only on the caller itself (first argument 0 = "this process"):
# on any other pid (the job server, the runner) they fail with EPERM, so no job can change how
# later jobs are scheduled. setpriority/ioprio_set: only (PRIO_PROCESS, 0) / (IOPRIO_WHO_PROCESS, 0).
SELF_ONLY = ("sched_setparam", "sched_setscheduler", "sched_setaffinity", "sched_setattr")
SELF_ONLY += ("migrate_pages", "move_pages")
PRIO_PROCESS, IOPRIO_WHO_PROCESS = 0, 1
# Signal routes other than kill: fcntl F_SETOWN / F_SETSIG / F_SETOWN_EX and the socket ioctls
# FIOSETOWN / SIOCSPGRP name a process (or group) that gets SIGIO/SIGURG, or any signal, later.
F_SETOWN, F_SETSIG, F_SETOWN_EX = 8, 10, 15
FIOSETOWN, SIOCSPGRP = 0x8901, 0x8902

# Syscalls whose first argument names a target process (pid/tgid) the guard protects.
PID_TARGETING = ("kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "pidfd_open", "prlimit64")


def _ins(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k & 0xFFFFFFFF)


def _ret_errno(errno: int) -> bytes:
    return _ins(_RET_K, _RET_ERRNO | errno)


def _arch_prologue() -> list[bytes]:
    return [
        _ins(_LD_W_ABS, _OFF_ARCH),
        _ins(_JEQ_K, AUDIT_ARCH_X86_64, jt=1),
        _ins(_RET_K, RET_KILL_PROCESS),
        _ins(_LD_W_ABS, _OFF_NR),
        _ins(_JGE_K, _X32_SYSCALL_BIT, jf=1),
        _ins(_RET_K, RET_KILL_PROCESS),
    ]


def _deny_nr(nr: int, errno: int) -> list[bytes]:
    """Assumes A holds the syscall number; leaves it there."""
    return [_ins(_JEQ_K, nr, jf=1), _ret_errno(errno)]


def _arg0_block(nr: int, body: list[bytes], offset: int = _OFF_ARG0_LO) -> list[bytes]:
    """``if nr matches: A = low word of arg0 (or the arg at offset); body``; reloads A = nr."""
    return [
        _ins(_JEQ_K, nr, jf=len(body) + 1),
        _ins(_LD_W_ABS, offset),
        *body,
        _ins(_LD_W_ABS, _OFF_NR),
    ]


def _deny_args_in(nr: int, offset: int, values: tuple[int, ...]) -> list[bytes]:
    """EPERM if the syscall is ``nr`` and the argument at ``offset`` is one of ``values``."""
    body: list[bytes] = []
    for v in values:
        body += [_ins(_JEQ_K, v, jf=1), _ret_errno(EPERM)]
    return _arg0_block(nr, body, offset)


def _only_args(nr: int, wanted: tuple[tuple[int, int], ...]) -> list[bytes]:
    """EPERM for syscall ``nr`` unless every ``(offset, value)`` argument matches.

    Arguments are compared on their low 32 bits: these syscalls take ``int`` arguments, which
    the kernel truncates the same way."""
    k = len(wanted)
    body: list[bytes] = []
    for j, (offset, value) in enumerate(wanted):
        body.append(_ins(_LD_W_ABS, offset))
        body.append(_ins(_JEQ_K, value, jt=1 if j == k - 1 else 0, jf=2 * k - 2 * j - 2))
    body += [_ret_errno(EPERM), _ins(_LD_W_ABS, _OFF_NR)]
    return [_ins(_JEQ_K, nr, jf=len(body)), *body]


def _check_arch() -> None:
    if platform.machine() != "x86_64":
        raise RuntimeError(f"seccomp filters are written for x86_64, not {platform.machine()}")


def base_filter() -> bytes:
    """The sandbox-wide filter as raw ``sock_filter`` bytes (for ``bwrap --seccomp``)."""
    _check_arch()
    prog = _arch_prologue()
    for name in DENIED_EPERM + DENIED_IPC:
        prog += _deny_nr(NR[name], EPERM)
    prog += _deny_nr(NR["clone3"], ENOSYS)
    prog += _arg0_block(NR["clone"], [_ins(_JSET_K, CLONE_NAMESPACE_FLAGS, jf=1), _ret_errno(EPERM)])
    prog += _arg0_block(NR["socket"], [_ins(_JEQ_K, AF_UNIX, jt=1), _ret_errno(EAFNOSUPPORT)])
    for name in SELF_ONLY:
        prog += _only_args(NR[name], ((_OFF_ARG0_LO, 0),))
    prog += _only_args(NR["setpriority"], ((_OFF_ARG0_LO, PRIO_PROCESS), (_OFF_ARG1_LO, 0)))
    prog += _only_args(NR["ioprio_set"], ((_OFF_ARG0_LO, IOPRIO_WHO_PROCESS), (_OFF_ARG1_LO, 0)))
    prog += _deny_args_in(NR["fcntl"], _OFF_ARG1_LO, (F_SETOWN, F_SETSIG, F_SETOWN_EX))
    prog += _deny_args_in(NR["ioctl"], _OFF_ARG1_LO, (FIOSETOWN, SIOCSPGRP))
    prog.append(_ins(_RET_K, RET_ALLOW))
    return b"".join(prog)


def guard_filter(protected: tuple[int, ...]) -> bytes:
    """Deny (EPERM) signalling / prlimit / pidfd_open of the ``protected`` pids, and kill(-1)."""
    _check_arch()
    targets = sorted({p & 0xFFFFFFFF for p in protected} | {0xFFFFFFFF})
    prog = _arch_prologue()
    for name in PID_TARGETING:
        body: list[bytes] = []
        for t in targets:
            body += [_ins(_JEQ_K, t, jf=1), _ret_errno(EPERM)]
        prog += _arg0_block(NR[name], body)
    prog += _deny_nr(NR["pidfd_send_signal"], EPERM)
    prog += _deny_nr(NR["pidfd_getfd"], EPERM)
    prog.append(_ins(_RET_K, RET_ALLOW))
    return b"".join(prog)


_KIT: list = []  # [ctypes, sock_fprog type, libc prctl]: built once per process


def _ctypes_kit() -> list:
    """ctypes, the ``struct sock_fprog`` type and libc's ``prctl``, made once per process. The
    job server makes them (``warm()``) before it forks any runner, so a runner only reads them."""
    if not _KIT:
        import ctypes

        class _Fprog(ctypes.Structure):
            _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

        _KIT.extend((ctypes, _Fprog, ctypes.CDLL(None, use_errno=True).prctl))
    return _KIT


GUARD_SLOT = 0x7FFFFFF0  # placeholder pid (above any pid_max) in a pre-built guard program
_MASK = 0xFFFFFFFF
_GUARDS: dict = {}  # fixed pids -> (the program with placeholder slots, [(k offset, negated)])


def warm(fixed_pids: tuple[int, ...] = ()) -> None:
    """Make, now, the ctypes objects ``prepare`` needs and the guard program that protects
    ``fixed_pids`` plus one more process (``guard_loader``). The job server calls it before it
    forks any runner, so a runner only fills in its own pid."""
    _ctypes_kit()
    if fixed_pids:
        _guard_template(tuple(fixed_pids))


def _guard_template(fixed: tuple[int, ...]):
    if fixed not in _GUARDS:
        prog = guard_filter((*fixed, GUARD_SLOT, -GUARD_SLOT))
        slots = []
        for off in range(0, len(prog), 8):
            (k,) = struct.unpack_from("<I", prog, off + 4)
            if k in (GUARD_SLOT, -GUARD_SLOT & _MASK):
                slots.append((off + 4, k != GUARD_SLOT))
        if len(slots) != 2 * len(PID_TARGETING):  # each syscall's block checks both slots once
            raise RuntimeError(f"guard template has {len(slots)} pid slots")
        _GUARDS[fixed] = (prog, slots)
    return _GUARDS[fixed]


def guard_loader(fixed: tuple[int, ...], pid: int):
    """``prepare(guard_filter((*fixed, pid, -pid)))`` from the program ``warm`` built: a copy
    with ``pid`` in its slots. For any pid from 2 to 2**31 - 1 that is not a fixed one (nor its
    negation) the checks sort exactly as the placeholders do, so the bytes are identical
    (tests/sandbox/test_seccomp_guard_template.py); other pids get a freshly built filter."""
    values = {p & _MASK for p in fixed} | {_MASK}
    if not 1 < pid < GUARD_SLOT or pid in values or -pid & _MASK in values:
        return prepare(guard_filter((*fixed, pid, -pid)))
    prog, slots = _guard_template(tuple(fixed))
    buf = _ctypes_kit()[0].create_string_buffer(prog, len(prog))
    for offset, negated in slots:
        struct.pack_into("<I", buf, offset, (-pid if negated else pid) & _MASK)
    return _loader(buf, len(prog))


def prepare(filter_bytes: bytes):
    """Return a no-argument function that loads ``filter_bytes`` into the calling thread.

    All ctypes work happens here, so the returned loader is one ``prctl`` call (cheap enough to
    run in every forked test child). Loading needs no_new_privs, which bwrap sets.
    """
    ctypes = _ctypes_kit()[0]
    return _loader(ctypes.create_string_buffer(filter_bytes, len(filter_bytes)), len(filter_bytes))


def _loader(buf, size: int):
    ctypes, fprog_type, prctl = _ctypes_kit()
    fprog = fprog_type(size // 8, ctypes.addressof(buf))
    pr_set_seccomp, seccomp_mode_filter = 22, 2

    def load() -> None:
        if prctl(pr_set_seccomp, seccomp_mode_filter, ctypes.byref(fprog), 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP) failed")

    load.keepalive = (buf, fprog)  # type: ignore[attr-defined]
    return load
