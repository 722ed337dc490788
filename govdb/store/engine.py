"""Where the two stores live, and how their engines are made and migrated.

The embedded default is two SQLite files in one home folder; PostgreSQL is selected by URL. The
two stores always get two engines, so nothing can join verified and unverified data by accident.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sqlite3
import threading
import time
import urllib.parse
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.exc import ArgumentError, DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.pool import StaticPool
from sqlalchemy.util import asbool

from govdb.errors import ConfigError, StoreBusyError, StoreError, StoreReadOnlyError, StoreUnavailableError

StoreName = Literal["master", "events"]
MIGRATIONS = Path(__file__).with_name("migrations")


@dataclass(frozen=True)
class StoreConfig:
    """The URLs of both stores, resolved from arguments, then environment, then defaults."""

    master_url: str
    events_url: str
    home: Path | None = None

    @classmethod
    def resolve(
        cls,
        home: str | Path | None = None,
        *,
        master_url: str | None = None,
        events_url: str | None = None,
    ) -> StoreConfig:
        """Arguments win over GOVDB_MASTER_URL / GOVDB_EVENTS_URL / GOVDB_HOME; default ./govdb-data."""
        master_url = master_url or os.environ.get("GOVDB_MASTER_URL")
        events_url = events_url or os.environ.get("GOVDB_EVENTS_URL")
        folder: Path | None = None
        if not (master_url and events_url):
            folder = Path(home or os.environ.get("GOVDB_HOME") or "govdb-data")
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(
                    f"cannot create the govdb home folder {str(folder)!r}: {exc.strerror}; "
                    "pass --home (or set GOVDB_HOME) to a writable folder"
                ) from exc
            master_url = master_url or f"sqlite:///{folder / 'govdb.master.sqlite'}"
            events_url = events_url or f"sqlite:///{folder / 'govdb.events.sqlite'}"
        if master_url == events_url and master_url.startswith("sqlite"):
            raise ConfigError(
                f"the master and event stores must be separate databases, both are {master_url!r}; "
                "give them different files"
            )
        return cls(master_url=master_url, events_url=events_url, home=folder)

    def key_folder(self) -> Path | None:
        """Where a key file of this deployment lives: the home folder, else the folder of a SQLite
        master file; None for server databases (their keys come from the environment)."""
        if self.home is not None:
            return self.home
        url = make_url_safe(self.master_url)
        if (
            url is not None
            and url.get_backend_name() == "sqlite"
            and url.database not in (None, "", ":memory:")
        ):
            return Path(url.database).resolve().parent
        return None


def make_url_safe(url: str) -> Any:
    """The parsed URL, or None when it does not parse (make_engine reports that properly)."""
    try:
        return make_url(url)
    except ArgumentError:
        return None


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA page_size=16384")  # new stores only: fewer, larger pages to write
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # 64 MiB of page cache (taken as pages are used, not up front) instead of SQLite's 2 MiB: a
    # bulk insert into an index in random order (link keys by person) ran twice as long with 2.
    cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")  # see WalCheckpointer
    cursor.execute(f"PRAGMA journal_size_limit={WAL_FILE_LIMIT_BYTES}")  # the log's file, once it restarts
    cursor.close()


# Arrays longer than this are sent in statements psycopg never prepares (see `_postgres_session`).
PLAN_EACH_ARRAY_OVER = 1_000


def _postgres_session(dbapi_connection: Any, _record: Any) -> None:
    """Statements with a long array are planned for that array, every other statement once.

    psycopg prepares a statement it has run five times on a connection, and PostgreSQL may then
    settle on a generic plan whose estimates ignore the parameters. For a short array that is
    the plan it would choose anyway, and planning a decision's dozen statements anew each time
    was a third of the server's work. For a long one it is a trap: `person_id = ANY($1)` is
    costed as a few rows, so promote's look-up of a chunk's 60,000 people became a bitmap scan
    rechecking each row against the whole array, unhashed (minutes per statement at a million
    people, against 2 s planned for the array). So a statement given an array longer than
    `PLAN_EACH_ARRAY_OVER` goes unprepared, planned for what it carries."""
    dbapi_connection.cursor_factory = _array_aware_cursor()


@functools.cache
def _array_aware_cursor() -> type:
    import psycopg

    class ArrayAwareCursor(psycopg.Cursor[Any]):
        def execute(
            self, query: Any, params: Any = None, *, prepare: bool | None = None, binary: bool | None = None
        ) -> ArrayAwareCursor:
            if prepare is None and params and _carries_long_array(params):
                prepare = False
            return super().execute(query, params, prepare=prepare, binary=binary)

        def executemany(self, query: Any, params_seq: Any, *, returning: bool = False) -> None:
            rows = params_seq if isinstance(params_seq, list) else list(params_seq)
            if not any(row and _carries_long_array(row) for row in rows):
                return super().executemany(query, rows, returning=returning)
            threshold, self.connection.prepare_threshold = self.connection.prepare_threshold, None
            try:  # executemany takes no `prepare`: the connection prepares nothing meanwhile
                return super().executemany(query, rows, returning=returning)
            finally:
                self.connection.prepare_threshold = threshold

    return ArrayAwareCursor


def _carries_long_array(params: Any) -> bool:
    values = params.values() if isinstance(params, Mapping) else params
    return any(_array_values(v) > PLAN_EACH_ARRAY_OVER for v in values)


def _array_values(value: Any) -> int:
    """How many values an array parameter carries, nested arrays counted through."""
    if not isinstance(value, list | tuple):
        return 0
    return len(value) + sum(_array_values(v) for v in value[:1]) * len(value)


# A pooled connection idle this long is pinged before it is handed out (the server may have ended
# it: a restart, idle_session_timeout). One used moments ago is not: a look-up checks out a
# connection or two, and a ping on each was a round trip in ten. Should the server end one
# within this window, its next statement fails (StoreUnavailableError) and the pool replaces
# every connection it held then.
PING_AFTER_IDLE_SECONDS = 2.0


def _idle_from(_dbapi_connection: Any, record: Any) -> None:
    record.info["idle_from"] = time.monotonic()


def _ping_if_idle(dialect: Any, dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    idle_from = record.info.pop("idle_from", None)
    if idle_from is not None and time.monotonic() - idle_from < PING_AFTER_IDLE_SECONDS:
        return
    try:
        dialect.do_ping(dbapi_connection)
    except dialect.loaded_dbapi.Error as exc:  # the pool discards it and connects afresh
        raise DisconnectionError(f"a pooled connection was gone: {exc}") from exc


# JSON columns hold readable UTF-8 (张伟, not \u5f20\u4f1f), on SQLite as in PostgreSQL.
_json_serializer = functools.partial(json.dumps, ensure_ascii=False)
SQLITE_CACHE_KIB = 65536
# The log's size (pages) at which a commit checkpoints it itself, SQLite's safety net behind the
# checkpointer's thread: 1,000 by default, which a window's audited reads reached every 140th read.
WAL_AUTOCHECKPOINT_PAGES = 10_000
# The mark while a bulk commit leaves the copy to the checkpointer's thread (`writing`'s
# `checkpoint_aside`): a promote chunk of neighbouring people commits about 46,000 pages, which the
# thread copies before the next chunk starts the log again. A chunk of the queue's tail (new people,
# certificates) changes pages all over master: the thread fell behind, the log was never started
# again and grew to 4.3 GB. Past this mark (1 GiB of 16 KiB pages) the commit copies it itself,
# unless the thread is at it: the log peaked at 2.3 GB in the same run (benchmarks/RESULTS.md).
WAL_ASIDE_PAGES = 65_536
# What is left of the log's file when the log starts again: SQLite keeps it at its largest.
WAL_FILE_LIMIT_BYTES = 64 * 1024 * 1024
SQLITE_BUSY_SECONDS = 60  # how long a writer waits for another (ingests of one source queue up)


def in_process_memory(engine: Engine) -> bool:
    """Whether this is a SQLite store held in this process's memory: no other process can open
    it, and its one shared connection is this thread's alone."""
    if engine.dialect.name != "sqlite":
        return False
    database = engine.url.database or ""
    if database in ("", ":memory:"):
        return True
    query = engine.url.query
    if not asbool(query.get("uri", False)):  # without uri=true a file: name is a file's name
        return False
    path = database.removeprefix("file:")
    return path == ":memory:" or query.get("mode") == "memory" or query.get("vfs") == "memdb"


