"""Linking a chunk of events for proposals: the answers of identity reviews, and the batch link
against master (events a split took off someone are linked again without that person)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl
from sqlalchemy import Connection, Engine, select

from govdb.link.features import PERSON_FIELDS
from govdb.link.keys import ensure_link_keys
from govdb.link.model import LinkModel
from govdb.link.online import LINK_COLUMNS, LinkResult, link_against_master, linked_frames
from govdb.link.reads import FeatureCache, read_people
from govdb.link.worker import LinkWorker
from govdb.rulebook.loader import Rulebook
from govdb.rulebook.models import MatchingRules
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


# A chunk's links and linked master rows, as `ChunkLinks` holds them.
LINK_SCHEMA = dict(
    zip(LINK_COLUMNS, (pl.String, pl.String, pl.String, pl.Float64, pl.Float64, pl.String), strict=True)
)
MASTER_SCHEMA = {
    "event_id": pl.String,
    "person_id": pl.String,
    **{k: (pl.Date if k == "birth_date" else pl.String) for k in COMPARED},
}


def master_frame(known: list[tuple[str, dict[str, Any]]]) -> pl.DataFrame:
    """Each (event id, its linked person's master row as the linker read it), a column at a time."""
    columns = {
        "event_id": [e for e, _ in known],
        **{k: [m.get(k) for _, m in known] for k in MASTER_SCHEMA if k != "event_id"},
    }
    return pl.DataFrame(columns, schema=MASTER_SCHEMA)


@dataclass(frozen=True)
class ChunkLinks:
    """A chunk's links (`LINK_COLUMNS`, `rid` the event id as text; the explanation as the
    linker's JSON) and, per event linked to someone master holds, that person's row as the linker
    read it (`MASTER_SCHEMA`). Planning reads them as columns: a result object and a master dict
    per event, then a frame rebuilt from the dicts, cost a county's `process` about 20 s."""

    links: pl.DataFrame
    masters: pl.DataFrame

    @staticmethod
    def of_frames(links: pl.DataFrame, people: pl.DataFrame | None) -> ChunkLinks:
        """From `linked_frames`: each link's person found among `people` (a row each, the last
        one if a person came twice, as `link_results` takes them)."""
        links = links.select(pl.col(k).cast(t) for k, t in LINK_SCHEMA.items())
        # Planning reads the explanation as a JSON object (`str.json_path_match` of other text is
        # null): anything else is no linker's, and is refused as `LinkResult.from_linker` does.
        odd = links.filter(~pl.col("explanation").str.starts_with("{").fill_null(False))
        if odd.height:
            raise TypeError(
                f"a linker's explanation is a JSON object's text, not {odd.item(0, 'explanation')!r:.80}"
            )
        if people is None or people.height == 0:
            return ChunkLinks(links, pl.DataFrame(schema=MASTER_SCHEMA))
        rows = people.unique("person_id", keep="last", maintain_order=True)
        masters = (
            links.select(pl.col("rid").alias("event_id"), "person_id")
            .filter(pl.col("person_id").is_not_null())
            .join(rows, on="person_id", how="inner", maintain_order="left")
        )
        return ChunkLinks(links, masters.select(pl.col(k).cast(t) for k, t in MASTER_SCHEMA.items()))

    @staticmethod
    def of_results(results: list[LinkResult]) -> ChunkLinks:
        """From results (a reviewer's answers, events linked again without someone)."""
        rows = [
            (
                r.record_id,
                r.person_id,
                r.decision,
                float(r.match_probability),
                r.match_weight,
                r.explanation_json or json.dumps(r.explanation, ensure_ascii=False),
            )
            for r in results
        ]
        links = pl.DataFrame(rows, schema=LINK_SCHEMA, orient="row")
        return ChunkLinks(
            links, master_frame([(r.record_id, r.master) for r in results if r.master is not None])
        )

    @staticmethod
    def concat(parts: list[ChunkLinks]) -> ChunkLinks:
        """The parts' links in order, and their master rows."""
        if len(parts) == 1:
            return parts[0]
        return ChunkLinks(
            pl.concat([p.links for p in parts], how="vertical"),
            pl.concat([p.masters for p in parts], how="vertical"),
        )


def event_records(pending: list[dict[str, Any]]) -> pl.DataFrame:
    """Events' standardized person fields as the records the linker reads (values as text, an
    empty one null).

    A column at a time: standardized records hold text, taken as it is (a dict per event and a
    call per value cost a county's run 5-9 s); a column with any other value (a record's JSON
    edited in the store to hold a number) goes value by value."""
    records = [e["standardized"] or {} for e in pending]
    columns = [pl.Series("event_id", [str(e["event_id"]) for e in pending], dtype=pl.String)]
    for k in COMPARED:
        values = [r.get(k) for r in records]
        try:
            column = pl.Series(k, values, dtype=pl.String, strict=True)
        except TypeError:
            column = pl.Series(k, [_as_text(v) for v in values], dtype=pl.String)
        columns.append(column.replace("", None))
    return pl.DataFrame(columns)


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
) -> ChunkLinks:
    """Link the chunk's events against master in one batch; an event a split took off someone is
    linked on its own, with that person left out of its candidates. `records` may hold the
    events' `event_records` already (of these events and perhaps others). With a `worker`, the
    batch was submitted to it (`submit_links`) and its links are collected here."""
    relinked = [e for e in fresh if e["link_round"]]
    plain = [e for e in fresh if not e["link_round"]]
    matching = rules.matching["person"]
    parts: list[ChunkLinks] = []
    if plain and worker is not None:
        parts.append(ChunkLinks.of_frames(*worker.collect()))
    elif plain:
        ensure_link_keys(master, matching)  # as link_against_master does, its results kept as frames
        with master.connect() as conn:
            frames = linked_frames(
                conn,
                _plain_records(plain, records),
                matching,
                model,
                address_hint=address_hint,
                features=features,
            )
        parts.append(ChunkLinks.of_frames(*frames))
    if relinked:
        parts.append(ChunkLinks.of_results(_relink(events, master, matching, model, relinked, address_hint)))
    return ChunkLinks.concat(parts) if parts else ChunkLinks.of_results([])


def _relink(
    events: Engine,
    master: Engine,
    matching: MatchingRules,
    model: LinkModel | Callable[[], LinkModel],
    relinked: list[dict[str, Any]],
    address_hint: str | None,
) -> list[LinkResult]:
    """Events a split took off someone, each linked on its own without the people left out."""
    out: list[LinkResult] = []
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
