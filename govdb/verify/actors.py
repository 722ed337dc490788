"""Resolving actors: their unit's level, jurisdiction and department, looked up in master.

`Actor` and `ResolvedActor` live in the bottom layer (govdb.base) and are re-exported here.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlmodel import Session

from govdb.base.actors import Actor, ResolvedActor
from govdb.errors import NotFoundError, StateError
from govdb.store.master import OrgUnit

__all__ = ["ACTOR_MAX", "Actor", "ResolvedActor", "resolve"]

ACTOR_MAX = 64
_TABLE = OrgUnit.__table__  # type: ignore[attr-defined]
UNIT = tuple(_TABLE.c[c] for c in ("unit_id", "name", "level", "division_code", "department"))


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
    # A plain select, not `session.get`: resolved before every batch of decisions, and the ORM's
    # object (identity map, instance state) cost more than the look-up.
    unit = session.connection().execute(select(*UNIT).where(UNIT[0] == actor.unit_id)).first()
    if unit is None:
        raise NotFoundError(
            f"unit {actor.unit_id[:80]!r} of actor {actor.actor_id!r} is not registered; "
            "list units with `govdb units` (ids look like village:<12-digit code>, street:<9-digit code>, "
            "department:<name>:<county code>)"
        )
    return ResolvedActor(
        actor.actor_id, unit.unit_id, unit.name, unit.level, unit.division_code, unit.department
    )
