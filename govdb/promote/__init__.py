"""Promote approved proposals into master data, with survivorship, conflicts and field lineage.

Set-based, chunk by chunk: the chunk's proposals, checks, event dates and the master rows they
touch are read in a few statements, the changes are worked out in memory, then written with bulk
inserts and executemany updates. A run plans its chunks first, each about entities that lie
together in master (`_chunk_plan`). Promotion spans two databases, so it is idempotent: the
master changes, the changed people's blocking keys and the `promotion` rows (unique on proposal
id) commit in one master transaction per chunk; once master holds every planned chunk, the
proposals are marked promoted in the event store (a checked transition), in their own order. A
run after a crash at any point completes the marking. Promotions whose
keys could not be written with them (master keyed with other rules: `keys_refreshed` False, as
an older version left them after a crash) are re-keyed by the next run. One `promote` runs at a
time (a job lock); a second waits, then finds nothing left. Nothing else writes people or
credentials except authoritative bulk loads (invariant 1).

Valid time: each value is valid from its event's date. A change dated before the value master
holds is kept as a past value (valid until the current one began), never as the current value, so
history is never inverted (valid_from <= valid_to, also a database constraint).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from typing import Any

import polars as pl
from sqlalchemy import Connection, Engine, bindparam, select, update

from govdb.base.clock import LOCAL_ZONE, utcnow
from govdb.base.collector import bulk_collection
from govdb.link.online import refresh_link_keys, rekey_people
from govdb.link.reads import MASTER_COLUMNS
from govdb.promote.entities import attach_places
from govdb.promote.storable import missing_entity, unstorable
from govdb.promote.survivorship import Chunk, PromoteReport, lineage_source
from govdb.rulebook.loader import Rulebook
from govdb.store.bulk import among, driver_mappings, driver_rows, fetch_among, id_chunks, result_processor
from govdb.store.engine import sync_log
from govdb.store.events import Decision, Event, Proposal, Task
from govdb.store.locks import job_lock, writing, xact_lock
from govdb.store.master import Promotion
from govdb.store.states import EventStatus, ProposalState, move

__all__ = ["PromoteReport", "lineage_source", "mark_held", "promote_approved", "refresh_pending_keys"]

# Proposals per chunk, and SQLite's page cache while one is written. A chunk of the queue changed
# B-trees at random places (people, features and lineage by person, link keys by key): each chunk
# dirtied most of their pages once, so fewer, larger chunks wrote fewer pages. A 1M county's
# promote took 298 s at 20,000 (peak 1.2 GB), 260 s at 60,000, 232 s with the cache at 512 MiB
# (peak 2.7 GB); 100,000 gained nothing more. Chunks of neighbouring entities (`_chunk_plan`)
# read and wrote less than half of that (benchmarks/RESULTS.md, issue 10). Such a chunk changes
# about 43,000 pages (700 MB): at 512 MiB SQLite spilled them to the log before the commit and read
# them back. At 1 GiB: 0.94 of the time, the peak 550 MB higher (2.9 GB); chunks of 30,000 at
# 512 MiB were slower than 60,000 (RESULTS, 5 December).
CHUNK = 60_000
CACHE_MIB = 1024
PROPOSAL = Proposal.__table__  # type: ignore[attr-defined]
TASK = Task.__table__  # type: ignore[attr-defined]
DECISION = Decision.__table__  # type: ignore[attr-defined]
EVENT = Event.__table__  # type: ignore[attr-defined]
PROMOTION = Promotion.__table__  # type: ignore[attr-defined]


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


def _checks(conn: Connection, proposal_ids: Sequence[str]) -> dict[str, str]:
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


def _event_dates(conn: Connection, event_ids: Sequence[int]) -> dict[int, dt.date]:
    out: dict[int, dt.date] = {}
    for chunk in id_chunks(conn, sorted(set(event_ids))):
        for r in conn.execute(
            select(EVENT.c.event_id, EVENT.c.occurred_at).where(among(conn, EVENT.c.event_id, chunk))
        ):
            if r.occurred_at is not None:  # the calendar day where it happened, not in UTC
                when = r.occurred_at if r.occurred_at.tzinfo else r.occurred_at.replace(tzinfo=dt.UTC)
                out[r.event_id] = when.astimezone(LOCAL_ZONE).date()
    return out


_PROMOTABLE = (PROPOSAL.c.state == ProposalState.approved.value, PROPOSAL.c.change != "confirm_identity")


def _approved(conn: Connection) -> list[dict[str, Any]]:
    """The head of the queue: proposals approved after the run's plan was made."""
    query = select(PROPOSAL).where(*_PROMOTABLE).order_by(PROPOSAL.c.created_at, PROPOSAL.c.proposal_id)
    return driver_mappings(conn, query.limit(CHUNK))


