"""Persistence: atomic file and directory writes, metrics tables, models, training checkpoints.

Contract
- Files (:func:`atomic_write_bytes`, ``_text``, ``_json``, ``_jsonl``, :func:`write_parquet`,
  :func:`write_metrics`): the content goes to a temp file in the target's directory (``mkstemp``,
  so concurrent writers never share one), is fsynced, then ``os.replace``-d onto the target; on
  any failure the temp file is removed and the target is untouched. Parent dirs are created.
- Directories (:func:`atomic_dir`, used by :func:`save_model` and :func:`save_checkpoint`): the
  caller fills a fresh temp dir beside the target; on success every file in it is fsynced and the
  temp dir renamed onto the target (an existing target is first renamed aside, then removed);
  on failure the temp dir is removed. Temp names start with ``.<target name>.tmp-`` and
  ``.<target name>.old-``; :func:`remove_stale` deletes such leftovers of a killed process.
- Checkpoints (:func:`save_checkpoint` / :func:`read_checkpoint`): one format for every trainer.
  A directory holding one ``<name>.pt`` per state dict (model, optimizer, scheduler, value head,
  ...), ``rng.pt`` (torch and CUDA RNG), ``meta.json`` (step, the caller's JSON meta, python and
  numpy RNG) and, written last, the ``COMPLETE`` marker (``step N``). A directory without the
  marker is not a checkpoint. Tensors load with ``torch.load(..., weights_only=True)`` only:
  a checkpoint can hold tensors and plain containers, never pickled objects.

Limits: a directory swap is two renames, so a crash between them leaves no target (callers
treat that as "no checkpoint" / "no model" and recompute); fsync covers files, not the parent
directory entry. ``meta`` must be JSON-serialisable (floats round-trip exactly; NaN is kept).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHECKPOINT_MARKER = "COMPLETE"
CHECKPOINT_META = "meta.json"
_RNG_FILE = "rng.pt"


# ----------------------------------------------------------------------------- files


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same directory, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any, indent: int | None = None) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent))


def atomic_write_jsonl(path: Path, rows: Sequence[Any]) -> None:
    """One JSON document per line, written atomically."""
    atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in rows))


def write_parquet(path: Path, table, compression: str = "zstd") -> None:
    """A Parquet file (``pyarrow.Table``) written atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression=compression)
    atomic_write_bytes(Path(path), sink.getvalue().to_pybytes())


def write_metrics(path: Path, rows: Sequence[Mapping[str, Any]], schema=None) -> Path:
    """A metrics table, one row per step, written atomically as Parquet.

    With ``schema`` (a ``pyarrow.Schema``) the rows are typed by it; without, the columns are the
    sorted union of the rows' keys, all float64 (a key missing from a row is null)."""
    import pyarrow as pa

    if schema is None:
        columns = sorted({k for row in rows for k in row})
        schema = pa.schema([(c, pa.float64()) for c in columns])
    write_parquet(Path(path), pa.Table.from_pylist([dict(r) for r in rows], schema=schema))
    return Path(path)


# ----------------------------------------------------------------------------- directories


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a fresh temp dir beside ``target``; on a clean exit it replaces ``target``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    try:
        yield tmp
        _fsync_tree(tmp)
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _fsync_tree(directory: Path) -> None:
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())


def remove_stale(directory: Path) -> None:
    """Delete temp files and dirs that a killed :func:`atomic_dir` / write left in ``directory``."""
    for pattern in (".*.tmp-*", ".*.old-*"):
        for stale in Path(directory).glob(pattern):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)


def save_model(model: Any, tokenizer: Any, target: Path, extra: Callable[[Path], None] | None = None) -> Path:
    """``save_pretrained`` of ``model`` (None: tokenizer only) and ``tokenizer``, plus
    ``extra(tmp_dir)`` if given, into ``target`` atomically."""
    with atomic_dir(target) as tmp:
        if model is not None:
            model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if extra is not None:
            extra(tmp)
    return Path(target)


