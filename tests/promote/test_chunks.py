"""`promote` a chunk at a time: chunks planned by person, each person's proposals in one; a proposal
approved at the head of the queue while the run works on later chunks is promoted by that run,
once (its progress counting it in the total); a run stopped before or while marking the event
store is completed by the next, and the next run finds nothing."""

from __future__ import annotations

import datetime as dt
import os
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

import govdb.promote
from govdb import Actor, GovDB
from govdb.demo import HALL_HEADER, make_hall_events, make_people, write_csv
from govdb.promote.planner import PromotePlannerError
from govdb.promote.survivorship import Chunk
from govdb.store.events import Proposal
from govdb.store.master import FieldHistory, Person, Promotion
from govdb.store.states import ProposalState

from ..conftest import TODAY

PROPOSAL = Proposal.__table__  # type: ignore[attr-defined]


def _queue(conn: Any, state: str) -> list[str]:
    """The proposals in `state` that promote takes, in queue order."""
    query = (
        select(PROPOSAL.c.proposal_id)
        .where(PROPOSAL.c.change != "confirm_identity", PROPOSAL.c.state == state)
        .order_by(PROPOSAL.c.created_at, PROPOSAL.c.proposal_id)
    )
    return list(conn.execute(query).scalars())


def _approve(db: GovDB, keep: Callable[[str], bool] = lambda p: True) -> int:
    """Approve the open tasks of proposals `keep` selects (level after level); the decisions made."""
    decided = 0
    while tasks := [t for t in db.tasks(limit=10_000) if keep(t.proposal_id)]:  # type: ignore[operator]
        for unit in {t.unit_id for t in tasks}:
            batch = [{"task_id": t.task_id, "outcome": "approve"} for t in tasks if t.unit_id == unit]
            decided += len(db.decide_many(Actor("clerk", unit), batch).decided)
    return decided


