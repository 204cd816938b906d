"""Problems <-> Parquet rows in the Hugging Face ``deepmind/code_contests`` layout.

Reading: :func:`read_parquet` checks the file's schema against :data:`HF_COLUMNS` (every HF
column is required; integer widths and string/large_string are both accepted) and streams
record batches of :data:`BATCH_ROWS`, converting each row to a :class:`Problem`. ``source`` is
read in the HF card's numbering and mapped with ``HF_SOURCE_TO_PROTO``. Our own fields
(``test_style``, ``entry_point``, ``tags`` as a JSON object string) are read when present.

Writing: :func:`write_parquet` writes the HF columns plus ours, in batches, to a temporary file
then ``os.replace`` (atomic). A written file reads back with :func:`read_parquet` (and with
``load_code_contests``, which ignores nothing: the extra columns round-trip).

Limits: every failure is a :class:`ProblemLoadError` naming file, row (0-based) and field.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from .errors import ProblemLoadError
from .schema import HF_SOURCE_TO_PROTO, Problem

BATCH_ROWS = 64
_STR, _I64 = pa.string(), pa.int64()
_TESTS = pa.struct([("input", pa.list_(_STR)), ("output", pa.list_(_STR))])
_SOLUTIONS = pa.struct([("language", pa.list_(_I64)), ("solution", pa.list_(_STR))])
_DURATION = pa.struct([("seconds", _I64), ("nanos", _I64)])

HF_COLUMNS: dict[str, pa.DataType] = {
    "name": _STR,
    "description": _STR,
    "public_tests": _TESTS,
    "private_tests": _TESTS,
    "generated_tests": _TESTS,
    "source": _I64,
    "difficulty": _I64,
    "solutions": _SOLUTIONS,
    "incorrect_solutions": _SOLUTIONS,
    "cf_contest_id": _I64,
    "cf_index": _STR,
    "cf_points": pa.float32(),
    "cf_rating": _I64,
    "cf_tags": pa.list_(_STR),
    "is_description_translated": pa.bool_(),
    "untranslated_description": _STR,
    "time_limit": _DURATION,
    "memory_limit_bytes": _I64,
    "input_file": _STR,
    "output_file": _STR,
}
EXTRA_COLUMNS: dict[str, pa.DataType] = {"test_style": _STR, "entry_point": _STR, "tags": _STR}
WRITE_SCHEMA = pa.schema(list(HF_COLUMNS.items()) + list(EXTRA_COLUMNS.items()))
_PROTO_TO_HF = {proto: hf for hf, proto in HF_SOURCE_TO_PROTO.items()}


def _compatible(actual: pa.DataType, expected: pa.DataType) -> bool:
    """Same shape, up to integer width, float width and string vs large_string."""
    t = pa.types
    if t.is_struct(expected):
        if not t.is_struct(actual):
            return False
        names = {actual.field(i).name: actual.field(i).type for i in range(actual.num_fields)}
        return all(
            expected.field(i).name in names
            and _compatible(names[expected.field(i).name], expected.field(i).type)
            for i in range(expected.num_fields)
        )
    if t.is_list(expected):
        return (t.is_list(actual) or t.is_large_list(actual)) and _compatible(
            actual.value_type, expected.value_type
        )
    checks: dict[Callable[[Any], bool], Callable[[Any], bool]] = {
        t.is_string: lambda a: t.is_string(a) or t.is_large_string(a),
        t.is_integer: t.is_integer,
        t.is_floating: lambda a: t.is_floating(a) or t.is_integer(a),
        t.is_boolean: t.is_boolean,
    }
    return next(ok(actual) for is_kind, ok in checks.items() if is_kind(expected))


def check_schema(path: Path, schema: pa.Schema) -> list[str]:
    """Raise on a missing or mistyped HF column; return the columns to read."""
    for name, expected in HF_COLUMNS.items():
        if name not in schema.names:
            raise ProblemLoadError(
                path, "column missing", field=name, fix="write the file in the deepmind/code_contests schema"
            )
        actual = schema.field(name).type
        if not _compatible(actual, expected):
            raise ProblemLoadError(path, f"column has type {actual}, expected {expected}", field=name)
    extras = [n for n in EXTRA_COLUMNS if n in schema.names]
    return list(HF_COLUMNS) + extras


def read_parquet(path: str | os.PathLike[str]) -> Iterator[Problem]:
    path = Path(path)
    try:
        file = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise ProblemLoadError(path, f"not a readable Parquet file: {exc}") from exc
    columns = check_schema(path, file.schema_arrow)
    row = 0
    for batch in file.iter_batches(batch_size=BATCH_ROWS, columns=columns):
        for record in batch.to_pylist():
            yield row_to_problem(record, path, row)
            row += 1


def _tests(value: dict | None) -> dict:
    value = value or {}
    return {"input": value.get("input") or [], "output": value.get("output") or []}


def _solutions(value: dict | None) -> dict:
    value = value or {}
    return {"language": value.get("language") or [], "solution": value.get("solution") or []}


def row_to_problem(r: dict[str, Any], path: Path, row: int) -> Problem:
    hf_source = r["source"] or 0
    if hf_source not in HF_SOURCE_TO_PROTO:
        raise ProblemLoadError(
            path,
            f"unknown source {hf_source}",
            row=row,
            field="source",
            fix=f"HF numbering is 0..{max(HF_SOURCE_TO_PROTO)}",
        )
    try:
        tags = json.loads(r["tags"]) if r.get("tags") else {}
    except json.JSONDecodeError as exc:
        raise ProblemLoadError(path, f"not a JSON object: {exc}", row=row, field="tags") from exc
    data = {
        "name": r["name"],
        "description": r["description"] or "",
        "public_tests": _tests(r["public_tests"]),
        "private_tests": _tests(r["private_tests"]),
        "generated_tests": _tests(r["generated_tests"]),
        "source": HF_SOURCE_TO_PROTO[hf_source],
        "difficulty": r["difficulty"] or 0,
        "solutions": _solutions(r["solutions"]),
        "incorrect_solutions": _solutions(r["incorrect_solutions"]),
        "cf_contest_id": r["cf_contest_id"] or 0,
        "cf_index": r["cf_index"] or "",
        "cf_points": r["cf_points"] or 0.0,
        "cf_rating": r["cf_rating"] or 0,
        "cf_tags": r["cf_tags"] or [],
        "is_description_translated": bool(r["is_description_translated"]),
        "untranslated_description": r["untranslated_description"] or "",
        "time_limit": r["time_limit"],
        "memory_limit_bytes": r["memory_limit_bytes"] or 0,
        "input_file": r["input_file"] or "",
        "output_file": r["output_file"] or "",
        "test_style": r.get("test_style") or "stdio",
        "entry_point": r.get("entry_point") or "",
        "tags": tags,
    }
    return validate(data, path, row)


def validate(data: Any, path: Path | str, row: int) -> Problem:
    try:
        return Problem.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or None
        raise ProblemLoadError(path, err["msg"], row=row, field=field) from exc


def problem_to_row(p: Problem) -> dict[str, Any]:
    d = p.model_dump(mode="json")
    d["source"] = _PROTO_TO_HF[p.source]
    d["tags"] = json.dumps(p.tags, sort_keys=True)
    return {name: d[name] for name in WRITE_SCHEMA.names}


def write_parquet(problems: Iterable[Problem], path: str | os.PathLike[str], batch_rows: int = 256) -> int:
    """Write atomically; return the number of problems written."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    count, rows = 0, []
    try:
        with pq.ParquetWriter(tmp, WRITE_SCHEMA) as writer:
            for problem in problems:
                rows.append(problem_to_row(problem))
                count += 1
                if len(rows) >= batch_rows:
                    writer.write_table(pa.Table.from_pylist(rows, schema=WRITE_SCHEMA))
                    rows = []
            if rows or count == 0:
                writer.write_table(pa.Table.from_pylist(rows, schema=WRITE_SCHEMA))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return count
