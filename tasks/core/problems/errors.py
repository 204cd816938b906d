"""The one error of problem loading: :class:`ProblemLoadError` names file, row and field.

``row`` is 0-based for Parquet (row within the file) and 1-based for JSONL (the line number);
``field`` is a dotted path (``private_tests.input``) or None when the whole file is at fault.
"""

from __future__ import annotations


class ProblemLoadError(ValueError):
    def __init__(
        self, path: str, reason: str, *, row: int | None = None, field: str | None = None, fix: str = ""
    ) -> None:
        self.path, self.row, self.field, self.reason = str(path), row, field, reason
        where = self.path
        if row is not None:
            where += f", row {row}"
        if field:
            where += f", field {field!r}"
        super().__init__(f"{where}: {reason}" + (f" ({fix})" if fix else ""))
