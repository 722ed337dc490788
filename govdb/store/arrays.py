"""PostgreSQL: a batch of row-wise writes as one statement over arrays, not one statement per row.

psycopg's `executemany` pipelines its statements, but the server still parses, binds and runs one
per row: a batch of twenty decisions was forty-odd statements, and most of a decision's time was
the server answering them (benchmarks/RESULTS.md, PostgreSQL decisions). Here each column of the
batch is one array parameter, and one `UPDATE ... FROM unnest(...)` or `INSERT ... SELECT FROM
unnest(...)` writes them all. Values arrive bound as the driver binds them (`bulk._converter`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Float, Integer, Numeric, String, Table, TypeDecorator

ARRAY_ROWS = 100_000  # rows of one statement


def _unnest(conn: Connection, table: Table, columns: Sequence[str]) -> str:
    """`unnest(%s::T0[], ...) AS v(c0, ...)`: each column an array cast to its column's type
    without bounds (`_type`), named by position so that a column may be both set and tested (a
    task's round)."""
    arrays = ", ".join(f"%s::{_type(conn, table, c)}[]" for c in columns)
    return f"unnest({arrays}) AS v({', '.join(f'c{i}' for i in range(len(columns)))})"


def _type(conn: Connection, table: Table, column: str) -> str:
    """The column's type without its length or precision: a cast to `varchar(8)` cuts a longer
    value to 8 characters silently (a key `ABCDEFGH-x` would find the row `ABCDEFGH`), where the
    assignment of an unbounded value refuses it and a comparison matches nothing."""
    impl = table.c[column].type.dialect_impl(conn.dialect)
    if isinstance(impl, TypeDecorator):  # the models' text is sqlmodel's AutoString over String(n)
        impl = impl.load_dialect_impl(conn.dialect)
    if isinstance(impl, String):
        return "TEXT"
    if isinstance(impl, Numeric) and not isinstance(impl, Float | Integer):
        return "NUMERIC"
    return str(impl.compile(dialect=conn.dialect))


def _arrays(rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """The rows' columns as lists. psycopg dumps a list of one Python type only: a column that
    mixes them (a number beside its text) goes as text, which the server casts to the column's
    type as it would each value."""
    columns = [list(column) for column in zip(*rows, strict=True)]
    for i, column in enumerate(columns):
        kinds = {type(v) for v in column if v is not None}
        if kinds == {int, float}:  # as float8, which the column's cast rounds as an assignment would
            columns[i] = [None if v is None else float(v) for v in column]
        elif len(kinds) > 1:
            columns[i] = [None if v is None else _text(v) for v in column]
    return columns


def _text(value: Any) -> str:
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def update_from_arrays(
    cursor: Any,
    conn: Connection,
    table: Table,
    sets: Sequence[str],
    keys: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    where: Mapping[str, Any],
    constants: Mapping[str, Any],
) -> int:
    """`UPDATE table SET <sets>, <constants> WHERE <keys> = ... AND <where>` for every row of
    (*set values, *key values), as one statement per ARRAY_ROWS rows; the rows changed. The keys
    must be unique across `rows` (a target row is changed at most once per statement: the caller
    checks).

    An expected value of `where` (a state) is joined as one more array column, not compared with a
    constant: against a constant, stale statistics (a state that was rare at the last ANALYZE) let
    the planner read every row in that state through its index and hash them, 27 ms for twenty
    tasks; joined, each row is found by its key. None stays a test: `IS NULL`."""
    expected = {c: v for c, v in where.items() if v is not None}
    columns = [*sets, *keys, *expected]
    assignments = [f'"{c}" = v.c{i}' for i, c in enumerate(sets)]
    assignments += [f'"{c}" = %s::{_type(conn, table, c)}' for c in constants]
    tests = [f'"{table.name}"."{k}" = v.c{len(sets) + i}' for i, k in enumerate([*keys, *expected])]
    tests += [f'"{table.name}"."{c}" IS NULL' for c, v in where.items() if v is None]
    statement = (
        f'UPDATE "{table.name}" SET {", ".join(assignments)} FROM {_unnest(conn, table, columns)} '
        f"WHERE {' AND '.join(tests)}"
    )
    fixed = tuple(expected.values())
    changed = 0
    for start in range(0, len(rows), ARRAY_ROWS):
        part = [(*row, *fixed) for row in rows[start : start + ARRAY_ROWS]]
        cursor.execute(statement, (*constants.values(), *_arrays(part)))
        changed += int(cursor.rowcount)
    return changed


def insert_from_arrays(
    cursor: Any, conn: Connection, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> int:
    """`INSERT INTO table (<columns>) SELECT FROM unnest(...)`, one statement per ARRAY_ROWS rows."""
    names = ", ".join(f'"{c}"' for c in columns)
    statement = f'INSERT INTO "{table.name}" ({names}) SELECT * FROM {_unnest(conn, table, columns)}'
    inserted = 0
    for start in range(0, len(rows), ARRAY_ROWS):
        cursor.execute(statement, _arrays(rows[start : start + ARRAY_ROWS]))
        inserted += int(cursor.rowcount)
    return inserted
