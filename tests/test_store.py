"""The stores: migrations build exactly the schema the table models declare, on both backends."""

from __future__ import annotations

import time
from pathlib import Path
from types import MappingProxyType
from typing import Any

import polars as pl
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from govdb import GovDB
from govdb.store.engine import WAL_AUTOCHECKPOINT_PAGES, WAL_FILE_LIMIT_BYTES, WalCheckpointer, make_engine
from govdb.store.events import EventModel
from govdb.store.master import MasterModel

from .conftest import wal_frames


def test_migrations_build_the_schema_the_models_declare(db: GovDB) -> None:
    for engine, metadata, store in (
        (db.master, MasterModel.metadata, "master"),
        (db.events, EventModel.metadata, "events"),
    ):
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": False})
            differences = [
                d
                for d in compare_metadata(context, metadata)
                if not (d[0] == "remove_table" and d[1].name == f"alembic_version_{store}")
            ]
        assert differences == [], f"{store}: the models and the migrations differ: {differences}"


def test_state_checks_refuse_unknown_states_without_in_lists(db: GovDB) -> None:
    """The CHECKs of the bulk-written tables hold their states as OR-ed comparisons (an IN list
    costs SQLite a temporary index per inserted row) and still refuse a state outside the enum."""
    import pytest
    import sqlalchemy as sa

    from govdb.store.states import EventStatus, check_sql

    assert " IN " not in check_sql("status", EventStatus).upper()
    inspected = {
        (store, table): sa.inspect(engine).get_check_constraints(table)
        for store, engine, tables in (
            ("events", db.events, ("event", "proposal", "task", "decision")),
            ("master", db.master, ("masterchange", "issuance")),
        )
        for table in tables
    }
    for (store, table), checks in inspected.items():
        states = [c for c in checks if c["name"] != "ck_decision_by_someone"]
        assert states, f"{store}.{table} lost its state CHECK"
        for check in states:
            assert " IN (" not in check["sqltext"].upper(), f"{store}.{table}: {check['sqltext']}"
    row = {
        "source_system": "s",
        "source_key": "k",
        "batch_id": "b",
        "raw": "{}",
        "quality_flags": "[]",
        "status": "received",
        "content_sha256": "0" * 64,
        "received_at": "2026-11-30 00:00:00",
    }
    columns = ", ".join(row)
    values = ", ".join(f":{c}" for c in row)
    with db.events.begin() as conn:
        conn.execute(sa.text(f"INSERT INTO event ({columns}) VALUES ({values})"), row)
    with pytest.raises(sa.exc.IntegrityError), db.events.begin() as conn:
        bad = row | {"source_key": "k2", "status": "Received"}
        conn.execute(sa.text(f"INSERT INTO event ({columns}) VALUES ({values})"), bad)


def test_the_check_rewrite_keeps_every_row_and_index(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """events_0008 rebuilds the event table on SQLite: rows, the partial index and the CHECK hold."""
    import sqlalchemy as sa

    from govdb.store.engine import make_engine, migrate

    engine = make_engine(f"sqlite:///{tmp_path / 'events.sqlite'}")
    migrate(engine, "events", "events_0007")
    rows = [
        {"k": f"k{i}", "status": "received" if i % 2 else "standardized", "code": None if i % 3 else "440605"}
        for i in range(50)
    ]
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO event (source_system, source_key, batch_id, raw, quality_flags, status,"
                " content_sha256, received_at, division_code)"
                " VALUES ('s', :k, 'b', '{}', '[]', :status, :k, '2026-11-30 00:00:00', :code)"
            ),
            rows,
        )
    migrate(engine, "events")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM event")).scalar() == 50
        index = conn.execute(
            sa.text("SELECT sql FROM sqlite_master WHERE name = 'ix_event_division_code'")
        ).scalar()
        assert index is not None and "WHERE division_code IS NOT NULL" in index
        table = conn.execute(sa.text("SELECT sql FROM sqlite_master WHERE name = 'event'")).scalar()
        assert "status = 'received' OR" in table and "status IN" not in table
    engine.dispose()


def test_link_keys_are_clustered_by_their_key_and_the_rebuild_keeps_every_key(tmp_path: Path) -> None:
    """master_0011 makes SQLite's linkkey a WITHOUT ROWID table: the same keys, both indexes, the
    index by person covering a person's keys; a large insert into it still defers that index."""
    import sqlalchemy as sa

    from govdb.store.bulk import indexes_deferred, insert_frame
    from govdb.store.engine import migrate
    from govdb.store.master import LinkKey

    engine = make_engine(f"sqlite:///{tmp_path / 'master.sqlite'}")
    migrate(engine, "master", "master_0010")
    keys = [{"k": f"rule={i % 7}", "p": f"P{i:05d}"} for i in range(300)]
    with engine.begin() as conn:
        conn.execute(sa.text('INSERT INTO linkkey ("key", person_id) VALUES (:k, :p)'), keys)
    migrate(engine, "master")
    with engine.connect() as conn:
        table = conn.execute(sa.text("SELECT sql FROM sqlite_master WHERE name = 'linkkey'")).scalar()
        assert table is not None and "WITHOUT ROWID" in table
        stored = conn.execute(sa.text('SELECT "key", person_id FROM linkkey')).all()
        assert sorted(stored) == sorted((k["k"], k["p"]) for k in keys)
        plan = " ".join(
            str(r[-1])
            for r in conn.execute(
                sa.text("EXPLAIN QUERY PLAN SELECT \"key\" FROM linkkey WHERE person_id = 'P00001'")
            )
        )
        assert "COVERING INDEX ix_linkkey_person_id" in plan
        with pytest.raises(sa.exc.IntegrityError):  # the primary key still refuses a key twice
            conn.execute(sa.text("INSERT INTO linkkey VALUES ('rule=1', 'P00001')"))
        conn.rollback()
    table = LinkKey.__table__  # type: ignore[attr-defined]
    frame = pl.DataFrame(
        {"key": [f"new={i}" for i in range(1000)], "person_id": [f"Q{i}" for i in range(1000)]}
    )
    with engine.begin() as conn:
        dropped: list[str] = []
        sa.event.listen(
            conn, "before_cursor_execute", lambda *a: dropped.append(a[2]) if "DROP INDEX" in a[2] else None
        )
        with indexes_deferred(conn, table, frame.height):
            insert_frame(conn, table, frame)
    assert any("ix_linkkey_person_id" in d for d in dropped)  # 1,000 rows into 300: built after
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM linkkey")).scalar() == 1300
        indexes = (
            conn.execute(
                sa.text("SELECT name FROM sqlite_master WHERE tbl_name = 'linkkey' AND type = 'index'")
            )
            .scalars()
            .all()
        )
        assert "ix_linkkey_person_id" in indexes
    engine.dispose()


def test_a_bulk_transaction_s_larger_page_cache_is_given_back_after_it(tmp_path: Path) -> None:
    import sqlalchemy as sa

    from govdb.errors import StoreError
    from govdb.store.engine import SQLITE_CACHE_KIB
    from govdb.store.locks import writing

    engine = make_engine(f"sqlite:///{tmp_path / 'master.sqlite'}")
    with writing(engine, cache_mib=256) as conn:
        assert conn.execute(sa.text("PRAGMA cache_size")).scalar() == -256 * 1024
        conn.execute(sa.text("CREATE TABLE t (x INTEGER)"))
    with pytest.raises(StoreError, match="no such table"), writing(engine, cache_mib=256) as conn:
        conn.execute(sa.text("INSERT INTO missing VALUES (1)"))
    with engine.connect() as conn:
        assert conn.execute(sa.text("PRAGMA cache_size")).scalar() == -SQLITE_CACHE_KIB
        assert conn.execute(sa.text("SELECT count(*) FROM t")).scalar() == 0  # the first one committed
    engine.dispose()


