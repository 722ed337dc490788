"""What a chunk of proposing writes, and the one transaction that writes it: the standardized
records of the chunk's received events, links, proposals, tasks, auto-pass decisions and the
events' checked transitions, in bulk. A run writes each chunk
in a thread of its own while it links and plans the next (`ChunkWriter`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from sqlalchemy import Connection, Engine, bindparam, insert, select, update

from govdb.base.clock import utcnow
from govdb.link.online import LinkResult
from govdb.store.bulk import among, id_chunks, insert_frame
from govdb.store.events import Event, Link, Proposal, Task
from govdb.store.locks import writing
from govdb.store.states import EventStatus, ProposalState, move
from govdb.store.writer import BackgroundWriter
from govdb.validate import write_standardized
from govdb.verify.tasks import Flow, auto_pass_decisions

EVENT = Event.__table__  # type: ignore[attr-defined]
PROPOSAL = Proposal.__table__  # type: ignore[attr-defined]
TASK = Task.__table__  # type: ignore[attr-defined]
LINK = Link.__table__  # type: ignore[attr-defined]


@dataclass
class ChunkWork:
    """What one chunk of proposing writes."""

    links: list[dict[str, Any]] = field(default_factory=list)
    proposals: list[dict[str, Any]] = field(default_factory=list)
    flows: list[Flow] = field(default_factory=list)
    status: dict[tuple[EventStatus, EventStatus], list[dict[str, Any]]] = field(default_factory=dict)
    flags: list[dict[str, Any]] = field(default_factory=list)
    resolved: list[dict[str, Any]] = field(default_factory=list)
    # The chunk's received events standardized (govdb.validate.StandardizedChunk.updates), written
    # first: received -> standardized -> proposed in one commit (on SQLite each changed page goes
    # through the log once; PostgreSQL keeps a row version per UPDATE either way).
    standardized: pl.DataFrame | None = None

    def link(self, event: dict[str, Any], kind: str, link: LinkResult) -> None:
        """The event's link row (the explanation as JSON text, as the linker wrote it if it did)."""
        entity_id = link.person_id or link.explanation.get("candidate")
        explanation = link.explanation_json or _json(link.explanation)
        self.add_link(event, kind, entity_id, link.match_probability, link.decision, explanation)

    def add_link(
        self,
        event: dict[str, Any],
        kind: str,
        entity_id: str | None,
        score: float,
        decision: str,
        explanation: str,
    ) -> None:
        """The event's link row: the entity it is about (or a review's candidate), the explanation
        as JSON text."""
        self.links.append(
            {
                "event_id": event["event_id"],
                "entity_kind": kind,
                "entity_id": entity_id,
                "score": score,
                "decision": decision,
                "explanation": explanation,
            }
        )

    def event_to(self, event: dict[str, Any], target: EventStatus, flag: str | None = None) -> None:
        self.status.setdefault((EventStatus(event["status"]), target), []).append(
            {"event_id": event["event_id"]}
        )
        if flag:
            self.flags.append({"k_event_id": event["event_id"], "v_flags": [*event["quality_flags"], flag]})


class ChunkWriter(BackgroundWriter):
    """Writes each chunk's plan in a thread of its own while the next chunk is linked and planned.
    Planning a chunk reads the event store (its events, their identity reviews) and never writes
    it; the events a chunk writes are all behind the next chunk's."""

    def __init__(self, events: Engine) -> None:
        super().__init__(events, "govdb-propose-write")

    def write(self, work: ChunkWork) -> None:
        self.submit(write_chunk, self.engine, work)


def write_chunk(events: Engine, work: ChunkWork) -> None:
    """One transaction: standardized records, links, proposals, tasks, auto-pass decisions, event
    transitions."""
    now = utcnow()
    states = {f.proposal_id: f.state for f in work.flows}
    for p in work.proposals:
        if p["proposal_id"] in states:
            p["state"] = states[p["proposal_id"]].value
    text, day = pl.String, pl.Datetime("us", "UTC")
    task_columns = ("proposal_id", "step", "level", "department", "unit_id", "division_code", "state")
    planned = [(f.proposal_id, t) for f in work.flows for t in f.tasks]
    tasks = pl.DataFrame(
        {"proposal_id": [p for p, _ in planned]}
        | {c: [getattr(t, c) for _, t in planned] for c in task_columns[1:-1]}
        | {"state": [t.state.value for _, t in planned], "decided_at": [t.decided_at for _, t in planned]},
        schema={**{c: (pl.Int64 if c == "step" else text) for c in task_columns}, "decided_at": day},
    )
    link_schema = {
        "event_id": pl.Int64,
        "entity_kind": text,
        "entity_id": text,
        "score": pl.Float64,
        "decision": text,
        "explanation": text,
    }
    # Frames built a column at a time: building them from a dict per row cost more than the insert.
    links = pl.DataFrame({c: [k[c] for k in work.links] for c in link_schema}, schema=link_schema)
    proposal_columns = (
        "proposal_id",
        "event_id",
        "change",
        "entity_kind",
        "entity_id",
        "division_code",
        "county_code",
        "source",
        "department",
        "state",
        "round",
    )
    proposals = pl.DataFrame(
        {c: [p[c] for p in work.proposals] for c in proposal_columns}
        | {"payload": [_json(p["payload"]) for p in work.proposals]},
        schema={
            **{c: (pl.Int64 if c in ("event_id", "round") else text) for c in proposal_columns},
            "payload": text,
        },
    )
    with writing(events) as conn:
        if work.standardized is not None:
            write_standardized(conn, work.standardized)
        insert_frame(conn, LINK, links, {"created_at": now})
        insert_frame(conn, PROPOSAL, proposals, {"created_at": now, "updated_at": now})
        insert_frame(conn, TASK, tasks, {"round": 0, "created_at": now})
        passed = [f for f in work.flows if any(t.passed_by for t in f.tasks)]
        if passed:
            ids = _task_ids(conn, [f.proposal_id for f in passed])
            for f in passed:
                for t in f.tasks:
                    t.task_id = ids[(f.proposal_id, t.step)]
            conn.execute(insert(Event.metadata.tables["decision"]), auto_pass_decisions(passed))
        for (source, target), rows in work.status.items():
            if source != target:
                move(conn, EVENT, "status", EventStatus, source, target, rows, key=("event_id",))
        if work.flags:
            conn.execute(
                update(EVENT)
                .where(EVENT.c.event_id == bindparam("k_event_id"))
                .values(quality_flags=bindparam("v_flags")),
                work.flags,
            )
        for state in (ProposalState.approved, ProposalState.rejected):
            rows = [{"proposal_id": r["proposal_id"]} for r in work.resolved if r["state"] == state]
            move(
                conn,
                PROPOSAL,
                "state",
                ProposalState,
                state,
                ProposalState.resolved,
                rows,
                key=("proposal_id",),
                values={"updated_at": now},
            )


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _task_ids(conn: Connection, proposal_ids: list[str]) -> dict[tuple[str, int], int]:
    out: dict[tuple[str, int], int] = {}
    for chunk in id_chunks(conn, proposal_ids):
        for r in conn.execute(
            select(TASK.c.proposal_id, TASK.c.step, TASK.c.task_id).where(
                among(conn, TASK.c.proposal_id, chunk)
            )
        ):
            out[(r.proposal_id, r.step)] = r.task_id
    return out
