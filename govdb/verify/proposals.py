"""Turn linked events into proposals (the change each proposes for master) and open their routes."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from govdb.link.features import PERSON_FIELDS
from govdb.link.model import LinkModel
from govdb.link.online import LinkResult, link_against_master, read_people
from govdb.rulebook.loader import Rulebook
from govdb.rulebook.models import Service
from govdb.store.events import Event, Link, Proposal
from govdb.verify.routes import UnitIndex
from govdb.verify.tasks import open_route


@dataclass
class ProposeReport:
    """What linking and proposing did to the standardized events."""

    events: int = 0
    linked: int = 0
    new_people: int = 0
    unchanged: int = 0
    unlinked: int = 0
    identity_reviews: int = 0
    proposals: int = 0
    unroutable: int = 0
    auto_approved: int = 0


def _as_text(value: Any) -> str | None:
    return None if value is None else str(value)


def _person_change(
    service: Service, rec: dict[str, Any], link: LinkResult
) -> tuple[str | None, dict[str, Any]]:
    """(route, payload) for a person event: all fields when new, the differing ones when known."""
    fields = {k: rec[k] for k in (*PERSON_FIELDS, "division_code") if rec.get(k) not in (None, "")}
    if link.master is None:
        return service.route, fields
    changed = {k: v for k, v in fields.items() if _as_text(link.master.get(k)) != _as_text(v)}
    return (service.update_route, changed) if changed and service.update_route else (None, {})


def _credential_change(service: Service, rec: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": service.credential_kind,
        "number": rec.get(service.credential_number or ""),
        "attributes": {a: rec[a] for a in service.attributes if rec.get(a) not in (None, "")},
    }


IDENTITY_ROUTE = "confirm_identity"


def _records(pending: list[Event]) -> pl.DataFrame:
    fields = (*PERSON_FIELDS, "division_code")
    rows = [
        {"event_id": str(e.event_id), **{k: _as_text((e.standardized or {}).get(k)) for k in fields}}
        for e in pending
    ]
    return pl.DataFrame(rows, schema={"event_id": pl.String, **{k: pl.String for k in fields}})


def _reviewed_links(es: Session, master: Engine, events: list[Event]) -> dict[int, LinkResult]:
    """Links settled by a reviewer: an approved identity check is a match with its candidate; a
    rejected one means the record is someone new. Consumed proposals become `resolved`."""
    ids = [e.event_id for e in events if e.status == "identity_review"]
    if not ids:
        return {}
    settled: dict[int, LinkResult] = {}
    reviews = es.exec(
        select(Proposal).where(
            col(Proposal.event_id).in_(ids),
            Proposal.change == IDENTITY_ROUTE,
            col(Proposal.state).in_(["approved", "rejected"]),
        )
    ).all()
    with master.connect() as conn:
        people = {
            r["person_id"]: r
            for r in read_people(conn, [p.entity_id for p in reviews if p.entity_id]).to_dicts()
        }
    for review in reviews:
        confirmed = review.state == "approved" and review.entity_id in people
        settled[review.event_id] = LinkResult(
            str(review.event_id),
            review.entity_id if confirmed else None,
            "match" if confirmed else "new",
            1.0 if confirmed else 0.0,
            None,
            {"reviewed": review.state, "proposal_id": review.proposal_id, **review.payload},
            people.get(review.entity_id) if confirmed else None,
        )
        review.state = "resolved"
    return settled


def propose_events(
    events: Engine,
    master: Engine,
    rules: Rulebook,
    model: LinkModel | Callable[[], LinkModel],
    *,
    address_hint: str | None = None,
) -> ProposeReport:
    """Link every standardized event, record its link, and propose its change for verification.

    Review-band links become identity checks (route `confirm_identity`) instead; once decided, the
    next run takes the reviewer's answer as the link and proposes the event's change."""
    report = ProposeReport()
    matching = rules.matching["person"]
    with Session(events) as es, Session(master) as ms:
        pending = es.exec(
            select(Event)
            .where(col(Event.status).in_(["standardized", "identity_review"]))
            .order_by(col(Event.event_id))
        ).all()
        settled = _reviewed_links(es, master, list(pending))
        pending = [e for e in pending if e.status == "standardized" or e.event_id in settled]
        report.events = len(pending)
        if not pending:
            es.commit()
            return report
        by_id = {e.event_id: e for e in pending}
        fresh = [e for e in pending if e.event_id not in settled]
        results = list(settled.values())
        if fresh:
            results += link_against_master(
                master, _records(fresh), matching, model, address_hint=address_hint
            )
        units = UnitIndex(ms)
        for link in results:
            event_id = int(link.record_id)
            event = by_id[event_id]
            rec = event.standardized or {}
            service = rules.verification.services.get(event.service_code or "")
            es.add(
                Link(
                    event_id=event_id,
                    entity_kind="person",
                    entity_id=link.person_id or link.explanation.get("candidate"),
                    score=link.match_probability,
                    decision=link.decision,
                    explanation=link.explanation,
                )
            )
            if service is None:
                event.status, event.quality_flags = "unlinked", [*event.quality_flags, "unknown_service"]
                report.unlinked += 1
                continue
            if link.decision == "review":
                if _open_identity_review(es, units, rules, event, link):
                    report.identity_reviews += 1
                else:
                    report.unroutable += 1
                continue
            if link.decision == "new" and (service.change == "credential" or not rec.get("id_number")):
                flag = "no_master_person" if service.change == "credential" else "no_valid_id"
                event.status, event.quality_flags = "unlinked", [*event.quality_flags, flag]
                report.unlinked += 1
                continue
            report.linked += link.decision == "match"
            if service.change == "person":
                route_name, payload = _person_change(service, rec, link)
                division = payload.get("division_code") or (link.master or {}).get("division_code")
            else:
                route_name, payload = service.route, _credential_change(service, rec)
                division = (link.master or {}).get("division_code")
            if route_name is None:
                event.status = "confirmed"  # master already holds exactly this
                report.unchanged += 1
                continue
            report.new_people += link.person_id is None
            proposal = Proposal(
                proposal_id=str(uuid.uuid4()),
                event_id=event_id,
                change=route_name,
                entity_kind="person" if service.change == "person" else "credential",
                entity_id=link.person_id,
                payload=payload,
                division_code=division,
                source=event.source_system,
                department=event.department,
            )
            if _route(es, units, rules, proposal, event, route_name):
                report.proposals += 1
                report.auto_approved += proposal.state == "approved"
            else:
                report.unroutable += 1
        es.commit()
    return report


def _open_identity_review(
    es: Session, units: UnitIndex, rules: Rulebook, event: Event, link: LinkResult
) -> bool:
    """A verification task asking the record's village whether it is about the candidate."""
    candidate = link.explanation.get("candidate")
    division = (event.standardized or {}).get("division_code") or (link.master or {}).get("division_code")
    proposal = Proposal(
        proposal_id=str(uuid.uuid4()),
        event_id=event.event_id or 0,
        change=IDENTITY_ROUTE,
        entity_kind="person",
        entity_id=candidate,
        payload={"candidate": candidate, "match_probability": link.match_probability},
        division_code=division,
        source=event.source_system,
        department=event.department,
    )
    routed = _route(es, units, rules, proposal, event, IDENTITY_ROUTE)
    event.status = "identity_review"
    return routed


def _route(
    es: Session, units: UnitIndex, rules: Rulebook, proposal: Proposal, event: Event, route_name: str
) -> bool:
    """Store the proposal and open its route's tasks; False when no unit covers a step."""
    es.add(proposal)
    route = rules.verification.routes[route_name]
    assigned = units.route_units(route, proposal.division_code)
    event.status = "proposed"
    if any(unit is None for unit in assigned):
        missing = [
            s.level + (f":{s.department}" if s.department else "")
            for s, u in zip(route.steps, assigned, strict=True)
            if u is None
        ]
        proposal.state = "unroutable"
        event.quality_flags = [*event.quality_flags, "no_unit_for_division"]
        proposal.payload = {
            **proposal.payload,
            "_unroutable": f"no unit registered for {missing} in {proposal.division_code}",
        }
        return False
    es.flush()
    open_route(es, proposal, event, route, [u for u in assigned if u is not None])
    return True
