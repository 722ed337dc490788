"""Survivorship and lineage of one promotion chunk, worked out in memory and written in bulk.

`Chunk` reads the master rows a chunk of approved proposals touches (people by id and ID number,
credentials, current lineage), applies each proposal (new person, field updates with source trust,
conflicts for the owner, credentials, bitemporal history), then writes everything with bulk
inserts and set-based updates in the caller's master transaction.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from sqlalchemy import Connection, bindparam, select, update

from govdb.base.clock import utcnow
from govdb.base.ids import ClusteredIds
from govdb.errors import StateError
from govdb.promote.entities import EntityWork
from govdb.rulebook.loader import Rulebook
from govdb.store.bulk import (
    among,
    fetch_among,
    id_chunks,
    insert_frame,
    insert_rows,
    result_processor,
    update_many,
)
from govdb.store.feed import record_changes
from govdb.store.master import Conflict, Credential, FieldHistory, Person, Promotion

PERSON_COLUMNS = ("id_number", "name", "gender", "birth_date", "phone", "address", "division_code")
PERSON = Person.__table__  # type: ignore[attr-defined]
HISTORY = FieldHistory.__table__  # type: ignore[attr-defined]
CREDENTIAL = Credential.__table__  # type: ignore[attr-defined]
PROMOTION = Promotion.__table__  # type: ignore[attr-defined]
CONFLICT = Conflict.__table__  # type: ignore[attr-defined]


@dataclass
class PromoteReport:
    promoted: int = 0
    people_created: int = 0
    fields_updated: int = 0
    past_values: int = 0  # changes dated before the value master holds: kept as history
    credentials: int = 0
    enterprises_created: int = 0
    places_created: int = 0
    places_referenced: int = 0  # people and enterprises whose place_id changed
    conflicts: int = 0
    completed_after_crash: int = 0
    keys_refreshed: int = 0  # people whose blocking keys were rewritten
    worked_beside: int = 0  # chunks worked out by the planning process, written as worked out
    promoted_ids: list[str] = field(default_factory=list)
    person_ids: list[str] = field(default_factory=list)  # people created or changed
    # Approved proposals with a value master cannot store (a NUL, ...), moved to `unpromotable`
    # so they block no promote: how many, their ids, and why (proposal id -> reason).
    set_aside: int = 0
    set_aside_ids: list[str] = field(default_factory=list)
    set_aside_reasons: dict[str, str] = field(default_factory=dict)

    def add(self, other: PromoteReport) -> None:
        """Count in what `other` (one chunk's report) counted."""
        for name, value in vars(other).items():
            mine = getattr(self, name)
            if isinstance(mine, dict):
                mine.update(value)
            elif isinstance(mine, list):
                mine.extend(value)
            else:
                setattr(self, name, mine + value)


def lineage_source(proposal: dict[str, Any]) -> str:
    """Who vouches for a value: the department its source proved to be (a registered source's
    token), else `unproven:<source name>`, which no survivorship rule trusts above the default
    and no reader can mistake for a department (invariant 9)."""
    return proposal["department"] or f"unproven:{proposal['source']}"


def _to_column(name: str, value: Any) -> Any:
    if name == "birth_date" and isinstance(value, str):
        return dt.date.fromisoformat(value)
    return value


def _text(value: Any) -> str | None:
    return None if value is None else (value.isoformat() if isinstance(value, dt.date) else str(value))


@dataclass
class _Current:
    """The current lineage row of one field: stored (id) or written by this chunk (row)."""

    source: str
    valid_from: dt.date | None
    id: int | None = None
    row: dict[str, Any] | None = None


class Chunk(EntityWork):
    """One chunk's reads of master and the writes it works out (enterprises and places: EntityWork)."""

    def __init__(self, rules: Rulebook, report: PromoteReport, fingerprint: str | None = None) -> None:
        self.rules, self.report = rules, report
        self.fingerprint = fingerprint or rules.fingerprint()  # the rulebook promoted under
        self.survivorship = rules.survivorship
        self.people: dict[str, dict[str, Any]] = {}  # person_id -> row (as it will be)
        self.by_id_number: dict[str, str] = {}
        self.new_people: dict[str, dict[str, Any]] = {}
        self.changed_people: dict[str, set[str]] = {}  # person_id -> the columns changed
        self.current: dict[tuple[str, str, str], _Current] = {}
        self.credentials: dict[tuple[str, str], dict[str, Any]] = {}
        self.new_credentials: dict[str, dict[str, Any]] = {}
        self.changed_credentials: set[str] = set()
        self.history: list[dict[str, Any]] = []
        self.closes: list[tuple[dt.date, int]] = []  # (valid to, lineage row id)
        self.conflicts: list[dict[str, Any]] = []
        self.promotions: list[dict[str, Any]] = []
        # Once sealed (`seal`): what `write` writes.
        self.history_table: pl.DataFrame | None = None
        self.promotion_table: pl.DataFrame | None = None
        self.person_updates: list[tuple[tuple[str, ...], list[tuple[Any, ...]]]] = []
        self.credential_updates: list[tuple[str, dict[str, Any]]] = []
        self.now = utcnow()
        self.new_id = ClusteredIds()  # the ids of what it creates, together in master's indexes
        self._init_entities()

    def seal(self) -> None:
        """Worked out: what `write` writes, as frames and row tuples, and nothing kept that it
        does not need (the rulebook, the report, master's rows as read, the current lineage). A
        chunk worked out in promote's planning process crosses to the writing one as that: rows
        of dicts cost more to pickle and unpickle than the chunk took to work out."""
        self.history_table = history_frame(self.history) if self.history else None
        # Only the columns that changed, people grouped by them: an UPDATE naming a column
        # rewrites that column's index entries even when the value is the same (a new phone
        # would move the person in the ID number, birth date and division indexes too).
        groups: dict[tuple[str, ...], list[str]] = {}
        for pid, names in self.changed_people.items():
            groups.setdefault(tuple(c for c in PERSON_COLUMNS if c in names), []).append(pid)
        self.person_updates = [
            (changed, [(*(self.people[pid][c] for c in changed), pid) for pid in sorted(pids)])
            for changed, pids in sorted(groups.items())
        ]
        self.credential_updates = [
            (c["credential_id"], c["attributes"])
            for c in self.credentials.values()
            if c["credential_id"] in self.changed_credentials
        ]
        self.promotion_table = pl.DataFrame(
            {
                "proposal_id": [p["proposal_id"] for p in self.promotions],
                "entity_kind": [p["entity_kind"] for p in self.promotions],
                "entity_id": [p["entity_id"] for p in self.promotions],
                "changes": [json.dumps(p["changes"], ensure_ascii=False) for p in self.promotions],
                "keys_refreshed": [p["keys_refreshed"] for p in self.promotions],
            },
            schema={
                "proposal_id": pl.String,
                "entity_kind": pl.String,
                "entity_id": pl.String,
                "changes": pl.String,
                "keys_refreshed": pl.Boolean,
            },
        )
        self.history, self.current, self.promotions, self.people = [], {}, [], {}
        self.by_id_number, self.credentials = {}, {}
        self.rules = self.survivorship = self.report = None  # type: ignore[assignment]

    def stamp(self, now: dt.datetime) -> None:
        """Record time is when the chunk is written, not when it was worked out: a chunk worked
        out ahead is written after the chunks before it, and its rows must not say otherwise."""
        self.now = now
        if self.history_table is not None:
            closed = pl.col("closed_at")
            self.history_table = self.history_table.with_columns(
                pl.when(closed.is_null()).then(closed).otherwise(pl.lit(now, pl.Datetime("us", "UTC")))
            )
        for row in (*self.conflicts, *self.new_credentials.values()):
            row["created_at"] = now

    # --- reads ---------------------------------------------------------------------------

    def read(self, conn: Connection, proposals: list[dict[str, Any]]) -> None:
        """Master rows these proposals touch: people (by id and ID number), credentials, lineage."""
        person_ids = {p["entity_id"] for p in proposals if p["entity_id"]}
        id_numbers = {
            p["payload"].get("id_number")
            for p in proposals
            if p["entity_kind"] == "person" and p["payload"].get("id_number")
        }
        names = ("person_id", *PERSON_COLUMNS)
        people = f"SELECT {', '.join(names)} FROM {PERSON.name} WHERE {{among}}"
        birth = result_processor(conn, PERSON.c.birth_date)
        at = names.index("birth_date")
        for column, ids in (("person_id", person_ids), ("id_number", id_numbers)):
            wanted = sorted(ids - set(self.people if column == "person_id" else self.by_id_number))
            for r in fetch_among(conn, people, column, wanted):
                row = dict(zip(names, r, strict=True))
                if birth is not None:
                    row["birth_date"] = birth(r[at])
                self._person_row(row)
        keys = {
            (p["payload"].get("kind"), p["payload"].get("number"))
            for p in proposals
            if p["entity_kind"] == "credential"
        }
        numbers = sorted({n for _, n in keys if n})
        for chunk in id_chunks(conn, numbers):
            for r in conn.execute(select(CREDENTIAL).where(among(conn, CREDENTIAL.c.number, chunk))):
                if (r.kind, r.number) in keys:
                    self.credentials[(r.kind, r.number)] = dict(r._mapping)
        entities = [("person", pid) for pid in self.people] + [
            ("credential", c["credential_id"]) for c in self.credentials.values()
        ]
        self.read_current(conn, "person", sorted(self.people), self._fields_changed(proposals))
        self.read_current(conn, "credential", sorted(e for k, e in entities if k == "credential"))
        self._read_entities(conn, proposals)

    def _fields_changed(self, proposals: list[dict[str, Any]]) -> list[str]:
        """The people's fields some proposal gives a value other than master's. No other field's
        current lineage is needed: a field the chunk sets on someone master holds is first set
        to a value other than master's (a county's chunk reads a third of the rows it did)."""
        fields: set[str] = set()
        for p in proposals:
            if p["entity_kind"] != "person":
                continue
            person = self.people.get(p["entity_id"]) if p["entity_id"] else None
            if person is None:
                held = self.by_id_number.get(p["payload"].get("id_number") or "")
                person = self.people.get(held) if held else None
            if person is not None:
                fields.update(
                    k
                    for k, v in p["payload"].items()
                    if k in PERSON_COLUMNS and _text(person.get(k)) != _text(v)
                )
        return sorted(fields)

    def read_current(
        self, conn: Connection, kind: str, ids: list[str], fields: list[str] | None = None
    ) -> None:
        """The current lineage row (source, valid from) of every field of these entities (or of
        these `fields`)."""
        if fields is not None and not fields:
            return
        among_fields = f" AND field IN ({', '.join('?' * len(fields))})" if fields else ""
        statement = (
            f"SELECT id, entity_id, field, source, valid_from FROM {HISTORY.name} "
            f"WHERE entity_kind = ? AND valid_to IS NULL{among_fields} AND {{among}}"
        )
        day = result_processor(conn, HISTORY.c.valid_from) or (lambda v: v)
        rows = fetch_among(conn, statement, "entity_id", ids, (kind, *(fields or ())))
        for row_id, entity_id, name, source, valid_from in sorted(rows):  # in id order: the last wins
            self.current[(kind, entity_id, name)] = _Current(source, day(valid_from), row_id)

    def _person_row(self, row: dict[str, Any]) -> None:
        self.people[row["person_id"]] = row
        self.by_id_number[row["id_number"]] = row["person_id"]

    # --- working out ---------------------------------------------------------------------

    def trust(self, field_name: str, source: str | None) -> int:
        rule = self.survivorship.fields.get(field_name)
        if rule is None or source is None:
            return self.survivorship.default_trust
        return rule.trust.get(source, self.survivorship.default_trust)

    def _history(
        self,
        proposal: dict[str, Any],
        kind: str,
        entity_id: str,
        name: str,
        value: Any,
        valid_from: dt.date,
        checks: str,
        valid_to: dt.date | None = None,
    ) -> dict[str, Any]:
        row = {
            "entity_kind": kind,
            "entity_id": entity_id,
            "field": name,
            "value": _text(value),
            "valid_from": valid_from,
            "valid_to": valid_to,
            "recorded_at": self.now,
            "source": lineage_source(proposal),
            "proposal_id": proposal["proposal_id"],
            "bulk_load_id": None,
            "event_ids": [proposal["event_id"]],
            "checks": checks,
        }
        self.history.append(row)
        return row

    def _conflict(
        self,
        proposal: dict[str, Any],
        kind: str,
        entity_id: str,
        name: str,
        master: tuple[str | None, str],
        proposed: str | None,
        owner: str | None,
    ) -> None:
        """A verified value master does not take (比对): for the owning department to resolve."""
        self.conflicts.append(
            {
                "proposal_id": proposal["proposal_id"],
                "entity_kind": kind,
                "entity_id": entity_id,
                "field": name,
                "master_value": master[0],
                "master_source": master[1],
                "proposed_value": proposed,
                "proposed_source": lineage_source(proposal),
                "owner_department": owner,
                "status": "open",
                "created_at": self.now,
            }
        )
        self.report.conflicts += 1

    def _set(
        self,
        proposal: dict[str, Any],
        kind: str,
        entity_id: str,
        name: str,
        value: Any,
        valid_from: dt.date,
        checks: str,
    ) -> bool:
        """Make `value` the field's current value from `valid_from`, closing the current one; a
        value dated before the current one began is kept as a past value instead (False)."""
        key = (kind, entity_id, name)
        current = self.current.get(key)
        if current is not None and current.valid_from is not None and valid_from < current.valid_from:
            self._history(proposal, kind, entity_id, name, value, valid_from, checks, current.valid_from)
            self.report.past_values += 1
            return False
        if current is not None:
            if current.row is not None:
                current.row["valid_to"] = valid_from
                current.row["closed_at"] = self.now
            elif current.id is not None:
                self.closes.append((valid_from, current.id))
        row = self._history(proposal, kind, entity_id, name, value, valid_from, checks)
        self.current[key] = _Current(row["source"], valid_from, row=row)
        return True

    def apply(self, proposal: dict[str, Any], valid_from: dt.date, checks: str) -> str:
        if proposal["entity_kind"] == "credential":
            return self._credential(proposal, valid_from, checks)
        if proposal["entity_kind"] in ("enterprise", "place"):
            return self._entity(proposal, valid_from, checks)
        return self._person(proposal, valid_from, checks)

    def _person(self, proposal: dict[str, Any], valid_from: dt.date, checks: str) -> str:
        payload = {k: v for k, v in proposal["payload"].items() if k in PERSON_COLUMNS}
        person_id = proposal["entity_id"] if proposal["entity_id"] in self.people else None
        if person_id is None and payload.get("id_number"):
            person_id = self.by_id_number.get(payload["id_number"])
        if person_id is None:
            person_id = self.new_id("P")
            row = {"person_id": person_id, **dict.fromkeys(PERSON_COLUMNS)}
            row.update({k: _to_column(k, v) for k, v in payload.items()})
            self._person_row(row)
            self.new_people[person_id] = row
            for name, value in payload.items():
                self._set(proposal, "person", person_id, name, value, valid_from, checks)
            self.report.people_created += 1
            return person_id
        person = self.people[person_id]
        source = lineage_source(proposal)
        for name, value in payload.items():
            old_text = _text(person.get(name))
            if old_text == _text(value):
                continue
            current = self.current.get(("person", person_id, name))
            if (
                old_text is not None
                and current
                and self.trust(name, current.source) > self.trust(name, source)
            ):
                rule = self.survivorship.fields.get(name)
                self._conflict(
                    proposal,
                    "person",
                    person_id,
                    name,
                    (old_text, current.source),
                    _text(value),
                    rule.owner if rule else None,
                )
                continue
            if self._set(proposal, "person", person_id, name, value, valid_from, checks):
                person[name] = _to_column(name, value)
                if person_id not in self.new_people:
                    self.changed_people.setdefault(person_id, set()).add(name)
                self.report.fields_updated += 1
        return person_id

    def _credential(self, proposal: dict[str, Any], valid_from: dt.date, checks: str) -> str:
        payload = proposal["payload"]
        key = (payload["kind"], payload["number"])
        existing = self.credentials.get(key)
        if existing is None:
            existing = {
                "credential_id": self.new_id("C"),
                "person_id": proposal["entity_id"] or "",
                "kind": payload["kind"],
                "number": payload["number"],
                "attributes": payload.get("attributes", {}),
                "issuer": proposal["department"],
                "valid_from": valid_from,
                "valid_to": None,
                "created_at": self.now,
            }
            self.credentials[key] = existing
            self.new_credentials[existing["credential_id"]] = existing
        elif existing["person_id"] != proposal["entity_id"]:
            # The number belongs to someone else in master: the issuing department compares (比对).
            self._conflict(
                proposal,
                "credential",
                existing["credential_id"],
                "person_id",
                (existing["person_id"], existing.get("issuer") or "master"),
                proposal["entity_id"],
                proposal["department"],
            )
            return existing["credential_id"]
        else:
            existing["attributes"] = {**existing["attributes"], **payload.get("attributes", {})}
            if existing["credential_id"] not in self.new_credentials:
                self.changed_credentials.add(existing["credential_id"])
        values = {"number": payload["number"], **payload.get("attributes", {})}
        for name, value in values.items():
            self._set(proposal, "credential", existing["credential_id"], name, value, valid_from, checks)
        self.report.credentials += 1
        return existing["credential_id"]

    # --- writes --------------------------------------------------------------------------

    def _feed(self, history: pl.DataFrame) -> pl.DataFrame:
        """The change feed's rows for this chunk's lineage (`history_frame`'s, in its order): an
        entity's first values are its insert."""
        created = pl.Series([*self.new_people, *self.new_credentials], dtype=pl.String)
        return history.select(
            "entity_kind",
            "entity_id",
            "field",
            pl.when(pl.col("entity_id").is_in(created.implode()))
            .then(pl.lit("insert"))
            .otherwise(pl.lit("update"))
            .alias("op"),
            "valid_from",
            pl.lit("promotion").alias("cause"),
            pl.col("proposal_id").alias("cause_id"),
        )

    def write(self, conn: Connection) -> None:
        """Write what the chunk worked out in the caller's master transaction."""
        if self.promotion_table is None:
            self.seal()
        self._write_entities(conn)
        if self.new_people:
            insert_rows(
                conn,
                PERSON,
                [{**r, "created_at": self.now, "updated_at": self.now} for r in self.new_people.values()],
            )
        for changed, rows in self.person_updates:
            update_many(
                conn,
                PERSON,
                [*changed, "updated_at"],
                ["person_id"],
                [(*r[:-1], self.now, r[-1]) for r in rows],
            )
        if self.closes:
            closed = update_many(
                conn,
                HISTORY,
                ["valid_to", "closed_at"],
                ["id"],
                [(valid_to, self.now, row_id) for valid_to, row_id in self.closes],
                where={"valid_to": None},
            )
            if closed != len(self.closes):
                raise StateError(
                    f"{len(self.closes) - closed} current lineage row(s) changed while promoting; "
                    "nothing was written, run `govdb promote` again"
                )
        if self.history_table is not None:
            insert_frame(conn, HISTORY, self.history_table, {"recorded_at": self.now})
            record_changes(conn, self._feed(self.history_table), self.now)
        if self.conflicts:
            insert_rows(conn, CONFLICT, self.conflicts)
        if self.new_credentials:
            insert_rows(conn, CREDENTIAL, list(self.new_credentials.values()))
        if self.credential_updates:
            conn.execute(
                update(CREDENTIAL)
                .where(CREDENTIAL.c.credential_id == bindparam("k_id"))
                .values(attributes=bindparam("v_attributes")),
                [{"k_id": i, "v_attributes": attributes} for i, attributes in self.credential_updates],
            )
        if self.promotion_table is not None:  # sealed above
            insert_frame(
                conn,
                PROMOTION,
                self.promotion_table,
                {"applied_at": self.now, "rules_fingerprint": self.fingerprint},
            )


def history_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Lineage rows as one frame for a bulk insert; each row's check chain is its proposal's JSON
    text (`promote._checks`), shared, and its event ids are integers, written as json.dumps would.

    What each of a proposal's rows repeats (its check chain, id, events, source) is categorical:
    held and pickled once per proposal, not once per field. Newcomers' chains were more than
    half of a chunk of them crossing from the planning process (266 of 469 MB for 60,000)."""

    def day(value: dt.date | None) -> str | None:
        return value.isoformat() if value is not None else None

    return pl.DataFrame(
        {
            "entity_kind": [r["entity_kind"] for r in rows],
            "entity_id": [r["entity_id"] for r in rows],
            "field": [r["field"] for r in rows],
            "value": [r["value"] for r in rows],
            "valid_from": [day(r["valid_from"]) for r in rows],
            "valid_to": [day(r["valid_to"]) for r in rows],
            "source": [r["source"] for r in rows],
            "proposal_id": [r["proposal_id"] for r in rows],
            "event_ids": ["[" + ", ".join(map(str, r["event_ids"])) + "]" for r in rows],
            "checks": [r["checks"] for r in rows],
            "closed_at": [r.get("closed_at") for r in rows],
        },
        schema={
            "closed_at": pl.Datetime("us", "UTC"),
            **dict.fromkeys(
                ("entity_kind", "entity_id", "field", "value", "valid_from", "valid_to"), pl.String
            ),
            **dict.fromkeys(("source", "proposal_id", "event_ids", "checks"), pl.Categorical),
        },
    ).sort("entity_kind", "entity_id", "field", maintain_order=True)  # as the feed numbers them
