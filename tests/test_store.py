"""The stores: migrations build exactly the schema the table models declare, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from govdb import GovDB
from govdb.store.events import EventModel
from govdb.store.master import MasterModel


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
