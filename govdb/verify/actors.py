"""Resolving actors: their unit's level, jurisdiction and department, looked up in master.

`Actor` and `ResolvedActor` live in the bottom layer (govdb.base) and are re-exported here.
"""

from __future__ import annotations

from sqlmodel import Session

from govdb.base.actors import Actor, ResolvedActor
from govdb.errors import NotFoundError, StateError
from govdb.store.bulk import driver_fetch
from govdb.store.master import OrgUnit

__all__ = ["ACTOR_MAX", "Actor", "ResolvedActor", "resolve"]

ACTOR_MAX = 64
_TABLE = OrgUnit.__table__  # type: ignore[attr-defined]
UNIT = tuple(_TABLE.c[c] for c in ("unit_id", "name", "level", "division_code", "department"))
_COLUMNS = ", ".join(c.name for c in UNIT)


def resolve(session: Session, actor: Actor) -> ResolvedActor:
    """Look the actor's unit up in the master store's org units; every decision names a person."""
    if not isinstance(actor.actor_id, str) or not actor.actor_id.strip():
        raise StateError(
            f"actor id {actor.actor_id!r} is empty; every decision and read names the person acting"
        )
    if "\x00" in actor.actor_id:
        raise StateError(f"actor id {actor.actor_id[:20]!r} holds a NUL character; name the person in text")
    if len(actor.actor_id) > ACTOR_MAX:
        raise StateError(f"actor id {actor.actor_id[:20]!r}... is longer than {ACTOR_MAX} characters")
    if not isinstance(actor.unit_id, str) or "\x00" in actor.unit_id:
        raise NotFoundError(f"unit {actor.unit_id!r} is not a unit id such as village:440605011001")
    # Through the driver, not `session.get` or a select: resolved before every batch of decisions
    # and every audited read, where the ORM's object or SQLAlchemy's statement cost several times
    # the look-up.
    conn = session.connection()
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    found = driver_fetch(
        conn, f"SELECT {_COLUMNS} FROM {_TABLE.name} WHERE unit_id = {mark}", (actor.unit_id,)
    )
    if not found:
        raise NotFoundError(
            f"unit {actor.unit_id[:80]!r} of actor {actor.actor_id!r} is not registered; "
            "list units with `govdb units` (ids look like village:<12-digit code>, street:<9-digit code>, "
            "department:<name>:<county code>)"
        )
    unit_id, name, level, division_code, department = found[0]
    return ResolvedActor(actor.actor_id, unit_id, name, level, division_code, department)
