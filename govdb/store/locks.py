"""Transactions that write safely beside other clerks and jobs, and locks for whole jobs.

`writing` opens a transaction that is a writer from its first statement (SQLite's BEGIN
IMMEDIATE, so a read-then-write never fails half way with "database is locked"; on PostgreSQL
rows are locked by the statements themselves); `reading` gives a connection for reads outside
any. `job_lock` serializes a job that spans several transactions (process, promote, a programme
run): a session-level advisory lock on PostgreSQL, an OS file lock beside a SQLite file; both
vanish with the process, so a killed job never leaves a lock behind.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from sqlalchemy import Connection, Engine, text

from govdb.store.engine import (
    SQLITE_CACHE_KIB,
    WAL_ASIDE_PAGES,
    WAL_AUTOCHECKPOINT_PAGES,
    background_checkpointer,
    store_errors,
)

_MEMORY_LOCKS: dict[tuple[int, str], threading.Lock] = {}
_GUARD = threading.Lock()


@contextmanager
def writing(
    engine: Engine, *, cache_mib: int | None = None, checkpoint_aside: bool = False
) -> Iterator[Connection]:
    """A transaction that holds the write lock from its start on SQLite; commits on success.

    `cache_mib`: SQLite's page cache for this transaction, given back after its commit. A bulk
    job's chunk changes B-trees at random places (link keys, lineage by entity, promotions by
    proposal id); a county's indexes outgrow the usual cache, and every page read again costs a
    copy from the OS.

    `checkpoint_aside`: a commit of tens of thousands of pages leaves copying the log into the
    store to the store's checkpointer thread, when one runs, instead of doing it itself (SQLite's
    own checkpoint at commit took 6% of a county's promote, on the job's thread, while the other
    core idled), unless the log has grown past WAL_ASIDE_PAGES."""
    with store_errors(engine), engine.connect() as conn:
        driver = conn.connection.driver_connection if conn.dialect.name == "sqlite" else None
        if driver is not None and cache_mib:
            driver.execute(f"PRAGMA cache_size=-{int(cache_mib) * 1024}")
        aside = background_checkpointer(engine) if checkpoint_aside and driver is not None else None
        try:
            if aside is not None and driver is not None:
                driver.execute(f"PRAGMA wal_autocheckpoint={WAL_ASIDE_PAGES}")
            with conn.begin():
                if driver is not None:
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                yield conn
            if aside is not None:
                aside.wake()  # the thread copies the log now, before another writer's commit would
        finally:
            if driver is not None and cache_mib:  # the pages beyond the usual cache are freed
                with suppress(conn.dialect.loaded_dbapi.Error):  # never hides what failed
                    driver.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
            if aside is not None and driver is not None:  # back to the pool with SQLite's mark
                with suppress(conn.dialect.loaded_dbapi.Error):
                    driver.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A connection for reads that need no transaction of their own: each statement sees what is
    committed when it runs. On PostgreSQL it runs in autocommit: no BEGIN and ROLLBACK round trips
    around a clerk's queue or a batch's master look-ups, and the driver keeps the statements it
    prepared (psycopg discards them at every ROLLBACK). SQLite reads outside a transaction anyway."""
    with store_errors(engine), engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        yield conn


@contextmanager
def snapshot(engine: Engine, *, cache_mib: int | None = None) -> Iterator[Connection]:
    """A transaction for reads only that sees the store as it was at one moment: its first read
    on SQLite (a deferred BEGIN), its start on PostgreSQL (REPEATABLE READ, READ ONLY). For work
    done beside a writer and checked against what it read before it is written. `cache_mib`:
    SQLite's page cache for it, as for `writing`."""
    with store_errors(engine), engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                conn.exec_driver_sql("SET TRANSACTION READ ONLY")
                yield conn
            return
        driver = conn.connection.driver_connection
        cache_mib = cache_mib if driver is not None else None
        if cache_mib and driver is not None:
            driver.execute(f"PRAGMA cache_size=-{int(cache_mib) * 1024}")
        try:
            with conn.begin():
                conn.exec_driver_sql("BEGIN")
                yield conn
        finally:
            if cache_mib and driver is not None:  # the pages beyond the usual cache are freed
                with suppress(conn.dialect.loaded_dbapi.Error):
                    driver.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")


def xact_lock(conn: Connection, name: str) -> None:
    """Serialize the rest of this transaction with others taking the same lock (PostgreSQL: an
    advisory lock released at commit; SQLite: `writing` already holds the one write lock)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text(f"SELECT pg_advisory_xact_lock({_PG_KEY})"), {"name": _name(name)})


# PostgreSQL's advisory locks belong to the database, not the schema: the key names the schema that
# holds the store (where its connections find its migration table, the event store's first, as
# they find its tables), so two stores in one database (a test's schemas, two deployments) never
# wait for each other's jobs, while every connection to one store shares them whatever else its
# search_path lists first.
_PG_KEY = (
    "hashtextextended(:name || '@' || coalesce((SELECT relnamespace::regnamespace::text FROM pg_class "
    "WHERE oid = coalesce(to_regclass('alembic_version_events'), to_regclass('alembic_version_master'))), "
    "current_schema()), 0)"
)


def _name(name: str) -> str:
    return f"govdb.job:{name}"


@contextmanager
def job_lock(engine: Engine, name: str) -> Iterator[None]:
    """Hold the lock of job `name` on this store until the block ends; others wait for it."""
    if engine.dialect.name == "postgresql":
        with store_errors(engine), engine.connect() as conn:
            conn.execute(text(f"SELECT pg_advisory_lock({_PG_KEY})"), {"name": _name(name)})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text(f"SELECT pg_advisory_unlock({_PG_KEY})"), {"name": _name(name)})
                conn.commit()
        return
    database = engine.url.database
    if not database or database == ":memory:":
        with _GUARD:
            lock = _MEMORY_LOCKS.setdefault((id(engine), name), threading.Lock())
        with lock:
            yield
        return
    path = Path(f"{database}.{name.replace(':', '_').replace('/', '_')}.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