def make_engine(url: str) -> Engine:
    """An engine for one store; SQLite gets WAL, foreign keys and a shared in-memory pool."""
    try:
        if url.startswith("sqlite"):
            kwargs: dict[str, Any] = {"connect_args": {"timeout": SQLITE_BUSY_SECONDS}}
            if url in ("sqlite://", "sqlite:///:memory:"):
                kwargs = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
            engine = create_engine(url, json_serializer=_json_serializer, **kwargs)
            event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        engine = create_engine(url, json_serializer=_json_serializer)
        event.listen(engine, "connect", _postgres_session)
        event.listen(engine.pool, "checkin", _idle_from)
        event.listen(engine.pool, "checkout", functools.partial(_ping_if_idle, engine.dialect))
        return engine
    except (ArgumentError, ModuleNotFoundError) as exc:
        hint = (
            "install the pg extra: pip install 'govdb[pg]'"
            if "psycopg" in str(exc)
            else ("use sqlite:///FILE or postgresql+psycopg://USER@HOST:PORT/DB")
        )
        raise ConfigError(f"cannot use store URL {url!r}: {exc}; {hint}") from exc


# Held while a checkpointer thread is inside SQLite, and taken by os.fork: a child forked while
# the thread held SQLite's own (global) mutexes would wait on them forever.
_IN_SQLITE = threading.Lock()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_IN_SQLITE.acquire, after_in_parent=_IN_SQLITE.release, after_in_child=_IN_SQLITE.release
    )


