"""Promote approved proposals into master data, with survivorship, conflicts and field lineage.

Set-based, chunk by chunk: the chunk's proposals, checks, event dates and the master rows they
touch are read in a few statements, the changes are worked out in memory, then written with bulk
inserts and executemany updates. A run plans its chunks first, each about entities that lie
together in master (`_chunk_plan`); a run of several chunks works the next one out in a second
process while it writes this one (govdb.promote.planner, govdb.promote.apply). Promotion spans two
databases, so it is idempotent: the master changes, the changed people's blocking keys and the
`promotion` rows (unique on proposal id) commit in one master transaction per chunk; once master
holds every planned chunk, the proposals are marked promoted in the event store (a checked
transition), in their own order. A run after a crash at any point completes the marking.
Promotions whose keys could not be written with them (master keyed with other rules:
`keys_refreshed` False, as an older version left them after a crash) are re-keyed by the next run.
One `promote` runs at a time (a job lock); a second waits, then finds nothing left. Nothing else
writes people or credentials except authoritative bulk loads (invariant 1).

Valid time: each value is valid from its event's date. A change dated before the value master
holds is kept as a past value (valid until the current one began), never as the current value, so
history is never inverted (valid_from <= valid_to, also a database constraint).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, select, update

from govdb.base.clock import utcnow
from govdb.base.collector import bulk_collection
from govdb.errors import StateError
from govdb.link.keys import refresh_link_keys
from govdb.promote.apply import ChunkWork, work_out, write_out
from govdb.promote.planner import ChunkPlanner
from govdb.promote.reads import ChunkRead, check_chains, event_dates, read_chunk
from govdb.promote.survivorship import PromoteReport, lineage_source
from govdb.rulebook.loader import Rulebook
from govdb.store.bulk import driver_mappings, driver_rows, fetch_among, result_processor
from govdb.store.engine import sync_log
from govdb.store.events import Event, Proposal
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
# 512 MiB were slower than 60,000 (RESULTS, 5 December). Since a chunk's newcomers take ids from
# one run (base.ids.ClusteredIds) their chunks change far fewer pages, and the writing
# process waits for the planning one on chunks of people: 512 MiB took the same time as 1 GiB,
# with this process's peak 520 MB lower, the run's under 4 GB (RESULTS, 5 December, late morning).
CHUNK = 60_000
CACHE_MIB = 512
# Chunks the planning process works out ahead of the one being written (govdb.promote.planner).
LOOKAHEAD = 2
# PostgreSQL: the marking's transactions run this many at once. The event store's UPDATE of a
# chunk's 60,000 events kept one server process busy, on the CPU, for 2-4 s, and nothing else ran
# then: a county's marking took 42-45 s with the second core idle (benchmarks/RESULTS.md).
MARKERS = 2
PROPOSAL = Proposal.__table__  # type: ignore[attr-defined]
EVENT = Event.__table__  # type: ignore[attr-defined]
PROMOTION = Promotion.__table__  # type: ignore[attr-defined]


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
    chunk of neighbours a stretch of them (the people a chunk creates go in at one place, their
    ids consecutive)."""
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


