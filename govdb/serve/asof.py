"""As-of queries over the bitemporal lineage: any field of any entity at a valid time, as master
recorded it at a record time.

Each lineage row says when its value held in the world (valid_from .. valid_to) and when master
learned it (recorded_at); `closed_at` says when valid_to was set and `retracted_at` when a revert
withdrew the row. So "what did master say on 1 March about where this person lived on 1 January"
is: the rows recorded by 1 March and not yet withdrawn then, with each one's end as it was known
on 1 March, that held on 1 January; the latest recorded wins.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select
from sqlmodel import Session

from govdb.access.guard import Attempt, AuditContext, Outcome, guarded_read
from govdb.access.policy import check_reach
from govdb.base.actors import Actor
from govdb.base.clock import local_today, utcnow
from govdb.errors import NotFoundError, StateError
from govdb.store.master import Credential, Enterprise, FieldHistory, Person, Place

HISTORY = FieldHistory.__table__  # type: ignore[attr-defined]
KINDS: dict[str, Any] = {"person": Person, "credential": Credential, "enterprise": Enterprise, "place": Place}


@dataclass(frozen=True)
class AsOfValue:
    """One field's value at the valid time, as recorded at the record time, with its lineage."""

    field: str
    value: str | None
    masked: bool
    valid_from: dt.date | None
    valid_to: dt.date | None  # as known at the record time
    recorded_at: dt.datetime
    source: str
    proposal_id: str | None


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _rank(row: Any) -> tuple[dt.date, dt.datetime, int]:
    """Of two rows that both held on a day, the one that began later is the more precise knowledge
    (a past value recorded beneath a longer one); of two that began together, the later record."""
    return (row.valid_from or dt.date.min, _aware(row.recorded_at), row.id or 0)


def rows_as_of(rows: list[Any], valid_at: dt.date, recorded_at: dt.datetime) -> dict[str, Any]:
    """The lineage row of each field that held on `valid_at` as recorded at `recorded_at`."""
    known = _aware(recorded_at)
    best: dict[str, tuple[Any, dt.date | None]] = {}
    for row in rows:
        if _aware(row.recorded_at) > known:
            continue
        if row.retracted_at is not None and _aware(row.retracted_at) <= known:
            continue
        closed_then = row.valid_to is not None and (row.closed_at is None or _aware(row.closed_at) <= known)
        valid_to = row.valid_to if closed_then else None
        if row.valid_from is not None and row.valid_from > valid_at:
            continue
        if valid_to is not None and valid_at >= valid_to:
            continue
        held = best.get(row.field)
        if held is None or _rank(row) > _rank(held[0]):
            best[row.field] = (row, valid_to)
    return {name: (row, valid_to) for name, (row, valid_to) in best.items()}


def lineage_rows(ms: Session, kind: str, entity_id: str) -> list[Any]:
    conn = ms.connection()
    return list(
        conn.execute(
            select(HISTORY)
            .where(HISTORY.c.entity_kind == kind, HISTORY.c.entity_id == entity_id)
            .order_by(HISTORY.c.id)
        ).all()
    )


def _policy_name(kind: str, credential_kind: str | None, name: str) -> str:
    if kind == "person":
        return name
    if kind == "credential":
        return f"credential.{credential_kind}.{name}"
    return f"{kind}.{name}"


def entity_as_of(
    master: Engine,
    ctx: AuditContext,
    *,
    kind: str,
    entity_id: str,
    actor: Actor,
    purpose: str,
    valid_at: dt.date | None = None,
    recorded_at: dt.datetime | None = None,
) -> list[AsOfValue]:
    """Every field of one entity that held on `valid_at` (default today), as master recorded it at
    `recorded_at` (default now); a read of personal data like any other (purpose, county, audited,
    masked)."""
    if kind not in KINDS:
        raise StateError(f"entity kind {kind!r} is not one of {sorted(KINDS)}")
    when = recorded_at or utcnow()
    day = valid_at or local_today()

    def read(ms: Session, attempt: Attempt) -> tuple[list[AsOfValue], Outcome]:
        model = KINDS[kind]
        rows = lineage_rows(ms, kind, entity_id)
        entity = ms.get(model, entity_id)
        credential_kind = None
        division = None
        if entity is not None:
            holder = ms.get(Person, entity.person_id) if kind == "credential" else entity
            division = getattr(holder, "division_code", None)
            credential_kind = getattr(entity, "kind", None) if kind == "credential" else None
            attempt.subjects.append(getattr(holder, "person_id", None) or entity_id)
        else:  # also when a revert removed it: whether it ever existed is not said
            raise NotFoundError(f"{kind} {str(entity_id)[:40]!r} is not in master")
        if kind != "person":
            attempt.subject_kind = "person" if kind == "credential" else kind
        check_reach(attempt.who, division, kind)
        shown: list[str] = []
        masked: list[str] = []
        out: list[AsOfValue] = []
        for name, (row, valid_to) in sorted(rows_as_of(rows, day, when).items()):
            policy = _policy_name(kind, credential_kind, name)
            if not attempt.grant.allows(policy):
                continue
            value, is_masked = attempt.grant.show(policy, row.value)
            (masked if is_masked else shown).append(policy)
            out.append(
                AsOfValue(
                    name,
                    value,
                    is_masked,
                    row.valid_from,
                    valid_to,
                    row.recorded_at,
                    row.source,
                    row.proposal_id,
                )
            )
        return out, Outcome(shown, masked)

    result, _ = guarded_read(master, ctx, actor, purpose=purpose, action="as_of", query=None, read=read)
    return result