_CHECKPOINTERS: weakref.WeakSet[WalCheckpointer] = weakref.WeakSet()


class WalCheckpointer:
    """Copies a SQLite store's write-ahead log into its database file in a thread of its own.

    Left to itself SQLite checkpoints inside whichever commit takes the log past 1,000 pages: on
    a store serving a window, every 140th or so audited read (seven 16 KiB pages each) paid about
    15-20 ms for it, where a read takes 2-4. A passive checkpoint every tenth of a second copies the
    log into the database file. It never waits for readers or writers, but it cannot start the
    log again: only a writer does, and only when it finds the whole log copied. Look-ups that
    commit every few milliseconds always add pages while a checkpoint syncs, so the log still
    grew to the mark, and the commit that crossed it synced the log and the store (8-9 ms). The
    mark is therefore WAL_AUTOCHECKPOINT_PAGES (160 MB of log), crossed ten times less often;
    SQLite's own checkpoints stay on as the safety net (a bulk load writes past the mark anyway).
    """

    INTERVAL = 0.1

    def __init__(self, database: str) -> None:
        self.database = database
        _CHECKPOINTERS.add(self)
        self.last: tuple[int, int, int] | None = None  # (busy, frames in the log, frames copied)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="govdb-wal-checkpoint", daemon=True)
        self._thread.start()

    @classmethod
    def for_engine(cls, engine: Engine) -> WalCheckpointer | None:
        """One for a SQLite file store; None for PostgreSQL and in-memory SQLite."""
        database = engine.url.database
        if engine.dialect.name != "sqlite" or not database or in_process_memory(engine):
            return None
        return cls(database)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while True:
                self._wake.wait(self.INTERVAL)
                self._wake.clear()
                if self._stop.is_set():
                    break
                try:
                    with _IN_SQLITE:
                        if conn is None:  # mode=rw: never creates a store the engine has not
                            uri = f"file:{urllib.parse.quote(self.database)}?mode=rw"
                            conn = sqlite3.connect(uri, uri=True, timeout=0, isolation_level=None)
                        row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.OperationalError as exc:
                    message = str(exc)
                    if (
                        "locked" in message
                        or "busy" in message
                        or (conn is None and "unable to open" in message)
                    ):
                        continue  # being created or migrated: try again at the next tick
                    return  # read-only, gone or broken: commits keep checkpointing themselves
                self.last = (int(row[0]), int(row[1]), int(row[2])) if row else None
        finally:
            if conn is not None:
                with _IN_SQLITE:
                    conn.close()

    def wake(self) -> None:
        """Copy the log now, not at the next tick: a bulk commit that left it here (`writing`'s
        `checkpoint_aside`) would otherwise leave it to the next commit of any connection still at
        SQLite's usual mark, a window's audited read among them."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=10)


def sync_log(engine: Engine) -> None:
    """Make what this SQLite store has committed survive a power cut before another store records
    that it happened. With synchronous=NORMAL a commit does not sync the log; a checkpoint does,
    but a checkpoint copies nothing, and so syncs nothing, while a reader holds the log where it
    is, and a bulk commit may leave it to the checkpointer's thread (`writing`'s
    `checkpoint_aside`). So the log's file is synced itself: every committed frame is in it, and
    none leaves it before the store's file is synced. PostgreSQL's commits are durable already."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or in_process_memory(engine):
        return
    try:
        log = os.open(f"{database}-wal", os.O_RDONLY)
    except FileNotFoundError:
        return  # no log: the last connection to close copied it into the store and synced it
    except OSError as exc:
        raise StoreError(
            f"cannot open the SQLite store's log {database}-wal to sync it: {exc}; "
            "check that this process can read the store's folder"
        ) from exc
    try:
        os.fsync(log)
    finally:
        os.close(log)


