"""The clock: record time for both stores, audit entries and ledgers."""

from __future__ import annotations

import datetime as dt


def utcnow() -> dt.datetime:
    """Record time, aware UTC: read back the same from SQLite and PostgreSQL."""
    return dt.datetime.now(dt.UTC)
