"""Set-based writes: a whole frame in one executemany (SQLite) or one COPY (PostgreSQL), no ORM per row.

Values are written the way the table models read them back: aware datetimes as UTC (SQLite's
text form is SQLAlchemy's own, `YYYY-MM-DD HH:MM:SS.ffffff`), JSON columns as JSON text the caller
serialized once.
"""

from __future__ import annotations

from typing import Any

import polars as pl
from sqlalchemy import Connection, Engine, Table
from sqlalchemy.dialects import postgresql, sqlite

COPY_CHUNK = 50_000


def insert_frame(
    conn: Connection, table: Table, frame: pl.DataFrame, constants: dict[str, str | int | None] | None = None
) -> None:
    """Insert every row of `frame` (columns named as the table's) inside the caller's transaction.

    `constants` are columns with one value for every row (the batch, the source, the time
    received): SQLite gets them as literals in the statement, so each row binds only what varies.
    """
    if frame.is_empty():
        return
    constants = constants or {}
    unknown = [c for c in frame.columns if c not in table.c]
    if unknown:
        raise ValueError(f"{table.name} has no columns {unknown}")
    if conn.dialect.name == "postgresql":
        frame = frame.with_columns(pl.lit(v).alias(c) for c, v in constants.items())
        names = ", ".join(f'"{c}"' for c in frame.columns)
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy(f'COPY "{table.name}" ({names}) FROM STDIN WITH (FORMAT csv)') as copy:
            for start in range(0, frame.height, COPY_CHUNK):
                # Strings always quoted, so "" stays an empty string and an unquoted empty field is NULL.
                copy.write(
                    frame.slice(start, COPY_CHUNK).write_csv(include_header=False, quote_style="non_numeric")
                )
        return
    timestamps = [
        pl.col(c).dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%d %H:%M:%S%.6f")
        for c, dtype in frame.schema.items()
        if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None
    ]
    if timestamps:
        frame = frame.with_columns(timestamps)
    names = ", ".join(f'"{c}"' for c in [*frame.columns, *constants])
    values = ", ".join(["?"] * frame.width + [_sqlite_literal(v) for v in constants.values()])
    conn.exec_driver_sql(f'INSERT INTO "{table.name}" ({names}) VALUES ({values})', frame.rows())


def _sqlite_literal(value: str | int | None) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"a constant column takes text, an integer or None, not {value!r}")
    if isinstance(value, int):
        return str(value)
    if "\x00" in value:
        raise ValueError("a constant column cannot hold a NUL character")
    return "'" + value.replace("'", "''") + "'"


def insert_ignoring_duplicates(engine: Engine | Connection, table: Table) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING for the dialect: rows a unique constraint refuses are skipped."""
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()
