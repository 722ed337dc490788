"""Linking a chunk of events for proposals: the answers of identity reviews, and the batch link
against master (events a split took off someone are linked again without that person)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import polars as pl
from sqlalchemy import Connection, Engine, select

from govdb.link.features import PERSON_FIELDS
from govdb.link.model import LinkModel
from govdb.link.online import LinkResult, link_against_master
from govdb.link.reads import FeatureCache, read_people
from govdb.link.worker import LinkWorker
from govdb.rulebook.loader import Rulebook
from govdb.store.bulk import among, id_chunks
from govdb.store.events import LinkExclusion, Proposal
from govdb.store.states import EventStatus, ProposalState
from govdb.verify.tasks import IDENTITY_ROUTE

PROPOSAL = Proposal.__table__  # type: ignore[attr-defined]
EXCLUSION = LinkExclusion.__table__  # type: ignore[attr-defined]
COMPARED = (*PERSON_FIELDS, "division_code")


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text if text != "" else None


def event_records(pending: list[dict[str, Any]]) -> pl.DataFrame:
    """Events' standardized person fields as the records the linker reads."""
    rows = [
        {"event_id": str(e["event_id"]), **{k: _as_text((e["standardized"] or {}).get(k)) for k in COMPARED}}
        for e in pending
    ]
    return pl.DataFrame(rows, schema={"event_id": pl.String, **{k: pl.String for k in COMPARED}})


def reviewed_links(
    conn: Connection, master: Engine, events: list[dict[str, Any]], resolved: list[dict[str, Any]]
) -> dict[int, LinkResult]:
    """Links settled by a reviewer: an approved identity check is a match with its candidate; a
    rejected one means the record is someone new. Consumed reviews become `resolved`."""
    ids = [e["event_id"] for e in events if e["status"] == EventStatus.identity_review]
    reviews: list[Any] = []
    for chunk in id_chunks(conn, ids):
        reviews += conn.execute(
            select(
                PROPOSAL.c.proposal_id,
                PROPOSAL.c.event_id,
                PROPOSAL.c.entity_id,
                PROPOSAL.c.state,
                PROPOSAL.c.payload,
            ).where(
                among(conn, PROPOSAL.c.event_id, chunk),
                PROPOSAL.c.change == IDENTITY_ROUTE,
                PROPOSAL.c.state.in_([ProposalState.approved.value, ProposalState.rejected.value]),
            )
        ).all()
    if not reviews:
        return {}
    with master.connect() as mconn:
        people = {
            r["person_id"]: r
            for r in read_people(mconn, [r.entity_id for r in reviews if r.entity_id]).to_dicts()
        }
    settled: dict[int, LinkResult] = {}
    for review in reviews:
        confirmed = review.state == ProposalState.approved and review.entity_id in people
        settled[review.event_id] = LinkResult(
            str(review.event_id),
            review.entity_id if confirmed else None,
            "match" if confirmed else "new",
            1.0 if confirmed else 0.0,
            None,
            {"reviewed": review.state, "proposal_id": review.proposal_id, **review.payload},
            people.get(review.entity_id) if confirmed else None,
        )
        resolved.append({"proposal_id": review.proposal_id, "state": review.state})
    return settled


def _plain_records(plain: list[dict[str, Any]], records: pl.DataFrame | None) -> pl.DataFrame:
    """The `event_records` of these events, in their order (`records` may hold them and others)."""
    if records is None:
        return event_records(plain)
    order = pl.DataFrame({"event_id": [str(e["event_id"]) for e in plain]}, schema={"event_id": pl.String})
    return order.join(records, on="event_id", how="left", maintain_order="left")


def submit_links(worker: LinkWorker, fresh: list[dict[str, Any]], records: pl.DataFrame | None) -> None:
    """Start linking the chunk's events in the linking process: those `link_events` would link in
    one batch (it collects them)."""
    plain = [e for e in fresh if not e["link_round"]]
    if plain:
        worker.submit(_plain_records(plain, records))


def link_events(
    events: Engine,
    master: Engine,
    rules: Rulebook,
    model: LinkModel | Callable[[], LinkModel],
    fresh: list[dict[str, Any]],
    address_hint: str | None,
    features: FeatureCache | None = None,
    records: pl.DataFrame | None = None,
    worker: LinkWorker | None = None,
) -> list[LinkResult]:
    """Link the chunk's events against master in one batch; an event a split took off someone is
    linked on its own, with that person left out of its candidates. `records` may hold the
    events' `event_records` already (of these events and perhaps others). With a `worker`, the
    batch was submitted to it (`submit_links`) and its links are collected here."""
    relinked = [e for e in fresh if e["link_round"]]
    plain = [e for e in fresh if not e["link_round"]]
    matching = rules.matching["person"]
    out: list[LinkResult] = []
    if plain and worker is not None:
        out = worker.collect()
    elif plain:
        out = link_against_master(
            master,
            _plain_records(plain, records),
            matching,
            model,
            address_hint=address_hint,
            features=features,
        )
    if not relinked:
        return out
    excluded: dict[int, set[str]] = {}
    with events.connect() as conn:
        for chunk in id_chunks(conn, [e["event_id"] for e in relinked]):
            for r in conn.execute(
                select(EXCLUSION.c.event_id, EXCLUSION.c.entity_id).where(
                    among(conn, EXCLUSION.c.event_id, chunk), EXCLUSION.c.entity_kind == "person"
                )
            ):
                excluded.setdefault(r.event_id, set()).add(r.entity_id)
    with master.connect() as mconn:
        people = read_people(mconn, sorted(set().union(*excluded.values()))) if excluded else None
    their_ids = set(people.get_column("id_number").to_list()) if people is not None else set()
    for event in relinked:
        left_out = excluded.get(event["event_id"], set())
        own_id = (event["standardized"] or {}).get("id_number")
        for link in link_against_master(
            master, event_records([event]), matching, model, address_hint=address_hint, exclude=left_out
        ):
            why = {**link.explanation, "excluded": sorted(left_out), "id_of_excluded": own_id in their_ids}
            out.append(dataclasses.replace(link, explanation=why))
    return out
