"""Run roots in an object store (``s3://bucket/prefix``), worked on through a node-local mirror.

Contract:
* A run root is a local path or a URL (:func:`is_url`). A local path is used as it is, and
  nothing here touches it. For a URL, :func:`working_root` returns the node-local *mirror* of the
  run (``$ALPHACODE_STORE_CACHE``, default ``~/.cache/alphacode/store``, then
  ``<scheme>/<bucket>/<prefix>``) and records the URL in it (``.store-url``); every stage runs
  in the mirror exactly as in a local run, and :func:`remote_of` tells the flows which store
  the mirror belongs to.
* The store holds whole content-addressed stage directories ``<stage>/<key>/``. :meth:`Remote.push`
  uploads a complete local stage directory: every file its manifest lists, then
  ``manifest.json`` last, the commit marker (as locally); a stage already complete in the store
  is left alone. :meth:`Remote.pull` downloads a stage that is complete in the store and not in
  the mirror into a temp directory beside its place, then renames it there: a stage directory
  (a model directory included) moves as a whole. Content addressing makes a pulled directory
  immutable, so the mirror is never stale and is never re-checked against the store.
* Completeness in the store is the local rule checked against the store: a readable
  ``manifest.json`` whose every listed file exists with its listed size (:meth:`Remote.manifest`).
* The filesystem is pyarrow's (``pyarrow.fs.FileSystem.from_uri``): for ``s3://`` the AWS SDK's
  usual chain gives the credentials (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, or the
  ``AWS_PROFILE`` section of ``~/.aws/credentials``) and ``AWS_ENDPOINT_URL`` (or
  ``AWS_ENDPOINT_URL_S3``) an S3-compatible endpoint such as SeaweedFS or MinIO.

Limits: only complete stages travel; a stage's unfinished work (shards, checkpoints) stays in
the mirror of the node that did it, so a stage interrupted on one node restarts from nothing on
another. Prefect's locks stay in the mirror (node-local); a stage's cache record is copied with
it by the flows (``tasks.caching.push_record``/``pull_record``), so a pulled stage is Cached on
the node that pulled it. Stage directories are not deleted from the store here; a ``latest``
symlink exists only in the mirror. An interrupted upload or download starts over.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from urllib.parse import urlparse

from tasks.core.io import atomic_write_text
from tasks.core.manifest import MANIFEST_NAME, Manifest, read_manifest

STORE_URL_FILE = ".store-url"  # in a mirror: the URL of the run it mirrors
CACHE_ENV = "ALPHACODE_STORE_CACHE"
SCHEMES = ("s3",)


def is_url(root: str | os.PathLike[str]) -> bool:
    """True for ``scheme://...`` (a run root in a store), False for a local path."""
    return "://" in str(root)


def mirror_dir(url: str) -> Path:
    """The node-local mirror of the run at ``url``."""
    parsed = _parse(url)
    base = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "alphacode" / "store")
    return base / parsed.scheme / parsed.netloc / parsed.path.strip("/")


def working_root(root: str | os.PathLike[str]) -> str:
    """Where the stages of ``root`` run: the resolved local path, or a URL's mirror (made,
    and the URL recorded in it)."""
    if not is_url(root):
        return str(Path(root).resolve())
    url = str(root).rstrip("/")
    mirror = mirror_dir(url)
    marker = mirror / STORE_URL_FILE
    if not marker.is_file() or marker.read_text() != url:
        atomic_write_text(marker, url)
    return str(mirror.resolve())


def remote_of(root: str | os.PathLike[str]) -> Remote | None:
    """The store a mirror belongs to (None for an ordinary local run directory)."""
    try:
        return Remote((Path(root) / STORE_URL_FILE).read_text().strip())
    except (FileNotFoundError, NotADirectoryError):
        return None


def _parse(url: str):
    parsed = urlparse(str(url))
    if parsed.scheme not in SCHEMES or not parsed.netloc:
        raise ValueError(
            f"run root {url!r} is not a supported store URL; use s3://bucket/prefix or a local path"
        )
    return parsed


