"""Content-addressed stage outputs and their manifests.

Contract: every stage writes into ``<root>/<stage>/<key>/`` where ``key`` hashes the stage's
config, its upstream manifests as an ordered list of (role, stage, key) and the code that
computes it: the fingerprint of the stage's module and every project module it imports
(:mod:`tasks.core.fingerprint`). Upstreams are never keyed by stage name: a stage may read
several manifests of one stage (the report reads six evaluations), and each one's role (the
input it fills, e.g. ``contenders[2].wide``) keeps them apart in the key and in the provenance
the manifest records. The payload
is written first; ``manifest.json`` is written last, atomically (temp file + ``os.replace``).

No absolute path is written: ``manifest.json`` records its directory relative to the run root
(``<stage>/<key>``), and :func:`read_manifest` binds the manifest it returns to the directory it
was read from (``Manifest.path`` in memory is that directory, resolved). So a run directory
moved or copied elsewhere reads the same; manifests written before this rule (an absolute
``path``) read the same way, their recorded path ignored.
A directory without a readable manifest, or whose manifest lists a file that is missing or has
another size, is *incomplete*: caches must treat it as a miss and the stage recomputes (a
stage may resume from checkpoints it left inside its own directory).

Limits: file integrity is checked by size, not by content hash (hashing multi-GB stores on
every cache lookup would cost more than it protects); a same-size corruption is not detected.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tasks.core.fingerprint import fingerprint
from tasks.core.io import atomic_write_text

MANIFEST_NAME = "manifest.json"


class FileEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    size: int


class Upstream(BaseModel):
    """One input of a stage: the role it fills, and the stage and key of the manifest filling it."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    role: str
    stage: str
    key: str


def upstream_refs(upstream: Sequence[tuple[str, Manifest] | Upstream | Manifest]) -> tuple[Upstream, ...]:
    """``(role, manifest)`` pairs, refs, or bare manifests (role = their stage) as refs, in
    order; a role given twice is an error, so two manifests of one stage need explicit roles."""
    refs = tuple(_ref(u) for u in upstream)
    roles = [r.role for r in refs]
    if len(set(roles)) != len(roles):
        raise ValueError(f"upstream roles must be distinct, got {roles}: name each input's role")
    return refs


def _ref(u: tuple[str, Manifest] | Upstream | Manifest) -> Upstream:
    if isinstance(u, Upstream):
        return u
    if isinstance(u, Manifest):
        return Upstream(role=u.stage, stage=u.stage, key=u.key)
    role, manifest = u
    return Upstream(role=role, stage=manifest.stage, key=manifest.key)


