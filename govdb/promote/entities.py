"""Survivorship of enterprises and places within a promotion chunk (mixed into `Chunk`).

The same steps as for people: read the master rows the chunk touches (enterprises by id and
unified social credit code, places by id), apply each proposal in memory (a new entity, or the
fields that differ, a less trusted value than master's becoming a conflict for the field's owner
per rules/survivorship/<entity>.yaml), lineage through `Chunk._set` (FieldHistory rows of entity
kind 'enterprise' or 'place'), then bulk writes. After the chunk is written, people and
enterprises reference the master building at their standardized address (`attach_places`).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, func, select, update

from govdb.store.bulk import among, id_chunks, insert_rows
from govdb.store.master import Enterprise, Person, Place

if TYPE_CHECKING:
    from govdb.base.ids import ClusteredIds
    from govdb.promote.survivorship import PromoteReport, _Current

ENTERPRISE = Enterprise.__table__  # type: ignore[attr-defined]
PLACE = Place.__table__  # type: ignore[attr-defined]
PERSON = Person.__table__  # type: ignore[attr-defined]
ENTERPRISE_COLUMNS = (
    "uscc",
    "name",
    "legal_representative",
    "address",
    "phone",
    "business_scope",
    "status",
    "division_code",
)
PLACE_COLUMNS = ("kind", "name", "address", "road", "building", "division_code")
TABLES = {
    "enterprise": (ENTERPRISE, "enterprise_id", ENTERPRISE_COLUMNS),
    "place": (PLACE, "place_id", PLACE_COLUMNS),
}


def _text(value: Any) -> str | None:
    return None if value is None else (value.isoformat() if isinstance(value, dt.date) else str(value))


def place_key(row: dict[str, Any]) -> tuple[str, str, str]:
    """What makes two places one: a road by its name, anything else by its address, in a county."""
    kind = str(row.get("kind") or "")
    what = row.get("name") if kind == "road" else row.get("address")
    return (kind, str(what or ""), str(row.get("division_code") or "")[:6])


class EntityWork:
    """Enterprise and place state of a promotion chunk; `Chunk` supplies `_set`, `_conflict`,
    `current`, `rules`, `report`, `now` and `new_id`."""

    if TYPE_CHECKING:
        report: PromoteReport
        now: dt.datetime
        new_id: ClusteredIds
        current: dict[tuple[str, str, str], _Current]
        rules: Any

        def _set(self, *args: Any) -> bool: ...
        def read_current(
            self, conn: Connection, kind: str, ids: list[str], fields: list[str] | None = None
        ) -> None: ...
        def _conflict(self, *args: Any) -> None: ...

    def _init_entities(self) -> None:
        self.entities: dict[str, dict[str, dict[str, Any]]] = {"enterprise": {}, "place": {}}
        self.new_entities: dict[str, dict[str, dict[str, Any]]] = {"enterprise": {}, "place": {}}
        self.changed_entities: dict[str, set[str]] = {"enterprise": set(), "place": set()}
        self.by_uscc: dict[str, str] = {}
        self.by_place: dict[tuple[str, str, str], str] = {}

    # --- reads ---------------------------------------------------------------------------

    def _read_entities(self, conn: Connection, proposals: list[dict[str, Any]]) -> None:

        for kind, (table, key, columns) in TABLES.items():
            mine = [p for p in proposals if p["entity_kind"] == kind]
            ids = sorted({p["entity_id"] for p in mine if p["entity_id"]})
            wanted = [(table.c[key], ids)]
            if kind == "enterprise":
                codes = sorted({p["payload"]["uscc"] for p in mine if p["payload"].get("uscc")})
                wanted.append((table.c.uscc, codes))
            else:  # a new building at an address master has, a road name master has: the same place
                fresh = [p["payload"] for p in mine if not p["entity_id"]]
                wanted.append(
                    (table.c.address, sorted({str(p["address"]) for p in fresh if p.get("address")}))
                )
                wanted.append((table.c.name, sorted({str(p["name"]) for p in fresh if p.get("name")})))
            for column, values in wanted:
                for chunk in id_chunks(conn, values):
                    for r in conn.execute(select(table.c[key], *(table.c[c] for c in columns)).where(
                        among(conn, column, chunk)
                    )):  # fmt: skip
                        self._entity_row(kind, dict(r._mapping))
            self.read_current(conn, kind, sorted(self.entities[kind]))

    def _entity_row(self, kind: str, row: dict[str, Any]) -> None:
        key = TABLES[kind][1]
        self.entities[kind][row[key]] = row
        if kind == "enterprise":
            self.by_uscc[row["uscc"]] = row[key]
        elif place_key(row)[1]:
            self.by_place.setdefault(place_key(row), row[key])

    # --- working out ---------------------------------------------------------------------

    def _entity_trust(self, kind: str, name: str, source: str | None) -> int:
        rules = self.rules.survivorship_of(kind)
        rule = rules.fields.get(name)
        if rule is None or source is None:
            return rules.default_trust
        return rule.trust.get(source, rules.default_trust)

    def _entity(self, proposal: dict[str, Any], valid_from: dt.date, checks: str) -> str:
        """Apply an enterprise or place proposal; returns the entity id."""
        from govdb.promote.survivorship import lineage_source

        kind = proposal["entity_kind"]
        _, key, columns = TABLES[kind]
        payload = {k: v for k, v in proposal["payload"].items() if k in columns}
        rows = self.entities[kind]
        entity_id = proposal["entity_id"] if proposal["entity_id"] in rows else None
        # A registration checked as someone new whose code master meanwhile holds was checked by the
        # units of the place it claimed, not of the enterprise's: it is compared (比对), not applied.
        compare_only = False
        if entity_id is None and kind == "enterprise" and payload.get("uscc"):
            entity_id = self.by_uscc.get(payload["uscc"])
            compare_only = entity_id is not None
        elif entity_id is None and kind == "place" and place_key(payload)[1]:
            entity_id = self.by_place.get(place_key(payload))
            compare_only = entity_id is not None
        if entity_id is None:
            entity_id = self.new_id("E" if kind == "enterprise" else "L")
            row = {key: entity_id, **dict.fromkeys(columns), **payload}
            self._entity_row(kind, row)
            self.new_entities[kind][entity_id] = row
            for name, value in payload.items():
                self._set(proposal, kind, entity_id, name, value, valid_from, checks)
            if kind == "enterprise":
                self.report.enterprises_created += 1
            else:
                self.report.places_created += 1
            return entity_id
        row = rows[entity_id]
        source = lineage_source(proposal)
        survivorship = self.rules.survivorship_of(kind)
        for name, value in payload.items():
            old = _text(row.get(name))
            if old == _text(value) or name in ("kind", "uscc"):
                continue
            current = self.current.get((kind, entity_id, name))
            if compare_only or (
                old is not None
                and current
                and self._entity_trust(kind, name, current.source) > self._entity_trust(kind, name, source)
            ):
                rule = survivorship.fields.get(name)
                self._conflict(
                    proposal,
                    kind,
                    entity_id,
                    name,
                    (old, current.source if current else "master"),
                    _text(value),
                    rule.owner if rule else None,
                )
                continue
            if self._set(proposal, kind, entity_id, name, value, valid_from, checks):
                row[name] = value
                if entity_id not in self.new_entities[kind]:
                    self.changed_entities[kind].add(entity_id)
                self.report.fields_updated += 1
        return entity_id

    # --- writes --------------------------------------------------------------------------

    def _write_entities(self, conn: Connection) -> None:
        for kind, (table, key, columns) in TABLES.items():
            if self.new_entities[kind]:
                insert_rows(
                    conn,
                    table,
                    [
                        {**r, "created_at": self.now, "updated_at": self.now}
                        for r in self.new_entities[kind].values()
                    ],
                )
            changed = sorted(self.changed_entities[kind])
            if changed:
                conn.execute(
                    update(table)
                    .where(table.c[key] == bindparam("k_id"))
                    .values({**{c: bindparam(f"v_{c}") for c in columns}, "updated_at": self.now}),
                    [{"k_id": i, **{f"v_{c}": self.entities[kind][i][c] for c in columns}} for i in changed],
                )


def attach_places(
    conn: Connection, person_ids: list[str], enterprise_ids: list[str], addresses: list[str]
) -> int:
    """Set `place_id` of these people and enterprises, and of everyone at these (new building)
    addresses, to the master building at their standardized address (null when there is none):
    one correlated UPDATE per table and chunk, of the rows whose building differs (most changes
    leave it as it was: rewriting the row anyway cost PostgreSQL a new version of it and an entry
    in each of its indexes). Returns the rows whose place changed."""
    updated = 0
    for table, key, ids in ((PERSON, "person_id", person_ids), (ENTERPRISE, "enterprise_id", enterprise_ids)):
        building = (
            select(func.min(PLACE.c.place_id))
            .where(PLACE.c.kind == "building", PLACE.c.address == table.c.address)
            .scalar_subquery()
        )
        for column, values in ((table.c[key], ids), (table.c.address, addresses)):
            for chunk in id_chunks(conn, sorted(set(values))):
                updated += conn.execute(
                    update(table)
                    .where(among(conn, column, chunk), table.c.place_id.is_distinct_from(building))
                    .values(place_id=building)
                ).rowcount
    return updated
