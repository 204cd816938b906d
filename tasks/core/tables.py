"""Rows of dicts to an Arrow table whose columns are the union of every row's keys.

Contract: :func:`rows_table` keeps every key of every row, in order of first appearance, and fills
a row's missing keys with nulls. ``pa.Table.from_pylist`` alone infers the columns from the first
row and silently drops keys that only later rows have (a baseline row without the ``vs`` columns
of the rows after it). Limits: a key's values must share one Arrow type across rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa


def rows_table(rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    """The table of ``rows``; see the module docstring."""
    rows = list(rows)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    return pa.Table.from_pylist([{k: r.get(k) for k in columns} for r in rows])
