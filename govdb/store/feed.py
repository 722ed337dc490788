"""The master change feed: every change numbered in commit order, read from a cursor.

Writers call `record_changes` inside the transaction that changes master. It takes the lock of
the one `changehead` row (an UPDATE, held until commit on PostgreSQL; SQLite has one writer at a
time anyway) and numbers the changes after the head, so a transaction that commits later always
holds larger seqs: a reader that has seen seq N never later finds a smaller one (no gaps, no
repeats), and a rolled-back writer gives its seqs back with its head update.

The feed says what changed (entity, field, insert / update / delete, valid from, what caused it),
never the value: values are read through the audited reads. A bulk load tells of each entity it
inserted once, with no field (the whole entity is new); every other writer, one change per field.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

import polars as pl
from sqlalchemy import Connection, Engine, select, text

from govdb.errors import StateError
from govdb.store.bulk import Constant, insert_frame
from govdb.store.master import MasterChange

CHANGE = MasterChange.__table__  # type: ignore[attr-defined]
COLUMNS = ("entity_kind", "entity_id", "field", "op", "valid_from", "cause", "cause_id")
SCHEMA = {c: pl.String for c in COLUMNS}
MAX_PAGE = 100_000
CURSOR = re.compile(r"[0-9]{1,18}")  # ASCII digits only (int() would take ٣), within BIGINT
KINDS = ("person", "credential", "enterprise", "place")


def change_rows(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Changes as the frame `record_changes` takes (dates as ISO text)."""

    def day(value: Any) -> str | None:
        return value.isoformat() if isinstance(value, dt.date) else value

    return pl.DataFrame(
        [{**{c: r.get(c) for c in COLUMNS}, "valid_from": day(r.get("valid_from"))} for r in rows],
        schema=SCHEMA,
    )


def record_changes(conn: Connection, changes: pl.DataFrame, at: dt.datetime) -> int:
    """Number `changes` after the feed's head and append them, in the caller's transaction."""
    if changes.is_empty():
        return 0
    n = changes.height
    base = conn.execute(
        text("UPDATE changehead SET seq = seq + :n WHERE id = 1 RETURNING seq"), {"n": n}
    ).scalar_one_or_none()
    if base is None:
        raise StateError("the change feed has no head row; run `govdb init` to upgrade the master store")
    first = int(base) - n + 1
    frame = changes.select(*COLUMNS).with_columns(pl.int_range(first, first + n, dtype=pl.Int64).alias("seq"))
    # A column with one value for every change (a bulk load's kind, op and cause) goes in as a
    # constant: a million loaded people then bind two values each instead of eight.
    constants: dict[str, Constant] = {"at": at}
    if n > 1:
        constants |= {c: frame.get_column(c)[0] for c in COLUMNS if frame.get_column(c).n_unique() == 1}
    insert_frame(conn, CHANGE, frame.drop(*(c for c in constants if c != "at")), constants)
    return n


@dataclass(frozen=True)
class Change:
    """One master change, as a department or programme reads it from the feed. `field` is None
    where the whole entity was inserted at once (a bulk load)."""

    seq: int
    at: dt.datetime
    entity_kind: str
    entity_id: str
    field: str | None
    op: str
    valid_from: dt.date | None
    cause: str
    cause_id: str | None


@dataclass(frozen=True)
class ChangePage:
    """Changes after a cursor, and the cursor to read on from."""

    changes: list[Change]
    cursor: str
    more: bool


def parse_cursor(cursor: str | int | None) -> int:
    """A cursor is the last seq read, as text ("0" or None: from the beginning)."""
    if cursor is None or cursor == "":
        return 0
    text_ = str(cursor).strip()
    if not CURSOR.fullmatch(text_):
        raise StateError(
            f"cursor {text_[:40]!r} is not a cursor; use 0 for the beginning or the cursor a "
            "previous read returned (digits 0-9, at most 18)"
        )
    return int(text_)


def read_changes(
    master: Engine, since: str | int | None = None, *, limit: int = 1000, kinds: list[str] | None = None
) -> ChangePage:
    """The changes after `since`, oldest first, at most `limit` (only of `kinds` when given)."""
    after = parse_cursor(since)
    unknown = sorted(set(kinds or []) - set(KINDS))
    if unknown:
        raise StateError(f"entity kind(s) {unknown} are not among {list(KINDS)}")
    if not 1 <= limit <= MAX_PAGE:
        raise StateError(f"limit {limit} is out of range; ask for 1 to {MAX_PAGE} changes at a time")
    query = select(CHANGE).where(CHANGE.c.seq > after).order_by(CHANGE.c.seq).limit(limit + 1)
    with master.connect() as conn:
        rows = conn.execute(query).all()
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = str(rows[-1].seq) if rows else str(after)
    changes = [
        Change(r.seq, r.at, r.entity_kind, r.entity_id, r.field, r.op, r.valid_from, r.cause, r.cause_id)
        for r in rows
        if not kinds or r.entity_kind in kinds
    ]
    return ChangePage(changes, cursor, more)
