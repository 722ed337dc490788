"""Promote approved proposals into master data, with survivorship, conflicts and field lineage.

Promotion spans two databases, so it is idempotent: the master changes and the `promotion` row
(unique on proposal id) commit in one master transaction; the proposal is then marked promoted in
the event store. A rerun after a crash in between finds the promotion row and only completes the
marking. Nothing else writes people or credentials except authoritative bulk loads (invariant 1).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from sqlalchemy import Engine, insert, update
from sqlmodel import Session, col, select

from govdb.errors import InputFileError
from govdb.rulebook.loader import Rulebook
from govdb.store.events import Decision, Event, Proposal, Task
from govdb.store.master import (
    BulkLoad,
    Conflict,
    Credential,
    FieldHistory,
    Person,
    Promotion,
    current_lineage,
    utcnow,
)

CHUNK = 500
PERSON_COLUMNS = ("id_number", "name", "gender", "birth_date", "phone", "address", "division_code")


@dataclass
class PromoteReport:
    promoted: int = 0
    people_created: int = 0
    fields_updated: int = 0
    credentials: int = 0
    conflicts: int = 0
    completed_after_crash: int = 0
    promoted_ids: list[str] = field(default_factory=list)
    person_ids: list[str] = field(default_factory=list)  # people created or changed


def _checks(es: Session, proposal_id: str) -> list[dict[str, Any]]:
    rows = es.exec(
        select(Task, Decision)
        .join(Decision, col(Decision.task_id) == col(Task.task_id))
        .where(Task.proposal_id == proposal_id)
        .order_by(col(Decision.id))
    ).all()
    return [
        {
            "level": t.level,
            "department": t.department,
            "unit": d.unit_id,
            "actor": d.actor_id,
            "rule": d.rule,
            "outcome": d.outcome,
            "at": d.decided_at.isoformat(),
            "amendments": d.amendments or None,
        }
        for t, d in rows
    ]


def _to_column(name: str, value: Any) -> Any:
    if name == "birth_date" and isinstance(value, str):
        return dt.date.fromisoformat(value)
    return value


class _Promoter:
    """Applies proposals inside one master session."""

    def __init__(self, ms: Session, rules: Rulebook, report: PromoteReport) -> None:
        self.ms, self.rules, self.report = ms, rules, report
        self.survivorship = rules.survivorship

    def trust(self, field_name: str, source: str | None) -> int:
        rule = self.survivorship.fields.get(field_name)
        if rule is None or source is None:
            return self.survivorship.default_trust
        return rule.trust.get(source, self.survivorship.default_trust)

    def history(
        self,
        proposal: Proposal,
        kind: str,
        entity_id: str,
        field_name: str,
        value: Any,
        valid_from: dt.date,
        checks: list[dict[str, Any]],
    ) -> None:
        self.ms.add(
            FieldHistory(
                entity_kind=kind,
                entity_id=entity_id,
                field=field_name,
                value=None if value is None else str(value),
                valid_from=valid_from,
                source=proposal.department or proposal.source,
                proposal_id=proposal.proposal_id,
                event_ids=[proposal.event_id],
                checks=checks,
            )
        )

    def apply(self, proposal: Proposal, valid_from: dt.date, checks: list[dict[str, Any]]) -> str:
        if proposal.entity_kind == "credential":
            return self._credential(proposal, valid_from, checks)
        return self._person(proposal, valid_from, checks)

    def _person(self, proposal: Proposal, valid_from: dt.date, checks: list[dict[str, Any]]) -> str:
        payload = {k: v for k, v in proposal.payload.items() if k in PERSON_COLUMNS}
        person = self.ms.get(Person, proposal.entity_id) if proposal.entity_id else None
        if person is None and payload.get("id_number"):
            person = self.ms.exec(select(Person).where(Person.id_number == payload["id_number"])).first()
        if person is None:
            person = Person(
                person_id=f"P{uuid.uuid4().hex[:15].upper()}",
                **{k: _to_column(k, v) for k, v in payload.items()},
            )
            self.ms.add(person)
            self.ms.flush()
            for name, value in payload.items():
                self.history(proposal, "person", person.person_id, name, value, valid_from, checks)
            self.report.people_created += 1
            return person.person_id
        source = proposal.department or proposal.source
        lineage = current_lineage(self.ms, "person", person.person_id)
        for name, value in payload.items():
            old = getattr(person, name)
            old_text = None if old is None else str(old)
            if old_text == str(value):
                continue
            current = lineage.get(name)
            if old is not None and current and self.trust(name, current.source) > self.trust(name, source):
                rule = self.survivorship.fields.get(name)
                self.ms.add(
                    Conflict(
                        proposal_id=proposal.proposal_id,
                        entity_kind="person",
                        entity_id=person.person_id,
                        field=name,
                        master_value=old_text,
                        master_source=current.source,
                        proposed_value=str(value),
                        proposed_source=source,
                        owner_department=rule.owner if rule else None,
                    )
                )
                self.report.conflicts += 1
                continue
            if current:
                current.valid_to = valid_from
            setattr(person, name, _to_column(name, value))
            self.history(proposal, "person", person.person_id, name, value, valid_from, checks)
            self.report.fields_updated += 1
        person.updated_at = utcnow()
        return person.person_id

    def _credential(self, proposal: Proposal, valid_from: dt.date, checks: list[dict[str, Any]]) -> str:
        payload = proposal.payload
        existing = self.ms.exec(
            select(Credential).where(
                Credential.kind == payload["kind"], Credential.number == payload["number"]
            )
        ).first()
        if existing is None:
            existing = Credential(
                credential_id=f"C{uuid.uuid4().hex[:15].upper()}",
                person_id=proposal.entity_id or "",
                kind=payload["kind"],
                number=payload["number"],
                attributes=payload.get("attributes", {}),
                issuer=proposal.department,
                valid_from=valid_from,
            )
            self.ms.add(existing)
        else:
            existing.attributes = {**existing.attributes, **payload.get("attributes", {})}
        self.ms.flush()
        for name, value in {"number": payload["number"], **payload.get("attributes", {})}.items():
            self.history(proposal, "credential", existing.credential_id, name, value, valid_from, checks)
        self.report.credentials += 1
        return existing.credential_id


def _mark_promoted(events: Engine, proposal_ids: list[str]) -> None:
    proposals = Proposal.__table__  # type: ignore[attr-defined]
    event_table = Event.__table__  # type: ignore[attr-defined]
    with events.begin() as conn:
        conn.execute(
            update(proposals)
            .where(proposals.c.proposal_id.in_(proposal_ids))
            .values(state="promoted", updated_at=utcnow())
        )
        event_ids = select(proposals.c.event_id).where(proposals.c.proposal_id.in_(proposal_ids))
        conn.execute(
            update(event_table).where(event_table.c.event_id.in_(event_ids)).values(status="promoted")
        )


def promote_approved(events: Engine, master: Engine, rules: Rulebook) -> PromoteReport:
    """Apply every approved proposal to master, then mark it promoted in the event store."""
    report = PromoteReport()
    with Session(events) as es:
        approved = list(
            es.exec(
                select(Proposal)
                .where(Proposal.state == "approved", Proposal.change != "confirm_identity")
                .order_by(col(Proposal.created_at))
            )
        )
        for start in range(0, len(approved), CHUNK):
            chunk = approved[start : start + CHUNK]
            done_ids: list[str] = []
            with Session(master) as ms:
                already = set(
                    ms.exec(
                        select(Promotion.proposal_id).where(
                            col(Promotion.proposal_id).in_([p.proposal_id for p in chunk])
                        )
                    ).all()
                )
                promoter = _Promoter(ms, rules, report)
                for proposal in chunk:
                    done_ids.append(proposal.proposal_id)
                    if proposal.proposal_id in already:
                        report.completed_after_crash += 1
                        continue
                    event = es.get(Event, proposal.event_id)
                    valid_from = event.occurred_at.date() if event and event.occurred_at else dt.date.today()
                    entity_id = promoter.apply(proposal, valid_from, _checks(es, proposal.proposal_id))
                    if proposal.entity_kind == "person":
                        report.person_ids.append(entity_id)
                    ms.add(
                        Promotion(
                            proposal_id=proposal.proposal_id,
                            entity_kind=proposal.entity_kind,
                            entity_id=entity_id,
                            changes=proposal.payload,
                        )
                    )
                    report.promoted += 1
                    report.promoted_ids.append(proposal.proposal_id)
                ms.commit()
            _mark_promoted(events, done_ids)
    return report


def bulk_load_people(
    master: Engine, people: pl.DataFrame, *, source: str, valid_from: dt.date | None = None
) -> str:
    """Load people from an authoritative register (e.g. the population register), recording the source.

    Every row needs a valid id_number and a name; ID numbers already in master are skipped.
    Returns the bulk load id, which every field history row of the load carries.
    """
    missing = {"id_number", "name"} - set(people.columns)
    if missing:
        raise InputFileError(
            f"a bulk load of people needs columns {sorted(missing)}; it has {people.columns}"
        )
    load_id = str(uuid.uuid4())
    valid_from = valid_from or dt.date.today()
    columns = [c for c in PERSON_COLUMNS if c in people.columns]
    frame = people.select(columns).unique("id_number", keep="first")
    with Session(master) as ms:
        known = set()
        ids = frame.get_column("id_number").to_list()
        for start in range(0, len(ids), 5000):
            known.update(
                ms.exec(select(Person.id_number).where(col(Person.id_number).in_(ids[start : start + 5000])))
            )
        frame = frame.filter(~pl.col("id_number").is_in(list(known)))
        frame = frame.with_columns(
            pl.Series("person_id", [f"P{uuid.uuid4().hex[:15].upper()}" for _ in range(frame.height)])
        )
        now = utcnow()
        rows = [{**r, "created_at": now, "updated_at": now} for r in frame.iter_rows(named=True)]
        history = [
            {
                "entity_kind": "person",
                "entity_id": r["person_id"],
                "field": c,
                "value": None if r[c] is None else str(r[c]),
                "valid_from": valid_from,
                "valid_to": None,
                "recorded_at": now,
                "source": source,
                "proposal_id": None,
                "bulk_load_id": load_id,
                "event_ids": [],
                "checks": [{"level": "authoritative", "source": source, "at": now.isoformat()}],
            }
            for r in rows
            for c in columns
            if r[c] is not None
        ]
        ms.add(BulkLoad(load_id=load_id, source=source, entity_kind="person", rows=len(rows)))
        ms.flush()
        if rows:
            ms.execute(insert(Person.__table__), rows)  # type: ignore[attr-defined]
            ms.execute(insert(FieldHistory.__table__), history)  # type: ignore[attr-defined]
        ms.commit()
    return load_id
