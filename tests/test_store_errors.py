"""Store failures become StoreError subclasses naming the store (password hidden) and a fix."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from govdb import GovDB, StoreBusyError, StoreReadOnlyError, StoreUnavailableError
from govdb.store.engine import store_errors


def test_a_read_only_sqlite_store_is_named_with_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "ro.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x INTEGER)")
    engine = create_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    with pytest.raises(StoreReadOnlyError) as caught, store_errors(engine), engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (1)"))
    assert "read-only" in str(caught.value) and "writable --home" in str(caught.value)


def test_a_locked_sqlite_store_is_busy(tmp_path: Path) -> None:
    path = tmp_path / "locked.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.1})
        with pytest.raises(StoreBusyError) as caught, store_errors(engine), engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
        assert "another govdb process" in str(caught.value) and str(path) in str(caught.value)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_an_unreachable_server_is_unavailable_and_hides_the_password() -> None:
    down = "postgresql+psycopg://u:secret@127.0.0.1:1/x"
    with pytest.raises(StoreUnavailableError) as caught:
        GovDB.open(master_url=down, events_url=down + "y", audit_key="k" * 32)
    message = str(caught.value)
    assert "secret" not in message and "u:***@127.0.0.1:1/x" in message and "server running" in message


@pytest.mark.skipif(not os.environ.get("GOVDB_TEST_PG_URL"), reason="GOVDB_TEST_PG_URL is not set")
def test_a_database_that_does_not_exist_says_so() -> None:
    from sqlalchemy import make_url

    url = make_url(os.environ["GOVDB_TEST_PG_URL"]).set(database="govdb_no_such_db", password="secret")
    wrong = url.render_as_string(hide_password=False)
    with pytest.raises(StoreUnavailableError) as caught:
        GovDB.open(master_url=wrong, events_url=wrong + "2", audit_key="k" * 32)
    message = str(caught.value)
    assert "govdb_no_such_db" in message and "createdb" in message and "secret" not in message


def test_a_pool_with_no_connection_free_is_the_store_busy() -> None:
    """Every pooled connection held past the pool's timeout: the caller hears the store is busy,
    never SQLAlchemy's own error."""
    from sqlalchemy.exc import TimeoutError as PoolTimeoutError

    from govdb.store.engine import explain

    explained = explain(PoolTimeoutError("QueuePool limit of size 5 overflow 10 reached"))
    assert explained is not None and explained[0] is StoreBusyError and "try again" in explained[2]
