"""Proposals of enterprises (法人) and places (空间地理) from events, set-based like people's.

An enterprise event (a service whose change is `enterprise`) is linked to master by its unified
social credit code, or without one by the enterprise matching rules (govdb.link.enterprises); a
place event (`place`: a new building at an address, a named or renamed road) by its standardized
address or its road name in the county. A known entity proposes only the fields that differ from
master; a new one all of them. Jurisdiction comes from master (invariant 5): a known enterprise or
place is checked by the units of its registered division, whatever the event claims; only a new
one where it registers.
"""

from __future__ import annotations

import unicodedata
from typing import Any

import polars as pl
from sqlalchemy import Engine, select

from govdb.link.enterprises import link_enterprises
from govdb.link.online import LinkResult
from govdb.rulebook.loader import Rulebook
from govdb.rulebook.models import Service
from govdb.store.bulk import among, id_chunks
from govdb.store.events import EventStatus
from govdb.store.master import Enterprise, Place
from govdb.store.storable import widths
from govdb.verify.chunk_writes import ChunkWork
from govdb.verify.proposals import ProposeReport, _as_text, _proposal, _route, _within
from govdb.verify.refusals import explain, payload_problems, refuse
from govdb.verify.routes import UnitIndex

ENTITY_CHANGES = ("enterprise", "place")
PLACE = Place.__table__  # type: ignore[attr-defined]
# Event field (standardized) -> master enterprise field.
ENTERPRISE_PAYLOAD = {
    "enterprise_name": "name",
    "uscc": "uscc",
    "legal_representative": "legal_representative",
    "address": "address",
    "phone": "phone",
    "business_scope": "business_scope",
    "registration_status": "status",
    "division_code": "division_code",
}
PLACE_FIELDS = ("kind", "name", "address", "road", "building", "division_code")
PLACE_COLUMNS = ("place_id", *PLACE_FIELDS)
ENTERPRISE_WIDTH = widths(Enterprise.__table__)  # type: ignore[attr-defined]
PLACE_WIDTH = widths(PLACE)


def _clean(value: Any) -> str | None:
    """Free text as master keeps it: NFKC (full-width to half-width), inner whitespace removed."""
    if value is None:
        return None
    text = "".join(unicodedata.normalize("NFKC", str(value)).split())
    return text or None


def is_entity_event(rules: Rulebook, event: dict[str, Any]) -> bool:
    service = rules.verification.services.get(event["service_code"] or "")
    return service is not None and service.change in ENTITY_CHANGES


def plan_entity_events(
    master: Engine,
    rules: Rulebook,
    units: UnitIndex,
    events: list[dict[str, Any]],
    work: ChunkWork,
    report: ProposeReport,
    *,
    address_hint: str | None = None,
) -> None:
    """Link, compare and route the enterprise and place events of one chunk (in memory)."""
    services = {e["event_id"]: rules.verification.services[e["service_code"]] for e in events}
    enterprise = [e for e in events if services[e["event_id"]].change == "enterprise"]
    places = [e for e in events if services[e["event_id"]].change == "place"]
    report.events += len(events)
    if enterprise:
        _plan_enterprises(master, rules, units, enterprise, services, work, report, address_hint)
    if places:
        _plan_places(master, rules, units, places, services, work, report)


# --- enterprises -----------------------------------------------------------------------------


def _enterprise_payload(event: dict[str, Any]) -> dict[str, Any]:
    rec = event["standardized"] or {}
    out = {}
    for written, name in ENTERPRISE_PAYLOAD.items():
        value = _clean(rec.get(written)) if name not in ("address", "division_code") else rec.get(written)
        if value not in (None, ""):
            out[name] = value
    return out


def _plan_enterprises(
    master: Engine,
    rules: Rulebook,
    units: UnitIndex,
    events: list[dict[str, Any]],
    services: dict[int, Service],
    work: ChunkWork,
    report: ProposeReport,
    address_hint: str | None,
) -> None:
    payloads = {e["event_id"]: _enterprise_payload(e) for e in events}
    events = _storable(events, payloads, ENTERPRISE_WIDTH, work, report)
    if not events:
        return
    fields = ("name", "uscc", "legal_representative", "phone", "address")
    records = pl.DataFrame(
        [
            {"event_id": str(e["event_id"]), **{f: _as_text(payloads[e["event_id"]].get(f)) for f in fields}}
            for e in events
        ],
        schema={"event_id": pl.String, **dict.fromkeys(fields, pl.String)},
    )
    results = link_enterprises(master, records, rules.matching["enterprise"], address_hint=address_hint)
    by_id = {e["event_id"]: e for e in events}
    for link in results:
        event = by_id[int(link.record_id)]
        payload = payloads[event["event_id"]]
        work.link(event, "enterprise", link)
        if link.decision == "review" or (link.decision == "new" and not payload.get("uscc")):
            # Without a valid code nobody can tell a new enterprise from a known one written
            # otherwise: the event stays in the event store, flagged.
            flag = "enterprise_needs_review" if link.decision == "review" else "no_valid_uscc"
            work.event_to(event, EventStatus.unlinked, flag)
            report.unlinked += 1
            continue
        service = services[event["event_id"]]
        known = link.master if link.decision == "match" else None
        report.linked += known is not None
        _propose(rules, units, work, report, event, service, "enterprise", link.person_id, known, payload)
        report.new_enterprises += known is None


