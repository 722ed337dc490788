"""Serving a district: its divisions (from the shipped table) and its checking units, in master.

Every village/residents' committee and street/township office gets a unit; every department in
the verification rules gets one office for the county. Serving again replaces the county's
divisions and adds the units that are missing (a unit is never dropped: tasks name it).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import sqlmodel
from sqlalchemy import Connection, Engine, delete, insert, select
from sqlmodel import Session

from govdb.errors import ConfigError
from govdb.rulebook import Rulebook
from govdb.standards import divisions
from govdb.store.engine import store_errors
from govdb.store.master import BulkLoad, Division, OrgUnit

DIVISION = Division.__table__  # type: ignore[attr-defined]
UNIT = OrgUnit.__table__  # type: ignore[attr-defined]
BULK_LOAD = BulkLoad.__table__  # type: ignore[attr-defined]
LEVEL_UNITS = {5: "village", 4: "street"}  # division level -> the checking unit it has


@dataclass(frozen=True)
class DistrictReport:
    """What `serve_district` registered."""

    county_code: str
    county_name: str
    divisions: int
    villages: int
    streets: int
    departments: int


def serve_district(master: Engine, rules: Rulebook, county_code: str) -> DistrictReport:
    """Register a county's divisions and checking units in master (one transaction)."""
    county = _county(county_code)
    rows = [r for r in divisions.subtree(county.code, scheme="nbs").iter_rows(named=True) if r["level"] >= 3]
    units = _division_units(rows) + _department_units(rules, county)
    with store_errors(master), master.begin() as conn:
        _replace_divisions(conn, divisions.significant_prefix(county.code), rows)
        _add_missing_units(conn, units)
        _record_load(conn, len(rows))
    levels = [u["level"] for u in units]
    return DistrictReport(
        county.code,
        county.name,
        len(rows),
        levels.count("village"),
        levels.count("street"),
        levels.count("department"),
    )


def _county(code: str) -> divisions.DivisionInfo:
    """The county-level division of `code`; any other level is refused."""
    county = divisions.lookup(code)
    if county.level != 3:
        raise ConfigError(
            f"{code} is {county.name}, a level-{county.level} division; serve a county-level code (6 digits)"
        )
    return county


def _division_units(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A checking unit for every village/residents' committee and street/township office."""
    return [
        {
            "unit_id": f"{LEVEL_UNITS[r['level']]}:{r['code']}",
            "name": r["name"],
            "level": LEVEL_UNITS[r["level"]],
            "division_code": r["code"],
            "department": None,
        }
        for r in rows
        if r["level"] in LEVEL_UNITS
    ]


def _department_units(rules: Rulebook, county: divisions.DivisionInfo) -> list[dict[str, Any]]:
    """One office of the county for every department of the verification rules."""
    return [
        {
            "unit_id": f"department:{dept}:{county.code}",
            "name": f"{county.name}{spec.name}",
            "level": "department",
            "division_code": county.code,
            "department": dept,
        }
        for dept, spec in rules.verification.departments.items()
    ]


def _replace_divisions(conn: Connection, prefix: str, rows: list[dict[str, Any]]) -> None:
    conn.execute(delete(DIVISION).where(DIVISION.c.code.startswith(prefix)))
    keep = ("code", "name", "level", "parent_code", "scheme")
    conn.execute(insert(DIVISION), [{k: r[k] for k in keep} for r in rows])


def _add_missing_units(conn: Connection, units: list[dict[str, Any]]) -> None:
    known = set(conn.execute(select(UNIT.c.unit_id)).scalars())
    fresh = [u for u in units if u["unit_id"] not in known]
    if fresh:
        conn.execute(insert(UNIT), fresh)


def _record_load(conn: Connection, rows: int) -> None:
    """The load in master's bulk-load ledger, naming the division table's version."""
    conn.execute(
        insert(BULK_LOAD),
        [
            {
                "load_id": str(uuid.uuid4()),
                "entity_kind": "division",
                "rows": rows,
                "source": f"govdb division table {divisions.division_metadata()['version']}",
                "loaded_at": dt.datetime.now(dt.UTC),
            }
        ],
    )


def registered_units(master: Engine, level: str | None = None) -> list[OrgUnit]:
    """Registered checking units (optionally of one level), by id."""
    with Session(master) as ms:
        query = sqlmodel.select(OrgUnit).order_by(sqlmodel.col(OrgUnit.unit_id))
        if level:
            query = query.where(OrgUnit.level == level)
        return list(ms.exec(query).all())