@dataclass(frozen=True)
class Remote:
    """A run root in an object store, read and written with pyarrow's filesystem layer."""

    url: str

    @cached_property
    def _fs_and_base(self):
        from pyarrow import fs

        _parse(self.url)
        filesystem, base = fs.FileSystem.from_uri(self.url)
        return filesystem, base.rstrip("/")

    @property
    def fs(self):
        return self._fs_and_base[0]

    @property
    def base(self) -> str:
        """``bucket/prefix``: the run root as the filesystem names it."""
        return self._fs_and_base[1]

    def path(self, *parts: str) -> str:
        return "/".join([self.base, *parts])

    def read_bytes(self, path: str) -> bytes | None:
        """The object at ``path`` (a filesystem path), or None when there is none."""
        try:
            with self.fs.open_input_stream(path, compression=None) as stream:
                return stream.read()
        except FileNotFoundError:
            return None

    def write_bytes(self, path: str, data: bytes) -> None:
        """One object, written whole (an S3 PUT is atomic: readers see all of it or nothing).
        Bytes as given: pyarrow would otherwise gzip a ``.gz`` name once more."""
        with self.fs.open_output_stream(path, compression=None) as stream:
            stream.write(data)

    def _copy(self, source: str, destination: str, upload: bool) -> None:
        """One file between the local disk and the store, streamed (a model file never has to
        fit in memory)."""
        from pyarrow import fs

        local = fs.LocalFileSystem()
        fs.copy_files(
            source,
            destination,
            source_filesystem=local if upload else self.fs,
            destination_filesystem=self.fs if upload else local,
        )

    def has_file(self, rel: str, size: int | None = None) -> bool:
        """True when the store holds ``rel`` (relative to the run root), of ``size`` bytes if given."""
        from pyarrow import fs

        info = self.fs.get_file_info(self.path(rel))
        return info.type == fs.FileType.File and (size is None or info.size == size)

    def put_file(self, rel: str, local: Path) -> None:
        """Upload one finished file to ``rel`` (a PUT is atomic: readers see all of it or nothing)."""
        self._copy(str(local), self.path(rel), upload=True)

    def get_file(self, rel: str, local: Path) -> bool:
        """Download ``rel`` to ``local`` (temp file beside it, then a rename); False when the
        store has no such file."""
        local = Path(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=local.parent, prefix=f".{local.name}.tmp-")
        os.close(fd)
        try:
            self._copy(self.path(rel), tmp, upload=False)
            os.replace(tmp, local)
            return True
        except FileNotFoundError:
            return False
        finally:
            Path(tmp).unlink(missing_ok=True)

    def manifest(self, stage: str, key: str) -> Manifest | None:
        """The stage's manifest in the store if the stage is complete there (every listed
        file present with its listed size), else None."""
        from pyarrow import fs

        raw = self.read_bytes(self.path(stage, key, MANIFEST_NAME))
        if raw is None:
            return None
        try:
            manifest = Manifest.model_validate_json(raw)
        except ValueError:
            return None
        paths = [self.path(stage, key, rel) for rel in manifest.files]
        infos = self.fs.get_file_info(paths) if paths else []
        for info, entry in zip(infos, manifest.files.values()):
            if info.type != fs.FileType.File or info.size != entry.size:
                return None
        return manifest

    def push(self, local: Manifest) -> bool:
        """Upload the complete stage directory of ``local`` unless the store has it complete;
        ``manifest.json`` goes last. True when something was uploaded."""
        if self.manifest(local.stage, local.key) is not None:
            return False
        if read_manifest(local.dir) is None:
            raise FileNotFoundError(f"stage {local.stage}/{local.key} is not complete in {local.dir}")
        for rel in local.files:
            self._copy(str(local.dir / rel), self.path(local.stage, local.key, rel), upload=True)
        manifest = (local.dir / MANIFEST_NAME).read_bytes()
        self.write_bytes(self.path(local.stage, local.key, MANIFEST_NAME), manifest)
        return True

    def pull(self, stage: str, key: str, target: Path) -> Manifest | None:
        """The stage, complete in ``target``: already there, or downloaded whole from the store
        (temp dir beside ``target``, then a rename); None when the store has no complete copy."""
        target = Path(target)
        if (done := read_manifest(target)) is not None:
            return done
        remote = self.manifest(stage, key)
        if remote is None:
            return None
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
        try:
            for rel in remote.files:
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                try:
                    self._copy(self.path(stage, key, rel), str(tmp / rel), upload=False)
                except FileNotFoundError:
                    return None  # deleted meanwhile: not complete after all
            (tmp / MANIFEST_NAME).write_bytes(self.read_bytes(self.path(stage, key, MANIFEST_NAME)) or b"")
            if target.exists():  # an incomplete local attempt: the store's complete copy wins
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return read_manifest(target)

    def stage_keys(self, stage: str) -> list[str]:
        """Keys of the stage's directories in the store, complete or not, sorted."""
        from pyarrow import fs

        selector = fs.FileSelector(self.path(stage), allow_not_found=True)
        return sorted(
            info.base_name
            for info in self.fs.get_file_info(selector)
            if info.type == fs.FileType.Directory and not info.base_name.startswith(".")
        )

    def pull_run(self, stages: list[str]) -> Path:
        """Every stage directory complete in the store, pulled into this run's mirror
        (for readers such as ``alphacode samples``); returns the mirror."""
        mirror = Path(working_root(self.url))
        for stage in stages:
            for key in self.stage_keys(stage):
                self.pull(stage, key, mirror / stage / key)
        return mirror