class Manifest(BaseModel):
    """What a finished stage published. Small: it is what Prefect caches and passes on.

    ``path`` is the stage directory this manifest was read from or published into (absolute);
    on disk it is written relative to the run root (:meth:`to_json`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    stage: str
    key: str
    path: str
    config: dict[str, Any]
    upstream: tuple[Upstream, ...] = ()
    code_version: str
    created_at: str
    files: dict[str, FileEntry] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)

    @field_validator("upstream", mode="before")
    @classmethod
    def _legacy_upstream(cls, v: Any) -> Any:
        """Manifests written before roles existed hold ``{stage: key}``: read them, role = stage."""
        return [{"role": s, "stage": s, "key": k} for s, k in v.items()] if isinstance(v, dict) else v

    @property
    def dir(self) -> Path:
        return Path(self.path)

    @property
    def relative_path(self) -> str:
        """The directory relative to the run root: ``<stage>/<key>``."""
        return f"{self.stage}/{self.key}"

    def at(self, directory: Path | str) -> Manifest:
        """This manifest bound to ``directory`` (where its files are now)."""
        return self.model_copy(update={"path": str(Path(directory).resolve())})

    def to_json(self) -> str:
        """The ``manifest.json`` text: every field, ``path`` relative to the run root."""
        return self.model_copy(update={"path": self.relative_path}).model_dump_json(indent=2)

    def upstream_keys(self, stage: str) -> tuple[str, ...]:
        """Keys of every upstream manifest of ``stage``, in role order."""
        return tuple(u.key for u in self.upstream if u.stage == stage)

    def file(self, name: str) -> Path:
        if name not in self.files:
            raise KeyError(f"stage {self.stage!r} ({self.key}) published no file {name!r}")
        return self.dir / name


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def stage_key(stage: str, config: dict[str, Any], upstream: Sequence[Upstream], code: str) -> str:
    payload = {
        "stage": stage,
        "config": config,
        "upstream": [[u.role, u.stage, u.key] for u in upstream],
        "code": code,
    }
    return hashlib.sha256(_canonical(payload).encode()).hexdigest()[:20]


def stage_dir(root: Path, stage: str, key: str) -> Path:
    return Path(root) / stage / key


def publish(
    directory: Path,
    *,
    stage: str,
    key: str,
    config: dict[str, Any],
    upstream: Sequence[tuple[str, Manifest] | Upstream | Manifest],
    code: str,
    files: Iterable[str],
    metrics: dict[str, Any] | None = None,
) -> Manifest:
    """Write ``manifest.json`` last, listing payload files (relative paths) with their sizes."""
    directory = Path(directory)
    entries = {}
    for rel in sorted(set(files)):
        target = directory / rel
        if not target.is_file():
            raise FileNotFoundError(f"stage {stage!r} cannot publish missing file {target}")
        entries[rel] = FileEntry(size=target.stat().st_size)
    manifest = Manifest(
        stage=stage,
        key=key,
        path=str(directory.resolve()),
        config=json.loads(_canonical(config)),
        upstream=upstream_refs(upstream),
        code_version=code,
        created_at=datetime.now(timezone.utc).isoformat(),
        files=entries,
        metrics=json.loads(_canonical(metrics or {})),
    )
    atomic_write_text(directory / MANIFEST_NAME, manifest.to_json())
    return manifest


def read_manifest(directory: Path) -> Manifest | None:
    """The directory's manifest if it is complete (all listed files present, sizes equal),
    bound to ``directory`` whatever path it recorded."""
    path = Path(directory) / MANIFEST_NAME
    try:
        manifest = Manifest.model_validate_json(path.read_bytes()).at(directory)
    except (OSError, ValueError):
        return None
    for rel, entry in manifest.files.items():
        target = Path(directory) / rel
        if not target.is_file() or target.stat().st_size != entry.size:
            return None
    return manifest


def list_files(directory: Path, exclude: Iterable[str] = (MANIFEST_NAME,)) -> list[str]:
    """Relative paths of every regular file under ``directory`` (for ``publish``)."""
    directory = Path(directory)
    skip = set(exclude)
    out = []
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory).as_posix()
        if path.is_file() and rel not in skip and not path.name.startswith("."):
            out.append(rel)
    return out


class StagePlan(BaseModel):
    """Where a stage will publish, and why there: the inputs of its content address."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    stage: str
    key: str
    root: str
    code_version: str
    config: dict[str, Any]
    upstream: tuple[Upstream, ...] = ()

    @property
    def dir(self) -> Path:
        return stage_dir(Path(self.root), self.stage, self.key)

    @property
    def cache_key(self) -> str:
        return f"{self.stage}-{self.key}"

    def complete(self) -> bool:
        return read_manifest(self.dir) is not None

    def manifest(self) -> Manifest | None:
        return read_manifest(self.dir)

    def publish(self, files: Iterable[str], metrics: dict[str, Any] | None = None) -> Manifest:
        return publish(
            self.dir,
            stage=self.stage,
            key=self.key,
            config=self.config,
            upstream=self.upstream,
            code=self.code_version,
            files=files,
            metrics=metrics,
        )


def plan_stage(
    root: Path | str,
    stage: str,
    config: BaseModel | dict[str, Any],
    upstream: Sequence[tuple[str, Manifest] | Upstream | Manifest],
    entry: str | ModuleType,
) -> StagePlan:
    """The content address of a stage: config + upstream (role, stage, key) in order + the code
    fingerprint of ``entry`` (the stage's core module, e.g. ``tasks.core.stages.filter``, and all
    it imports). Stages plan through :class:`tasks.core.stages.base.StageInputs`, which derives
    ``config`` and ``upstream`` from the stage's declared inputs."""
    cfg = config.model_dump(mode="json") if isinstance(config, BaseModel) else dict(config)
    code = fingerprint(entry).digest
    refs = upstream_refs(upstream)
    return StagePlan(
        stage=stage,
        key=stage_key(stage, cfg, refs, code),
        root=str(Path(root).resolve()),
        code_version=code,
        config=json.loads(_canonical(cfg)),
        upstream=refs,
    )
