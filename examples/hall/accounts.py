"""The hall's own tables: clerk accounts (argon2 password hashes), submissions, settings.

govdb knows units and actors but not people who sign in: which clerk acts for which unit is the
hall's business, so it lives here, beside the stores (a SQLite file in the home folder, or any
SQLAlchemy URL such as the PostgreSQL event store's). Every request acts as the account signed
in: the actor id and the unit come from this table, never from what the client sends.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Engine,
    MetaData,
    String,
    Table,
    create_engine,
    insert,
    select,
    update,
)

ROLES = ("window", "checker", "department", "admin")

metadata = MetaData()
account = Table(
    "hall_account",
    metadata,
    Column("username", String(64), primary_key=True),
    Column("password_hash", String(200), nullable=False),
    Column("display_name", String(100), nullable=False),
    Column("actor_id", String(100), nullable=False),
    Column("unit_id", String(100), nullable=False),
    Column("role", String(20), nullable=False),
)
submission = Table(
    "hall_submission",
    metadata,
    Column("app_no", String(40), primary_key=True),
    Column("submitted_at", DateTime(timezone=True), nullable=False),
    Column("actor_id", String(100), nullable=False),
    Column("unit_id", String(100), nullable=False),
    Column("form", String(64), nullable=False),
    Column("person_id", String(64)),
    Column("division_code", String(20)),
    Column("captured", JSON, nullable=False),  # standard field -> value, as sent to the event store
    Column("current", JSON, nullable=False),  # what master held, as the window was allowed to see it
    Column("link", JSON, nullable=False),  # the window's look-up: decision, probability, explanation
)
setting = Table(
    "hall_setting",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(500), nullable=False),
)

# Sessions live here, not only in the signed cookie: signing out ends one for good, even for a
# copy of the cookie taken before.
session = Table(
    "hall_session",
    metadata,
    Column("sid", String(64), primary_key=True),
    Column("username", String(64), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True)),
)
SESSION_HOURS = 8

# argon2id with the library's defaults (RFC 9106 low-memory profile): slow on purpose.
_hasher = PasswordHasher()


@dataclass(frozen=True)
class Account:
    """A signed-in clerk: who they are in govdb's audit (actor_id) and which unit they act for."""

    username: str
    display_name: str
    actor_id: str
    unit_id: str
    role: str


def hall_engine(url: str) -> Engine:
    """The engine of the hall's tables, created if missing."""
    engine = create_engine(url, pool_pre_ping=True)
    metadata.create_all(engine)
    return engine


def create_account(
    engine: Engine, username: str, *, unit_id: str, role: str, display_name: str, password: str | None = None
) -> str:
    """Add (or reset) an account; returns its password (generated unless given), shown once."""
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of {ROLES}")
    password = password or secrets.token_urlsafe(12)
    row = {
        "username": username,
        "password_hash": _hasher.hash(password),
        "display_name": display_name,
        "actor_id": f"hall.{username}",
        "unit_id": unit_id,
        "role": role,
    }
    with engine.begin() as conn:
        if conn.execute(select(account.c.username).where(account.c.username == username)).first():
            conn.execute(update(account).where(account.c.username == username).values(**row))
        else:
            conn.execute(insert(account), [row])
    return password


def authenticate(engine: Engine, username: str, password: str) -> Account | None:
    """The account when the password is right, else None (same work for unknown names)."""
    with engine.connect() as conn:
        row = conn.execute(select(account).where(account.c.username == username)).mappings().first()
    stored = row["password_hash"] if row else _DUMMY_HASH
    try:
        _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return None
    return _account(row) if row else None


def get_account(engine: Engine, username: str) -> Account | None:
    with engine.connect() as conn:
        row = conn.execute(select(account).where(account.c.username == username)).mappings().first()
    return _account(row) if row else None


def _account(row: Any) -> Account:
    return Account(row["username"], row["display_name"], row["actor_id"], row["unit_id"], row["role"])


def get_setting(engine: Engine, key: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(select(setting.c.value).where(setting.c.key == key)).scalar()


def put_setting(engine: Engine, key: str, value: str) -> None:
    with engine.begin() as conn:
        if conn.execute(select(setting.c.key).where(setting.c.key == key)).first():
            conn.execute(update(setting).where(setting.c.key == key).values(value=value))
        else:
            conn.execute(insert(setting), [{"key": key, "value": value}])


def record_submission(engine: Engine, row: dict[str, Any]) -> None:
    with engine.begin() as conn:
        conn.execute(insert(submission), [{**row, "submitted_at": dt.datetime.now(dt.UTC)}])


def recent_submissions(
    engine: Engine, *, unit_id: str | None = None, limit: int = 500
) -> list[dict[str, Any]]:
    """Newest first; optionally only those one unit sent."""
    query = select(submission).order_by(submission.c.submitted_at.desc()).limit(limit)
    if unit_id:
        query = query.where(submission.c.unit_id == unit_id)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def start_session(engine: Engine, username: str) -> str:
    """A new session of `username`; its id goes in the signed cookie."""
    sid = secrets.token_urlsafe(32)
    with engine.begin() as conn:
        conn.execute(insert(session).values(sid=sid, username=username, started_at=dt.datetime.now(dt.UTC)))
    return sid


def session_user(engine: Engine, sid: str) -> str | None:
    """Whose session `sid` is, while it is open and younger than SESSION_HOURS."""
    with engine.connect() as conn:
        row = conn.execute(select(session).where(session.c.sid == sid)).first()
    if row is None or row.ended_at is not None:
        return None
    started = row.started_at if row.started_at.tzinfo else row.started_at.replace(tzinfo=dt.UTC)
    if dt.datetime.now(dt.UTC) - started > dt.timedelta(hours=SESSION_HOURS):
        return None
    return str(row.username)


def end_session(engine: Engine, sid: str | None) -> None:
    if not sid:
        return
    with engine.begin() as conn:
        conn.execute(
            update(session)
            .where(session.c.sid == sid, session.c.ended_at.is_(None))
            .values(ended_at=dt.datetime.now(dt.UTC))
        )
