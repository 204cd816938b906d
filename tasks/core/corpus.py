"""Stage-1 code corpora: load documents, deduplicate them, hold out a validation slice.

Contract
- :class:`CorpusSpec` names one source:
  - ``stdlib``: the running interpreter's own standard library
    (``sysconfig.get_paths()["stdlib"]``), files matching ``glob`` (``*.py``), skipping every
    directory named ``site-packages``, ``dist-packages``, ``test``, ``tests``, ``idle_test`` or
    ``__pycache__`` (about 12 MB of Python 3.11 source). ``path`` must be unset.
  - ``directory``: files under ``path`` matching ``glob`` recursively (same skipped names, so
    third-party code and tests in a checkout are left out too).
  - ``text``: one UTF-8 file (or every ``*.txt`` file under a directory); documents are the
    pieces between occurrences of ``separator`` (default ``<|endoftext|>``).
  - ``parquet``: one Parquet file (or every ``*.parquet`` under a directory); documents are the
    non-null strings of ``text_column``.
- One document = one file (or piece / row). Documents are deduplicated by SHA-256 of their exact
  content; empty and whitespace-only documents are dropped; files that are not UTF-8 are
  skipped and counted (``stats.unreadable``).
- Order is deterministic and independent of the file system: documents are sorted by a
  seeded hash of their content. ``max_bytes`` walks that order and keeps each document that
  still fits the cap (UTF-8 bytes; one that would overflow it is skipped), so a capped corpus
  is a seeded random subset, not "the first directories".
- Hold-out is by document: a document goes to validation when its seeded hash falls below
  ``valid_fraction``. If that leaves validation empty while ``valid_fraction > 0`` and there
  are at least two documents, the document with the smallest hash is moved there, so tiny
  corpora still get a validation set.

Limits: the whole corpus is held in memory as Python strings (fine for tens of MB, not for
GBs); near-duplicates are not detected (exact content only).
"""

from __future__ import annotations

import hashlib
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SKIPPED_DIR_NAMES = frozenset({"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"})


class CorpusError(ValueError):
    """A corpus cannot be built from the spec (empty, bad column, ...)."""


class CorpusNotFoundError(CorpusError, FileNotFoundError):
    """The corpus path does not exist."""


class CorpusSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["stdlib", "directory", "text", "parquet"] = "stdlib"
    path: str | None = None
    glob: str = "*.py"
    text_column: str = "text"
    separator: str = "<|endoftext|>"
    max_bytes: int | None = Field(default=None, gt=0)
    valid_fraction: float = Field(default=0.02, ge=0.0, lt=1.0)
    seed: int = 0

    @model_validator(mode="after")
    def _path_matches_kind(self) -> CorpusSpec:
        if self.kind == "stdlib" and self.path is not None:
            raise ValueError(
                "corpus.path must be unset for kind='stdlib' (it is the interpreter's own "
                "Lib directory); use kind='directory' to read another tree"
            )
        if self.kind != "stdlib" and not self.path:
            raise ValueError(f"corpus.path is required for kind={self.kind!r}; set it to a local path")
        return self


@dataclass(frozen=True)
class CorpusStats:
    files: int  # documents kept (train + valid)
    duplicates_dropped: int
    unreadable: int
    bytes_train: int
    bytes_valid: int


@dataclass(frozen=True)
class Corpus:
    train_texts: tuple[str, ...]
    valid_texts: tuple[str, ...]
    stats: CorpusStats


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def load_corpus(spec: CorpusSpec) -> Corpus:
    """Read, deduplicate, order, cap and split the corpus described by ``spec``."""
    root = stdlib_root() if spec.kind == "stdlib" else Path(spec.path or "")
    if not root.exists():
        raise CorpusNotFoundError(
            f"corpus.path {str(root)!r} (kind={spec.kind!r}) does not exist; "
            "point corpus.path at an existing local file or directory"
        )
    unreadable = [0]
    docs = _documents(spec, root, unreadable)
    unique, duplicates = _dedup(docs)
    if not unique:
        raise CorpusError(
            f"corpus.path {str(root)!r} (kind={spec.kind!r}, glob={spec.glob!r}) yielded no "
            "non-empty document; check corpus.path, corpus.glob or corpus.text_column"
        )
    ordered = sorted(unique.items(), key=lambda kv: _score(spec.seed, kv[0]))
    ordered = _cap(ordered, spec.max_bytes)
    train, valid = _split(ordered, spec.seed, spec.valid_fraction)
    stats = CorpusStats(
        files=len(train) + len(valid),
        duplicates_dropped=duplicates,
        unreadable=unreadable[0],
        bytes_train=sum(_nbytes(t) for t in train),
        bytes_valid=sum(_nbytes(t) for t in valid),
    )
    return Corpus(train_texts=tuple(train), valid_texts=tuple(valid), stats=stats)


