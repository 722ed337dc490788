"""Opening a hall (stores, the hall's tables, the session key) and the promotion timer."""

from __future__ import annotations

import os
import secrets
import threading
from pathlib import Path

from examples.hall import accounts
from examples.hall.service import Hall
from govdb import ConfigError, open_db


def open_hall(
    home: str | Path | None = None,
    *,
    master_url: str | None = None,
    events_url: str | None = None,
    hall_url: str | None = None,
    audit_key: str | None = None,
) -> Hall:
    """Both govdb stores (a home folder of SQLite files, or URLs as `govdb.open_db` takes) and the
    hall's own tables: in the home folder by default, else beside the event store."""
    db = open_db(home, master_url=master_url, events_url=events_url, audit_key=audit_key)
    if hall_url is None:
        if home is not None:
            hall_url = f"sqlite:///{Path(home).resolve() / 'hall.sqlite'}"
        elif events_url:
            hall_url = events_url
        else:
            raise ConfigError("give --home, or --hall-url for the hall's accounts")
    users = accounts.hall_engine(hall_url)
    return Hall(db, users, source_token=accounts.get_setting(users, "source_token"))


def session_secret(hall: Hall) -> str:
    """HALL_SESSION_SECRET, else one made once and kept in the hall's settings (sessions survive
    restarts; with several servers, set the variable on each)."""
    secret = os.environ.get("HALL_SESSION_SECRET") or accounts.get_setting(hall.users, "session_secret")
    if not secret:
        secret = secrets.token_urlsafe(32)
        accounts.put_setting(hall.users, "session_secret", secret)
    return secret


class Promoter(threading.Thread):
    """Calls db.promote() every `every` seconds, so approved changes reach master without a click."""

    def __init__(self, hall: Hall, every: float) -> None:
        super().__init__(name="hall-promoter", daemon=True)
        self.hall, self.every, self.stopped = hall, every, threading.Event()
        self.failures: list[str] = []

    def run(self) -> None:
        while not self.stopped.wait(self.every):
            try:
                self.hall.promote_now()
            except Exception as exc:  # a failed run is retried next time; the reason is kept
                self.failures = [*self.failures[-9:], repr(exc)]

    def stop(self) -> None:
        self.stopped.set()