def _storable(
    events: list[dict[str, Any]],
    payloads: dict[int, dict[str, Any]],
    width: dict[str, int],
    work: ChunkWork,
    report: ProposeReport,
) -> list[dict[str, Any]]:
    """The events whose payload master can store; the others are refused (a value wider than its
    column would fail `process` on PostgreSQL, and `promote` after it), before they are linked."""
    kept = []
    for event in events:
        problems = payload_problems(payloads[event["event_id"]], width)
        if problems:
            report.refused += 1
            refuse(work, report.refused_events, event, problems, explain(event["event_id"], problems, width))
        else:
            kept.append(event)
    return kept


def _propose(
    rules: Rulebook,
    units: UnitIndex,
    work: ChunkWork,
    report: ProposeReport,
    event: dict[str, Any],
    service: Service,
    kind: str,
    entity_id: str | None,
    known: dict[str, Any] | None,
    payload: dict[str, Any],
) -> None:
    """The proposal of one linked enterprise or place event: all fields when new, the differing
    ones when known; routed from master's division for a known one (invariant 5)."""
    if known is not None:
        payload = {
            k: v
            for k, v in payload.items()
            if _as_text(v) != _as_text(known.get(k))
            and not (k == "division_code" and _within(known.get(k), v))
            and k != "kind"
        }
        route_name = service.update_route if payload else None
        home = known.get("division_code")
    else:
        route_name, home = service.route, payload.get("division_code")
    if route_name is None:
        work.event_to(event, EventStatus.confirmed)  # master already holds exactly this
        report.unchanged += 1
        return
    proposal = _proposal(event, route_name, kind, entity_id if known is not None else None, home, payload)
    # A known one that moves is also checked where it moves to (invariant 5: a move adds the destination).
    destination = payload.get("division_code") if known is not None else None
    if _route(rules, units, work, event, proposal, home, destination):
        report.proposals += 1
    else:
        report.unroutable += 1
    work.event_to(event, EventStatus.proposed)


# --- places ----------------------------------------------------------------------------------


def _place_payload(event: dict[str, Any], service: Service) -> dict[str, Any]:
    rec = event["standardized"] or {}
    road, building = _clean(rec.get("road")), _clean(rec.get("building"))
    if service.place_kind == "road":
        payload = {"kind": "road", "name": road, "address": road, "road": road}
    else:
        payload = {"kind": "building", "name": building, "address": rec.get("address"), "building": building}
        if road:
            payload["road"] = road
    payload["division_code"] = rec.get("division_code")
    return {k: v for k, v in payload.items() if v not in (None, "")}


def _place_key(kind: str, address: str | None, division: str | None) -> tuple[str, str, str] | None:
    """How a place is found in master: a building by its standardized address, a road by its
    name in its county."""
    if not address:
        return None
    return (kind, address, (division or "")[:6] if kind == "road" else "")


def _plan_places(
    master: Engine,
    rules: Rulebook,
    units: UnitIndex,
    events: list[dict[str, Any]],
    services: dict[int, Service],
    work: ChunkWork,
    report: ProposeReport,
) -> None:
    payloads = {e["event_id"]: _place_payload(e, services[e["event_id"]]) for e in events}
    events = _storable(events, payloads, PLACE_WIDTH, work, report)
    # A renamed road is found under its former name.
    lookups = {}
    for e in events:
        p = payloads[e["event_id"]]
        former = _clean((e["standardized"] or {}).get("former_road"))
        lookups[e["event_id"]] = _place_key(
            p.get("kind", ""),
            former if p.get("kind") == "road" and former else p.get("address"),
            p.get("division_code"),
        )
    addresses = sorted({k[1] for k in lookups.values() if k})
    found: dict[tuple[str, str, str], dict[str, Any]] = {}
    with master.connect() as conn:
        for chunk in id_chunks(conn, addresses):
            rows = conn.execute(
                select(*(PLACE.c[c] for c in PLACE_COLUMNS)).where(among(conn, PLACE.c.address, chunk))
            )
            for r in rows:
                row = dict(r._mapping)
                key = _place_key(row["kind"], row["address"], row["division_code"])
                if key is not None:
                    found.setdefault(key, row)
    for event in events:
        payload, key = payloads[event["event_id"]], lookups[event["event_id"]]
        known = found.get(key) if key else None
        link = LinkResult(
            str(event["event_id"]),
            known["place_id"] if known else None,
            "match" if known else "new",
            1.0 if known else 0.0,
            None,
            {"blocking": "address" if payload.get("kind") == "building" else "road_name"},
        )
        work.link(event, "place", link)
        if key is None:
            work.event_to(event, EventStatus.unlinked, "no_place_address")
            report.unlinked += 1
            continue
        report.linked += known is not None
        report.new_places += known is None
        _propose(rules, units, work, report, event, services[event["event_id"]], "place",
                 known["place_id"] if known else None, known, payload)  # fmt: skip