def background_checkpointer(engine: Engine) -> WalCheckpointer | None:
    """The running checkpointer's thread copying this store's log, if any (a bulk job's commit may
    then leave the copy to it instead of doing it on its own thread)."""
    database = engine.url.database
    if not database:
        return None
    return next((c for c in list(_CHECKPOINTERS) if c.database == database and c.running), None)


def checkpoint_in_background(owner: object, *engines: Engine) -> list[WalCheckpointer]:
    """A checkpointer for each SQLite file store of `owner`, stopped when `owner` is collected."""
    checkpointers = [c for engine in engines if (c := WalCheckpointer.for_engine(engine))]
    for checkpointer in checkpointers:
        weakref.finalize(owner, checkpointer.stop)
    return checkpointers


_MIGRATING = threading.Lock()


def migrate(engine: Engine, store: StoreName, revision: str = "head") -> None:
    """Bring one store's schema to an alembic revision, the newest by default (idempotent)."""
    from alembic import command
    from alembic.config import Config
    from alembic.util.exc import CommandError

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", str(MIGRATIONS / store / "versions"))
    config.attributes["store"] = store
    # alembic keeps its state in module globals: threads of one process migrate one at a time.
    with _MIGRATING, store_errors(engine), engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        driver = connection.connection.driver_connection
        if sqlite:
            # SQLite's way to rebuild a table others refer to (alembic's batch mode): foreign keys
            # off outside the transaction (a DROP TABLE would otherwise delete through them, and
            # fail), then checked as a whole before the commit.
            driver.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
        try:
            with connection.begin():
                # One at a time: processes opening a new store together wait, then find it current.
                if sqlite:
                    connection.exec_driver_sql("BEGIN IMMEDIATE")
                else:
                    connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('govdb.migrate'))"))
                config.attributes["connection"] = connection
                try:
                    command.upgrade(config, revision)
                except CommandError as exc:
                    raise _unknown_revision(connection, config, store, exc) from exc
                if sqlite and connection.exec_driver_sql("PRAGMA foreign_key_check").first():
                    raise StoreError(
                        f"migrating the {store} store to {revision} left rows that refer to missing "
                        "ones (PRAGMA foreign_key_check); nothing was changed: report this with the store"
                    )
        finally:
            if sqlite:
                driver.execute("PRAGMA foreign_keys=ON")  # type: ignore[union-attr]