def test_a_proposal_approved_at_the_head_of_the_queue_during_a_run_is_promoted_by_that_run(
    db: GovDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register = make_people(60, seed=5, today=TODAY)
    db.load_people(register.slice(10), source="public_security")  # the first ten are new
    make_hall_events(register, tmp_path / "hall.csv", seed=5, today=TODAY)
    db.ingest(
        tmp_path / "hall.csv", source="hall", service_code="hall.resident_registration", key_column="受理编号"
    )
    db.process(today=TODAY)
    with db.events.connect() as conn:
        queue = _queue(conn, "pending")
    first = queue[0]  # the head of the queue, left undecided until the run has passed it
    assert _approve(db, lambda p: p != first) > 0
    monkeypatch.setattr(govdb.promote, "CHUNK", 4)
    original = govdb.promote._promote_chunk
    chunks: list[int] = []

    def chunk_then_approve(*args: Any) -> Any:
        aside = original(*args)
        chunks.append(len(args[4]))
        if len(chunks) == 1:  # a clerk approves the head while master applies the first chunk
            assert _approve(db, lambda p: p == first) > 0
        return aside

    monkeypatch.setattr(govdb.promote, "_promote_chunk", chunk_then_approve)

    seen: list[tuple[int, int]] = []
    report = db.promote(progress=lambda done, total: seen.append((done, total)))

    assert len(chunks) >= 3 and first not in report.promoted_ids[: chunks[0]]
    # The total grows to take in the proposal approved meanwhile: never more done than there is.
    assert seen[0][1] == len(queue) - 1 and seen[-1] == (len(queue), len(queue))
    assert all(done <= total for done, total in seen), seen
    assert first in report.promoted_ids and report.promoted == len(queue) == len(set(report.promoted_ids))
    with db.events.connect() as conn:
        states = dict(conn.execute(select(PROPOSAL.c.proposal_id, PROPOSAL.c.state)).all())
    assert {states[p] for p in queue} == {"promoted"}
    assert db.promote().promoted == 0


def _approved_county(db: GovDB, tmp_path: Path, people: int = 60, moved_twice: int = 0) -> list[str]:
    """A register with its first ten people new, a day of hall registrations processed and every
    task approved (and `moved_twice` residents from the 21st reporting a move, then a new phone:
    two proposals about each); the approved proposals, in queue order."""
    register = make_people(people, seed=5, today=TODAY)
    db.load_people(register.slice(10), source="public_security")
    make_hall_events(register, tmp_path / "hall.csv", seed=5, today=TODAY)
    rows = [
        [
            f"TW{n}{k}",
            p["name"],
            "男" if p["gender"] == "M" else "女",
            p["id_number"],
            f"{p['birth_date']:%Y-%m-%d}",
            phone,
            f"{p['address']}之{n + 1}",
            p["division_code"],
            f"{TODAY:%Y-%m-%d} 1{k}:00",
        ]
        for n, p in enumerate(register.slice(20, moved_twice).iter_rows(named=True))
        for k, phone in enumerate((p["phone"], f"1390000000{n}"))
    ]
    write_csv(tmp_path / "twice.csv", HALL_HEADER, rows, "utf-8")
    for name in ("hall.csv", "twice.csv") if rows else ("hall.csv",):
        db.ingest(
            tmp_path / name,
            source="hall",
            service_code="hall.resident_registration",
            key_column="受理编号",
            occurred_at_column="办理时间",
        )
    db.process(today=TODAY)
    _approve(db, lambda p: True)
    with db.events.connect() as conn:
        return _queue(conn, "approved")


def _stores(db: GovDB) -> tuple[int, dict[str, str]]:
    """The promotions master holds, and each proposal's state in the event store."""
    with db.master.connect() as conn:
        applied = conn.execute(select(func.count()).select_from(Promotion)).scalar_one()
    with db.events.connect() as conn:
        return applied, dict(conn.execute(select(PROPOSAL.c.proposal_id, PROPOSAL.c.state)).all())


def _completed_by_the_next_run(db: GovDB, queue: list[str], unmarked: int, unapplied: int) -> None:
    """The next run applies what master lacks and completes the marking of what it holds, once each."""
    report = db.promote()

    assert report.completed_after_crash == unmarked and report.promoted == unapplied
    with db.master.connect() as conn:
        promotions = conn.execute(select(Promotion.proposal_id)).scalars().all()
        lineage = conn.execute(
            select(FieldHistory.proposal_id, FieldHistory.field, func.count())
            .where(FieldHistory.proposal_id.is_not(None))
            .group_by(FieldHistory.proposal_id, FieldHistory.field)
            .having(func.count() > 1)
        ).all()
    assert sorted(promotions) == sorted(queue) and lineage == []  # each applied once
    with db.events.connect() as conn:
        states = dict(conn.execute(select(PROPOSAL.c.proposal_id, PROPOSAL.c.state)).all())
    assert {states[p] for p in queue} == {"promoted"}
    assert db.promote().promoted == 0


def test_a_marking_the_event_store_fails_stops_the_run_and_the_next_run_completes_it(
    db: GovDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = _approved_county(db, tmp_path)
    monkeypatch.setattr(govdb.promote, "CHUNK", 4)
    original = govdb.promote._mark_promoted
    marked: list[str] = []

    def mark_some_then_fail(events: Any, master: Any, promoted: list[tuple[str, int]]) -> None:
        original(events, master, sorted(promoted)[:4])
        marked.extend(p for p, _ in sorted(promoted)[:4])
        raise RuntimeError("the event store went away")

    monkeypatch.setattr(govdb.promote, "_mark_promoted", mark_some_then_fail)
    with pytest.raises(RuntimeError, match="went away"):
        db.promote()
    applied, states = _stores(db)
    # Master applied every planned chunk before the event store was marked; four were marked.
    assert applied == len(queue) and len(marked) == 4
    assert sorted(p for p in queue if states[p] == "promoted") == sorted(marked)
    monkeypatch.setattr(govdb.promote, "_mark_promoted", original)

    _completed_by_the_next_run(db, queue, applied - len(marked), 0)


def test_a_chunk_that_fails_stops_the_run_marks_what_master_holds_and_the_next_run_goes_on(
    db: GovDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = _approved_county(db, tmp_path)
    monkeypatch.setattr(govdb.promote, "CHUNK", 4)
    original = govdb.promote._promote_chunk
    chunks: list[int] = []

    def second_fails(*args: Any) -> Any:
        if chunks:
            raise RuntimeError("killed")
        chunks.append(len(args[4]))
        return original(*args)

    monkeypatch.setattr(govdb.promote, "_promote_chunk", second_fails)
    with pytest.raises(RuntimeError, match="killed"):
        db.promote()
    applied, states = _stores(db)
    # The first chunk is in master, and marked on the way out: a chunk failing on every run
    # holds back none before it.
    assert applied == chunks[0] > 0
    assert sum(states[p] == "promoted" for p in queue) == applied
    assert sum(states[p] == "approved" for p in queue) == len(queue) - applied
    monkeypatch.setattr(govdb.promote, "_promote_chunk", original)

    _completed_by_the_next_run(db, queue, 0, len(queue) - applied)


def test_a_run_plans_chunks_of_neighbouring_entities_each_entity_in_one_chunk(
    db: GovDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = _approved_county(db, tmp_path, moved_twice=3)
    monkeypatch.setattr(govdb.promote, "CHUNK", 3)
    plan = govdb.promote._chunk_plan(db.events, db.master)
    with db.events.connect() as conn:
        entity = dict(conn.execute(select(PROPOSAL.c.proposal_id, PROPOSAL.c.entity_id)).all())
    assert sorted(p for chunk in plan for p in chunk) == sorted(queue)
    stored = [p for p in queue if entity[p] is not None]
    held = [entity[p] for p in stored]
    assert len(set(held)) < len(held), "the county should change someone twice"
    # Proposals about people master holds in their ids' order, each person's in one chunk, then
    # the new ones in queue order; a chunk closes at CHUNK, or past it only to finish a person.
    in_order = [p for chunk in plan for p in chunk]
    assert in_order[: len(stored)] == sorted(stored, key=lambda p: (entity[p], p))
    assert in_order[len(stored) :] == [p for p in queue if entity[p] is None]
    chunks_of: dict[str, set[int]] = {}
    for n, chunk in enumerate(plan):
        for p in chunk:
            chunks_of.setdefault(entity[p] or p, set()).add(n)
        assert len({entity[p] is None for p in chunk}) == 1
        closing = chunk[-1]
        assert (
            len(chunk) == 3
            or n == len(plan) - 1
            or entity[plan[n + 1][0]] is None
            or (len(chunk) > 3 and entity[chunk[-2]] == entity[closing])
        )
    assert all(len(chunks) == 1 for chunks in chunks_of.values())
    report = db.promote()
    assert report.promoted == len(queue) and report.completed_after_crash == 0
    with db.master.connect() as conn:
        phones = dict(conn.execute(select(Person.id_number, Person.phone)).all())
    register = make_people(60, seed=5, today=TODAY)
    assert [phones[p] for p in register.slice(20, 3).get_column("id_number")] == [
        f"1390000000{n}" for n in range(3)
    ]


def test_the_people_a_chunk_creates_get_consecutive_ids_in_the_order_created(
    db: GovDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """New people's ids count up from a start drawn for their chunk, so their rows, features and
    lineage sit together in master's indexes; another chunk draws another start."""
    queue = _approved_county(db, tmp_path)
    with db.events.connect() as conn:
        new = conn.execute(
            select(func.count()).where(PROPOSAL.c.proposal_id.in_(queue), PROPOSAL.c.entity_id.is_(None))
        ).scalar_one()
    monkeypatch.setattr(govdb.promote, "CHUNK", new // 2)  # the newcomers in two chunks or more
    db.promote()
    loaded = make_people(60, seed=5, today=TODAY).slice(10).get_column("id_number").to_list()
    with db.master.connect() as conn:
        ids = list(conn.execute(select(Person.person_id).where(Person.id_number.not_in(loaded))).scalars())
    assert len(ids) >= 4 and all(re.fullmatch(r"P[0-9A-F]{15}", i) for i in ids)
    runs: list[list[int]] = []  # the ids as numbers, in runs of consecutive ones
    for value in sorted(int(i[1:], 16) for i in ids):
        if runs and value == runs[-1][-1] + 1:
            runs[-1].append(value)
        else:
            runs.append([value])
    assert 2 <= len(runs) <= len(ids) // 2  # each chunk's newcomers in one run (random ids: one each)


def test_clustered_ids_count_up_from_a_random_start_and_draw_another_when_the_span_is_used_up() -> None:
    from govdb.base.ids import ClusteredIds

    ids = ClusteredIds()
    drawn = [int(ids("P")[1:], 16) for _ in range(1000)]
    assert drawn == list(range(drawn[0], drawn[0] + 1000))
    # A job of one id is one random id: 60 random bits, none stuck (a card delivered alone).
    alone = [int(ClusteredIds()("C")[1:], 16) for _ in range(2000)]
    assert len(set(alone)) == 2000 and all(v < 1 << 60 for v in alone)
    assert {i for i in range(60) if len({v >> i & 1 for v in alone}) == 1} == set()
    ids._count = ClusteredIds.SPAN  # the span used up: another start
    after = ids("E")
    assert re.fullmatch(r"E[0-9A-F]{15}", after) and int(after[1:], 16) != drawn[0] + ClusteredIds.SPAN


def test_a_time_no_ingest_writes_holds_back_only_the_chunk_of_its_event(
    db: GovDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A time that cannot be read (a hand edit) fails the chunk holding its event; every chunk
    before it lands, each value from its own event's day."""
    if db.events.dialect.name != "sqlite":
        pytest.skip("a time stored as text no ingest writes: SQLite's")
    queue = _approved_county(db, tmp_path, people=30)
    monkeypatch.setattr(govdb.promote, "CHUNK", 3)
    plan = govdb.promote._chunk_plan(db.events, db.master)
    with db.events.begin() as conn:
        conn.execute(
            text(
                "UPDATE event SET occurred_at = 'garbage' "
                "WHERE event_id = (SELECT event_id FROM proposal WHERE proposal_id = :p)"
            ),
            {"p": plan[-1][-1]},
        )
    # Read in this process (the first chunk) or in promote's planning process (the others).
    with pytest.raises((ValueError, PromotePlannerError), match="garbage"):
        db.promote()
    applied, states = _stores(db)
    assert applied == len(queue) - len(plan[-1])
    assert sum(states[p] == "promoted" for p in queue) == applied
    # Each landed value holds from its event's own day, read chunk by chunk, never from today.
    with db.events.connect() as conn:
        event_of = dict(conn.execute(select(PROPOSAL.c.proposal_id, PROPOSAL.c.event_id)).all())
        days = govdb.promote.reads.event_dates(conn, [event_of[p] for chunk in plan[:-1] for p in chunk])
    with db.master.connect() as conn:
        lineage = conn.execute(
            select(FieldHistory.proposal_id, FieldHistory.valid_from).where(
                FieldHistory.proposal_id.is_not(None)
            )
        ).all()
    assert lineage and dt.date.today() not in {valid_from for _, valid_from in lineage}
    assert all(valid_from == min(days[event_of[p]], dt.date.today()) for p, valid_from in lineage)


def test_master_s_log_is_synced_before_the_event_store_says_promoted(
    db: GovDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With synchronous=NORMAL a commit does not sync SQLite's log, and a chunk's commit leaves
    the checkpoint (which would) to the checkpointer's thread, which copies nothing while a reader
    holds the log; a power cut would then lose the chunk while the event store, marked, says
    promoted. Master's log file is synced before the first proposal is marked, a reader open."""
    if db.master.dialect.name != "sqlite":
        pytest.skip("PostgreSQL's commits are durable when they return")
    import govdb.store.engine as engine_module

    queue = _approved_county(db, tmp_path)
    master_log = Path(f"{db.master.url.database}-wal").resolve()
    synced: list[Path] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    original = govdb.promote._from_approved
    at_marking: list[list[Path]] = []

    def marking(conn: Any, to: ProposalState, rows: list[dict[str, Any]], values: dict[str, Any]) -> None:
        if to is ProposalState.promoted and not at_marking:
            at_marking.append(list(synced))
        original(conn, to, rows, values)

    marks: list[int] = []  # each chunk's commit leaves the log to the checkpointer's thread
    write = Chunk.write

    def chunk_write(self: Chunk, conn: Any) -> None:
        marks.append(conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar())
        write(self, conn)

    monkeypatch.setattr(Chunk, "write", chunk_write)
    monkeypatch.setattr(engine_module.os, "fsync", fsync)
    monkeypatch.setattr(govdb.promote, "_from_approved", marking)
    reader = sqlite3.connect(str(db.master.url.database), isolation_level=None)
    try:  # a window's read transaction, holding master's log where it is
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM person").fetchall()
        report = db.promote()
    finally:
        reader.close()
    assert report.promoted == len(queue) > 0
    assert at_marking and master_log in at_marking[0], at_marking
    assert marks and set(marks) == {engine_module.WAL_ASIDE_PAGES}


def test_the_marking_moves_an_event_once_when_its_proposals_fall_in_two_of_its_transactions(
    db: GovDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The event store is marked a CHUNK of proposals per transaction (on PostgreSQL several at
    once); an event whose two proposals land in two of them is moved by the first. A run stopped
    between the two leaves the event promoted and the second proposal approved: the next run
    marks the proposal and leaves the event as it is."""
    queue = _approved_county(db, tmp_path)
    with db.events.begin() as conn:
        rows = conn.execute(
            select(PROPOSAL.c.proposal_id, PROPOSAL.c.event_id, PROPOSAL.c.change).where(
                PROPOSAL.c.proposal_id.in_(queue)
            )
        ).all()
        first = next(r for r in rows if r.change == "new_person")
        second = next(r for r in rows if r.change == "update_person")
        # Two of the queue's proposals made about one event (a registration and a change).
        conn.execute(
            PROPOSAL.update()
            .where(PROPOSAL.c.proposal_id == second.proposal_id)
            .values(event_id=first.event_id)
        )
    monkeypatch.setattr(govdb.promote, "CHUNK", 1)  # every proposal marked in a transaction of its own
    original = govdb.promote._mark_batch

    def second_fails(events: Any, proposal_ids: list[str], event_ids: list[int]) -> None:
        if second.proposal_id in proposal_ids:
            raise RuntimeError("the event store went away")
        original(events, proposal_ids, event_ids)

    # A run stopped after the event was moved with its first proposal, before its second was marked.
    monkeypatch.setattr(govdb.promote, "_mark_batch", second_fails)
    with pytest.raises(RuntimeError, match="went away"):
        db.promote()
    applied, states = _stores(db)
    assert (states[first.proposal_id], states[second.proposal_id]) == ("promoted", "approved")
    unmarked = sum(states[p] == "approved" for p in queue)
    monkeypatch.setattr(govdb.promote, "_mark_batch", original)

    report = db.promote()  # the next run marks the second proposal; its event stays promoted

    assert applied == len(queue) and report.promoted == 0 and report.completed_after_crash == unmarked
    with db.events.connect() as conn:
        states = dict(conn.execute(select(PROPOSAL.c.proposal_id, PROPOSAL.c.state)).all())
        status = conn.execute(text("SELECT status FROM event WHERE event_id = :e"), {"e": first.event_id})
        assert status.scalar_one() == "promoted"
    assert {states[p] for p in queue} == {"promoted"}
