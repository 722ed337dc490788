"""Set-based writes: a whole frame in one executemany (SQLite) or one COPY (PostgreSQL), no ORM per row.

Values are written the way the table models read them back: aware datetimes as UTC (SQLite's
text form is SQLAlchemy's own, `YYYY-MM-DD HH:MM:SS.ffffff`), JSON columns as JSON text the caller
serialized once.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from itertools import chain, islice
from typing import Any

import polars as pl
from sqlalchemy import Connection, Engine, Table, any_, bindparam, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.schema import CreateIndex, DropIndex

from govdb.store.arrays import insert_from_arrays, update_from_arrays

COPY_CHUNK = 50_000
BIND_ROWS = 100_000  # rows turned into Python values at once
PG_BUILD_MEMORY = "256MB"  # sort memory of a PostgreSQL transaction that builds deferred indexes
ROWS_PER_INSERT = 500  # rows of one SQLite INSERT statement (fewer when its columns are many)
Constant = str | int | dt.datetime | None  # a value a whole insert shares; datetimes must be aware


def insert_frame(
    conn: Connection,
    table: Table,
    frame: pl.DataFrame,
    constants: dict[str, Constant] | None = None,
    *,
    update_on_conflict: Sequence[str] = (),
) -> None:
    """Insert every row of `frame` (columns named as the table's) inside the caller's transaction.

    `constants` are columns with one value for every row (the batch, the source, the time
    received): SQLite gets them as literals in the statement, so each row binds only what varies.
    `update_on_conflict` (SQLite only; COPY cannot): the unique key whose existing rows take the
    frame's other columns instead of failing.

    A failure raises and leaves the transaction holding part of the rows (SQLite's statements
    keep no journal to back out one statement alone: `sqlite_insert`): roll it back whole, as
    `locks.writing` does.
    """
    if frame.is_empty():
        return
    constants = constants or {}
    unknown = [c for c in frame.columns if c not in table.c]
    if unknown:
        raise ValueError(f"{table.name} has no columns {unknown}")
    if update_on_conflict and conn.dialect.name != "sqlite":
        raise ValueError(f"update_on_conflict is for SQLite, not {conn.dialect.name}")
    if update_on_conflict and frame.select(update_on_conflict).is_duplicated().any():
        raise ValueError(f"{table.name}: a key of {list(update_on_conflict)} is in the frame twice")
    dbapi_error = conn.dialect.loaded_dbapi.Error
    try:
        if conn.dialect.name == "postgresql":
            _copy(conn, table, frame, constants)
        else:
            _executemany(conn, table, frame, constants, update_on_conflict)
    except dbapi_error as exc:
        # Raised as SQLAlchemy raises for its own statements (IntegrityError, OperationalError...):
        # callers and the command line meet one kind of database error however the rows went in.
        raise DBAPIError.instance(f'bulk insert into "{table.name}"', None, exc, dbapi_error) from exc


def _copy(conn: Connection, table: Table, frame: pl.DataFrame, constants: dict[str, Constant]) -> None:
    frame = frame.with_columns(
        pl.lit(v, pl.Datetime("us", "UTC") if isinstance(v, dt.datetime) else None).alias(c)
        for c, v in constants.items()
    )
    # bytea in COPY's text form: \x and hex digits (a null stays an unquoted empty field: NULL)
    frame = frame.with_columns(
        (pl.lit("\\x") + pl.col(c).bin.encode("hex")).alias(c)
        for c, dtype in frame.schema.items()
        if dtype == pl.Binary
    )
    names = ", ".join(f'"{c}"' for c in frame.columns)
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy(f'COPY "{table.name}" ({names}) FROM STDIN WITH (FORMAT csv)') as copy:
        for start in range(0, frame.height, COPY_CHUNK):
            # Strings always quoted, so "" stays an empty string and an unquoted empty field is NULL.
            copy.write(
                frame.slice(start, COPY_CHUNK).write_csv(include_header=False, quote_style="non_numeric")
            )


def sqlite_insert(driver: Any) -> str:
    """`INSERT OR FAIL` inside a transaction, else `INSERT`: how a SQLite bulk insert begins.

    To back out one failed statement alone, SQLite copies every page an INSERT changes into a
    statement journal (a temporary file) first, when the table has a constraint that can fail
    and more than one B-tree. Bulk inserts change pages at random places of large indexes, so
    that is a page written per row: 200,000 link keys in statements of 250 rows wrote 6.7 GB
    instead of 386 MB and took three times as long, and half of the 131 GB a 1M county's
    promote wrote was statement journals (benchmarks/RESULTS.md). OR FAIL keeps no such journal,
    and a failure is still raised; only the rows its statement inserted before the failing one
    stay, in the transaction, and every caller's transaction (`locks.writing`, a savepoint of
    `indexes_deferred`) is taken back whole on a failure. Outside a transaction a failing
    statement would commit those rows, so it is a plain INSERT there."""
    return "INSERT OR FAIL" if driver.in_transaction else "INSERT"


def _executemany(
    conn: Connection,
    table: Table,
    frame: pl.DataFrame,
    constants: dict[str, Constant],
    update_on_conflict: Sequence[str] = (),
) -> None:
    """Rows as multi-row VALUES statements of up to ROWS_PER_INSERT rows: SQLite inserts a whole
    statement's rows in one step, where executemany steps, resets and binds again for every row
    (a quarter of the time of inserting 100,000 events)."""
    utf8 = _utf8(conn)
    texts = _bound_as_text(frame, utf8=utf8)
    names = ", ".join(f'"{c}"' for c in [*frame.columns, *constants])
    row = "({})".format(
        ", ".join(
            ["CAST(? AS TEXT)" if c in texts else "?" for c in frame.columns]
            + [_sqlite_literal(v) for v in constants.values()]
        )
    )
    driver = conn.connection.driver_connection
    verb = sqlite_insert(driver)
    head = f'{verb} INTO "{table.name}" ({names}) VALUES '
    tail = ""
    # Inside a transaction the stored rows are updated first and the insert skips them; outside
    # one the two steps could commit apart, so the statement updates them itself (journaled).
    update_first = bool(update_on_conflict) and verb == "INSERT OR FAIL"
    if update_on_conflict:
        updated = [c for c in [*frame.columns, *constants] if c not in update_on_conflict]
        tail = " ON CONFLICT ({}) DO {}".format(
            ", ".join(f'"{c}"' for c in update_on_conflict),
            "UPDATE SET " + ", ".join(f'"{c}" = excluded."{c}"' for c in updated)
            if updated and not update_first
            else "NOTHING",
        )
    limit = driver.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)  # type: ignore[union-attr]
    per = max(1, min(ROWS_PER_INSERT, limit // max(1, frame.width)))
    cursor = driver.cursor()  # type: ignore[union-attr]
    try:
        if update_first:
            _update_stored(cursor, table, frame, constants, update_on_conflict, utf8=utf8)
        full = head + ", ".join([row] * per) + tail
        # Bound values are Python objects: a slice of the frame at a time, so a county's 9M link
        # keys never exist as 18M objects at once (the statements are the same, in order). The
        # slice is made bindable, not the frame: its text as bytes is a copy of the whole column.
        step = per * max(1, BIND_ROWS // per)
        for offset in range(0, frame.height, step):
            part = _sqlite_bindable(frame.slice(offset, step), utf8=utf8)
            rows = _bind_rows(part, sqlite=True)
            for start in range(0, part.height, per):
                count = min(per, part.height - start)
                statement = full if count == per else head + ", ".join([row] * count) + tail
                cursor.execute(statement, list(chain.from_iterable(islice(rows, count))))
    finally:
        cursor.close()


def _update_stored(
    cursor: Any,
    table: Table,
    frame: pl.DataFrame,
    constants: dict[str, Constant],
    key: Sequence[str],
    *,
    utf8: bool,
) -> None:
    """The frame's other columns into the stored rows of its keys, one UPDATE per row; the insert
    after it then skips those keys (`ON CONFLICT DO NOTHING`). An upsert (`DO UPDATE`) would do
    both in one statement, but it copies every page it changes into a statement journal first,
    which a one-row UPDATE does not (1.4 GB against 0.5 GB written for 50,000 people's
    features). All updates go before any insert: on a table with a second unique key, a new row
    taking a value a stored row gives up in the same frame is no longer refused (none of
    govdb's upserted tables has one)."""
    sets = [c for c in frame.columns if c not in key]
    if not sets and not constants:
        return
    texts = _bound_as_text(frame, utf8=utf8)
    assignments = [f'"{c}" = CAST(? AS TEXT)' if c in texts else f'"{c}" = ?' for c in sets]
    assignments += [f'"{c}" = {_sqlite_literal(v)}' for c, v in constants.items() if c not in key]
    tests = [f'"{c}" = CAST(? AS TEXT)' if c in texts else f'"{c}" = ?' for c in key]
    statement = f'UPDATE OR FAIL "{table.name}" SET {", ".join(assignments)} WHERE {" AND ".join(tests)}'
    ordered = frame.select(*sets, *key)
    for offset in range(0, ordered.height, BIND_ROWS):
        part = _sqlite_bindable(ordered.slice(offset, BIND_ROWS), utf8=utf8)
        cursor.executemany(statement, _bind_rows(part, sqlite=True))


def executemany(
    conn: Connection, table: Table, statement: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> int:
    """`statement` (placeholders written `?`) once for each of `rows` through the driver's cursor,
    in the caller's transaction; the rows changed (both drivers sum them). The value at each
    placeholder is bound as SQLAlchemy binds a value of that column (`columns` name them in order):
    JSON and times come out as the same stored text. For a batch of a few dozen rows SQLAlchemy's
    executemany (cache key, processing per row, result) cost more than the write itself."""
    params = bound_values(conn, table, columns, rows)
    if conn.dialect.paramstyle != "qmark":
        statement = statement.replace("?", "%s")
    with driver_cursor(conn, statement) as cursor:
        cursor.executemany(statement, params)
        return int(cursor.rowcount)


def update_many(
    conn: Connection,
    table: Table,
    sets: Sequence[str],
    keys: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    where: Mapping[str, Any] | None = None,
) -> int:
    """`UPDATE table SET <sets> WHERE <keys> AND <where>` once for each row of (*set values, *key
    values), in the caller's transaction; the rows changed. `where` holds columns to constants
    (None: IS NULL), so the count tells whether every row was still as expected. Values are bound
    as SQLAlchemy binds them. PostgreSQL gets one statement over arrays where the keys are unique
    (`arrays.update_from_arrays`), SQLite one executemany."""
    where = where or {}
    params = bound_values(conn, table, [*sets, *keys], rows)
    if not params:
        return 0
    if conn.dialect.name == "postgresql" and distinct_keys([r[len(sets) :] for r in params]):
        with driver_cursor(conn, f'UPDATE "{table.name}"') as cursor:
            return update_from_arrays(cursor, conn, table, sets, keys, params, where=where, constants={})
    assignments = ", ".join(f'"{c}" = ?' for c in sets)
    tests = [f'"{c}" = ?' for c in keys]
    tests += [f'"{c}" IS NULL' if v is None else f'"{c}" = ?' for c, v in where.items()]
    fixed = [v for v in where.values() if v is not None]
    statement = f'UPDATE "{table.name}" SET {assignments} WHERE {" AND ".join(tests)}'
    if conn.dialect.paramstyle != "qmark":
        statement = statement.replace("?", "%s")
    with driver_cursor(conn, statement) as cursor:
        cursor.executemany(statement, [[*r, *fixed] for r in params])
        return int(cursor.rowcount)


def distinct_keys(keys: Sequence[Sequence[Any]]) -> bool:
    """Whether no key is given twice, as the database compares them (`key_form`)."""
    return len({key_form(k) for k in keys}) == len(keys)


def key_form(key: Sequence[Any]) -> tuple[str, ...]:
    """A key as text: 1, 1.0 and "1" name one integer row, so they are one key here (a false
    match of two keys only sends their rows one statement each)."""
    return tuple(str(int(v)) if isinstance(v, float) and v.is_integer() else str(v) for v in key)


def bound_values(
    conn: Connection, table: Table, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> list[list[Any]]:
    """The rows' values as SQLAlchemy binds each column (`columns` name them in order)."""
    converters = [_converter(conn, table.c[c].type) for c in columns]
    converted = [(i, f) for i, f in enumerate(converters) if f is not None]
    params = [list(row) for row in rows]
    for row in params:
        for i, convert in converted:
            row[i] = convert(row[i])
    return params


def row_values(table: Table, rows: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[tuple[Any, ...]]]:
    """(the columns, each row's values in their order) of rows that must all name the same columns."""
    columns = list(rows[0])
    if any(len(r) != len(columns) or set(r) != set(columns) for r in rows):
        raise ValueError(f"rows inserted into {table.name} must all have the same columns")
    return columns, [tuple(r[c] for c in columns) for r in rows]


def insert_rows(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> int:
    """INSERT the rows (mappings with the same columns) with one `executemany` through the driver;
    what a batch of decisions writes, where SQLAlchemy's insert cost more than the insert. As
    for `insert_frame`, a failure leaves part of the rows in the transaction: roll it back."""
    if not rows:
        return 0
    columns, values = row_values(table, rows)
    if conn.dialect.name == "postgresql":  # one statement over arrays
        with driver_cursor(conn, f'INSERT INTO "{table.name}"') as cursor:
            bound = bound_values(conn, table, columns, values)
            return insert_from_arrays(cursor, conn, table, columns, bound)
    names = ", ".join(f'"{c}"' for c in columns)
    verb = sqlite_insert(conn.connection.driver_connection)
    sql = f'{verb} INTO "{table.name}" ({names}) VALUES ({", ".join("?" * len(columns))})'
    return executemany(conn, table, sql, columns, values)


def fetch_among(
    conn: Connection, statement: str, column: str, ids: Sequence[Any], params: Sequence[Any] = ()
) -> list[Any]:
    """The rows of `statement` (its own placeholders written `?`, bound to `params`, all before
    `{among}`), where `{among}` tests `column` against `ids`: a slice of ids at a time through the
    driver's cursor, plain tuples (the driver's values: run them through `result_processor` where
    a backend gives text for a date, time or JSON)."""
    rows: list[Any] = []
    for part in id_chunks(conn, list(ids)):
        test, values = id_test(conn, column, part)
        sql = statement.replace("?", "%s") if conn.dialect.paramstyle != "qmark" else statement
        rows += driver_fetch(conn, sql.format(among=test), (*params, *values))
    return rows


def result_processor(conn: Connection, column: Any) -> Any:
    """The function SQLAlchemy's result turns a value of this column into Python with on this
    connection (SQLite's JSON text decoded, its time text parsed), or None where the driver's
    value is already it; looked up once per engine's dialect."""
    known = _RESULTS.setdefault(conn.dialect, {})
    if column.type not in known:
        known[column.type] = column.type.dialect_impl(conn.dialect).result_processor(conn.dialect, None)
    return known[column.type]


def id_test(conn: Connection, column: str, ids: Sequence[Any]) -> tuple[str, tuple[Any, ...]]:
    """SQL text testing `column` against `ids` in the driver's paramstyle, and its parameters: an
    IN list of placeholders on SQLite, one array parameter on PostgreSQL (as `among`)."""
    if conn.dialect.paramstyle == "qmark":
        return f"{column} IN ({', '.join('?' * len(ids))})", tuple(ids)
    return f"{column} = ANY(%s)", (list(ids),)


def _converter(conn: Connection, column_type: Any) -> Any:
    """SQLAlchemy's bind processor of this column type on this connection (its engine's JSON
    serializer, a time's conversion to UTC and refusal of a naive one included), or None where the
    value binds as it is; looked up once per engine's dialect."""
    known = _PROCESSORS.setdefault(conn.dialect, {})
    if column_type not in known:
        known[column_type] = column_type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
    return known[column_type]


_PROCESSORS: weakref.WeakKeyDictionary[Any, dict[Any, Any]] = weakref.WeakKeyDictionary()
_RESULTS: weakref.WeakKeyDictionary[Any, dict[Any, Any]] = weakref.WeakKeyDictionary()


def _sqlite_bindable(frame: pl.DataFrame, *, utf8: bool) -> pl.DataFrame:
    """The frame as SQLite binds it: aware times as SQLAlchemy's UTC text, and the columns of
    `_bound_as_text` as UTF-8 bytes, to be cast back by `CAST(? AS TEXT)`."""
    texts = _bound_as_text(frame, utf8=utf8)
    timestamps = [
        pl.col(c).dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%d %H:%M:%S%.6f")
        for c, dtype in frame.schema.items()
        if _aware(dtype)
    ]
    if timestamps:
        frame = frame.with_columns(timestamps)
    # Text goes in as its UTF-8 bytes, cast back to text by SQLite: the same stored value, without
    # decoding every payload into a Python string and encoding it again to bind it.
    if texts:
        frame = frame.with_columns(frame.get_column(c).cast(pl.Binary) for c in texts)
    return frame


def _bound_as_text(frame: pl.DataFrame, *, utf8: bool) -> list[str]:
    """The columns bound as UTF-8 bytes (text, and aware times as text) when the database keeps
    its text as UTF-8 (`utf8`); none otherwise."""
    return [c for c, dtype in frame.schema.items() if dtype == pl.String or _aware(dtype)] if utf8 else []


def _aware(dtype: pl.DataType) -> bool:
    return isinstance(dtype, pl.Datetime) and dtype.time_zone is not None


def _bind_rows(frame: pl.DataFrame, *, sqlite: bool) -> Iterator[tuple[Any, ...]]:
    """The frame's rows as the driver binds them, zipped from whole columns: cheaper than
    frame.rows(). SQLite's driver binds a bytearray at once but looks for an adapter for every
    bytes value first (a failed attribute look-up, about a microsecond): a third of binding a
    text column."""
    return zip(
        *(
            map(bytearray, column.to_list())
            if sqlite and column.dtype == pl.Binary and not column.has_nulls()
            else column.to_list()
            for column in frame.iter_columns()
        ),
        strict=True,
    )


def read_frame(conn: Connection, query: Any, schema: dict[str, Any]) -> pl.DataFrame:
    """The rows of a SELECT as a polars frame, fetched through the driver's cursor as plain tuples.

    A county's million people are too many for row objects and result processors (15 s for
    1M people and their dates). Dates arrive as ISO text from SQLite and are parsed per column;
    the server's driver hands back dates already. `schema` names the query's columns in order.
    """
    rows = driver_rows(conn, query)
    if conn.dialect.name != "sqlite":
        return pl.DataFrame(rows, schema=schema, orient="row")
    dates = [c for c, dtype in schema.items() if dtype == pl.Date]
    raw = {c: (pl.String if c in dates else dtype) for c, dtype in schema.items()}
    frame = pl.DataFrame(rows, schema=raw, orient="row")
    return frame.with_columns(pl.col(c).str.to_date("%Y-%m-%d") for c in dates) if dates else frame


def driver_rows(conn: Connection, query: Any) -> Sequence[Any]:
    """The rows of a SELECT as the driver returns them: no result processing per value (SQLite's
    JSON and dates as text, psycopg's JSON already decoded)."""
    compiled = query.compile(dialect=conn.dialect)
    expanded = compiled.construct_expanded_state()  # IN lists as one parameter per value
    params = dict(expanded.parameters)
    # A time goes as its column binds it (SQLite's stored text), an IN list's too, never as the
    # driver formats it: sqlite3 writes an aware time with its offset, which sorts after the text.
    for name, value in params.items():
        if isinstance(value, dt.datetime):
            convert = expanded.processors.get(name)
            if convert is None and (bind := compiled.binds.get(name)) is not None:
                convert = _converter(conn, bind.type)
            params[name] = value if convert is None else convert(value)
    if compiled.positional:
        return driver_fetch(conn, expanded.statement, tuple(params[n] for n in expanded.positiontup or ()))
    return driver_fetch(conn, expanded.statement, params)


def driver_mappings(conn: Connection, query: Any) -> list[dict[str, Any]]:
    """The rows of a SELECT of table columns as dicts, values as SQLAlchemy's result gives them
    (each column's own result processor, once per column rather than once per value): JSON
    decoded, dates and times parsed, on either backend."""
    columns = list(query.selected_columns)
    names = [c.name for c in columns]
    processors = [(i, f) for i, c in enumerate(columns) if (f := result_processor(conn, c)) is not None]
    out: list[dict[str, Any]] = []
    for row in driver_rows(conn, query):
        values = list(row)
        for i, process in processors:
            values[i] = process(values[i])
        out.append(dict(zip(names, values, strict=True)))
    return out


def driver_fetch(conn: Connection, statement: str, params: Any) -> list[Any]:
    """The rows of a statement in the driver's paramstyle, through the driver's own cursor (in the
    connection's transaction): plain tuples, where SQLAlchemy's result wraps every row in a Row
    (a third of reading a county's million people) and fetches them one call each."""
    with driver_cursor(conn, statement) as cursor:
        cursor.execute(statement, params)
        return list(cursor.fetchall())


@contextmanager
def driver_cursor(conn: Connection, statement: str) -> Iterator[Any]:
    """The driver's own cursor, its errors raised as SQLAlchemy's (what the store's error handling
    and the command line recognise), the connection invalidated when the server is gone."""
    dbapi_error = conn.dialect.loaded_dbapi.Error
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        yield cursor
    except dbapi_error as exc:
        gone = conn.dialect.is_disconnect(exc, conn.connection.dbapi_connection, cursor)
        if gone:
            conn.invalidate(exc)
        raise DBAPIError.instance(statement, None, exc, dbapi_error, connection_invalidated=gone) from exc
    finally:
        with suppress(dbapi_error):  # a cursor of a connection already gone
            cursor.close()


def json_value(value: Any) -> Any:
    """A JSON column's value from `driver_rows`: SQLite hands back the text (or bytes, where a
    writer stored a BLOB), psycopg the decoded value."""
    return json.loads(value) if isinstance(value, str | bytes) else value


@contextmanager
def indexes_deferred(
    conn: Connection, table: Table, incoming: int, *, unique: bool | None = False
) -> Iterator[None]:
    """Around a bulk insert into `table` on SQLite: when it brings more rows than
    the table holds, drop the table's non-unique indexes first and build them again after.

    Building an index sorts its entries once; keeping it means one B-tree insert per row at a
    random place, which misses the page cache once the index outgrows it (a county's 9M link keys
    indexed by person: 2M keys 10.1 s kept, 6.4 s rebuilt). Readers keep theirs until the commit.
    Unique indexes stay, unless `unique`: then they are the ones deferred, and the others stay
    (ingest, whose keys come in any order while its other indexes grow at their ends). The build
    checks uniqueness once instead of row by row. `unique` None defers both kinds (a load into an
    empty table: no row of it is looked up before the commit). Unique table constraints cannot be
    dropped and always stay. A failure in the block or in a build (a clash) takes the transaction
    back to before the block (a savepoint): the indexes as they were, the block's rows gone.

    PostgreSQL defers them only into an empty table (a county's first load or ingest): dropping
    an index locks the table's readers out until the commit, and an empty table has nothing to
    serve them meanwhile. The build gets a larger sort memory for the transaction. A 100,000-person
    load took 0.73 of its time (benchmarks/RESULTS.md).
    """
    deferred = []
    deferrable = [ix for ix in table.indexes if unique is None or ix.unique == unique]
    if conn.dialect.name == "postgresql" and incoming and deferrable:
        empty = f'SELECT NOT EXISTS (SELECT 1 FROM "{table.name}")'
        if conn.execute(text(empty)).scalar() and _pg_exclusive(conn, table):
            deferred = deferrable  # rows another transaction committed meanwhile go in the build too
            conn.execute(text(f"SET LOCAL maintenance_work_mem = '{PG_BUILD_MEMORY}'"))
    if conn.dialect.name == "sqlite" and incoming:
        if table.dialect_options["sqlite"]["with_rowid"] is False:  # counted up to what comes in
            count = f'SELECT count(*) FROM (SELECT 1 FROM "{table.name}" LIMIT {int(incoming) + 1})'
            held = conn.execute(text(count)).scalar() or 0
        else:
            held = conn.execute(text(f'SELECT max(rowid) FROM "{table.name}"')).scalar() or 0
        if incoming > held:  # max(rowid) never undercounts what the table holds
            deferred = deferrable
    if not deferred:
        yield
        return
    # In a savepoint: a failure, the builds' included, takes the transaction back to before the
    # block (its rows gone, the indexes back: DDL is transactional on both backends), so a caller
    # that goes on and commits cannot keep a table without its indexes.
    savepoint = conn.begin_nested()
    try:
        for index in deferred:
            conn.execute(DropIndex(index, if_exists=True))
        yield
        for index in deferred:
            conn.execute(CreateIndex(index))
    except BaseException:
        if not conn.invalidated:  # a lost connection raises what it raised
            with suppress(SQLAlchemyError):
                savepoint.rollback()
        raise
    savepoint.commit()


def _pg_exclusive(conn: Connection, table: Table) -> bool:
    """Whether this transaction now holds `table` exclusively. Taken only when no other
    transaction holds any lock on it (NOWAIT): two first ingests that had both read the table
    would otherwise each wait for the other to let go of it, a deadlock. In a savepoint, so a
    refusal leaves the transaction usable; the caller then keeps the indexes."""
    savepoint = conn.begin_nested()
    try:
        conn.execute(text(f'LOCK TABLE "{table.name}" IN ACCESS EXCLUSIVE MODE NOWAIT'))
    except DBAPIError as exc:
        savepoint.rollback()
        if getattr(exc.orig, "sqlstate", None) == "55P03":  # lock_not_available
            return False
        raise
    savepoint.commit()
    return True


def _utf8(conn: Connection) -> bool:
    """Whether the SQLite database keeps text as UTF-8 (the default), so bytes cast to text are text."""
    return conn.exec_driver_sql("PRAGMA encoding").scalar() == "UTF-8"


def _sqlite_literal(value: Constant) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError(f"a constant time must be aware (UTC), not {value!r}")
        value = value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")  # as the columns above
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"a constant column takes text, an integer, an aware time or None, not {value!r}")
    if isinstance(value, int):
        return str(value)
    if "\x00" in value:
        raise ValueError("a constant column cannot hold a NUL character")
    return "'" + value.replace("'", "''") + "'"


def insert_ignoring_duplicates(engine: Engine | Connection, table: Table) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING for the dialect: rows a unique constraint refuses are skipped."""
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


def among(conn: Connection, column: Any, values: Iterable[Any]) -> Any:
    """`column IN (values)`, written `column = ANY(:array)` on PostgreSQL: one parameter instead
    of thousands, so the driver does not parse and bind a long list for every statement."""
    values = list(values)
    if conn.dialect.name == "postgresql":
        return column == any_(bindparam(None, values, type_=postgresql.ARRAY(column.type)))
    return column.in_(values)


def id_chunks(conn: Connection, values: Sequence[Any]) -> list[Sequence[Any]]:
    """Slices of `values` for `among`: under SQLite's bound-parameter limit there, large on
    PostgreSQL, where the list is one array parameter."""
    size = 100_000 if conn.dialect.name == "postgresql" else 900
    return [values[i : i + size] for i in range(0, len(values), size)]
