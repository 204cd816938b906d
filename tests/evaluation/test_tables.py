"""rows_table keeps the keys that only later rows have (pa.Table.from_pylist alone drops them)."""

from __future__ import annotations

import pyarrow as pa

from tasks.core.tables import rows_table


def test_later_keys_survive_and_missing_values_are_null():
    rows = [{"a": 1}, {"a": 2, "b": "x"}, {"c": 0.5, "a": 3}]
    assert pa.Table.from_pylist(rows).column_names == ["a"]  # the loss this module exists for
    table = rows_table(rows)
    assert table.column_names == ["a", "b", "c"]
    assert table.to_pylist() == [
        {"a": 1, "b": None, "c": None},
        {"a": 2, "b": "x", "c": None},
        {"a": 3, "b": None, "c": 0.5},
    ]
