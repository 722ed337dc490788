"""Turn linked events into proposals (the change each proposes for master) and open their routes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from govdb.link import LinkResult, link_records
from govdb.link.batch import PERSON_FIELDS
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
    proposals: int = 0
    unroutable: int = 0
    auto_approved: int = 0


def _as_text(value: Any) -> str | None:
    return None if value is None else str(value)


def _person_change(
    service: Service, rec: dict[str, Any], link: LinkResult
) -> tuple[str | None, dict[str, Any]]:
    """(route, payload) for a person event: all fields when new, the differing ones when known."""
    fields = {k: rec[k] for k in PERSON_FIELDS if rec.get(k) not in (None, "")}
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


def propose_events(events: Engine, master: Engine, rules: Rulebook) -> ProposeReport:
    """Link every standardized event, record its link, and propose its change for verification."""
    report = ProposeReport()
    with Session(events) as es, Session(master) as ms:
        pending = es.exec(
            select(Event).where(Event.status == "standardized").order_by(col(Event.event_id))
        ).all()
        report.events = len(pending)
        if not pending:
            return report
        by_id = {e.event_id: e for e in pending}
        links = link_records(master, [(e.event_id or 0, e.standardized or {}) for e in pending])
        units = UnitIndex(ms)
        for link in links.results:
            event = by_id[link.event_id]
            rec = event.standardized or {}
            service = rules.verification.services.get(event.service_code or "")
            es.add(
                Link(
                    event_id=link.event_id,
                    entity_kind="person",
                    entity_id=link.person_id,
                    score=link.score,
                    decision=link.decision,
                    explanation=link.explanation,
                )
            )
            if service is None:
                event.status, event.quality_flags = "unlinked", [*event.quality_flags, "unknown_service"]
                report.unlinked += 1
                continue
            if link.decision == "unlinkable" or (service.change == "credential" and link.person_id is None):
                flag = "no_valid_id" if link.decision == "unlinkable" else "no_master_person"
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
                event_id=link.event_id,
                change=route_name,
                entity_kind="person" if service.change == "person" else "credential",
                entity_id=link.person_id,
                payload=payload,
                division_code=division,
                source=event.source_system,
                department=event.department,
            )
            es.add(proposal)
            route = rules.verification.routes[route_name]
            assigned = units.route_units(route, division)
            event.status = "proposed"
            report.proposals += 1
            if any(unit is None for unit in assigned):
                missing = [
                    s.level + (f":{s.department}" if s.department else "")
                    for s, u in zip(route.steps, assigned, strict=True)
                    if u is None
                ]
                proposal.state = "unroutable"
                event.quality_flags = [*event.quality_flags, "no_unit_for_division"]
                proposal.payload = {
                    **payload,
                    "_unroutable": f"no unit registered for {missing} in {division}",
                }
                report.unroutable += 1
                continue
            es.flush()
            open_route(es, proposal, event, route, [u for u in assigned if u is not None])
            report.auto_approved += proposal.state == "approved"
        es.commit()
    return report
