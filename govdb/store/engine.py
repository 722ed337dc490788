"""Where the two stores live, and how their engines are made and migrated.

The embedded default is two SQLite files in one home folder; PostgreSQL is selected by URL. The
two stores always get two engines, so nothing can join verified and unverified data by accident.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool

from govdb.errors import ConfigError

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


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for one store; SQLite gets WAL, foreign keys and a shared in-memory pool."""
    try:
        if url.startswith("sqlite"):
            kwargs: dict[str, Any] = {}
            if url in ("sqlite://", "sqlite:///:memory:"):
                kwargs = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
            engine = create_engine(url, **kwargs)
            event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        return create_engine(url, pool_pre_ping=True)
    except (ArgumentError, ModuleNotFoundError) as exc:
        hint = (
            "install the pg extra: pip install 'govdb[pg]'"
            if "psycopg" in str(exc)
            else ("use sqlite:///FILE or postgresql+psycopg://USER@HOST:PORT/DB")
        )
        raise ConfigError(f"cannot use store URL {url!r}: {exc}; {hint}") from exc


def migrate(engine: Engine, store: StoreName) -> None:
    """Bring one store's schema to the newest alembic revision (idempotent)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", str(MIGRATIONS / store / "versions"))
    config.attributes["store"] = store
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
