"""After `process`, the event store's planner knows how large the queues it just filled are: on
PostgreSQL a clerk's first listing right after a large `process` was planned over tables the server
still believed empty (the first decisions of a 200,000-event county ran at a fifth of the speed of
the later ones, which came after autovacuum had analyzed them)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from govdb import GovDB
from govdb.demo import make_hall_events, make_people
from govdb.store.events import Proposal, Task

from ..conftest import TODAY


def test_process_leaves_the_planner_the_size_of_what_it_wrote(db: GovDB, tmp_path: Path) -> None:
    if db.events.dialect.name != "postgresql":
        pytest.skip("SQLite's `PRAGMA optimize` analyzes where it judges it helps: nothing to compare")
    register = make_people(60, seed=5, today=TODAY)
    db.load_people(register.slice(20), source="public_security")
    make_hall_events(register, tmp_path / "hall.csv", seed=5, today=TODAY)
    db.ingest(
        tmp_path / "hall.csv", source="hall", service_code="hall.resident_registration", key_column="受理编号"
    )
    db.process(today=TODAY)
    with db.events.connect() as conn:
        counted = {
            "task": conn.execute(select(func.count()).select_from(Task)).scalar_one(),
            "proposal": conn.execute(select(func.count()).select_from(Proposal)).scalar_one(),
        }
        believed = {
            table: conn.execute(
                text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:t)"), {"t": table}
            ).scalar_one()
            for table in counted
        }
    assert all(counted.values())
    assert believed == {table: float(n) for table, n in counted.items()}  # -1 when never analyzed