def _unknown_revision(connection: Connection, config: Any, store: StoreName, exc: Exception) -> Exception:
    """A store migrated by a newer govdb than this one, said so (never alembic's traceback); any
    other failure of the upgrade as it was."""
    from alembic.script import ScriptDirectory

    try:
        found = connection.exec_driver_sql(f"SELECT version_num FROM alembic_version_{store}").scalars().all()
    except DBAPIError:
        return exc
    known = {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}
    if not found or set(found) <= known:
        return exc
    return StoreError(
        f"the {store} store is at revision {', '.join(sorted(found))}, which this version of govdb "
        "does not know: a newer govdb has migrated it. Run that version (pip install -U govdb) or "
        "open a store this version made; nothing was changed"
    )


_READ_ONLY = (StoreReadOnlyError, "the store is read-only: give govdb a writable --home or database user")
_DOWN = (StoreUnavailableError, "is the database server running and the URL right?")
# (a pattern of the driver's message, the error it makes, a hint), the first that matches wins.
_HINTS: tuple[tuple[str, type[StoreError], str], ...] = (
    ("readonly", *_READ_ONLY),
    ("read-only", *_READ_ONLY),
    ("permission denied", *_READ_ONLY),
    ("disk is full", StoreError, "the disk is full: free space or move --home"),
    ("no space", StoreError, "the disk is full: free space or move the database"),
    (
        "database is locked",
        StoreBusyError,
        "another govdb process held the store too long: try again when it is done",
    ),
    (
        r"database \"[^\"]*\" does not exist",
        StoreUnavailableError,
        "create the database (createdb NAME) or fix the URL",
    ),
    ("password authentication failed", StoreUnavailableError, "check the user and password of the URL"),
    (
        "could not create unique index",
        StoreError,
        "two rows of this write share a value the index keeps unique; nothing was written",
    ),
    ("connection", *_DOWN),
    ("could not connect", *_DOWN),
    ("unable to open", StoreUnavailableError, "check that the folder exists and is writable"),
)


def hidden_password(url: str) -> str:
    """A store URL as it may be shown: its password as ***."""
    parsed = make_url_safe(url)
    return url if parsed is None else parsed.render_as_string(hide_password=True)


def explain(exc: BaseException) -> tuple[type[StoreError], str, str] | None:
    """(the StoreError kind, the driver's first line, a hint) of a database failure, else None."""
    # SQLAlchemy's wrapper, or a driver error it never saw (PostgreSQL's COPY runs on the driver).
    if isinstance(exc, PoolTimeoutError):  # every pooled connection in use for the pool's timeout
        return StoreBusyError, str(exc).splitlines()[0], "too many callers at once; try again in a moment"
    if isinstance(exc, DBAPIError):
        cause: BaseException = exc.orig if exc.orig is not None else exc
    elif type(exc).__module__.split(".")[0] in ("psycopg", "sqlite3"):
        cause = exc
    else:
        return None
    detail = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
    lowered = detail.lower()
    kind, hint = next(
        ((k, h) for needle, k, h in _HINTS if re.search(needle, lowered)),
        (StoreError, "see the database's own log"),
    )
    return kind, detail, hint


@contextmanager
def store_errors(engine: Engine) -> Iterator[None]:
    """Turn a database failure into one StoreError line naming the store (password hidden) and a
    hint; a subclass says which kind (unavailable, read-only, busy) where the driver's message shows it."""
    try:
        yield
    except Exception as exc:
        explained = explain(exc)
        if explained is None:
            raise
        kind, detail, hint = explained
        where = engine.url.render_as_string(hide_password=True)
        raise kind(f"the store {where} failed: {detail}; {hint}") from exc


def refresh_statistics(engine: Engine, tables: tuple[str, ...]) -> None:
    """Let the planner see tables a bulk write has just grown (PostgreSQL plans a lookup on a
    table it believes empty as a scan: `link_one` took 110 ms instead of 6 ms after a 200,000-person
    load); SQLite runs `PRAGMA optimize`, which analyzes only where it helps."""
    with store_errors(engine), engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            for table in tables:
                conn.exec_driver_sql(f'ANALYZE "{table}"')
        else:
            conn.exec_driver_sql("PRAGMA optimize")
