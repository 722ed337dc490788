"""What a linked event proposes for master, and the route of checks that verifies it.

Kept apart from the flow of chunks that feeds it (govdb.verify.pipeline): this module only plans,
in memory, into the chunk's `ChunkWork`. A person event is compared with master after both sides
are standardized (a value written differently opens no task), on whole columns; what differs
becomes a proposal, routed by jurisdiction from master (govdb.verify.routes). Enterprise and place
events are planned by govdb.verify.entity_proposals with the same proposals and routes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from sqlalchemy import Engine

from govdb.base.clock import utcnow
from govdb.base.ids import uuid7_texts
from govdb.link.reads import read_people
from govdb.rulebook.loader import Rulebook
from govdb.rulebook.models import Service
from govdb.standards import standardize
from govdb.standards.divisions import significant_prefix
from govdb.standards.hanzi import char_folds
from govdb.store.states import EventStatus, ProposalState, TaskState
from govdb.verify.chunk_writes import ChunkWork
from govdb.verify.linking import COMPARED, ChunkLinks
from govdb.verify.routes import UnitIndex
from govdb.verify.tasks import IDENTITY_ROUTE, Flow, StepTask


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
    auto_passed: int = 0  # steps passed by a rule earned by an authenticated source
    new_enterprises: int = 0
    new_places: int = 0
    refused: int = 0  # a value master cannot store (a NUL, ...): not proposed
    refused_events: dict[int, str] = field(default_factory=dict)  # event id -> why (field, value)


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text if text != "" else None


def _standardized_master(masters: pl.DataFrame) -> pl.DataFrame:
    """Master values through the same standards as events, so a value written differently
    (traditional characters, another address form) compares equal: event_id and each compared
    field of `masters` as text."""
    fields = [k for k in COMPARED if k in masters.columns]
    if "birth_date" in fields:
        masters = masters.with_columns(pl.col("birth_date").cast(pl.String))
    std = standardize(masters, place_addresses=False, issues=False, pinyin=False)
    std = std.with_columns(pl.col(pl.Date).dt.to_string("%Y-%m-%d"))
    text = [pl.col(f"{k}_std" if f"{k}_std" in std.columns else k).cast(pl.String) for k in fields]
    return std.select("event_id", *(t.replace("", None).alias(k) for t, k in zip(text, fields, strict=True)))


# A standardized field read from others of the row: gender and birth date come from a valid ID.
_STANDARDIZED_FROM = {"gender": ("id_number",), "birth_date": ("id_number",)}


def _changed_fields(records: pl.DataFrame, masters: pl.DataFrame) -> dict[str, list[str]]:
    """For each record about a known person (records: event_id and the compared fields as text;
    masters: event_id and its person's master row), the fields whose value master does not hold:
    neither as stored nor standardized (both sides through the same standards), nor with
    traditional and look-alike characters folded, nor a division the master one is inside.
    Compared on whole columns; only the few values still differing are looked at one by one."""
    if records.height == 0 or masters.height == 0:
        return {}
    stored = masters.select("event_id", *(pl.col(k).cast(pl.String).alias(f"{k}__m") for k in COMPARED))
    joined = records.select("event_id", *COMPARED).join(stored, on="event_id")
    # Master's standardized values only where the value as stored differs (most of a chunk's
    # fields match as stored, and standardizing names is the costly part), a field with what it
    # is read from (the same values, row for row, as standardizing the whole row).
    differ = [
        (pl.col(k).is_not_null() & ~(pl.col(k) == pl.col(f"{k}__m")).fill_null(False)).alias(f"{k}__d")
        for k in COMPARED
    ]
    joined = joined.with_columns(differ).filter(pl.any_horizontal(f"{k}__d" for k in COMPARED))
    if joined.height == 0:
        return {}
    counts = joined.select(pl.col(f"{k}__d").sum() for k in COMPARED).row(0)
    wanted = {k for k, n in zip(COMPARED, counts, strict=True) if n}
    wanted |= {f for k in wanted for f in _STANDARDIZED_FROM.get(k, ())}
    rows = masters.select("event_id", *(k for k in COMPARED if k in wanted)).join(
        joined.select("event_id"), on="event_id", how="semi"
    )
    standard = _standardized_master(rows).rename({k: f"{k}__s" for k in wanted})
    joined = joined.join(standard, on="event_id", how="left")
    joined = joined.with_columns(
        (pl.col(f"{k}__d") & ~(pl.col(k) == pl.col(f"{k}__s")).fill_null(False)).alias(f"{k}__d")
        for k in COMPARED
        if k in wanted
    ).filter(pl.any_horizontal(f"{k}__d" for k in COMPARED))
    # What still differs is looked at one value at a time, a field's flagged rows only: equal
    # once traditional and look-alike characters are folded, or a division master's is inside.
    for k in (*FOLDED, "division_code"):
        if k not in wanted:
            continue  # no row differs in it
        rows = joined.filter(pl.col(f"{k}__d"))
        held = rows.select(
            pl.coalesce(f"{k}__s", f"{k}__m") if k in FOLDED else pl.col(f"{k}__m")
        ).to_series()
        values = zip(
            rows.get_column("event_id").to_list(), rows.get_column(k).to_list(), held.to_list(), strict=True
        )
        if k in FOLDED:
            held_already = [e for e, value, master in values if _fold(value) == _fold(master)]
        else:
            held_already = [e for e, value, master in values if _within(master, value)]
        if held_already:
            joined = joined.with_columns(
                (pl.col(f"{k}__d") & ~pl.col("event_id").is_in(held_already)).alias(f"{k}__d")
            )
    fields = pl.concat_list(pl.when(pl.col(f"{k}__d")).then(pl.lit(k)) for k in COMPARED).list.drop_nulls()
    listed = joined.select("event_id", fields.alias("fields")).filter(pl.col("fields").list.len() > 0)
    return dict(
        zip(listed.get_column("event_id").to_list(), listed.get_column("fields").to_list(), strict=True)
    )


def _person_change(
    service: Service, rec: dict[str, Any], known: bool, changed: list[str]
) -> tuple[str | None, dict[str, Any]]:
    """(route, payload) for a person event: all fields when new, the `changed` ones when known."""
    # Values as text, as they are compared: a record's JSON edited in the store may hold a number.
    if not known:
        return service.route, {k: _as_text(rec[k]) for k in COMPARED if rec.get(k) not in (None, "")}
    payload = {k: _as_text(rec[k]) for k in changed}
    return (service.update_route, payload) if payload and service.update_route else (None, {})


def _within(master_code: Any, event_code: Any) -> bool:
    """Whether the event's division is the master one said less precisely (a county code for a
    village in it): that is no move."""
    if not master_code or not event_code:
        return False
    return str(master_code).startswith(significant_prefix(str(event_code)))


FOLDED = ("name", "address")  # traditional and look-alike characters compare as one


def _fold(value: Any) -> str | None:
    """Text with traditional and look-alike characters folded (張偉 -> 张伟, 南海區 -> 南海区)."""
    return None if value is None else str(value).translate(_fold_table())


@functools.cache
def _fold_table() -> dict[int, str]:
    return str.maketrans(char_folds())


def _credential_change(service: Service, rec: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": service.credential_kind,
        "number": rec.get(service.credential_number or ""),
        "attributes": {a: rec[a] for a in service.attributes if rec.get(a) not in (None, "")},
    }


def _plan(
    master: Engine,
    rules: Rulebook,
    units: UnitIndex,
    by_id: dict[int, dict[str, Any]],
    linked: ChunkLinks,
    records: pl.DataFrame,
    work: ChunkWork,
    report: ProposeReport,
) -> None:
    """Decide, in memory, what each linked event becomes: a proposal on its route, an identity
    check, unlinked or confirmed."""
    # What the few routed by their explanation read of it (a review's candidate, a split's ID),
    # taken from the linker's JSON on the whole column of those few: a match links its person and
    # reads neither (parsing every match's explanation cost a county's run 5 s).
    why = pl.col("explanation")
    few = (pl.col("decision") != "match") | pl.col("person_id").is_null()
    links = linked.links.with_columns(
        pl.when(few).then(why).otherwise(None).str.json_path_match("$.candidate").alias("candidate"),
        (pl.when(few).then(why).otherwise(None).str.json_path_match("$.id_of_excluded") == "true")
        .fill_null(False)
        .alias("id_of_excluded"),
    )
    candidates = set(
        links.filter(pl.col("decision") == "review").get_column("candidate").drop_nulls().to_list()
    )
    with master.connect() as mconn:
        candidate_rows = (
            {r["person_id"]: r for r in read_people(mconn, list(candidates)).to_dicts()} if candidates else {}
        )
    masters = linked.masters
    changed = _changed_fields(records, masters)
    # Each linked event's person's residence, for events about someone master holds.
    home_of = dict(
        zip(
            masters.get_column("event_id").to_list(),
            masters.get_column("division_code").to_list(),
            strict=True,
        )
    )
    proposal_ids = iter(uuid7_texts(links.height))  # at most one proposal per link, in order
    rows = links.select(
        "rid", "person_id", "decision", "match_probability", "explanation", "candidate", "id_of_excluded"
    )
    for (
        record_id,
        person_id,
        decision,
        probability,
        explanation,
        candidate_id,
        id_of_excluded,
    ) in rows.iter_rows():
        event = by_id[int(record_id)]
        rec = event["standardized"] or {}
        service = rules.verification.services.get(event["service_code"] or "")
        work.add_link(event, "person", person_id or candidate_id, probability, decision, explanation)
        if service is None:
            work.event_to(event, EventStatus.unlinked, "unknown_service")
            report.unlinked += 1
            continue
        if decision == "review":
            candidate = candidate_rows.get(candidate_id)
            # The candidate's own village confirms; a candidate without a place in master has no
            # village to ask, and the place the event claims is not one (it stays unroutable).
            home = (candidate or {}).get("division_code")
            proposal = _proposal(
                event,
                IDENTITY_ROUTE,
                "person",
                candidate["person_id"] if candidate else None,
                home,
                {"candidate": candidate_id, "match_probability": probability},
                next(proposal_ids),
            )
            if _route(rules, units, work, event, proposal, home, None):
                report.identity_reviews += 1
            else:
                report.unroutable += 1
            work.event_to(event, EventStatus.identity_review)
            continue
        if decision == "new" and id_of_excluded:
            # Split off the person its ID number names: the ID itself is wrong; the window corrects it.
            work.event_to(event, EventStatus.unlinked, "id_number_of_split_person")
            report.unlinked += 1
            continue
        if decision == "new" and (service.change == "credential" or not rec.get("id_number")):
            flag = "no_master_person" if service.change == "credential" else "no_valid_id"
            work.event_to(event, EventStatus.unlinked, flag)
            report.unlinked += 1
            continue
        report.linked += decision == "match"
        known = record_id in home_of
        if service.change == "person":
            route_name, payload = _person_change(service, rec, known, changed.get(record_id, []))
            # Jurisdiction from master: a known person's own residence; someone new where they register.
            home = home_of[record_id] if known else payload.get("division_code")
            destination = payload.get("division_code") if known else None
        else:
            route_name, payload = service.route, _credential_change(service, rec)
            home, destination = home_of.get(record_id), None
        if route_name is None:
            work.event_to(event, EventStatus.confirmed)  # master already holds exactly this
            report.unchanged += 1
            continue
        report.new_people += person_id is None
        proposal = _proposal(
            event,
            route_name,
            "person" if service.change == "person" else "credential",
            person_id,
            home,
            payload,
            next(proposal_ids),
        )
        if _route(rules, units, work, event, proposal, home, destination):
            report.proposals += 1
        else:
            report.unroutable += 1
        work.event_to(event, EventStatus.proposed)


def _proposal(
    event: dict[str, Any],
    change: str,
    kind: str,
    entity_id: str | None,
    home: str | None,
    payload: dict[str, Any],
    proposal_id: str | None = None,
) -> dict[str, Any]:
    now = utcnow()
    return {
        "proposal_id": proposal_id or uuid7_texts(1)[0],
        "event_id": event["event_id"],
        "change": change,
        "entity_kind": kind,
        "entity_id": entity_id,
        "payload": payload,
        "division_code": home,
        "county_code": home[:6] if home else None,
        "source": event["source_system"],
        # Trust in survivorship follows the department the source *proved* to be, never the
        # department an ingest merely named.
        "department": event["proven_department"],
        "state": ProposalState.pending.value,
        "round": event["link_round"],
        "created_at": now,
        "updated_at": now,
    }


def _route(
    rules: Rulebook,
    units: UnitIndex,
    work: ChunkWork,
    event: dict[str, Any],
    proposal: dict[str, Any],
    home: str | None,
    destination: str | None,
) -> bool:
    """Plan the proposal's tasks (the first open); False when no unit covers a step."""
    route = rules.verification.routes[proposal["change"]]
    assigned = units.assign(route, home, destination)
    work.proposals.append(proposal)
    missing = [
        a.level + (f":{a.department}" if a.department else "") + f" of {a.division_code}"
        for a in assigned
        if a.unit_id is None
    ]
    if missing:
        proposal["state"] = ProposalState.unroutable.value
        proposal["payload"] = {**proposal["payload"], "_unroutable": f"no unit registered for {missing}"}
        work.flags.append(
            {"k_event_id": event["event_id"], "v_flags": [*event["quality_flags"], "no_unit_for_division"]}
        )
        return False
    tasks = [
        StepTask(
            i,
            a.level,
            a.department,
            a.unit_id or "",
            a.division_code,
            a.route_step,
            TaskState.open if i == 0 else TaskState.waiting,
        )
        for i, a in enumerate(assigned)
    ]
    work.flows.append(
        Flow(
            proposal["proposal_id"],
            proposal["change"],
            event["event_id"],
            tasks,
            authenticated_source=event["authenticated_source"],
        )
    )
    return True
