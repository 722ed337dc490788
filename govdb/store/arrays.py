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


def _integers(conn: Connection, table: Table, columns: Sequence[str]) -> list[bool]:
    """Which of these columns hold integers (the key and value columns of a batch, in order)."""
    return [_type(conn, table, c) in ("SMALLINT", "INTEGER", "BIGINT") for c in columns]


def _arrays(rows: Sequence[Sequence[Any]], integers: Sequence[bool]) -> list[list[Any]]:
    """The rows' columns as lists. psycopg dumps a list of one Python type only: a column that
    mixes them (a number beside its text) goes as text, which the server casts to the column's
    type as it would each value. Floats beside ints go as float8, which the column's cast rounds
    as an assignment would; in an integer column whole floats go as the ints they are, exact
    past 2**53 (where float8 would round 2**53 + 1 to another row's key)."""
    columns = [list(column) for column in zip(*rows, strict=True)]
    for i, column in enumerate(columns):
        kinds = {type(v) for v in column if v is not None}
        if float in kinds and kinds <= {int, float} and integers[i] and all(_whole(v) for v in column):
            columns[i] = [None if v is None else int(v) for v in column]
        elif kinds == {int, float}:
            columns[i] = [None if v is None else float(v) for v in column]
        elif len(kinds) > 1:
            columns[i] = [None if v is None else _text(v) for v in column]
    return columns


def _whole(value: Any) -> bool:
    return not isinstance(value, float) or value.is_integer()


def _matchable(rows: Sequence[Sequence[Any]], integer_keys: Sequence[int]) -> list[Sequence[Any]]:
    """The rows whose keys an integer column could hold: a key of 2.5 names no row (as on SQLite),
    where the cast of the keys to the column's type would round it to row 2's."""
    if not integer_keys:
        return list(rows)
    return [row for row in rows if all(_whole(row[i]) for i in integer_keys)]


def _text(value: Any) -> str:
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def update_statement(
    conn: Connection,
    table: Table,
    sets: Sequence[str],
    keys: Sequence[str],
    *,
    where: Mapping[str, Any],
    constants: Mapping[str, Any],
) -> str:
    """`UPDATE table SET <sets>, <constants> FROM unnest(...) WHERE <keys> = ... AND <where>`; its
    parameters are `update_params`. An expected value of `where` (a state) is joined as one more
    array column, not compared with a constant: against a constant, stale statistics (a state that
    was rare at the last ANALYZE) let the planner read every row in that state through its index
    and hash them, 27 ms for twenty tasks; joined, each row is found by its key. None stays a
    test: `IS NULL`."""
    expected = [c for c, v in where.items() if v is not None]
    columns = [*sets, *keys, *expected]
    assignments = [f'"{c}" = v.c{i}' for i, c in enumerate(sets)]
    assignments += [f'"{c}" = %s::{_type(conn, table, c)}' for c in constants]
    tests = [f'"{table.name}"."{k}" = v.c{len(sets) + i}' for i, k in enumerate([*keys, *expected])]
    tests += [f'"{table.name}"."{c}" IS NULL' for c, v in where.items() if v is None]
    return (
        f'UPDATE "{table.name}" SET {", ".join(assignments)} FROM {_unnest(conn, table, columns)} '
        f"WHERE {' AND '.join(tests)}"
    )


def update_params(
    conn: Connection,
    table: Table,
    sets: Sequence[str],
    keys: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    where: Mapping[str, Any],
    constants: Mapping[str, Any],
) -> tuple[Any, ...]:
    """The parameters of `update_statement` for these rows of (*set values, *key values); rows
    whose integer key is a fraction are left out (they name no row)."""
    fixed = {c: v for c, v in where.items() if v is not None}
    columns = [*sets, *keys, *fixed]
    integers = _integers(conn, table, columns)
    key_columns = range(len(sets), len(columns))
    rows = _matchable([(*row, *fixed.values()) for row in rows], [i for i in key_columns if integers[i]])
    return (
        (*constants.values(), *_arrays(rows, integers))
        if rows
        else (*constants.values(), *([[]] * len(columns)))
    )


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
    """`update_statement` for every row of (*set values, *key values), one statement per
    ARRAY_ROWS rows; the rows changed. The keys must be unique across `rows` (a target row is
    changed at most once per statement: the caller checks)."""
    statement = update_statement(conn, table, sets, keys, where=where, constants=constants)
    changed = 0
    for start in range(0, len(rows), ARRAY_ROWS):
        part = rows[start : start + ARRAY_ROWS]
        cursor.execute(
            statement, update_params(conn, table, sets, keys, part, where=where, constants=constants)
        )
        changed += int(cursor.rowcount)
    return changed


def delete_from_arrays(
    cursor: Any, conn: Connection, table: Table, keys: Sequence[str], rows: Sequence[Sequence[Any]]
) -> int:
    """`DELETE FROM table USING unnest(...) WHERE <keys> = ...`: the rows with these keys, one
    statement per ARRAY_ROWS rows; the rows deleted. A key given twice deletes its row once."""
    tests = " AND ".join(f'"{table.name}"."{k}" = v.c{i}' for i, k in enumerate(keys))
    statement = f'DELETE FROM "{table.name}" USING {_unnest(conn, table, keys)} WHERE {tests}'
    integers = _integers(conn, table, keys)
    rows = _matchable(rows, [i for i, integer in enumerate(integers) if integer])
    deleted = 0
    for start in range(0, len(rows), ARRAY_ROWS):
        cursor.execute(statement, tuple(_arrays(rows[start : start + ARRAY_ROWS], integers)))
        deleted += int(cursor.rowcount)
    return deleted


def insert_statement(conn: Connection, table: Table, columns: Sequence[str]) -> str:
    """`INSERT INTO table (<columns>) SELECT FROM unnest(...)`; its parameters are `insert_params`."""
    names = ", ".join(f'"{c}"' for c in columns)
    return f'INSERT INTO "{table.name}" ({names}) SELECT * FROM {_unnest(conn, table, columns)}'


def insert_from_arrays(
    cursor: Any, conn: Connection, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> int:
    """`insert_statement`, one statement per ARRAY_ROWS rows."""
    statement = insert_statement(conn, table, columns)
    inserted = 0
    for start in range(0, len(rows), ARRAY_ROWS):
        cursor.execute(statement, insert_params(conn, table, columns, rows[start : start + ARRAY_ROWS]))
        inserted += int(cursor.rowcount)
    return inserted


def insert_params(
    conn: Connection, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> tuple[Any, ...]:
    """The parameters of `insert_statement` for these rows."""
    return tuple(_arrays(rows, _integers(conn, table, columns)))


def together(cursor: Any, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[int]:
    """Run several writes as one statement, one round trip: `WITH w0 AS (<write> RETURNING 1), ...
    SELECT (SELECT count(*) FROM w0), ...`; the rows each wrote. They all see the table as it was
    before the statement and none sees another's rows, so they must touch different rows (the
    caller checks); PostgreSQL runs every data-modifying WITH to its end."""
    if len(statements) == 1:
        sql, params = statements[0]
        cursor.execute(sql, params)
        return [int(cursor.rowcount)]
    parts = ", ".join(f"w{i} AS ({sql} RETURNING 1)" for i, (sql, _) in enumerate(statements))
    counts = ", ".join(f"(SELECT count(*) FROM w{i})" for i in range(len(statements)))
    cursor.execute(f"WITH {parts} SELECT {counts}", tuple(p for _, params in statements for p in params))
    return [int(n) for n in cursor.fetchone()]