def _documents(spec: CorpusSpec, root: Path, unreadable: list[int]) -> Iterator[str]:
    if spec.kind in ("stdlib", "directory"):
        for path in _walk(root, spec.glob):
            text = _read_text(path, unreadable)
            if text is not None:
                yield text
    elif spec.kind == "text":
        for path in _walk(root, "*.txt") if root.is_dir() else [root]:
            text = _read_text(path, unreadable)
            if text is not None:
                yield from text.split(spec.separator)
    else:
        yield from _parquet_documents(root, spec.text_column)


def _walk(root: Path, pattern: str) -> list[Path]:
    if root.is_file():
        return [root]
    paths = (p for p in root.rglob(pattern) if p.is_file())
    kept = [p for p in paths if not SKIPPED_DIR_NAMES.intersection(p.relative_to(root).parts[:-1])]
    return sorted(kept)


def _read_text(path: Path, unreadable: list[int]) -> str | None:
    try:
        return path.read_bytes().decode("utf-8")
    except (UnicodeDecodeError, OSError):
        unreadable[0] += 1
        return None


def _parquet_documents(root: Path, column: str) -> Iterator[str]:
    import pyarrow.parquet as pq

    for path in _walk(root, "*.parquet"):
        schema = pq.read_schema(path)
        if column not in schema.names:
            raise CorpusError(
                f"{path} has no column {column!r} (columns: {schema.names}); "
                "set corpus.text_column to the column holding the text"
            )
        for value in pq.read_table(path, columns=[column]).column(column).to_pylist():
            if isinstance(value, str):
                yield value


def _dedup(docs: Iterator[str]) -> tuple[dict[str, str], int]:
    unique: dict[str, str] = {}
    duplicates = 0
    for text in docs:
        if not text.strip():
            continue
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        if digest in unique:
            duplicates += 1
        else:
            unique[digest] = text
    return unique, duplicates


def _score(seed: int, digest: str) -> float:
    """A seeded, uniform-looking number in [0, 1) for one document."""
    h = hashlib.sha256(f"{seed}:{digest}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def _nbytes(text: str) -> int:
    return len(text.encode("utf-8"))


def _cap(ordered: list[tuple[str, str]], max_bytes: int | None) -> list[tuple[str, str]]:
    if max_bytes is None:
        return ordered
    kept, total = [], 0
    for digest, text in ordered:
        size = _nbytes(text)
        if total + size > max_bytes:
            continue
        kept.append((digest, text))
        total += size
    if not kept:
        raise CorpusError(
            f"corpus.max_bytes={max_bytes} is smaller than every document "
            f"(smallest: {min(_nbytes(t) for _, t in ordered)} bytes); raise corpus.max_bytes"
        )
    return kept


def _split(ordered: list[tuple[str, str]], seed: int, fraction: float) -> tuple[list[str], list[str]]:
    # A second, independent hash so the hold-out is not just "the head of the order".
    scored = [(_score(seed + 1_000_003, digest), text) for digest, text in ordered]
    valid = [text for s, text in scored if s < fraction]
    train = [text for s, text in scored if s >= fraction]
    if not valid and fraction > 0 and len(scored) >= 2:
        smallest = min(range(len(scored)), key=lambda i: scored[i][0])
        valid = [scored[smallest][1]]
        train = [text for i, (_, text) in enumerate(scored) if i != smallest]
    return train, valid