def test_a_large_insert_rebuilds_the_non_unique_indexes_and_a_failure_keeps_them(db: GovDB) -> None:
    import polars as pl
    import pytest
    from sqlalchemy import event, text

    from govdb.store.bulk import indexes_deferred, insert_frame
    from govdb.store.locks import writing
    from govdb.store.master import LinkKey

    table = LinkKey.__table__  # type: ignore[attr-defined]
    rows = pl.DataFrame(
        {"key": [f"k{i:04d}" for i in range(500)], "person_id": [f"P{i % 50}" for i in range(500)]}
    )
    statements: list[str] = []

    def indexes() -> set[str]:
        with db.master.connect() as conn:
            if conn.dialect.name == "sqlite":
                query = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'linkkey'"
            else:
                query = (
                    "SELECT indexname FROM pg_indexes "
                    "WHERE tablename = 'linkkey' AND schemaname = current_schema()"
                )
            return set(conn.execute(text(query)).scalars())

    before = indexes()
    assert "ix_linkkey_person_id" in before
    with (
        pytest.raises(RuntimeError),
        writing(db.master) as conn,
        indexes_deferred(conn, table, rows.height),
    ):
        insert_frame(conn, table, rows)
        raise RuntimeError("the load fails half way")
    assert indexes() == before  # rolled back with the rows
    with (  # a caller that swallows the failure and commits
        writing(db.master) as conn,
        pytest.raises(RuntimeError),
        indexes_deferred(conn, table, rows.height),
    ):
        insert_frame(conn, table, rows)
        raise RuntimeError("a progress callback fails")
    assert indexes() == before  # back to before the block: indexes kept, its rows gone
    with db.master.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM linkkey")).scalar() == 0

    def sent(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        statements.append(statement)

    with writing(db.master) as conn:
        conn.exec_driver_sql("SELECT 1")
        listen = conn.connection.driver_connection
        if conn.dialect.name == "sqlite":
            listen.set_trace_callback(statements.append)  # type: ignore[union-attr]
        else:
            event.listen(conn, "before_cursor_execute", sent)
        with indexes_deferred(conn, table, rows.height):
            insert_frame(conn, table, rows)
        if conn.dialect.name == "sqlite":
            listen.set_trace_callback(None)  # type: ignore[union-attr]
        # SQLite: more rows than the table held; PostgreSQL: an empty table, taken exclusively.
        # Dropped and rebuilt: one sort instead of 500 inserts.
        assert any(s.strip().startswith("DROP INDEX") for s in statements)
        assert any(s.strip().startswith("CREATE INDEX ix_linkkey_person_id") for s in statements)
    assert indexes() == before
    with db.master.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM linkkey WHERE person_id = 'P7'")).scalar() == 10
        if conn.dialect.name == "sqlite":
            plan = " ".join(
                str(r[-1])
                for r in conn.exec_driver_sql(
                    "EXPLAIN QUERY PLAN SELECT key FROM linkkey WHERE person_id = 'P7'"
                )
            )
            assert "ix_linkkey_person_id" in plan

    # A few rows into a table that holds more: the indexes stay.
    statements.clear()
    with writing(db.master) as conn:
        conn.exec_driver_sql("SELECT 1")
        if conn.dialect.name == "sqlite":
            conn.connection.driver_connection.set_trace_callback(statements.append)  # type: ignore[union-attr]
        else:
            event.listen(conn, "before_cursor_execute", sent)
        with indexes_deferred(conn, table, 3):
            insert_frame(conn, table, pl.DataFrame({"key": ["x1", "x2", "x3"], "person_id": ["P1"] * 3}))
        if conn.dialect.name == "sqlite":
            conn.connection.driver_connection.set_trace_callback(None)  # type: ignore[union-attr]
    assert not any("INDEX" in s for s in statements)


def test_postgres_keeps_the_indexes_of_an_empty_table_another_transaction_holds(db: GovDB) -> None:
    """Deferring takes the table exclusively, and only when no one else holds it (NOWAIT): a
    reader's open transaction, or a second first ingest that read the table too, is neither
    blocked nor deadlocked; the insert keeps the indexes, and the transaction goes on."""
    import polars as pl
    from sqlalchemy import event, text

    from govdb.store.bulk import indexes_deferred, insert_frame
    from govdb.store.locks import writing
    from govdb.store.master import LinkKey

    if db.master.dialect.name != "postgresql":
        pytest.skip("SQLite's writer holds the whole database; nothing else holds a table")
    table = LinkKey.__table__  # type: ignore[attr-defined]
    rows = pl.DataFrame({"key": [f"k{i}" for i in range(50)], "person_id": ["P1"] * 50})
    statements: list[str] = []
    with db.master.connect() as reader:
        reader.execute(text("SELECT count(*) FROM linkkey")).scalar()  # holds it until it ends
        with writing(db.master) as conn:
            event.listen(conn, "before_cursor_execute", lambda c, cur, s, *a: statements.append(s))
            with indexes_deferred(conn, table, rows.height):
                insert_frame(conn, table, rows)
        reader.rollback()
    assert any("NOWAIT" in s for s in statements)
    assert not any("DROP INDEX" in s or "CREATE INDEX" in s for s in statements)
    with db.master.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM linkkey")).scalar() == 50


def test_a_bulk_insert_stores_text_and_bytes_exactly_however_they_are_bound(db: GovDB) -> None:
    """On SQLite long non-ASCII text is bound as bytes (bytearrays, cast back to text), short text
    as strings, a column with nulls as a list; a real blob column stays a blob. Every value reads
    back exactly, as text where the column is text, on both backends."""
    import datetime as dt

    import polars as pl
    from sqlalchemy import select, text

    from govdb.store.bulk import insert_frame
    from govdb.store.events import Quarantine

    table = Quarantine.__table__  # type: ignore[attr-defined]
    long_text = "南海区桂城街道南海大道" * 40 + "\u2028\t\"'"
    rows = pl.DataFrame(
        {
            "line": [1, 2, 3, 4],
            "file_sha256": ["a" * 64, "b" * 64, "c" * 64, "d" * 64],
            "raw_text": [long_text + str(i) for i in range(4)],  # long non-ASCII: bound as bytes
            "source_file": [long_text, None, "短", long_text],  # long, with a null: a list as it is
            "reason": ["r", "理由", "", "r"],  # short text: strings
            "raw_bytes": [b"\xff\x00\xfe", b"", b"\x80abc", b"\xd5\xc5"],  # blob, no nulls
        }
    )
    constants = {
        "batch_id": "b1",
        "source_system": "hall",
        "received_at": dt.datetime(2026, 12, 1, tzinfo=dt.UTC),
    }
    with db.events.begin() as conn:
        insert_frame(conn, table, rows, constants)
        insert_frame(  # a blob column holding a null
            conn,
            table,
            rows.head(2).with_columns(pl.Series("raw_bytes", [None, b"\x00"]), line=pl.Series([5, 6])),
            constants,
        )
    with db.events.connect() as conn:
        got = conn.execute(
            select(table.c.raw_text, table.c.source_file, table.c.reason, table.c.raw_bytes).order_by(
                table.c.line
            )
        ).all()
        if conn.dialect.name == "sqlite":
            kinds = conn.execute(
                text(
                    "SELECT DISTINCT typeof(raw_text), typeof(source_file), typeof(raw_bytes) FROM quarantine"
                )
            ).all()
            assert set(kinds) <= {
                ("text", "text", "blob"),
                ("text", "null", "blob"),
                ("text", "text", "null"),
            }
    expected = [*rows.select("raw_text", "source_file", "reason", "raw_bytes").rows()]
    expected += [(*expected[0][:3], None), (*expected[1][:3], b"\x00")]
    assert [tuple(r) for r in got] == expected


def test_a_bulk_insert_spanning_many_statements_keeps_every_row_in_order(
    db: GovDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite takes rows as multi-row VALUES statements: rows land in the frame's order (ids
    ascending with it), a last short statement included, a wide frame in statements under the
    bound-parameter limit; a duplicate in a later statement refuses the whole insert."""
    import datetime as dt
    import sqlite3

    import polars as pl
    from sqlalchemy import select
    from sqlalchemy.exc import IntegrityError

    from govdb.store import bulk
    from govdb.store.events import Quarantine

    monkeypatch.setattr(bulk, "ROWS_PER_INSERT", 100)
    monkeypatch.setattr(bulk, "BIND_ROWS", 250)  # slices of 200 rows bound at a time
    table = Quarantine.__table__  # type: ignore[attr-defined]
    n = 1_234
    rows = pl.DataFrame(
        {
            "line": list(range(n, 0, -1)),  # not in line order: the frame's order must hold
            "file_sha256": [f"{i:064x}" for i in range(n)],
            "raw_text": [f"第{i}行\u2028'\"" for i in range(n)],
            "source_file": [None if i % 7 == 0 else f"f{i}.csv" for i in range(n)],
            "reason": [f"r{i}" for i in range(n)],
        }
    )
    constants = {
        "batch_id": "b1",
        "source_system": "hall",
        "received_at": dt.datetime(2026, 12, 1, tzinfo=dt.UTC),
    }
    with db.events.begin() as conn:
        bulk.insert_frame(conn, table, rows, constants)
    with db.events.connect() as conn:
        got = conn.execute(
            select(
                table.c.line, table.c.file_sha256, table.c.raw_text, table.c.source_file, table.c.reason
            ).order_by(table.c.id)
        ).all()
    assert [tuple(r) for r in got] == rows.rows()

    # A frame too wide for 100 rows a statement under a lowered parameter limit.
    with db.events.connect() as conn:
        driver = conn.connection.driver_connection
        if conn.dialect.name == "sqlite":
            old = driver.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 9)  # type: ignore[union-attr]
        try:
            with conn.begin():
                bulk.insert_frame(
                    conn, table, rows.head(10).with_columns(file_sha256=pl.lit("e" * 64)), constants
                )
        finally:
            if conn.dialect.name == "sqlite":
                driver.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, old)  # type: ignore[union-attr]
    with db.events.connect() as conn:
        wide = conn.execute(select(table.c.line).where(table.c.file_sha256 == "e" * 64).order_by(table.c.id))
        assert list(wide.scalars()) == rows.head(10).get_column("line").to_list()

    # The 250th row repeats a stored (source, file, line): the third statement fails, nothing stays.
    clash = pl.concat([rows.head(249).with_columns(file_sha256=pl.lit("f" * 64)), rows.slice(0, 1)])
    with pytest.raises(IntegrityError), db.events.begin() as conn:
        bulk.insert_frame(conn, table, clash, constants)
    with db.events.connect() as conn:
        assert conn.execute(select(table.c.id).where(table.c.file_sha256 == "f" * 64)).first() is None


def test_a_bulk_insert_that_breaks_a_constraint_raises_as_sqlalchemy_does(db: GovDB) -> None:
    """The driver's own error (COPY, executemany) comes out as SQLAlchemy's IntegrityError, which
    callers catch and the command line explains in one line, as for any other statement."""
    import polars as pl
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    from govdb.errors import StoreError
    from govdb.store.bulk import insert_frame
    from govdb.store.locks import writing
    from govdb.store.master import LinkKey

    table = LinkKey.__table__  # type: ignore[attr-defined]
    twice = pl.DataFrame({"key": ["k1", "k1"], "person_id": ["P1", "P1"]})
    with pytest.raises(IntegrityError), db.master.begin() as conn:
        insert_frame(conn, table, twice)
    # `writing` (and every store_errors block) turns it into one StoreError line.
    with pytest.raises(StoreError, match=r"failed: .*(UNIQUE|unique|duplicate)"), writing(db.master) as conn:
        insert_frame(conn, table, twice)
    with db.master.connect() as conn:  # nothing of either attempt was kept
        assert conn.execute(text("SELECT count(*) FROM linkkey WHERE key = 'k1'")).scalar() == 0


def test_a_bulk_load_stores_no_check_chain_per_row_and_reads_it_from_the_load(db: GovDB) -> None:
    import datetime as dt

    import polars as pl
    from sqlmodel import Session, select

    from govdb.standards.ids import make_id
    from govdb.store.master import FieldHistory, lineage_checks

    people = pl.DataFrame(
        {"id_number": [make_id("440605", dt.date(1960, 5, 1), 7)], "name": ["王芳"], "phone": ["13800138000"]}
    )
    load_id = db.load_people(people, source="public_security")
    with Session(db.master) as ms:
        rows = ms.exec(select(FieldHistory).where(FieldHistory.bulk_load_id == load_id)).all()
    assert {r.field for r in rows} >= {"name", "phone", "id_number"}
    for row in rows:
        assert row.checks == []  # stored once, as the load
        (check,) = lineage_checks(row)
        assert check["level"] == "authoritative" and check["source"] == "public_security"
        at = dt.datetime.fromisoformat(check["at"])
        assert at.tzinfo is not None and abs(at - row.recorded_at.replace(tzinfo=dt.UTC)) < dt.timedelta(
            seconds=1
        )
    feed = db.changes("0", limit=1000).changes
    mine = [c for c in feed if c.cause_id == load_id]
    assert [(c.entity_kind, c.field, c.op) for c in mine] == [("person", None, "insert")]


def test_a_background_checkpoint_moves_the_log_into_the_store_and_stops_on_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reads at a window commit audit entries; the log they grow is copied into the database file
    by the checkpointer's thread, not inside one of those commits (SQLite's own checkpoint runs
    there only once WAL_AUTOCHECKPOINT_PAGES pile up without the log starting again)."""
    monkeypatch.setattr(WalCheckpointer, "INTERVAL", 0.05)
    gov = GovDB.open(tmp_path / "home")
    try:
        checkpointers = gov._checkpointers
        assert [Path(c.database).name for c in checkpointers] == [
            "govdb.master.sqlite",
            "govdb.events.sqlite",
        ]
        gov.serve_district("440605")  # writes divisions and units: pages in the master log
        with gov.master.connect() as conn:  # nothing else checkpoints: SQLite's mark is far off
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == WAL_AUTOCHECKPOINT_PAGES
            assert conn.exec_driver_sql("PRAGMA journal_size_limit").scalar() == WAL_FILE_LIMIT_BYTES
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            last = checkpointers[0].last
            if last is not None and last[1] > 0 and last[1] == last[2]:
                break
            time.sleep(0.02)
        assert last is not None and last[0] == 0 and last[1] > 0 and last[1] == last[2], last
    finally:
        gov.close()
    assert not any(c.running for c in checkpointers)


def test_a_store_a_newer_govdb_migrated_is_refused_with_what_to_do(db: GovDB, tmp_path: Path) -> None:
    """An older version opening a store a newer one migrated got alembic's own error ("Can't
    locate revision") and, on the command line, its traceback; now a StoreError says what
    happened and what to run, and the store is left as it was."""
    import sqlalchemy as sa
    from typer.testing import CliRunner

    from govdb.cli import app
    from govdb.errors import StoreError
    from govdb.store.engine import migrate

    with db.master.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version_master SET version_num = 'master_9999'"))
    with pytest.raises(StoreError, match=r"master store is at revision master_9999.*newer govdb"):
        migrate(db.master, "master")
    with db.master.connect() as conn:
        assert (
            conn.execute(sa.text("SELECT version_num FROM alembic_version_master")).scalar() == "master_9999"
        )
    if db.master.dialect.name != "sqlite":
        return
    home = Path(str(db.master.url.database)).parent
    result = CliRunner().invoke(app, ["promote", "--home", str(home)])
    assert result.exit_code != 0 and "newer govdb" in result.output, result.output
    assert "Traceback" not in result.output


def test_a_bulk_commit_leaves_the_log_to_the_checkpointer_only_while_one_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A promote chunk's commit of tens of thousands of pages would copy the log into the store
    itself, on the job's thread; with a checkpointer running it leaves that to it and wakes it, so
    the next commit of another connection (a window's audited read) does not do it instead. The
    connection goes back to the pool with SQLite's own mark on (after a failure too). Without a
    checkpointer, the mark stays."""
    import sqlalchemy as sa

    import govdb.store.engine as engine_module
    import govdb.store.locks as locks_module
    from govdb.errors import StoreError
    from govdb.store.engine import WAL_ASIDE_PAGES, background_checkpointer
    from govdb.store.locks import writing

    monkeypatch.setattr(WalCheckpointer, "INTERVAL", 3600.0)  # the thread copies only when woken
    monkeypatch.setattr(engine_module, "WAL_AUTOCHECKPOINT_PAGES", 100)
    monkeypatch.setattr(locks_module, "WAL_AUTOCHECKPOINT_PAGES", 100)
    fill = sa.text(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300) "
        "INSERT INTO t SELECT printf('%.9000c', 'x') FROM n"
    )  # about 170 pages of 16 KiB: past the mark of 100

    def mark(conn: sa.Connection) -> int:
        return int(conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() or 0)

    alone = make_engine(f"sqlite:///{tmp_path / 'alone.sqlite'}")
    assert background_checkpointer(alone) is None
    with writing(alone, checkpoint_aside=True) as conn:
        assert mark(conn) == 100
        conn.execute(sa.text("CREATE TABLE t (x TEXT)"))
        conn.execute(fill)
    frames, copied = wal_frames(tmp_path / "alone.sqlite")
    assert frames >= 100 and copied == frames  # its own commit copied the log
    alone.dispose()

    gov = GovDB.open(tmp_path / "home")
    master = Path(str(gov.master.url.database))
    try:
        assert background_checkpointer(gov.master) is gov._checkpointers[0]
        with monkeypatch.context() as asleep:
            asleep.setattr(WalCheckpointer, "wake", lambda self: None)
            with writing(gov.master, checkpoint_aside=True) as conn:
                assert mark(conn) == WAL_ASIDE_PAGES
                conn.execute(sa.text("CREATE TABLE t (x TEXT)"))
                conn.execute(fill)
            frames, copied = wal_frames(master)
            assert frames >= 100 and copied < frames  # the commit left it
        with writing(gov.master, checkpoint_aside=True) as conn:
            conn.execute(fill)
        deadline = time.monotonic() + 10  # woken, the thread copies it: its next tick is an hour off
        while (now := wal_frames(master))[1] < now[0] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert now[0] > frames and now[1] == now[0], now
        with (
            pytest.raises(StoreError, match="no such table"),
            writing(gov.master, checkpoint_aside=True) as c,
        ):
            c.execute(sa.text("INSERT INTO missing VALUES (1)"))
        with gov.master.connect() as conn:
            assert mark(conn) == 100  # put back, after a failure too
    finally:
        gov.close()
    assert background_checkpointer(gov.master) is None


def test_no_checkpointer_creates_a_store_or_runs_for_postgresql(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.sqlite"
    checkpointer = WalCheckpointer.for_engine(make_engine(f"sqlite:///{missing}"))
    assert checkpointer is not None
    time.sleep(3 * checkpointer.INTERVAL)
    checkpointer.stop()
    assert not missing.exists() and not checkpointer.running
    assert WalCheckpointer.for_engine(make_engine("sqlite://")) is None
    assert WalCheckpointer.for_engine(make_engine("postgresql+psycopg://u@127.0.0.1:1/x")) is None


def test_update_rows_sets_columns_where_the_state_still_holds(db: GovDB) -> None:
    """One executemany through the driver: JSON text lands as JSON, constants as the ORM writes
    them, and the count tells how many rows were still in the expected state."""
    import datetime as dt

    import polars as pl
    from sqlalchemy import select
    from sqlalchemy.exc import IntegrityError

    from govdb.store.events import Event
    from govdb.store.updates import update_rows

    frame = pl.DataFrame({"受理编号": ["A1", "A2", "A3"], "姓名": ["张伟", "李娜", "王芳"]})
    db.ingest_frame(frame, source="hall", key_column="受理编号")
    table = Event.__table__  # type: ignore[attr-defined]
    with db.events.connect() as conn:
        ids = list(conn.execute(select(table.c.event_id).order_by(table.c.event_id)).scalars())
    when = dt.datetime(2026, 11, 30, 8, 30, tzinfo=dt.UTC)
    rows = pl.DataFrame(
        {
            "event_id": ids,
            "standardized": ['{"name": "张伟"}', '{"name": "李\\"娜"}', "{}"],
            "division_code": ["440605011001", None, "440605011002"],
        }
    )
    with db.events.begin() as conn:
        conn.execute(table.update().where(table.c.event_id == ids[2]).values(status="invalid"))
        changed = update_rows(
            conn, table, rows, key="event_id", where={"status": "received"},
            constants={"status": "standardized", "received_at": when},
        )  # fmt: skip
    assert changed == 2  # the third was no longer `received`
    with db.events.connect() as conn:
        got = conn.execute(
            select(table.c.standardized, table.c.division_code, table.c.status, table.c.received_at).order_by(
                table.c.event_id
            )
        ).all()
    assert [tuple(r)[:3] for r in got] == [
        ({"name": "张伟"}, "440605011001", "standardized"),
        ({"name": '李"娜'}, None, "standardized"),
        (None, None, "invalid"),
    ]
    assert [r.received_at.replace(tzinfo=None) for r in got[:2]] == [when.replace(tzinfo=None)] * 2  # UTC
    with pytest.raises(ValueError, match="one row per"), db.events.begin() as conn:
        update_rows(
            conn, table, pl.DataFrame({"event_id": [ids[0], ids[0]], "status": ["x", "y"]}), key="event_id"
        )
    with pytest.raises(IntegrityError), db.events.begin() as conn:  # the state CHECK still holds
        update_rows(conn, table, pl.DataFrame({"event_id": [ids[0]], "status": ["nonsense"]}), key="event_id")


def test_update_rows_of_keys_alone_runs_as_one_statement(db: GovDB) -> None:
    """Keys alone (a move) go as one JSON array in one statement on SQLite: integer keys, plain
    text keys; a text key json_each would not hand back as bound (a quote, a NUL, a backslash)
    takes the row-by-row path; either way only rows still in the expected state move, and the
    count says how many."""
    import datetime as dt

    import polars as pl
    from sqlalchemy import select

    from govdb.store.events import Event, IngestBatch
    from govdb.store.updates import update_rows

    db.ingest_frame(
        pl.DataFrame({"受理编号": [f"K{i}" for i in range(6)], "姓名": ["张伟"] * 6}),
        source="hall",
        key_column="受理编号",
    )
    events = Event.__table__  # type: ignore[attr-defined]
    batches = IngestBatch.__table__  # type: ignore[attr-defined]
    with db.events.connect() as conn:
        ids = list(conn.execute(select(events.c.event_id).order_by(events.c.event_id)).scalars())
    when = dt.datetime(2026, 11, 30, 8, 30, tzinfo=dt.UTC)
    statements: list[str] = []
    sqlite = db.events.dialect.name == "sqlite"
    with db.events.begin() as conn:
        conn.execute(events.update().where(events.c.event_id == ids[1]).values(status="invalid"))
        driver = conn.connection.driver_connection
        if sqlite:
            driver.set_trace_callback(statements.append)  # type: ignore[union-attr]
        moved = update_rows(
            conn, events, pl.DataFrame({"event_id": ids[:4]}), key="event_id",
            where={"status": "received"}, constants={"status": "standardized", "received_at": when},
        )  # fmt: skip
        if sqlite:
            driver.set_trace_callback(None)  # type: ignore[union-attr]
    assert moved == 3
    if sqlite:
        assert [s for s in statements if s.startswith("UPDATE")] and all("json_each" in s for s in statements)
    with db.events.connect() as conn:
        states = list(conn.execute(select(events.c.status).order_by(events.c.event_id)).scalars())
    assert states == ["standardized", "invalid", "standardized", "standardized", "received", "received"]
    # Text keys: plain ones listed, others bound row by row; both counted the same.
    with db.events.begin() as conn:
        keys = ["b-1", 'b"2', "b\\3", "b\x004" if sqlite else "b\n4", "b:5"]  # PostgreSQL text holds no NUL
        for k in keys:
            conn.execute(batches.insert().values(batch_id=k, source_system="hall", source_file="f"))
    for chosen in (["b-1", "b:5"], keys, ["nobody"]):
        statements.clear()
        with db.events.begin() as conn:
            if sqlite:
                conn.connection.driver_connection.set_trace_callback(statements.append)  # type: ignore[union-attr]
            changed = update_rows(
                conn, batches, pl.DataFrame({"batch_id": chosen}), key="batch_id",
                where={"source_file": "f"}, constants={"source_file": "g"},
            )  # fmt: skip
            if sqlite:
                conn.connection.driver_connection.set_trace_callback(None)  # type: ignore[union-attr]
        assert changed == {2: 2, 5: 3, 1: 0}[len(chosen)]
        if sqlite:  # a key with a quote, a backslash or a NUL is bound row by row
            assert any("json_each" in s for s in statements) == (chosen != keys), statements
    with db.events.connect() as conn:
        got = dict(conn.execute(select(batches.c.batch_id, batches.c.source_file)).all())
    assert {k: got[k] for k in keys} == dict.fromkeys(keys, "g")


def test_a_bulk_move_counts_rows_another_job_moved_first(db: GovDB) -> None:
    """`move` of many keys goes through the driver; a row already moved makes it a StateError and
    the transaction leaves every row where it was."""
    import polars as pl
    from sqlalchemy import select

    from govdb.errors import StateError
    from govdb.store.events import Event
    from govdb.store.states import EventStatus, move

    frame = pl.DataFrame({"受理编号": [f"B{i}" for i in range(50)], "姓名": ["张伟"] * 50})
    db.ingest_frame(frame, source="hall", key_column="受理编号")
    table = Event.__table__  # type: ignore[attr-defined]
    with db.events.connect() as conn:
        ids = list(conn.execute(select(table.c.event_id)).scalars())
    rows = [{"event_id": i} for i in ids]

    def received_to_standardized(rows: list[dict[str, int]]) -> int:
        with db.events.begin() as conn:
            return move(
                conn, table, "status", EventStatus, EventStatus.received, EventStatus.standardized, rows,
                key=("event_id",),
            )  # fmt: skip

    with db.events.begin() as conn:
        conn.execute(table.update().where(table.c.event_id == ids[7]).values(status="invalid"))
    with pytest.raises(StateError, match="1 of 50 event"):
        received_to_standardized(rows)
    with db.events.connect() as conn:
        assert conn.execute(select(table.c.status).where(table.c.status == "standardized")).first() is None
    rows.pop(7)
    assert received_to_standardized(rows) == 49


def test_a_bulk_move_stores_an_aware_time_as_its_utc_time(db: GovDB) -> None:
    """An aware time of another zone is stored as its UTC time on both backends (naive times take
    the ORM's path, as before)."""
    import datetime as dt

    import polars as pl
    from sqlalchemy import select

    from govdb.store.bulk import json_value
    from govdb.store.events import Event
    from govdb.store.states import EventStatus, move

    db.ingest_frame(
        pl.DataFrame({"受理编号": ["T1", "T2"], "姓名": ["张伟", "李娜"]}),
        source="hall",
        key_column="受理编号",
    )
    table = Event.__table__  # type: ignore[attr-defined]
    with db.events.connect() as conn:
        ids = list(conn.execute(select(table.c.event_id).order_by(table.c.event_id)).scalars())
    beijing = dt.datetime(2026, 11, 30, 16, 30, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    with db.events.begin() as conn:
        move(
            conn, table, "status", EventStatus, EventStatus.received, EventStatus.standardized,
            [{"event_id": ids[0]}], key=("event_id",), values={"received_at": beijing},
        )  # fmt: skip
    with db.events.connect() as conn:
        stored = conn.execute(select(table.c.received_at).where(table.c.event_id == ids[0])).scalar_one()
    assert stored.replace(tzinfo=None) == dt.datetime(2026, 11, 30, 8, 30)
    assert json_value(b'["occurred_at_unreadable"]') == ["occurred_at_unreadable"]  # a BLOB, by an insider


def test_a_background_writer_writes_in_order_and_raises_a_failed_write_at_the_next(tmp_path: Path) -> None:
    """Writes run one at a time in the writer's thread, in the order given; a failed write is
    raised by the next submit, and leaving the block waits for the last write. A shared
    in-memory store writes inline (one connection for every thread)."""
    import threading

    from sqlalchemy import text

    from govdb.store.writer import BackgroundWriter

    engine = make_engine(f"sqlite:///{tmp_path / 'w.sqlite'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER, thread TEXT)"))
    release = threading.Event()

    def write(n: int, fail: bool = False) -> None:
        if n == 0:
            release.wait(5)  # the first write is slow: the second waits for it
        if fail:
            raise ValueError(f"write {n} failed")
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO t VALUES (:n, :t)"), {"n": n, "t": threading.current_thread().name}
            )

    with BackgroundWriter(engine, "test-writer") as writer:
        writer.submit(write, 0)
        release.set()
        writer.submit(write, 1)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT n, thread FROM t ORDER BY rowid")).all()
    assert [n for n, _ in rows] == [0, 1] and all(t.startswith("test-writer") for _, t in rows)

    release.set()
    with pytest.raises(ValueError, match="write 2 failed"), BackgroundWriter(engine, "test-writer") as writer:
        writer.submit(write, 2, True)
        writer.submit(write, 3)  # raises the failure of 2; 3 is never written
    with pytest.raises(ValueError, match="write 4 failed"), BackgroundWriter(engine, "test-writer") as writer:
        writer.submit(write, 4, True)  # the last write: raised on leaving the block
    with engine.connect() as conn:
        assert conn.execute(text("SELECT max(n) FROM t")).scalar() == 1

    memory = make_engine("sqlite://")
    with memory.begin() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER, thread TEXT)"))
    engine = memory  # what `write` writes to from here
    with BackgroundWriter(memory, "test-writer") as writer:
        writer.submit(write, 5)
    with memory.connect() as conn:
        assert conn.execute(text("SELECT thread FROM t")).scalar() == threading.current_thread().name


def test_uuid7_texts_are_ordered_version_7_uuids_in_their_text_form() -> None:
    import uuid

    from govdb.base.ids import uuid7_texts

    ids = uuid7_texts(5000)
    assert len(set(ids)) == 5000 and uuid7_texts(0) == []
    assert ids == sorted(ids)  # they append to an index, in the order drawn
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 7 and parsed.variant == uuid.RFC_4122
    stamp = int(ids[0].replace("-", "")[:12], 16)
    assert abs(stamp / 1000 - __import__("time").time()) < 60  # unix milliseconds
    # the 48 bits after the counter are random: none stuck over 5,000 ids
    bits = {i: {int(t.replace("-", ""), 16) >> i & 1 for t in ids} for i in range(48)}
    assert {i for i, seen in bits.items() if len(seen) == 1} == set()
    # a later millisecond sorts after every id of an earlier one, whatever its counter
    assert uuid7_texts(1, now_ms=stamp + 1)[0] > uuid7_texts(70_000, now_ms=stamp)[-1]
    # ids counted past 2**14 carry into the bits before the variant: still ordered, still v7
    many = uuid7_texts(70_000, now_ms=stamp)
    assert many == sorted(many) and uuid.UUID(many[-1]).version == 7


def test_a_bulk_insert_binds_times_of_the_frame_as_text_in_every_slice(
    db: GovDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's rows are made bindable a slice at a time: an aware time column of the frame is
    stored as SQLAlchemy's UTC text in every slice, as a constant time is, and reads back equal."""
    import datetime as dt

    import polars as pl
    from sqlalchemy import select, text

    from govdb.store import bulk
    from govdb.store.events import Quarantine

    monkeypatch.setattr(bulk, "ROWS_PER_INSERT", 10)
    monkeypatch.setattr(bulk, "BIND_ROWS", 25)  # slices of 20 rows
    table = Quarantine.__table__  # type: ignore[attr-defined]
    n = 65
    at = [dt.datetime(2026, 12, 1, 8, tzinfo=dt.UTC) + dt.timedelta(minutes=i) for i in range(n)]
    rows = pl.DataFrame(
        {
            "line": list(range(n)),
            "file_sha256": ["a" * 64] * n,
            "raw_text": [f"第{i}行" for i in range(n)],
            "reason": ["r"] * n,
            "received_at": pl.Series(at, dtype=pl.Datetime("us", "UTC")).dt.convert_time_zone(
                "Asia/Shanghai"
            ),
        }
    )
    with db.events.begin() as conn:
        bulk.insert_frame(conn, table, rows, {"batch_id": "b1", "source_system": "hall"})
    with db.events.connect() as conn:
        got = conn.execute(select(table.c.received_at).order_by(table.c.line)).scalars().all()
        if conn.dialect.name == "sqlite":
            kinds = conn.execute(
                text("SELECT DISTINCT typeof(received_at), typeof(raw_text) FROM quarantine")
            )
            assert kinds.all() == [("text", "text")]
    assert got == at


def test_a_bulk_insert_stores_a_categorical_column_as_its_text(db: GovDB) -> None:
    """Promote's lineage frames hold each proposal's check chain once (categorical): every store
    gets the text of each row's value, as from a plain string column."""
    import datetime as dt

    import polars as pl
    from sqlalchemy import select, text

    from govdb.store import bulk
    from govdb.store.events import Quarantine

    table = Quarantine.__table__  # type: ignore[attr-defined]
    chains = [f'[{{"level": "村", "n": {i % 3}}}]' for i in range(10)]
    rows = pl.DataFrame(
        {
            "line": list(range(10)),
            "file_sha256": pl.Series(["a" * 64] * 10, dtype=pl.Categorical),
            "raw_text": pl.Series(chains, dtype=pl.Categorical),
            "reason": ["r"] * 10,
        }
    )
    with db.events.begin() as conn:
        constants = {
            "batch_id": "b1",
            "source_system": "hall",
            "received_at": dt.datetime(2026, 12, 5, tzinfo=dt.UTC),
        }
        bulk.insert_frame(conn, table, rows, constants)
    with db.events.connect() as conn:
        got = conn.execute(select(table.c.raw_text, table.c.file_sha256).order_by(table.c.line)).all()
        if conn.dialect.name == "sqlite":
            assert conn.execute(text("SELECT DISTINCT typeof(raw_text) FROM quarantine")).all() == [("text",)]
    assert got == [(c, "a" * 64) for c in chains]


def test_job_locks_belong_to_one_store_not_to_the_whole_postgres_database(db: GovDB, tmp_path: Path) -> None:
    """PostgreSQL's advisory locks are the database's: a second store in another schema of it
    takes its own `promote` and `link_keys` locks at once, while a second connection to the same
    store waits for them (here: times out), whatever its search_path lists before the store."""
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    from govdb.store.locks import job_lock, xact_lock

    from .conftest import open_backend

    if db.events.dialect.name != "postgresql":
        pytest.skip("SQLite's locks are files beside each store")
    with (
        open_backend("postgresql", tmp_path / "other", db.rules) as other,
        job_lock(db.events, "promote"),
        db.master.connect() as holder,
    ):
        xact_lock(holder, "link_keys")
        for engine, name in ((other.events, "promote"), (other.master, "link_keys")):
            with engine.connect() as conn:
                conn.execute(text("SET lock_timeout = '5s'"))
                xact_lock(conn, name)  # another store: granted at once
                conn.rollback()
        for engine, name in ((db.events, "promote"), (db.master, "link_keys")):
            with engine.connect() as conn:
                conn.execute(text("SET lock_timeout = '200ms'"))
                with pytest.raises(OperationalError, match="lock timeout"):
                    xact_lock(conn, name)  # the same store: waits for the holder
                conn.rollback()
                # ... also where its search_path lists another schema first (public holds no store)
                schema = conn.execute(text("SELECT current_schema()")).scalar()
                conn.execute(text(f"SET search_path = public, \"{schema}\"; SET lock_timeout = '200ms'"))
                assert conn.execute(text("SELECT current_schema()")).scalar() == "public"
                with pytest.raises(OperationalError, match="lock timeout"):
                    xact_lock(conn, name)
        holder.rollback()


def test_a_connection_lost_while_indexes_are_deferred_is_reported_as_the_store_gone(
    db: GovDB,
) -> None:
    """The server ends the session in the middle of a first load: the error is the store being
    unavailable (what the command line explains), not one about the savepoint left behind."""
    from sqlalchemy import create_engine, text

    from govdb.errors import StoreUnavailableError
    from govdb.store.bulk import indexes_deferred
    from govdb.store.engine import store_errors
    from govdb.store.locks import writing
    from govdb.store.master import Person

    if db.master.dialect.name != "postgresql":
        pytest.skip("a SQLite store has no server to lose")
    other = create_engine(db.master.url)
    try:
        with (
            pytest.raises(StoreUnavailableError),
            store_errors(db.master),
            writing(db.master) as conn,
            indexes_deferred(conn, Person.__table__, 10, unique=None),  # type: ignore[attr-defined]
        ):
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
            with other.connect() as killer:
                killer.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
                killer.commit()
            conn.execute(text("SELECT 1"))
    finally:
        other.dispose()


def test_reads_outside_a_transaction_leave_the_pool_to_writers_as_it_was(db: GovDB) -> None:
    """`reading` runs in autocommit on PostgreSQL (no BEGIN, no ROLLBACK): the connection goes back
    to the pool as it came, so the next writer's statements are one transaction again."""
    from sqlalchemy import create_engine, text

    from govdb.store.locks import reading, writing

    pg = db.events.dialect.name == "postgresql"
    one = create_engine(db.events.url, pool_size=1, max_overflow=0)  # the writer gets the same one
    try:
        with reading(one) as conn:
            driver = conn.connection.driver_connection
            assert driver.autocommit if pg else True  # type: ignore[union-attr]
            conn.execute(text("SELECT count(*) FROM task")).scalar()
        with writing(one) as conn:
            assert conn.connection.driver_connection is driver
            if pg:
                assert not driver.autocommit  # type: ignore[union-attr]
                began = conn.execute(text("SELECT now() = statement_timestamp()")).scalar()
                assert began is False  # inside a transaction begun before this statement
    finally:
        one.dispose()


def test_postgres_plans_long_arrays_for_themselves_and_prepares_the_rest(db: GovDB) -> None:
    """psycopg prepares a statement after five runs on a connection, and PostgreSQL may then
    switch to a generic plan that costs `= ANY($1)` as a few rows whatever the array holds
    (promote's 60,000 people: minutes per statement). A short array rides the prepared
    statement; a long one is never sent through it, so it is planned for what it holds."""
    from sqlalchemy import select

    from govdb.store.bulk import among, driver_fetch
    from govdb.store.engine import PLAN_EACH_ARRAY_OVER
    from govdb.store.locks import writing
    from govdb.store.master import Person

    if db.master.dialect.name != "postgresql":
        pytest.skip("SQLite prepares no server-side plans")
    long_array = [f"P{i}" for i in range(PLAN_EACH_ARRAY_OVER + 1)]
    by_driver = "SELECT person_id FROM person WHERE person_id = ANY(%s)"

    def by_sqlalchemy(conn: Any, ids: list[str]) -> None:
        conn.execute(select(Person.person_id).where(among(conn, Person.person_id, ids))).all()

    def plans(conn: Any, pattern: str) -> int:
        rows = conn.exec_driver_sql(
            "SELECT generic_plans + custom_plans FROM pg_prepared_statements WHERE statement LIKE %s",
            (pattern,),
        ).all()
        assert len(rows) == 1, rows
        return int(rows[0][0])

    with writing(db.master) as conn:
        for i in range(12):
            driver_fetch(conn, by_driver, ([f"P{i}", f"Q{i}"],))
            by_sqlalchemy(conn, [f"P{i}", f"Q{i}"])
        for pattern in ("%WHERE person_id = ANY($1)", "%person.person_id = ANY ($1::%"):
            assert plans(conn, pattern) == 12 - 5  # prepared at the sixth run
        for _ in range(3):
            driver_fetch(conn, by_driver, (long_array,))
            by_sqlalchemy(conn, long_array)
        for pattern in ("%WHERE person_id = ANY($1)", "%person.person_id = ANY ($1::%"):
            assert plans(conn, pattern) == 12 - 5  # not through the prepared statement
        driver_fetch(conn, by_driver, (long_array[:PLAN_EACH_ARRAY_OVER],))
        assert plans(conn, "%WHERE person_id = ANY($1)") == 12 - 5 + 1  # a short enough one is
        # Nor by the driver's other ways in: rows of an executemany, a read-only mapping, a
        # two-dimensional array whose outer list is short.
        driver = conn.connection.driver_connection
        by_name = "SELECT person_id FROM person WHERE person_id = ANY(%(ids)s) AND %(n)s::int > 0"
        grid = "SELECT person_id FROM person WHERE person_id = ANY(%s::text[][])"
        with driver.cursor() as cursor:
            for i in range(7):
                cursor.executemany(by_driver, [([f"P{i}"],)] * 2)
                cursor.execute(by_name, MappingProxyType({"ids": [f"P{i}"], "n": i + 1}))
                cursor.execute(grid, ([[f"P{i}"], [f"Q{i}"]],))
            counted = {
                p: plans(conn, p)
                for p in ("%WHERE person_id = ANY($1)", "%ANY($1) AND%", "%ANY($1::text[][])")
            }
            cursor.executemany(by_driver, [(long_array,)] * 2)
            cursor.execute(by_name, MappingProxyType({"ids": long_array, "n": 1}))
            cursor.execute(grid, ([long_array[:600], long_array[400:1000]],))
            assert {p: plans(conn, p) for p in counted} == counted
            assert driver.prepare_threshold == 5  # put back after the executemany


@pytest.mark.parametrize("idle", ["idle", "just-used"])
def test_a_pooled_connection_the_server_ended_is_replaced(
    db: GovDB, monkeypatch: pytest.MonkeyPatch, idle: str
) -> None:
    """Connections idle a while are pinged before reuse, and one the server ended is replaced
    unseen; one used moments ago is not pinged (a round trip saved per look-up), so its loss
    surfaces once, as the store being unavailable, and the next call gets a new connection."""
    from sqlalchemy import create_engine, text

    from govdb.errors import StoreUnavailableError
    from govdb.store import engine as engines
    from govdb.store.engine import store_errors

    if db.master.dialect.name != "postgresql":
        pytest.skip("a SQLite store has no server to lose")
    monkeypatch.setattr(engines, "PING_AFTER_IDLE_SECONDS", 0.0 if idle == "idle" else 3600.0)
    db.master.dispose()
    with db.master.connect() as conn:  # the pool's one connection
        ended = conn.execute(text("SELECT pg_backend_pid()")).scalar()
    other = create_engine(db.master.url)
    try:
        with other.connect() as killer:
            killer.execute(text("SELECT pg_terminate_backend(:p, 10000)"), {"p": ended})  # and wait
            killer.commit()
    finally:
        other.dispose()
    if idle == "just-used":
        with pytest.raises(StoreUnavailableError), store_errors(db.master), db.master.connect() as conn:
            conn.execute(text("SELECT 1"))
    with db.master.connect() as conn:
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar() != ended


def test_an_upsert_of_a_frame_rewrites_existing_rows_in_place_and_adds_the_new_ones(db: GovDB) -> None:
    """SQLite: the rows whose key exists take the frame's values, keeping their row (a delete and
    an insert would move them); PostgreSQL's COPY cannot, and says so."""
    import sqlalchemy as sa

    from govdb.errors import GovdbError
    from govdb.store.bulk import insert_frame
    from govdb.store.locks import writing
    from govdb.store.master import LinkFeatures

    table = LinkFeatures.__table__  # type: ignore[attr-defined]
    first = pl.DataFrame({"person_id": ["P1", "P2"], "features": ['{"n": 1}', '{"n": 2}']})
    again = pl.DataFrame({"person_id": ["P2", "P3"], "features": ['{"n": 22}', '{"n": 3}']})
    with writing(db.master) as conn:
        insert_frame(conn, table, first)
    if db.master.dialect.name != "sqlite":
        with pytest.raises(ValueError, match="update_on_conflict is for SQLite"), writing(db.master) as conn:
            insert_frame(conn, table, again, update_on_conflict=("person_id",))
        return
    with db.master.connect() as conn:
        before = dict(conn.execute(sa.text("SELECT person_id, rowid FROM linkfeatures")).all())
    with writing(db.master) as conn:
        insert_frame(conn, table, again, update_on_conflict=("person_id",))
    with db.master.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT person_id, CAST(features AS TEXT), rowid FROM linkfeatures")
        ).all()
    assert {(p, f) for p, f, _ in rows} == {("P1", '{"n": 1}'), ("P2", '{"n": 22}'), ("P3", '{"n": 3}')}
    assert {p: r for p, _, r in rows if p in before} == before
    with pytest.raises(GovdbError, match=r"linkfeatures\.person_id"), writing(db.master) as conn:
        insert_frame(conn, table, again)  # without update_on_conflict, refused
    twice = pl.DataFrame({"person_id": ["P1", "P1"], "features": ["{}", '{"n": 0}']})
    with pytest.raises(ValueError, match="in the frame twice"), writing(db.master) as conn:
        insert_frame(conn, table, twice, update_on_conflict=("person_id",))
    columns = (sa.Column("k", sa.String, primary_key=True), sa.Column("v", sa.String))
    keyed = sa.Table("upsert_probe", sa.MetaData(), *columns)
    keyed.create(db.master)
    with writing(db.master) as conn:
        insert_frame(conn, keyed, pl.DataFrame({"k": ["a"], "v": ["kept"]}))
        # Nothing but the key: the rows there stay as they are, the new ones come in.
        insert_frame(conn, keyed, pl.DataFrame({"k": ["a", "b"]}), update_on_conflict=("k",))
    with db.master.connect() as conn:
        assert conn.execute(sa.select(keyed).order_by(keyed.c.k)).all() == [("a", "kept"), ("b", None)]


def test_the_change_feed_is_indexed_by_seq_alone_and_the_downgrade_gives_the_entity_index_back(
    tmp_path: Path,
) -> None:
    import sqlalchemy as sa

    from govdb.store.engine import migrate

    from .promote.test_storable import migrate_down

    engine = make_engine(f"sqlite:///{tmp_path / 'master.sqlite'}")
    migrate(engine, "master", "master_0012")
    feed_row = (
        "INSERT INTO masterchange (seq, at, entity_kind, entity_id, field, op, cause)"
        " VALUES (1, '2026-12-03', 'person', 'P1', 'phone', 'update', 'promotion')"
    )
    indexes = (
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'masterchange'"
        " AND name NOT LIKE 'sqlite_autoindex%'"  # the primary key's own
    )
    with engine.begin() as conn:
        conn.execute(sa.text(feed_row))
        assert "ix_masterchange_entity_id" in conn.execute(sa.text(indexes)).scalars().all()
    migrate(engine, "master")
    with engine.connect() as conn:
        assert conn.execute(sa.text(indexes)).scalars().all() == []
        assert conn.execute(sa.text("SELECT entity_id FROM masterchange")).scalars().all() == ["P1"]
    migrate_down(engine, "master_0012", "master")
    with engine.connect() as conn:
        assert conn.execute(sa.text(indexes)).scalars().all() == ["ix_masterchange_entity_id"]
    engine.dispose()


def test_sqlite_bulk_inserts_in_a_transaction_keep_no_statement_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inside a transaction SQLite's bulk inserts and upserts begin `INSERT OR FAIL` and update
    stored rows one UPDATE each, so SQLite copies no page into a statement journal; outside one a
    plain INSERT. Measured by what the process writes before the commit (nothing but the journal
    is written then while the page cache holds the transaction): the journaled form writes tens
    of megabytes here, the shipped one almost nothing. A failure still takes every row back."""
    import random
    import sqlite3

    import sqlalchemy as sa

    from govdb.errors import StoreError
    from govdb.store import bulk
    from govdb.store.locks import writing
    from govdb.store.master import LinkFeatures, LinkKey

    raw = sqlite3.connect(":memory:", isolation_level=None)
    assert bulk.sqlite_insert(raw) == "INSERT"
    raw.execute("BEGIN")
    assert bulk.sqlite_insert(raw) == "INSERT OR FAIL"
    raw.close()

    engine = make_engine(f"sqlite:///{tmp_path / 'master.sqlite'}")
    keys, features = LinkKey.__table__, LinkFeatures.__table__  # type: ignore[attr-defined]
    MasterModel.metadata.create_all(engine, tables=[keys, features])
    draw = random.Random(7)

    def some_keys(n: int) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "key": [f"k{draw.getrandbits(64):016x}" for _ in range(n)],
                "person_id": [f"P{i}" for i in range(n)],
            }
        )

    people = [f"P{i:06d}" for i in range(20_000)]
    with writing(engine) as conn:
        bulk.insert_frame(conn, keys, some_keys(100_000))
        bulk.insert_frame(
            conn,
            features,
            pl.DataFrame(
                {"person_id": people, "features": [f'{{"n": 0, "x": "{i:0400d}"}}' for i in range(20_000)]}
            ),
        )

    io = Path("/proc/self/io")

    def written() -> int:
        return int(next(line for line in io.read_text().splitlines() if line.startswith("wchar")).split()[1])

    def before_commit(frame: pl.DataFrame, table: sa.Table, **how: Any) -> tuple[int, list[str]]:
        statements: list[str] = []
        with writing(engine) as conn:
            conn.connection.driver_connection.set_trace_callback(statements.append)  # type: ignore[union-attr]
            start = written() if io.exists() else 0
            bulk.insert_frame(conn, table, frame, **how)
            grew = written() - start if io.exists() else 0
            conn.connection.driver_connection.set_trace_callback(None)  # type: ignore[union-attr]
        return grew, [s for s in statements if s.startswith(("INSERT", "UPDATE", "DELETE", "REPLACE"))]

    changed = pl.DataFrame({"person_id": [*people[::2], "P_new"], "features": ['{"n": 1}'] * 10_001})
    fail_keys, statements = before_commit(some_keys(5_000), keys)
    assert statements and all(s.startswith('INSERT OR FAIL INTO "linkkey"') for s in statements)
    fail_features, statements = before_commit(changed, features, update_on_conflict=("person_id",))
    assert {s.split(" SET ")[0] for s in statements if s.startswith("UPDATE")} == {
        'UPDATE OR FAIL "linkfeatures"'
    }
    assert all("DO NOTHING" in s for s in statements if s.startswith("INSERT"))
    with engine.connect() as conn:
        stored = dict(
            conn.execute(sa.text("SELECT person_id, CAST(features AS TEXT) FROM linkfeatures")).all()
        )
    assert stored == {
        p: '{"n": 1}' if i % 2 == 0 else f'{{"n": 0, "x": "{i:0400d}"}}' for i, p in enumerate(people)
    } | {"P_new": '{"n": 1}'}
    with engine.connect() as conn:  # a SQLite built to keep temporary files in memory journals there
        on_file = "TEMP_STORE=3" not in {r[0] for r in conn.exec_driver_sql("PRAGMA compile_options")}
        on_file = on_file and conn.exec_driver_sql("PRAGMA temp_store").scalar() != 2
    if io.exists() and on_file:  # the forms a statement journal follows, for comparison
        monkeypatch.setattr(bulk, "sqlite_insert", lambda driver: "INSERT")
        journaled_keys, _ = before_commit(some_keys(5_000), keys)
        assert fail_keys < journaled_keys / 10 and journaled_keys > 20 * 2**20
        monkeypatch.undo()
        assert fail_features < 2**20

    # Outside a transaction (autocommit): plain inserts, and an upsert is one statement again,
    # so its update and its insert cannot commit apart.
    statements = []
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        driver = conn.connection.driver_connection
        driver.set_trace_callback(statements.append)  # type: ignore[union-attr]
        bulk.insert_frame(
            conn,
            features,
            changed.with_columns(features=pl.lit('{"n": 2}')),
            update_on_conflict=("person_id",),
        )
        bulk.insert_rows(conn, keys, [{"key": "k_alone", "person_id": "P0"}])
        driver.set_trace_callback(None)  # type: ignore[union-attr]
    writes = [s for s in statements if s.startswith(("INSERT", "UPDATE"))]
    assert [w.split(" (")[0] for w in writes] == ['INSERT INTO "linkfeatures"'] * 21 + [
        'INSERT INTO "linkkey"'
    ]
    assert all("DO UPDATE SET" in w for w in writes[:-1])
    with engine.connect() as conn:
        assert (
            conn.execute(sa.text("SELECT count(*) FROM linkfeatures WHERE features = '{\"n\": 2}'")).scalar()
            == 10_001
        )
    statements = []
    with writing(engine) as conn:
        conn.connection.driver_connection.set_trace_callback(statements.append)  # type: ignore[union-attr]
        bulk.insert_rows(conn, keys, [{"key": "k_in", "person_id": "P0"}])
    assert [s.split(" (")[0] for s in statements if s.startswith("INSERT")] == [
        'INSERT OR FAIL INTO "linkkey"'
    ]

    # A failure in the third statement of an OR FAIL insert: nothing of the insert stays.
    clash = pl.concat([some_keys(1_200).with_columns(person_id=pl.lit("P_clash")), some_keys(1)])
    clash = clash.with_columns(
        key=pl.when(pl.int_range(pl.len()) == 1_200).then(pl.lit("dup")).otherwise("key")
    )
    clash = pl.concat([clash, clash.tail(1)])
    with pytest.raises(StoreError, match="UNIQUE"), writing(engine) as conn:
        bulk.insert_frame(conn, keys, clash)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM linkkey WHERE person_id = 'P_clash'")).scalar() == 0
    engine.dispose()
