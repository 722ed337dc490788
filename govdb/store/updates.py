"""Set-based conditional UPDATEs of many rows: `update_rows` writes a whole frame, each row's
columns where its key matches and the expected state still holds, and returns how many changed;
`delete_many` deletes rows by their keys.

SQLite gets one executemany through the driver (constants as literals), or, when only the key
varies, one UPDATE over `json_each` of the keys as a JSON array; PostgreSQL one statement over
arrays (`arrays.update_from_arrays`). Kept apart from `bulk` (inserts, reads and the binding
helpers it shares with this module) so neither file grows too long; this module imports `bulk`,
never the other way round.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl
from sqlalchemy import Connection, Integer, String, Table, TypeDecorator
from sqlalchemy.exc import DBAPIError

from govdb.store.arrays import delete_from_arrays, update_from_arrays
from govdb.store.bulk import (
    Constant,
    _bind_rows,
    _bound_as_text,
    _sqlite_bindable,
    _sqlite_literal,
    _utf8,
    bound_values,
    driver_cursor,
)


def update_rows(
    conn: Connection,
    table: Table,
    frame: pl.DataFrame,
    *,
    key: str,
    where: dict[str, str | None] | None = None,
    constants: dict[str, Constant] | None = None,
) -> int:
    """`UPDATE table SET <frame's other columns>, <constants> WHERE key = <row's key> AND <where>`
    for every row of `frame`, in the caller's transaction; returns how many rows changed.

    One executemany through the driver on SQLite (SQLAlchemy's parameter processing cost more
    than the update itself), one statement over arrays on PostgreSQL. `where` holds columns to
    their expected values (a checked transition's state; None: IS NULL), so the count tells the
    caller whether every row was still where it expected. JSON columns take JSON text the caller
    serialized once; keys must be unique.
    """
    if frame.is_empty():
        return 0
    constants = constants or {}
    where = where or {}
    unknown = [c for c in [*frame.columns, *constants, *where] if c not in table.c]
    if unknown or key not in frame.columns:
        raise ValueError(f"{table.name} has no columns {unknown}" if unknown else f"no key column {key!r}")
    if frame.get_column(key).is_duplicated().any():
        raise ValueError(f"update_rows needs one row per {key!r}")
    if any(isinstance(v, dt.datetime) and v.tzinfo is None for v in constants.values()):
        raise ValueError("a constant time must be aware (UTC), on either backend")
    changed = [c for c in frame.columns if c != key]
    rows = frame.select(*changed, key)
    if conn.dialect.name != "sqlite":  # the rows as array columns, constants as scalars
        with driver_cursor(conn, f'UPDATE "{table.name}"') as cursor:
            bound = list(_bind_rows(rows, sqlite=False))
            return update_from_arrays(
                cursor, conn, table, changed, [key], bound, where=where, constants=constants
            )
    listed = None if changed or not constants else _json_key_list(table, rows.get_column(key), where)
    if listed is not None:  # SQLite, only the key varies: one statement, see _json_key_list
        return _update_listed(conn, table, key, listed, where, constants)
    # SQLite: constants as literals, so each row binds only what varies
    utf8 = _utf8(conn)
    texts = _bound_as_text(rows, utf8=utf8)
    rows = _sqlite_bindable(rows, utf8=utf8)
    placeholders = {c: "CAST(? AS TEXT)" if c in texts else "?" for c in rows.columns}
    placeholders |= {c: _sqlite_literal(v) for c, v in constants.items()}
    sets = ", ".join(f'"{c}" = {placeholders[c]}' for c in [*changed, *constants])
    tests = " AND ".join(
        [f'"{key}" = {placeholders[key]}']
        + [f'"{c}" IS NULL' if v is None else f'"{c}" = {_sqlite_literal(v)}' for c, v in where.items()]
    )
    dbapi_error = conn.dialect.loaded_dbapi.Error
    try:
        return _driver_executemany(conn, f'UPDATE "{table.name}" SET {sets} WHERE {tests}', rows)
    except dbapi_error as exc:
        raise DBAPIError.instance(f'bulk update of "{table.name}"', None, exc, dbapi_error) from exc


# Keys SQLite's json_each hands back exactly as bound: no escapes to decode (json_each ends a text
# at an escaped NUL), so only letters, digits and a few marks.
_PLAIN_KEY = r"^[0-9A-Za-z_.:-]*$"


def _stored_type(table: Table, column: str) -> Any:
    """The column's type as stored: sqlmodel's AutoString is a decorator over String."""
    kind = table.c[column].type
    return kind.impl_instance if isinstance(kind, TypeDecorator) else kind


def _json_key_list(table: Table, keys: pl.Series, where: Mapping[str, str | None]) -> str | None:
    """The keys as one JSON array, when each is a 64-bit integer of an integer column or plain
    text of a text column, and every tested column is text held to text (or NULL); else None.
    One UPDATE over `json_each` of the array runs in SQLite without the interpreter lock
    (executemany takes it back for every row's binding: a writer thread's moves and the planning
    thread took turns) and costs about half as much: 50,000 events moved in 0.25 s against 0.45 s.
    The tests are written `+column` (see `_update_listed`), which drops the column's affinity:
    the same comparison only for text against text."""
    column = _stored_type(table, keys.name)
    tested = all(
        isinstance(_stored_type(table, c), String) and (v is None or isinstance(v, str))
        for c, v in where.items()
    )
    if keys.has_nulls() or not tested:
        return None
    if keys.dtype.is_integer() and isinstance(column, Integer):
        if keys.dtype == pl.UInt64 and keys.max() >= 2**63:  # type: ignore[operator]
            return None  # past SQLite's integers: the row-by-row path refuses it
        return "[" + keys.cast(pl.String).str.join(",").item() + "]"
    if keys.dtype == pl.String and isinstance(column, String) and keys.str.contains(_PLAIN_KEY).all():
        return "[" + ('"' + keys + '"').str.join(",").item() + "]"
    return None


def _update_listed(
    conn: Connection,
    table: Table,
    key: str,
    listed: str,
    where: Mapping[str, str | None],
    constants: Mapping[str, Constant],
) -> int:
    """`update_rows` of keys alone on SQLite, as one statement over the JSON array `listed`. The
    tested columns are written `+column` so the planner looks rows up by key, never by scanning a
    state's index for the keys (a county's million `standardized` events)."""
    sets = ", ".join(f'"{c}" = {_sqlite_literal(v)}' for c, v in constants.items())
    tests = " AND ".join(
        [f'"{key}" IN (SELECT value FROM json_each(?))']
        + [f'+"{c}" IS NULL' if v is None else f'+"{c}" = {_sqlite_literal(v)}' for c, v in where.items()]
    )
    dbapi_error = conn.dialect.loaded_dbapi.Error
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(f'UPDATE "{table.name}" SET {sets} WHERE {tests}', (listed,))
        return int(cursor.rowcount)
    except dbapi_error as exc:
        raise DBAPIError.instance(f'bulk update of "{table.name}"', None, exc, dbapi_error) from exc
    finally:
        cursor.close()


def _driver_executemany(conn: Connection, statement: str, frame: pl.DataFrame) -> int:
    """One executemany of `statement` over the frame's rows (columns in placeholder order) through
    the driver's cursor; the rows changed (both drivers sum them over the rows)."""
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.executemany(statement, _bind_rows(frame, sqlite=conn.dialect.name == "sqlite"))
        return int(cursor.rowcount)
    finally:
        cursor.close()


def delete_many(conn: Connection, table: Table, keys: Sequence[str], rows: Sequence[Sequence[Any]]) -> int:
    """`DELETE FROM table WHERE <keys>` for each row of key values, in the caller's transaction;
    the rows deleted. PostgreSQL gets one statement over arrays (`arrays.delete_from_arrays`),
    SQLite one executemany. Values are bound as SQLAlchemy binds them."""
    params = bound_values(conn, table, keys, rows)
    if not params:
        return 0
    if conn.dialect.name == "postgresql":
        with driver_cursor(conn, f'DELETE FROM "{table.name}"') as cursor:
            return delete_from_arrays(cursor, conn, table, keys, params)
    tests = " AND ".join(f'"{c}" = ?' for c in keys)
    statement = f'DELETE FROM "{table.name}" WHERE {tests}'
    with driver_cursor(conn, statement) as cursor:
        cursor.executemany(statement, params)
        return int(cursor.rowcount)