def _chunk_plan(events: Engine, master: Engine) -> list[list[str]]:
    """Every approved proposal in chunks of about CHUNK. First those about people master holds
    (by person id, or by the ID number of a proposal to register someone), in the order of the
    person's id, each person's all in one chunk; then every other one (new people, credentials,
    enterprises, places) in queue order, so claims on one certificate number or one new person's
    registrations keep the order they were approved in.

    A load writes people, their features and their lineage in person id order, and master indexes
    them by it: a chunk of the queue touched nearly every page of those tables and indexes, a
    chunk of neighbours a stretch of them (people promote creates are appended, at random ids)."""
    with events.connect() as conn:
        rows = driver_rows(
            conn,
            select(
                PROPOSAL.c.proposal_id, PROPOSAL.c.entity_kind, PROPOSAL.c.entity_id, PROPOSAL.c.created_at
            ).where(*_PROMOTABLE),
        )
        unnamed = [p for p, kind, entity, _ in rows if kind == "person" and entity is None]
        payload = result_processor(conn, PROPOSAL.c.payload) or (lambda v: v)
        id_numbers = {
            p: number
            for p, text in fetch_among(
                conn, "SELECT proposal_id, payload FROM proposal WHERE {among}", "proposal_id", unnamed
            )
            if isinstance(value := payload(text), dict) and isinstance(number := value.get("id_number"), str)
        }
    with master.connect() as conn:
        held = dict(
            fetch_among(
                conn,
                "SELECT id_number, person_id FROM person WHERE {among}",
                "id_number",
                sorted(set(id_numbers.values())),
            )
        )
    people: list[tuple[str, str]] = []
    others: list[tuple[Any, str]] = []
    for proposal, kind, entity, at in rows:
        person = (entity or held.get(id_numbers.get(proposal, ""))) if kind == "person" else None
        if person is not None:
            people.append((person, proposal))
        else:
            others.append((at, proposal))
    people.sort()
    chunks: list[list[str]] = []
    current: list[str] = []
    for n, (person, proposal) in enumerate(people):
        if len(current) >= CHUNK and person != people[n - 1][0]:
            chunks.append(current)
            current = []
        current.append(proposal)
    chunks += [current] if current else []
    queued = [proposal for _, proposal in sorted(others)]
    return chunks + [queued[i : i + CHUNK] for i in range(0, len(queued), CHUNK)]


def _approved_among(conn: Connection, ids: list[str]) -> list[dict[str, Any]]:
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


def _set_aside(events: Engine, aside: dict[str, str], by_id: dict[str, dict[str, Any]]) -> None:
    """approved -> unpromotable for the proposals master cannot store (`aside`: id -> why), the
    reason kept in the payload as an unroutable proposal's is. Their events stay `proposed`, as
    an unroutable one's do. Before the marking: a crash in between sets them aside again."""
    with writing(events) as conn:
        _from_approved(
            conn,
            ProposalState.unpromotable,
            [
                {"proposal_id": i, "v_payload": {**_mapping(by_id[i]["payload"]), "_unpromotable": why}}
                for i, why in aside.items()
            ],
            {"payload": bindparam("v_payload"), "updated_at": utcnow()},
        )


def _from_approved(
    conn: Connection, to: ProposalState, rows: list[dict[str, Any]], values: dict[str, Any]
) -> None:
    """approved -> `to` for these proposals (checked: all of them must move)."""
    move(
        conn,
        PROPOSAL,
        "state",
        ProposalState,
        ProposalState.approved,
        to,
        rows,
        key=("proposal_id",),
        values=values,
    )


def _mapping(payload: Any) -> dict[str, Any]:
    return payload if isinstance(payload, dict) else {"_payload": payload}


def _mark_promoted(events: Engine, master: Engine, promoted: list[tuple[str, int]]) -> None:
    """The event store's half: approved -> promoted for these proposals (id, event id) and their
    events, in id order, a transaction for each CHUNK of them (each touches its own stretch of
    the proposal and event tables). Master's commits are made durable first: a power cut must
    never leave the event store saying promoted for a chunk master lost."""
    if not promoted:
        return
    sync_log(master)
    promoted = sorted(promoted)
    for start in range(0, len(promoted), CHUNK):
        batch = promoted[start : start + CHUNK]
        now = utcnow()
        with writing(events) as conn:
            _from_approved(
                conn, ProposalState.promoted, [{"proposal_id": p} for p, _ in batch], {"updated_at": now}
            )
            move(
                conn,
                EVENT,
                "status",
                EventStatus,
                EventStatus.proposed,
                EventStatus.promoted,
                [{"event_id": e} for e in sorted({e for _, e in batch})],
                key=("event_id",),
            )


