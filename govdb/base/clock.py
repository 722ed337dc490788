"""The clock: record time for both stores, audit entries and ledgers."""

from __future__ import annotations

import datetime as dt


def utcnow() -> dt.datetime:
    """Record time, aware UTC: read back the same from SQLite and PostgreSQL."""
    return dt.datetime.now(dt.UTC)


# China's time (UTC+8, no daylight saving since 1991), as people write dates and times.
LOCAL_ZONE = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")


def local_today() -> dt.date:
    """Today's date where the halls are (a value holds from the local day, not the UTC one)."""
    return dt.datetime.now(LOCAL_ZONE).date()
