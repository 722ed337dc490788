"""`promote` a chunk at a time: a proposal approved at the head of the queue while the run works on
later chunks is promoted by that run, once (its progress counting it in the total), and the next
run finds nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

import govdb.promote
from govdb import Actor, GovDB
from govdb.demo import make_hall_events, make_people
from govdb.store.events import Proposal
from govdb.store.master import FieldHistory, Promotion

from ..conftest import TODAY

PROPOSAL = Proposal.__table__  # type: ignore[attr-defined]


def _approve(db: GovDB, keep: bool) -> int:
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
        queue = (
            conn.execute(
                select(PROPOSAL.c.proposal_id)
                .where(PROPOSAL.c.change != "confirm_identity", PROPOSAL.c.state == "pending")
                .order_by(PROPOSAL.c.created_at, PROPOSAL.c.proposal_id)
            )
            .scalars()
            .all()
        )
    first = queue[0]  # the head of the queue, left undecided until the run has passed it
    assert _approve(db, lambda p: p != first) > 0
    monkeypatch.setattr(govdb.promote, "CHUNK", 4)
    original = govdb.promote._promote_chunk
    chunks: list[int] = []

    def chunk_then_approve(*args: Any) -> dict[str, str]:
        aside = original(*args)
        chunks.append(len(args[3]))
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


def _approved_county(db: GovDB, tmp_path: Path, people: int = 60) -> list[str]:
    """A register with its first ten people new, a day of hall registrations processed and every
    task approved; the approved proposals, in queue order."""
    register = make_people(people, seed=5, today=TODAY)
    db.load_people(register.slice(10), source="public_security")
    make_hall_events(register, tmp_path / "hall.csv", seed=5, today=TODAY)
    db.ingest(
        tmp_path / "hall.csv", source="hall", service_code="hall.resident_registration", key_column="受理编号"
    )
    db.process(today=TODAY)
    _approve(db, lambda p: True)
    with db.events.connect() as conn:
        return list(
            conn.execute(
                select(PROPOSAL.c.proposal_id)
                .where(PROPOSAL.c.change != "confirm_identity", PROPOSAL.c.state == "approved")
                .order_by(PROPOSAL.c.created_at, PROPOSAL.c.proposal_id)
            ).scalars()
        )


def test_a_chunk_the_event_store_fails_to_mark_stops_the_run_and_the_next_run_completes_it(
    db: GovDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = _approved_county(db, tmp_path)
    monkeypatch.setattr(govdb.promote, "CHUNK", 4)
    original = govdb.promote._mark_promoted

    def fail(events: Any, proposals: list[dict[str, Any]]) -> None:
        raise RuntimeError("the event store went away")

    monkeypatch.setattr(govdb.promote, "_mark_promoted", fail)
    with pytest.raises(RuntimeError, match="went away"):
        db.promote()
    with db.master.connect() as conn:
        applied = conn.execute(select(func.count()).select_from(Promotion)).scalar_one()
    assert applied == 4  # the chunk master applied, and nothing after it
    monkeypatch.setattr(govdb.promote, "_mark_promoted", original)

    report = db.promote()

    assert report.completed_after_crash == applied and report.promoted == len(queue) - applied
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
