"""Fixtures: a GovDB on SQLite always, and on PostgreSQL when GOVDB_TEST_PG_URL is set."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from govdb import Actor, GovDB, load_rulebook
from govdb.rulebook import Rulebook

PG_URL = os.environ.get("GOVDB_TEST_PG_URL")
# A PostgreSQL deployment has no home folder for a key file: its audit key comes from the
# environment (a secret store in production). Tests use a fixed one.
PG_AUDIT_KEY = "test-audit-key-0123456789abcdef"
os.environ.setdefault("GOVDB_AUDIT_KEY", PG_AUDIT_KEY)  # inherited by the tests' worker processes
TODAY = dt.date(2026, 11, 23)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def rules() -> Rulebook:
    return load_rulebook(REPO / "rules")


def _pg_schemas() -> Iterator[tuple[str, str]]:
    assert PG_URL
    engine = create_engine(PG_URL)
    names = [f"t_{uuid.uuid4().hex[:10]}_{kind}" for kind in ("master", "events")]
    with engine.begin() as conn:
        for name in names:
            conn.execute(text(f'CREATE SCHEMA "{name}"'))
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield tuple(f"{PG_URL}{sep}options=-csearch_path%3D{name}" for name in names)  # type: ignore[misc]
    finally:
        with engine.begin() as conn:
            for name in names:
                conn.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
        engine.dispose()


BACKENDS = ["sqlite", pytest.param("postgresql", marks=[pytest.mark.pg])]


@contextmanager
def open_backend(backend: str, home: Path, rules: Rulebook) -> Iterator[GovDB]:
    """An empty GovDB on SQLite in `home`, or on PostgreSQL in two fresh schemas dropped afterwards."""
    schemas = None
    if backend == "postgresql":
        if not PG_URL:
            pytest.skip("GOVDB_TEST_PG_URL is not set")
        schemas = _pg_schemas()
        master_url, events_url = next(schemas)
        gov = GovDB.open(master_url=master_url, events_url=events_url, rules=rules, audit_key=PG_AUDIT_KEY)
    else:
        gov = GovDB.open(home, rules=rules)
    try:
        yield gov
    finally:
        gov.close()
        if schemas is not None:
            next(schemas, None)


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path, rules: Rulebook) -> Iterator[GovDB]:
    """An empty GovDB serving 南海区 (440605), on each backend."""
    with open_backend(request.param, tmp_path / "home", rules) as gov:
        gov.serve_district("440605")
        yield gov


def neighbour_transport(db: GovDB) -> Actor:
    """A clerk of the transport office of the neighbouring county (禅城区, 440604), registered in
    master beside 南海区's units: a department unit of another county."""
    from sqlmodel import Session

    from govdb.store.master import OrgUnit

    unit = "department:transport:440604"
    with Session(db.master) as ms:
        if ms.get(OrgUnit, unit) is None:
            ms.add(OrgUnit(unit_id=unit, name="禅城区交通运输局", level="department", division_code="440604",
                           department="transport"))  # fmt: skip
            ms.commit()
    return Actor("chen", unit)


def wal_frames(database: Path) -> tuple[int, int]:
    """(frames in a SQLite store's log, frames copied into the store), read from its wal-index
    without touching the store: the header's mxFrame at byte 16, the checkpoint's nBackfill at
    byte 96, in the machine's byte order."""
    import struct

    shm = Path(f"{database}-shm").read_bytes()
    return struct.unpack_from("=I", shm, 16)[0], struct.unpack_from("=I", shm, 96)[0]
