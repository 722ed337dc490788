"""Who is acting: an actor names a person and the unit they act for.

Resolving an actor against the master store's org units (their level, jurisdiction and
department) is `govdb.verify.actors.resolve`; the two types live here so every layer that
checks jurisdiction or reach (verify, access, serve) can name them without importing verify.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Actor:
    """A person acting for a unit: `Actor("li.ming", "village:440605011001")`."""

    actor_id: str
    unit_id: str


@dataclass(frozen=True)
class ResolvedActor:
    """An actor with their unit's level, jurisdiction (division code prefix) and department."""

    actor_id: str
    unit_id: str
    unit_name: str
    level: str
    division_code: str
    department: str | None
