"""The event store's half of a chunk of promote: its proposals still approved, the check chain
behind each and the day each event happened. Read here, or in promote's planning process
(govdb.promote.planner) while this one writes the chunk before into master."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, select

from govdb.base.clock import LOCAL_ZONE
from govdb.store.bulk import among, driver_mappings, fetch_among, id_chunks, result_processor
from govdb.store.events import Decision, Event, Proposal, Task
from govdb.store.states import ProposalState

PROPOSAL = Proposal.__table__  # type: ignore[attr-defined]
TASK = Task.__table__  # type: ignore[attr-defined]
DECISION = Decision.__table__  # type: ignore[attr-defined]
EVENT = Event.__table__  # type: ignore[attr-defined]

ChunkRead = tuple[list[dict[str, Any]], dict[str, str], dict[int, dt.date]]


def read_chunk(conn: Connection, ids: list[str]) -> ChunkRead:
    """Those of these proposals still approved (queue order), their check chains, their events' days."""
    approved = approved_among(conn, ids)
    checks = check_chains(conn, [p["proposal_id"] for p in approved])
    return approved, checks, event_dates(conn, [p["event_id"] for p in approved])


# The check chain's JSON object for one decision, built by SQLite: its text is escaped in C, where
# a dict per decision and `json.dumps` per proposal took a tenth of a county's promote. `at` is
# the stored UTC time as `isoformat()` writes it (no fraction when it is zero), `amendments` the
# stored object or array, none when empty. A decision stored in any other form (a time not as
# govdb writes it or no real one, such as 30 February, amendments that are not an object, an
# array or null) is `plain` 0 and rebuilt from SQLAlchemy's values in Python, as every decision
# is on PostgreSQL: where that raises, promote raises as it always did.
_DIGIT = "[0-9]"
_STORED_TIME = f"{_DIGIT * 4}-{_DIGIT * 2}-{_DIGIT * 2} {_DIGIT * 2}:{_DIGIT * 2}:{_DIGIT * 2}.{_DIGIT * 6}"
_SQLITE_CHECKS = f"""
SELECT t.proposal_id, json_object(
    'level', t.level, 'department', t.department, 'unit', d.unit_id, 'actor', d.actor_id,
    'rule', d.rule, 'source', d.source, 'outcome', d.outcome,
    'at', replace(CASE WHEN substr(d.decided_at, 20) = '.000000' THEN substr(d.decided_at, 1, 19)
                  ELSE d.decided_at END, ' ', 'T') || '+00:00',
    'amendments', CASE WHEN json_valid(d.amendments) = 0 THEN NULL
                       WHEN json(d.amendments) IN ('{{{{}}}}', '[]', 'null') THEN NULL
                       ELSE json(d.amendments) END
), coalesce(typeof(d.decided_at) = 'text' AND d.decided_at GLOB '{_STORED_TIME}'
            AND datetime(d.decided_at, '+0 days') = substr(d.decided_at, 1, 19)
            AND substr(d.decided_at, 1, 4) <> '0000'
            AND CASE WHEN json_valid(d.amendments) THEN json_type(d.amendments) IN ('object', 'array', 'null')
                ELSE 0 END, 0), d.id
FROM task t JOIN decision d ON d.task_id = t.task_id
WHERE {{among}} ORDER BY d.id
"""  # braces doubled twice: an f-string, then `fetch_among`'s format


