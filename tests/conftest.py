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

from govdb import GovDB, load_rulebook
from govdb.rulebook import Rulebook

PG_URL = os.environ.get("GOVDB_TEST_PG_URL")
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
        gov = GovDB.open(master_url=master_url, events_url=events_url, rules=rules)
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
