"""What every correction of master writes: a field's new current value with its lineage, and the
change feed's rows, in the caller's master transaction.

Entities are rows of their table (person, credential, enterprise, place); a field is a column of
it, or for a credential one of its attributes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Date, Table, insert, select, update

from govdb.errors import NotFoundError, StateError
from govdb.store.feed import change_rows, record_changes
from govdb.store.master import Credential, Enterprise, FieldHistory, Person, Place

HISTORY: Table = FieldHistory.__table__  # type: ignore[attr-defined]
TABLES: dict[str, tuple[Table, str]] = {
    "person": (Person.__table__, "person_id"),  # type: ignore[attr-defined]
    "credential": (Credential.__table__, "credential_id"),  # type: ignore[attr-defined]
    "enterprise": (Enterprise.__table__, "enterprise_id"),  # type: ignore[attr-defined]
    "place": (Place.__table__, "place_id"),  # type: ignore[attr-defined]
}
NOT_FIELDS = {"created_at", "updated_at"}


@dataclass(frozen=True)
class Where:
    """An entity and the division master says it is in (for jurisdiction)."""

    kind: str
    entity_id: str
    division_code: str | None
    person_id: str | None  # the person it is about (a credential's holder), for audit and flags


def entity_table(kind: str) -> tuple[Table, str]:
    try:
        return TABLES[kind]
    except KeyError:
        raise StateError(f"entity kind {kind!r} is not one of {sorted(TABLES)}") from None


def locate(conn: Connection, kind: str, entity_id: str) -> Where:
    """Where master places the entity (a credential: its holder's residence)."""
    table, key = entity_table(kind)
    row = conn.execute(select(table).where(table.c[key] == entity_id)).first()
    if row is None:
        raise NotFoundError(f"{kind} {entity_id!r} is not in master")
    if kind == "credential":
        person = TABLES["person"][0]
        holder = conn.execute(
            select(person.c.division_code).where(person.c.person_id == row.person_id)
        ).scalar_one_or_none()
        return Where(kind, entity_id, holder, row.person_id)
    division = getattr(row, "division_code", None)
    return Where(kind, entity_id, division, entity_id if kind == "person" else None)


def column_value(kind: str, field: str, value: str | None) -> Any:
    """A lineage text value as its column stores it (dates as dates)."""
    if value is None:
        return None
    table, _ = entity_table(kind)
    column = table.c.get(field)
    if column is not None and isinstance(column.type, Date):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise StateError(f"{field} {value!r} is not a date written as YYYY-MM-DD") from None
    return value


def set_entity_field(conn: Connection, kind: str, entity_id: str, field: str, value: str | None) -> None:
    """Write one field of the entity row (a credential's other fields live in its attributes)."""
    table, key = entity_table(kind)
    if field in table.c and field not in NOT_FIELDS and field != key:
        values: dict[str, Any] = {field: column_value(kind, field, value)}
        if "updated_at" in table.c:
            values["updated_at"] = dt.datetime.now(dt.UTC)
        conn.execute(update(table).where(table.c[key] == entity_id).values(values))
        return
    if kind != "credential":
        raise StateError(f"{kind} has no field {field!r}")
    attributes = dict(
        conn.execute(select(table.c.attributes).where(table.c[key] == entity_id)).scalar_one() or {}
    )
    if value is None:
        attributes.pop(field, None)
    else:
        attributes[field] = value
    conn.execute(update(table).where(table.c[key] == entity_id).values(attributes=attributes))


def current_row(conn: Connection, kind: str, entity_id: str, field: str) -> Any:
    return conn.execute(
        select(HISTORY)
        .where(
            HISTORY.c.entity_kind == kind,
            HISTORY.c.entity_id == entity_id,
            HISTORY.c.field == field,
            HISTORY.c.valid_to.is_(None),
            HISTORY.c.retracted_at.is_(None),
        )
        .order_by(HISTORY.c.id.desc())
    ).first()


def supersede(
    conn: Connection,
    kind: str,
    entity_id: str,
    field: str,
    value: str | None,
    *,
    valid_from: dt.date,
    now: dt.datetime,
    source: str,
    checks: list[dict[str, Any]],
    event_ids: list[int] | None = None,
    proposal_id: str | None = None,
) -> None:
    """Make `value` the field's current value from `valid_from`: close the current lineage row
    (checked: a concurrent writer who closed it first makes this fail), add the new one, write
    the entity."""
    current = current_row(conn, kind, entity_id, field)
    if current is not None:
        start = max(valid_from, current.valid_from) if current.valid_from else valid_from
        closed = conn.execute(
            update(HISTORY)
            .where(HISTORY.c.id == current.id, HISTORY.c.valid_to.is_(None))
            .values(valid_to=start, closed_at=now)
        ).rowcount
        if closed != 1:
            raise StateError(f"the {field} of {kind} {entity_id} changed meanwhile; look again and retry")
        valid_from = start
    conn.execute(
        insert(HISTORY),
        [
            {
                "entity_kind": kind,
                "entity_id": entity_id,
                "field": field,
                "value": value,
                "valid_from": valid_from,
                "valid_to": None,
                "recorded_at": now,
                "source": source,
                "proposal_id": proposal_id,
                "bulk_load_id": None,
                "event_ids": event_ids or [],
                "checks": checks,
            }
        ],
    )
    set_entity_field(conn, kind, entity_id, field, value)


def feed(
    conn: Connection,
    changes: list[tuple[str, str, str | None, str, dt.date | None]],
    cause: str,
    cause_id: str,
    now: dt.datetime,
) -> None:
    """Record (kind, entity id, field, op, valid from) changes in the feed."""
    record_changes(
        conn,
        change_rows(
            [
                {
                    "entity_kind": kind,
                    "entity_id": entity_id,
                    "field": field,
                    "op": op,
                    "valid_from": valid_from,
                    "cause": cause,
                    "cause_id": cause_id,
                }
                for kind, entity_id, field, op, valid_from in changes
            ]
        ),
        now,
    )


def actor_text(actor_id: str, unit_id: str) -> str:
    return f"{actor_id}@{unit_id}"[:140]