def check_chains(conn: Connection, proposal_ids: Sequence[str]) -> dict[str, str]:
    """Every decision on each proposal's tasks, in order: the check chain its lineage carries, as
    the JSON text stored with each of its values."""
    if conn.dialect.name == "sqlite":
        found: dict[str, list[tuple[int, str | None]]] = {}
        odd: set[int] = set()  # decisions not stored as govdb stores them
        for proposal_id, check, plain, decision_id in fetch_among(
            conn, _SQLITE_CHECKS, "t.proposal_id", list(proposal_ids)
        ):
            found.setdefault(proposal_id, []).append((decision_id, check if plain else None))
            if not plain:
                odd.add(decision_id)
        rebuilt = _checks_in_python(conn, sorted(odd), by_decision=True) if odd else {}
        return {
            p: "[" + ", ".join(check or rebuilt[d][1] for d, check in chain) + "]"
            for p, chain in found.items()
        }
    chains: dict[str, list[str]] = {}
    for proposal_id, check in _checks_in_python(conn, proposal_ids).values():
        chains.setdefault(proposal_id, []).append(check)
    return {p: "[" + ", ".join(chain) + "]" for p, chain in chains.items()}


def _checks_in_python(
    conn: Connection, ids: Sequence[Any], *, by_decision: bool = False
) -> dict[int, tuple[str, str]]:
    """decision id -> (its proposal, its check as JSON text), in decision order, for the decisions
    on these proposals (or, `by_decision`, these decisions), the values as SQLAlchemy's result
    gives them (PostgreSQL's times in their zone, its JSON decoded)."""
    out: dict[int, tuple[str, str]] = {}
    among_ids = DECISION.c.id if by_decision else TASK.c.proposal_id
    for chunk in id_chunks(conn, list(ids)):
        query = (
            select(
                DECISION.c.id,
                TASK.c.proposal_id,
                TASK.c.level,
                TASK.c.department,
                DECISION.c.unit_id,
                DECISION.c.actor_id,
                DECISION.c.rule,
                DECISION.c.source,
                DECISION.c.outcome,
                DECISION.c.decided_at,
                DECISION.c.amendments,
            )
            .join(DECISION, DECISION.c.task_id == TASK.c.task_id)
            .where(among(conn, among_ids, chunk))
            .order_by(DECISION.c.id)
        )
        for r in driver_mappings(conn, query):
            check = {
                "level": r["level"],
                "department": r["department"],
                "unit": r["unit_id"],
                "actor": r["actor_id"],
                "rule": r["rule"],
                "source": r["source"],
                "outcome": r["outcome"],
                "at": r["decided_at"].isoformat(),
                "amendments": r["amendments"] or None,
            }
            out[r["id"]] = (r["proposal_id"], json.dumps(check, ensure_ascii=False))
    return out


def event_dates(conn: Connection, event_ids: Sequence[int]) -> dict[int, dt.date]:
    out: dict[int, dt.date] = {}
    for chunk in id_chunks(conn, sorted(set(event_ids))):
        for r in conn.execute(
            select(EVENT.c.event_id, EVENT.c.occurred_at).where(among(conn, EVENT.c.event_id, chunk))
        ):
            if r.occurred_at is not None:  # the calendar day where it happened, not in UTC
                when = r.occurred_at if r.occurred_at.tzinfo else r.occurred_at.replace(tzinfo=dt.UTC)
                out[r.event_id] = when.astimezone(LOCAL_ZONE).date()
    return out


def approved_among(conn: Connection, ids: list[str]) -> list[dict[str, Any]]:
    """Those of these proposals that are still approved, in queue order: read by primary key, the state
    tested here (SQLite would walk the queue's index of every approved proposal for each slice)."""
    columns = list(PROPOSAL.columns)
    names = ", ".join(f'"{c.name}"' for c in columns)
    statement = f"SELECT {names} FROM {PROPOSAL.name} WHERE {{among}}"
    processors = [(i, f) for i, c in enumerate(columns) if (f := result_processor(conn, c)) is not None]
    out: list[dict[str, Any]] = []
    for row in fetch_among(conn, statement, "proposal_id", sorted(ids)):
        values = list(row)
        for i, process in processors:
            values[i] = process(values[i])
        proposal = dict(zip((c.name for c in columns), values, strict=True))
        if proposal["state"] == ProposalState.approved.value and proposal["change"] != "confirm_identity":
            out.append(proposal)
    out.sort(key=lambda p: (p["created_at"], p["proposal_id"]))
    return out