def refresh_pending_keys(master: Engine, rules: Rulebook) -> int:
    """Rewrite the blocking keys of every person whose promotion has not had it done (this run's,
    or a crashed run's), then mark those promotions; returns the people re-keyed."""
    with master.connect() as conn:
        pending = conn.execute(
            select(PROMOTION.c.proposal_id, PROMOTION.c.entity_id).where(
                PROMOTION.c.keys_refreshed.is_(False), PROMOTION.c.entity_kind == "person"
            )
        ).all()
    if not pending:
        return 0
    people = sorted({r.entity_id for r in pending})
    refresh_link_keys(master, rules.matching["person"], people)
    with writing(master) as conn:
        conn.execute(
            update(PROMOTION).where(PROMOTION.c.proposal_id == bindparam("k_id")).values(keys_refreshed=True),
            [{"k_id": r.proposal_id} for r in pending],
        )
    return len(people)


@bulk_collection()
def promote_approved(
    events: Engine,
    master: Engine,
    rules: Rulebook,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> PromoteReport:
    """Apply every approved proposal to master, mark it promoted, re-key the people it touched."""
    report = PromoteReport()
    fingerprint = rules.fingerprint()  # recorded on every promotion row, hashed once per run
    with job_lock(events, "promote"):
        report.keys_refreshed += refresh_pending_keys(master, rules)
        plan = _chunk_plan(events, master)
        total, done = sum(map(len, plan)), 0
        promoted: list[tuple[str, int]] = []  # in master, not yet marked in the event store
        try:
            while True:
                if promoted and not plan:  # marked before the queue is read for what was approved since
                    marking, promoted = promoted, []
                    _mark_promoted(events, master, marking)
                planned = bool(plan)
                with events.connect() as conn:
                    approved = _approved_among(conn, plan.pop(0)) if planned else _approved(conn)
                    if not approved:
                        if planned:
                            continue
                        return report
                    checks = _checks(conn, [p["proposal_id"] for p in approved])
                    dates = _event_dates(conn, [p["event_id"] for p in approved])
                aside = _promote_chunk(master, rules, report, approved, checks, dates, fingerprint)
                if aside:
                    _set_aside(events, aside, {p["proposal_id"]: p for p in approved})
                promoted += [
                    (p["proposal_id"], p["event_id"]) for p in approved if p["proposal_id"] not in aside
                ]
                report.keys_refreshed += refresh_pending_keys(master, rules)
                done += len(approved)
                total = max(total, done)  # proposals approved during the run are promoted by it too
                if progress is not None:
                    progress(done, total)
        except Exception as error:
            # What master holds is marked before the error goes up: a chunk that fails on every
            # run holds back none of the chunks before it. (Stopped by Ctrl-C, the run stops at
            # once: the next run marks them.) A failed marking is noted on the error, not raised.
            if promoted:
                try:
                    _mark_promoted(events, master, promoted)
                except Exception as marking:
                    error.add_note(f"marking what master holds in the event store failed too: {marking}")
            raise


def mark_held(events: Engine, master: Engine, proposal_ids: Sequence[str]) -> int:
    """Complete a stopped run's marking for these proposals: approved -> promoted for those whose
    promotion master holds (a run killed before its marking). A correction calls it under the
    promote job lock before it reads their state. Returns how many were marked."""
    with events.connect() as conn:
        approved = [
            (p, e)
            for p, e, state in fetch_among(
                conn,
                "SELECT proposal_id, event_id, state FROM proposal WHERE {among}",
                "proposal_id",
                list(proposal_ids),
            )
            if state == ProposalState.approved.value
        ]
    if not approved:
        return 0
    with master.connect() as conn:
        held = {
            r[0]
            for r in fetch_among(
                conn,
                "SELECT proposal_id FROM promotion WHERE {among}",
                "proposal_id",
                [p for p, _ in approved],
            )
        }
    _mark_promoted(events, master, [(p, e) for p, e in approved if p in held])
    return len(held)


def _rekey(conn: Connection, rules: Rulebook, work: Chunk) -> int | None:
    """Blocking keys of the people this chunk creates or changes, from their rows as they will be;
    the people re-keyed, or None when master's keys follow other rules (left for
    `refresh_pending_keys`)."""
    ids = sorted({*work.new_people, *work.changed_people})
    schema = {c: (pl.Date if c == "birth_date" else pl.String) for c in MASTER_COLUMNS}
    rows = [work.people[i] for i in ids]
    people = pl.DataFrame({c: [r[c] for r in rows] for c in MASTER_COLUMNS}, schema=schema)
    written = rekey_people(conn, rules.matching["person"], people)
    return None if written is None else len(ids)


def _without(
    proposals: list[dict[str, Any]], aside: dict[str, str], report: PromoteReport
) -> list[dict[str, Any]]:
    """The proposals not set aside; those set aside counted in the report with their reasons."""
    if not aside:
        return proposals
    report.set_aside += len(aside)
    report.set_aside_ids += list(aside)
    report.set_aside_reasons.update(aside)
    return [p for p in proposals if p["proposal_id"] not in aside]


def _promote_chunk(
    master: Engine,
    rules: Rulebook,
    report: PromoteReport,
    approved: list[dict[str, Any]],
    checks: dict[str, str],
    dates: dict[int, dt.date],
    fingerprint: str,
) -> dict[str, str]:
    """The master half of one chunk, in one transaction (skipping proposals a crashed run applied).
    Returns the proposals set aside, id -> why: a value master cannot store, found in Python
    before anything is written, so no statement of the transaction carries it."""
    today = dt.date.today()
    with writing(master, cache_mib=CACHE_MIB, checkpoint_aside=True) as conn:
        # First, before people are read: a load or a correction re-keying people waits for the
        # whole chunk (and a load's new people are then seen here, never inserted twice).
        xact_lock(conn, "link_keys")
        already: set[str] = set()
        for chunk in id_chunks(conn, [p["proposal_id"] for p in approved]):
            already.update(
                conn.execute(
                    select(PROMOTION.c.proposal_id).where(among(conn, PROMOTION.c.proposal_id, chunk))
                ).scalars()
            )
        fresh = [p for p in approved if p["proposal_id"] not in already]
        report.completed_after_crash += len(already)
        aside = {p["proposal_id"]: why for p in fresh if (why := unstorable(p)) is not None}
        fresh = _without(fresh, aside, report)
        if not fresh:
            return aside
        work = Chunk(rules, report, fingerprint)
        work.read(conn, fresh)
        # Against master as this transaction reads it: a person reverted since approval.
        people, numbers = set(work.people), set(work.by_id_number)
        gone = {p["proposal_id"]: why for p in fresh if (why := missing_entity(p, people, numbers))}
        aside |= gone
        fresh = _without(fresh, gone, report)
        if not fresh:
            return aside
        touched: list[str] = []

        # A value holds from its event's date, never from a date still to come (a mistyped 2099
        # would otherwise outrank every real change after it). The chunk is applied in valid-time
        # order, so two changes of one field land in the order they happened, whatever the order
        # they were approved in.
        def valid_from(proposal: dict[str, Any]) -> dt.date:
            return min(dates.get(proposal["event_id"], today), today)

        for proposal in sorted(fresh, key=lambda p: (valid_from(p), p["created_at"], p["proposal_id"])):
            entity_id = work.apply(proposal, valid_from(proposal), checks.get(proposal["proposal_id"], "[]"))
            if proposal["entity_kind"] == "person":
                touched.append(entity_id)
            work.promotions.append(
                {
                    "proposal_id": proposal["proposal_id"],
                    "entity_kind": proposal["entity_kind"],
                    "entity_id": entity_id,
                    "changes": proposal["payload"],
                    "applied_at": work.now,
                }
            )
            report.promoted += 1
            report.promoted_ids.append(proposal["proposal_id"])
        keyed = _rekey(conn, rules, work)
        report.keys_refreshed += keyed or 0
        for promotion in work.promotions:
            promotion["keys_refreshed"] = promotion["entity_kind"] != "person" or keyed is not None
        work.write(conn)
        # People and enterprises reference the master building at their address (set-based).
        buildings = [
            work.entities["place"][i]["address"]
            for i in (*work.new_entities["place"], *work.changed_entities["place"])
            if work.entities["place"][i]["kind"] == "building"
        ]
        report.places_referenced += attach_places(
            conn,
            [*work.new_people, *work.changed_people],
            [*work.new_entities["enterprise"], *work.changed_entities["enterprise"]],
            buildings,
        )
    report.person_ids += list(dict.fromkeys(touched))
    return aside
