"""The warm job server that runs INSIDE a sandbox (bwrap or Docker); stdlib only.

Run as ``/usr/bin/python3 -I -S -c <this file's source>`` as the sandbox's pid 1 (Docker; bwrap
``--as-pid-1``); it refuses to start as any other pid, i.e. on a host, because its sweep SIGKILLs every
process it can signal (the runner likewise refuses unless the server loaded it). Protocol on fd 0 / fd 1, one job at a time:

* host -> server: ``>Q`` length + JSON messages. The first is the setup: ``runner`` and
  ``seccomp`` module sources (nothing of the host tree needs to be visible), ``env`` (the
  environment programs see) and ``base_filter`` (load ``seccomp.base_filter()`` here: Docker;
  bwrap has loaded it already). Then ``{"seq", "request"}`` per job; any other message while a
  job runs (the host sends ``{"seq", "abort"}``) stops that job at once.
* server -> host: envelopes ``>IBI`` (job seq, kind, length) + data; kind 0 carries the runner's
  frames (``runner.FRAME``) byte for byte, kind 1 ends the job with ``{"status": wait status}``.

Per job it forks ``runner.main()`` (a warm interpreter: no start-up per job) with the request on
a memfd as stdin. When the runner ends (or is aborted) it SIGKILLs every other process of the
sandbox (``kill(-1)`` spares the caller and pid 1: the runner's per-test sweep spares us), reaps them all as child subreaper, empties
``/tmp``, and only then sends the end envelope and reads the next message. So a job never sees
the processes or files of an earlier one; SysV IPC and POSIX message queues, the other state a
sandbox keeps, are denied by the base seccomp filter. If the host goes away the server reads
end-of-file and exits (and with it the sandbox).

Programs cannot signal the server: the runner's per-test guard filter covers pid 1 and the
runner (and its parent's pid and group, which are the server's).
"""

import gc
import json
import os
import select
import shutil
import signal
import struct
import sys
import types

ENVELOPE, LENGTH = struct.Struct(">IBI"), struct.Struct(">Q")


def read(n):
    data = bytearray()
    while len(data) < n:
        chunk = os.read(0, min(n - len(data), 1 << 20))
        if not chunk:
            os._exit(0)  # the host detached: stop (and the sandbox with us)
        data += chunk
    return bytes(data)


def message():
    return json.loads(read(LENGTH.unpack(read(8))[0]))


def send(seq, kind, data=b""):
    view = memoryview(ENVELOPE.pack(seq, kind, len(data)) + data)
    while view:
        view = view[os.write(1, view) :]


def load(name, code):
    mod = types.ModuleType(name)
    mod.__file__ = "/sandbox/" + name + ".py"
    exec(compile(code, mod.__file__, "exec"), mod.__dict__)
    sys.modules[name] = mod
    return mod


def sweep():
    status = {}
    while True:
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            pid, st = os.waitpid(-1, 0)
            status[pid] = st
        except ChildProcessError:
            return status


def force(func, path, _exc):
    os.chmod(os.path.dirname(path), 0o700)
    if not os.path.islink(path):
        os.chmod(path, 0o700)
    func(path)


def clean_tmp():
    for name in os.listdir("/tmp"):
        path = os.path.join("/tmp", name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, onerror=force)
        else:
            os.unlink(path)


def run(runner, seq, request):
    r, w = os.pipe()
    memfd = os.memfd_create("request", 0)
    os.write(memfd, runner.encode_request(request))
    os.lseek(memfd, 0, os.SEEK_SET)
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(memfd, 0)
            os.dup2(w, 1)
            os.close(r)
            runner.main()
        finally:
            os._exit(0)
    os.close(w)
    os.close(memfd)
    pidfd = os.pidfd_open(pid)
    poller = select.poll()
    for fd in (r, pidfd, 0):
        poller.register(fd, select.POLLIN)
    live = True
    while live:
        for fd, _ev in poller.poll():
            if fd == r:
                data = os.read(r, 1 << 16)
                if data:
                    send(seq, 0, data)
                else:
                    poller.unregister(r)
            else:
                live = False  # the runner exited, or the host sent a message (abort)
    status = sweep().get(pid)
    while data := os.read(r, 1 << 16):
        send(seq, 0, data)
    os.close(r)
    os.close(pidfd)
    clean_tmp()
    send(seq, 1, json.dumps({"status": status}).encode())


def main():
    if os.getpid() != 1:  # the sandbox's init; never so on a host
        sys.exit("server.py runs only inside an alphacode sandbox (its sweep kills every process)")
    setup = message()
    os.environ.clear()
    os.environ.update(setup["env"])
    os.chdir("/tmp")
    seccomp = load("seccomp", setup["seccomp"])
    runner = load("runner", setup["runner"])
    runner.SANDBOXED = True
    prctl = runner._prctl()
    prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: orphans come back to us, the sweep reaps them
    prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: programs can't read our memory or fds
    if setup["base_filter"]:
        seccomp.prepare(seccomp.base_filter())()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    gc.collect()
    gc.freeze()  # forked children then don't dirty our objects' pages by collecting them
    while True:
        msg = message()
        if "request" in msg:
            run(runner, msg["seq"], msg["request"])


if __name__ == "__main__":
    main()
