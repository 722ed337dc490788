"""Link standardized events to master people.

This first model uses only the hard rule that decides most service-hall records: a valid
resident ID equal on both sides is the same person; a record whose valid ID is not in master is
someone new. Every link keeps its explanation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, select

from govdb.store.master import Person

CHUNK = 5000
PERSON_FIELDS = ("name", "id_number", "gender", "birth_date", "phone", "address", "division_code")


@dataclass(frozen=True)
class LinkResult:
    """The person an event is about (None: nobody in master), with why."""

    event_id: int
    person_id: str | None
    decision: str  # "match" / "new" / "unlinkable"
    score: float
    explanation: dict[str, Any]
    master: dict[str, Any] | None = None


@dataclass
class LinkReport:
    linked: int = 0
    new: int = 0
    unlinkable: int = 0
    results: list[LinkResult] = field(default_factory=list)


def master_people_by_id(master: Engine, id_numbers: list[str]) -> dict[str, dict[str, Any]]:
    """Master people (as dicts of standard fields) for these ID numbers, fetched in chunks."""
    table = Person.__table__  # type: ignore[attr-defined]
    found: dict[str, dict[str, Any]] = {}
    with master.connect() as conn:
        for start in range(0, len(id_numbers), CHUNK):
            chunk = id_numbers[start : start + CHUNK]
            for row in conn.execute(select(table).where(table.c.id_number.in_(chunk))).mappings():
                found[row["id_number"]] = dict(row)
    return found


def link_records(master: Engine, records: list[tuple[int, dict[str, Any]]]) -> LinkReport:
    """Link (event_id, standardized fields) pairs against the master store."""
    ids = sorted({r["id_number"] for _, r in records if r.get("id_number")})
    people = master_people_by_id(master, ids)
    report = LinkReport()
    for event_id, rec in records:
        id_number = rec.get("id_number")
        if not id_number:
            report.unlinkable += 1
            report.results.append(
                LinkResult(event_id, None, "unlinkable", 0.0, {"id_number": {"level": "missing or invalid"}})
            )
            continue
        person = people.get(id_number)
        if person is None:
            report.new += 1
            report.results.append(
                LinkResult(
                    event_id,
                    None,
                    "new",
                    0.0,
                    {"id_number": {"level": "valid, not in master", "rule": "new"}},
                )
            )
        else:
            report.linked += 1
            report.results.append(
                LinkResult(
                    event_id,
                    person["person_id"],
                    "match",
                    1.0,
                    {"id_number": {"level": "exact", "rule": "valid ID equal on both sides"}},
                    person,
                )
            )
    return report
