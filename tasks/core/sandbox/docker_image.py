"""Builds the judge's Docker image ``alphacode-judge:py311`` from this host's own files.

Contract: ``ensure_image(client) -> str`` returns the image reference, building it first when it
is missing or was built from different host packages. There is no registry access here, so the
image is a ``docker import`` of a minimal root filesystem taken from the host (Debian/Ubuntu):
the files of ``PACKAGES`` (``dpkg -L``: CPython 3.11 with its standard library, g++ 12 with
binutils and the C/C++ headers, coreutils) minus docs/man pages/locales/the CPython test suite
and the C and LTO compilers (``SKIPPED``), plus every shared library those ELF files need
(``ldd``), ``/etc/ld.so.cache`` and the merged-/usr top-level symlinks (``/bin``, ``/lib``,
``/lib64``, ``/sbin``). No shell, no package manager, no runner: ``docker_backend`` streams the
runner into each worker container when it starts, so changing the runner needs no rebuild.
The tarball is deterministic (sorted entries, owner 0:0, the files' own mtimes).

Staleness: the image carries the label ``alphacode.judge.fingerprint`` = sha256 of
``BUILD_VERSION`` + the host's full ``dpkg-query -W`` listing; any package change on the host
rebuilds it (~8 s on 2 cores, ~230 MB). Limits: needs ``dpkg-query`` and ``ldd`` on the machine
that builds (x86_64 Debian-like); the tarball is uploaded through the API, so the engine itself
may be remote. Two processes building at once both import; the last
tag wins, which is harmless since both images are equivalent.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

IMAGE = "alphacode-judge:py311"
LABEL = "alphacode.judge.fingerprint"
BUILD_VERSION = "1"
PACKAGES = (
    "python3.11-minimal",
    "libpython3.11-minimal",
    "libpython3.11-stdlib",
    "libc6",
    "libc6-dev",
    "g++-12",
    "gcc-12",
    "cpp-12",
    "libstdc++-12-dev",
    "libgcc-12-dev",
    "libstdc++6",
    "libgcc-s1",
    "linux-libc-dev",
    "libcrypt-dev",
    "binutils",
    "binutils-x86-64-linux-gnu",
    "libbinutils",
    "libctf0",
    "libctf-nobfd0",
    "libgprofng0",
    "libjansson4",
    "libisl23",
    "libmpc3",
    "libmpfr6",
    "libgmp10",
    "libzstd1",
    "zlib1g",
    "libcc1-0",
    "libgomp1",
    "libitm1",
    "libatomic1",
    "libquadmath0",
    "coreutils",
)
EXCLUDED = (
    "/usr/share/doc/",
    "/usr/share/man/",
    "/usr/share/info/",
    "/usr/share/locale/",
    "/usr/share/lintian/",
    "/usr/lib/python3.11/test/",
    "/usr/lib/python3.11/idlelib/",
    "/usr/lib/python3.11/ensurepip/",
    "/usr/lib/python3.11/tkinter/",
)
SKIPPED = frozenset(
    {  # big compilers the judge never runs (it compiles C++ only, without LTO)
        "/usr/lib/gcc/x86_64-linux-gnu/12/cc1",
        "/usr/lib/gcc/x86_64-linux-gnu/12/lto1",
        "/usr/bin/x86_64-linux-gnu-lto-dump-12",
    }
)
TOP_LINKS = {"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64"}
EXTRA_FILES = ("/etc/ld.so.cache",)
EMPTY_DIRS = ("tmp", "proc", "sys", "dev", "etc", "sandbox")
ALIASES = {"/usr/bin/python3": "python3.11", "/usr/bin/g++": "g++-12", "/usr/bin/gcc": "gcc-12"}
_LDD_PATH = re.compile(r"(/\S+) \(0x[0-9a-f]+\)")


class ImageBuildError(RuntimeError):
    """The image could not be built here; the message says why and how to fix it."""


def _run(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    except FileNotFoundError:
        raise ImageBuildError(
            f"{argv[0]} not found: the judge image is built from a Debian/Ubuntu host's packages"
        ) from None
    except subprocess.CalledProcessError as exc:
        raise ImageBuildError(f"{' '.join(argv[:3])} failed: {exc.stderr.strip()[:500]}") from None


def fingerprint() -> str:
    listing = _run(["dpkg-query", "-W", "-f", "${Package}:${Architecture} ${Version}\n"])
    return hashlib.sha256(f"{BUILD_VERSION}\n{listing}".encode()).hexdigest()


def _canonical(path: str) -> str:
    """Resolve every directory component (merged /usr), keep the last one as it is."""
    head, name = os.path.split(path)
    return os.path.join(os.path.realpath(head), name)


def _package_files() -> set[str]:
    missing = [p for p in PACKAGES if not _installed(p)]
    if missing:
        raise ImageBuildError(
            f"host packages missing for the judge image: {' '.join(missing)}; "
            f"fix: apt-get install -y {' '.join(missing)}"
        )
    paths = set()
    for line in _run(["dpkg", "-L", *PACKAGES]).splitlines():
        if line.startswith("/") and not line.startswith(EXCLUDED) and line not in SKIPPED:
            path = _canonical(line)
            if _is_leaf(path):
                paths.add(path)
    return paths


def _is_leaf(path: str) -> bool:
    """A file or symlink below the top level (top-level links come from TOP_LINKS)."""
    if os.path.dirname(path) == "/":
        return False
    return os.path.islink(path) or os.path.isfile(path)


def _installed(package: str) -> bool:
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Status}", package], capture_output=True, text=True)
    return out.returncode == 0 and out.stdout.endswith(" installed")


def _is_elf(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def _with_link_targets(paths: set[str]) -> set[str]:
    out, todo = set(), list(paths)
    while todo:
        path = todo.pop()
        if path in out or not _is_leaf(path):
            continue
        out.add(path)
        if os.path.islink(path):
            todo.append(_canonical(os.path.join(os.path.dirname(path), os.readlink(path))))
    return out


def _shared_libs(paths: set[str]) -> set[str]:
    elves = sorted(p for p in paths if not os.path.islink(p) and _is_elf(p))
    libs: set[str] = set()
    for start in range(0, len(elves), 200):
        proc = subprocess.run(["ldd", *elves[start : start + 200]], capture_output=True, text=True)
        libs.update(_canonical(m) for m in _LDD_PATH.findall(proc.stdout))
    return libs


def rootfs_files() -> list[str]:
    """Absolute host paths (files and symlinks) that make up the image, sorted."""
    files = _with_link_targets(_package_files())
    files |= _with_link_targets(_shared_libs(files))
    files |= {p for p in EXTRA_FILES if os.path.isfile(p)}
    return sorted(files)


def _dir_info(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
    return info


def _link_info(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode, info.mtime = tarfile.SYMTYPE, target, 0o777, 0
    return info


def write_rootfs(dest: Path) -> int:
    """Write the deterministic rootfs tarball to ``dest``; returns the number of entries."""
    files = rootfs_files()
    names = {f.lstrip("/") for f in files}
    dirs = {str(Path(n).parent) for n in names} | set(EMPTY_DIRS)
    dirs = {p for d in dirs for p in [d, *map(str, Path(d).parents)] if p not in (".", "")}
    with tarfile.open(dest, "w", format=tarfile.GNU_FORMAT) as tar:
        for d in sorted(dirs):
            info = _dir_info(d)
            info.mode = 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        for name, target in sorted(TOP_LINKS.items()):
            tar.addfile(_link_info(name, target))
        for path in files:
            info = tar.gettarinfo(path, path.lstrip("/"))
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if info.isfile():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
        for alias, target in sorted(ALIASES.items()):
            if alias.lstrip("/") not in names:
                tar.addfile(_link_info(alias.lstrip("/"), target))
    return len(files) + len(dirs)


def _current(client, wanted: str) -> bool:
    import docker

    try:
        image = client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        return False
    return (image.labels or {}).get(LABEL) == wanted


def ensure_image(client) -> str:
    """Return ``IMAGE``, building it from the host's packages if it is missing or stale."""
    if shutil.which("dpkg-query") is None:
        if client.images.list(name=IMAGE):
            return IMAGE  # not a Debian host: use whatever image was provided
        raise ImageBuildError(
            f"image {IMAGE} is missing and can only be built on a Debian/"
            "Ubuntu host (dpkg); build it there and `docker save`/`load` it"
        )
    wanted = fingerprint()
    if _current(client, wanted):
        return IMAGE
    with tempfile.TemporaryDirectory(prefix="judge-image-") as tmp:
        tarball = Path(tmp, "rootfs.tar")
        write_rootfs(tarball)
        repo, tag = IMAGE.split(":")
        client.api.import_image_from_file(
            str(tarball),
            repository=repo,
            tag=tag,
            changes=[f"LABEL {LABEL}={wanted}", "ENV PATH=/usr/bin:/bin", "WORKDIR /tmp"],
        )
    if not _current(client, wanted):
        raise ImageBuildError(f"docker import did not produce {IMAGE} with label {LABEL}")
    return IMAGE


__all__ = ["IMAGE", "ImageBuildError", "ensure_image", "fingerprint", "rootfs_files", "write_rootfs"]