# ----------------------------------------------------------------------------- checkpoints


@dataclass(frozen=True)
class Checkpoint:
    """A complete checkpoint directory: its step, the caller's meta, its state dicts on demand."""

    path: Path
    step: int
    meta: dict[str, Any]
    rng: dict[str, Any]

    def state(self, name: str) -> Any:
        """The state dict saved under ``name`` (``weights_only=True``, tensors on CPU)."""

        file = self.path / f"{name}.pt"
        if not file.is_file():
            raise FileNotFoundError(f"checkpoint {self.path} has no state {name!r}")
        return load_tensors(file)

    def restore_rng(self) -> None:
        """Set the python, numpy, torch (and CUDA, when present) RNGs to their saved states."""
        import numpy as np
        import torch

        saved = torch.load(self.path / _RNG_FILE, weights_only=True)
        torch.set_rng_state(saved["torch"])
        if saved["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(saved["cuda"])
        random.setstate(_tupled(self.rng["python"]))
        kind, keys, *rest = self.rng["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))


def save_checkpoint(target: Path, step: int, states: Mapping[str, Any], meta: Mapping[str, Any]) -> Path:
    """Write ``states`` (name -> state dict), the RNG states and ``meta`` to ``target`` atomically."""
    import numpy as np
    import torch

    np_state = np.random.get_state()
    rng = {
        "python": _jsonable(random.getstate()),
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
    }
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    with atomic_dir(target) as tmp:
        for name, state in states.items():
            torch.save(state, tmp / f"{name}.pt")
        torch.save({"torch": torch.get_rng_state(), "cuda": cuda}, tmp / _RNG_FILE)
        (tmp / CHECKPOINT_META).write_text(json.dumps({"step": step, "meta": dict(meta), "rng": rng}))
        _fsync_tree(tmp)
        (tmp / CHECKPOINT_MARKER).write_text(f"step {step}\n")
    return Path(target)


def read_checkpoint(path: Path) -> Checkpoint | None:
    """The checkpoint at ``path``, or None when there is no complete one."""
    path = Path(path)
    if not (path / CHECKPOINT_MARKER).is_file():
        return None
    if not (path / CHECKPOINT_META).is_file():
        raise FileNotFoundError(
            f"checkpoint {path} is marked complete but has no {CHECKPOINT_META} (another format); "
            "delete it to start over"
        )
    saved = json.loads((path / CHECKPOINT_META).read_text())
    return Checkpoint(path=path, step=int(saved["step"]), meta=saved["meta"], rng=saved["rng"])


def numbered_dirs(directory: Path, prefix: str, marker: str = CHECKPOINT_MARKER) -> list[tuple[int, Path]]:
    """``(step, path)`` of each ``<prefix><step>`` dir under ``directory`` holding ``marker``,
    by step."""
    if not Path(directory).is_dir():
        return []
    found = []
    for child in Path(directory).iterdir():
        suffix = child.name[len(prefix) :]
        if (
            child.is_dir()
            and child.name.startswith(prefix)
            and suffix.isdigit()
            and (child / marker).is_file()
        ):
            found.append((int(suffix), child))
    return sorted(found)


def prune_checkpoints(directory: Path, prefix: str, keep: int) -> None:
    """Remove all but the ``keep`` highest-step complete ``<prefix><step>`` checkpoints."""
    for _, old in numbered_dirs(directory, prefix)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def _jsonable(obj):
    return [_jsonable(x) for x in obj] if isinstance(obj, (tuple, list)) else obj


def _tupled(obj):
    return tuple(_tupled(x) for x in obj) if isinstance(obj, list) else obj


def load_tensors(path: Path) -> Any:
    """A ``torch.save`` file read with ``weights_only=True``, every tensor on the host (callers
    move state to their device: ``Optimizer.load_state_dict`` casts to each parameter's)."""
    import torch

    return torch.load(Path(path), weights_only=True, map_location="cpu")