def _set_aside(events: Engine, aside: dict[str, str], payloads: dict[str, Any]) -> None:
    """approved -> unpromotable for the proposals master cannot store (`aside`: id -> why), the
    reason kept in the payload as an unroutable proposal's is. Their events stay `proposed`, as
    an unroutable one's do. Before the marking: a crash in between sets them aside again."""
    with writing(events) as conn:
        _from_approved(
            conn,
            ProposalState.unpromotable,
            [
                {"proposal_id": i, "v_payload": {**_mapping(payloads[i]), "_unpromotable": why}}
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
    the proposal and event tables); an event is moved by the first of them that names it (its
    proposals may straddle two). Master's commits are made durable first: a power cut must never
    leave the event store saying promoted for a chunk master lost. On PostgreSQL, MARKERS
    transactions at once: they touch different rows, and one keeps a single server process busy."""
    if not promoted:
        return
    sync_log(master)
    promoted = sorted(promoted)
    batches: list[tuple[list[str], list[int]]] = []
    seen: set[int] = set()
    for start in range(0, len(promoted), CHUNK):
        batch = promoted[start : start + CHUNK]
        named = sorted({e for _, e in batch} - seen)
        seen.update(named)
        batches.append(([p for p, _ in batch], named))
    if events.dialect.name != "postgresql" or len(batches) < 2:
        for proposal_ids, event_ids in batches:
            _mark_batch(events, proposal_ids, event_ids)
        return
    pool = ThreadPoolExecutor(MARKERS, thread_name_prefix="govdb-promote-mark")
    marking = [pool.submit(_mark_batch, events, *batch) for batch in batches]
    try:
        for marked in marking:
            marked.result()  # the first failure goes up; the commits of the others stand
    except BaseException as error:
        # Stopped (Ctrl-C) or failed: the transactions under way finish, none is started.
        pool.shutdown(cancel_futures=True)
        for other in marking:
            if not other.cancelled() and (failed := other.exception()) is not None and failed is not error:
                error.add_note(f"another of the marking's transactions failed too: {failed}")
        raise
    finally:
        pool.shutdown()


def _mark_batch(events: Engine, proposal_ids: list[str], event_ids: list[int]) -> None:
    """One transaction of the marking: these proposals approved -> promoted (every one of them),
    and these events proposed -> promoted. An event already promoted is left as it is: its other
    proposal was marked by an earlier transaction, of this run or of one stopped after it."""
    with writing(events) as conn:
        _from_approved(
            conn, ProposalState.promoted, [{"proposal_id": p} for p in proposal_ids], {"updated_at": utcnow()}
        )
        moved = move(
            conn,
            EVENT,
            "status",
            EventStatus,
            EventStatus.proposed,
            EventStatus.promoted,
            [{"event_id": e} for e in event_ids],
            key=("event_id",),
            expect_all=False,
        )
        if moved < len(event_ids):
            status = dict(
                fetch_among(conn, "SELECT event_id, status FROM event WHERE {among}", "event_id", event_ids)
            )
            stuck = [(e, status.get(e)) for e in event_ids if status.get(e) != EventStatus.promoted.value]
            if stuck:
                raise StateError(
                    f"{len(stuck)} of {len(event_ids)} event row(s) were neither 'proposed' nor 'promoted' "
                    f"(event id and status: {stuck[:3]}); nothing was changed: look again and retry"
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
            with contextlib.ExitStack() as stack:
                planner = _planning_process(stack, events, master, rules, fingerprint, plan)
                ahead = 0  # the chunks at the head of the plan the planning process holds
                stale = 0  # of those, the ones it read before a refresh re-keyed people
                while True:
                    if promoted and not plan:  # marked before the queue is read for what was approved since
                        marking, promoted = promoted, []
                        _mark_promoted(events, master, marking)
                    read: ChunkRead | None = None
                    worked: ChunkWork | None = None
                    if plan:
                        ids = plan.pop(0)
                        if planner is not None:
                            if ahead:
                                read, worked = planner.collect()
                                ahead -= 1
                                if stale:
                                    worked, stale = None, stale - 1
                            # Worked out there while this chunk is written here; LOOKAHEAD deep,
                            # so that neither process waits for a chunk that takes the other longer.
                            while ahead < min(LOOKAHEAD, len(plan)):
                                planner.submit(plan[ahead], dt.date.today())
                                ahead += 1
                        if read is None and worked is None:
                            with events.connect() as conn:
                                read = read_chunk(conn, ids)
                        if read is not None and not read[0]:
                            continue  # none of them is still approved
                    else:
                        with events.connect() as conn:
                            approved = _approved(conn)
                            if not approved:
                                return report
                            ids = [p["proposal_id"] for p in approved]
                            read = (
                                approved,
                                check_chains(conn, ids),
                                event_dates(conn, [p["event_id"] for p in approved]),
                            )
                    worked = _promote_chunk(events, master, rules, report, ids, read, fingerprint, worked)
                    if worked.aside:
                        _set_aside(events, worked.aside, worked.aside_payloads)
                    promoted += [(p, e) for p, e in worked.proposals if p not in worked.aside]
                    rekeyed = refresh_pending_keys(master, rules)
                    report.keys_refreshed += rekeyed
                    stale = ahead if rekeyed else stale
                    done += len(worked.proposals)
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


def _planning_process(
    stack: contextlib.ExitStack,
    events: Engine,
    master: Engine,
    rules: Rulebook,
    fingerprint: str,
    plan: list[list[str]],
) -> ChunkPlanner | None:
    """A process working out the next chunk while this one writes the chunk before, closed with
    `stack`: for a run of two chunks or more, unless a store is in this process's memory or the
    deployment says no (govdb.promote.planner)."""
    if len(plan) < 2 or not ChunkPlanner.usable(events, master):
        return None
    return stack.enter_context(ChunkPlanner(events, master, rules, fingerprint))


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


def _promote_chunk(
    events: Engine,
    master: Engine,
    rules: Rulebook,
    report: PromoteReport,
    ids: list[str],
    read: ChunkRead | None,
    fingerprint: str,
    worked: ChunkWork | None = None,
) -> ChunkWork:
    """The master half of one chunk (these proposals, `read` from the event store), in one
    transaction: `worked` (worked out by the planning process) if master still is what it was
    worked out from, else worked out here (the event store read again if `read` is None)."""
    with writing(master, cache_mib=CACHE_MIB, checkpoint_aside=True) as conn:
        # First, before people are read: a load or a correction re-keying people waits for the
        # whole chunk (and a load's new people are then seen here, never inserted twice).
        xact_lock(conn, "link_keys")
        if worked is not None and worked.still_holds(conn, rules):
            worked.report.worked_beside += 1
        else:
            if read is None:
                with events.connect() as event_conn:
                    read = read_chunk(event_conn, ids)
            worked = work_out(conn, rules, *read, fingerprint, dt.date.today())
        write_out(conn, worked)
    report.add(worked.report)
    return worked
