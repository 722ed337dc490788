"""A batch of decisions: read in two statements, written through the driver, stored as before."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sqlalchemy import bindparam, insert, select, text

from govdb import Actor, GovDB, StateError
from govdb.store import bulk
from govdb.store.bulk import insert_rows
from govdb.store.events import Decision, Event, Link, Task
from govdb.store.states import EventStatus, move
from govdb.verify.tasks import load_flows

from .conftest import TODAY
from .test_verify import _scenario

EVENT = Event.__table__  # type: ignore[attr-defined]
LINK = Link.__table__  # type: ignore[attr-defined]
TASK = Task.__table__  # type: ignore[attr-defined]


def _events(db: GovDB, n: int) -> list[int]:
    frame = pl.DataFrame({"受理编号": [f"D{i}" for i in range(n)], "姓名": ["张伟"] * n})
    db.ingest_frame(frame, source="hall", key_column="受理编号")
    with db.events.connect() as conn:
        return list(conn.execute(select(EVENT.c.event_id).order_by(EVENT.c.event_id)).scalars())


def _stored(db: GovDB, link_id: int) -> tuple[Any, ...]:
    """A link row as the database holds it: JSON and times as their stored text."""
    query = text(
        "SELECT event_id, entity_kind, entity_id, score, decision, CAST(explanation AS TEXT), "
        "CAST(created_at AS TEXT) FROM link WHERE id = :id"
    )
    with db.events.connect() as conn:
        return tuple(conn.execute(query, {"id": link_id}).one())


def _utc(at: dt.datetime) -> dt.datetime:
    """A stored time as naive UTC, however the backend hands it back."""
    return at.astimezone(dt.UTC).replace(tzinfo=None) if at.tzinfo else at


def test_rows_written_through_the_driver_are_stored_as_sqlalchemy_stores_them(db: GovDB) -> None:
    event_id = _events(db, 1)[0]
    at = dt.datetime(2026, 11, 30, 8, 30, 15, 123456, tzinfo=dt.UTC)
    row = {
        "event_id": event_id,
        "entity_kind": "person",
        "entity_id": None,
        "score": 0.25,
        "decision": "review",
        "explanation": {"姓名": "张伟", "levels": [1, 2.5, None]},
        "created_at": at,
    }
    with db.events.begin() as conn:
        conn.execute(insert(LINK), [row, row])  # two, so SQLAlchemy's executemany path is the one compared
        assert insert_rows(conn, LINK, [row, row]) == 2
        beijing = {**row, "created_at": at.astimezone(dt.timezone(dt.timedelta(hours=8)))}
        insert_rows(conn, LINK, [beijing])
        with pytest.raises(ValueError, match="same columns"):
            insert_rows(conn, LINK, [row, {**row, "extra": 1}])
    ours = [_stored(db, i) for i in (1, 2, 3, 4, 5)]
    assert ours[0] == ours[1] == ours[2] == ours[3]
    assert ours[4] == ours[0]  # an aware time of another zone is stored as its UTC time
    assert '"张伟"' in ours[0][5]


def test_a_move_with_per_row_values_counts_rows_moved_first(db: GovDB) -> None:
    """A move keyed by two columns with values per row goes through the driver; a row another job
    moved first makes it a StateError and the transaction changes nothing."""
    ids = _events(db, 30)
    at = dt.datetime(2026, 11, 30, 8, 30, tzinfo=dt.UTC)
    rows = [{"event_id": i, "version": 1, "v_round": i % 3, "v_at": at} for i in ids]

    def received_to_standardized(rows: list[dict[str, Any]]) -> int:
        with db.events.begin() as conn:
            return move(
                conn, EVENT, "status", EventStatus, EventStatus.received, EventStatus.standardized, rows,
                key=("event_id", "version"),
                values={"link_round": bindparam("v_round"), "received_at": bindparam("v_at")},
            )  # fmt: skip

    with db.events.begin() as conn:
        conn.execute(EVENT.update().where(EVENT.c.event_id == ids[4]).values(status="invalid"))
    with pytest.raises(StateError, match="1 of 30 event"):
        received_to_standardized(rows)
    with db.events.connect() as conn:
        assert conn.execute(select(EVENT.c.event_id).where(EVENT.c.status == "standardized")).first() is None
    with pytest.raises(StateError, match="1 of 29 event"):  # the key is both columns
        received_to_standardized(
            [{**r, "version": 2} if r is rows[0] else r for r in rows if r is not rows[4]]
        )
    rows.pop(4)
    assert received_to_standardized(rows) == 29
    with db.events.connect() as conn:
        stored = conn.execute(
            select(EVENT.c.event_id, EVENT.c.link_round, EVENT.c.received_at).where(
                EVENT.c.status == "standardized"
            )
        ).all()
    assert {(e, r) for e, r, _ in stored} == {(r["event_id"], r["v_round"]) for r in rows}
    assert {t.replace(tzinfo=None) for _, _, t in stored} == {at.replace(tzinfo=None)}


def test_flows_read_by_task_ids_hold_each_proposal_once_across_chunks(
    db: GovDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two tasks of one proposal in two chunks of ids bring the proposal and its tasks once."""
    _scenario(db, tmp_path, people=30, seed=5)
    db.process(today=TODAY)
    with db.events.connect() as conn:
        tasks = conn.execute(select(TASK.c.task_id, TASK.c.proposal_id).order_by(TASK.c.task_id)).all()
        proposal = tasks[0].proposal_id
        wanted = [t.task_id for t in tasks if t.proposal_id == proposal] + [
            tasks[-1].task_id,
            tasks[-1].task_id + 1000,
        ]
        assert len(wanted) >= 3
        whole = load_flows(conn, wanted)
        monkeypatch.setattr(
            bulk, "id_chunks", lambda _conn, values: [values[i : i + 1] for i in range(len(values))]
        )
        monkeypatch.setattr("govdb.verify.tasks.id_chunks", bulk.id_chunks)
        one_by_one = load_flows(conn, wanted)
    assert set(whole) == set(one_by_one) == {proposal, tasks[-1].proposal_id}
    for flows in (whole, one_by_one):
        ids = [t.task_id for t in flows[proposal].tasks]
        assert ids == sorted(t.task_id for t in tasks if t.proposal_id == proposal)
        assert flows[proposal].payload and not flows[proposal].source_known


def test_a_batch_stores_its_decisions_with_their_times_and_amendments(db: GovDB, tmp_path: Path) -> None:
    _scenario(db, tmp_path, people=40, seed=3)
    db.process(today=TODAY)
    village = [t for t in db.tasks(limit=1000) if t.level == "village"]
    named = next(t for t in village if "name" in t.payload)
    unit = named.unit_id
    mine = [named, *[t for t in village if t.unit_id == unit and t is not named][:2]]
    batch: list[dict[str, Any]] = [{"task_id": t.task_id, "outcome": "approve"} for t in mine[1:]]
    batch.insert(0, {"task_id": named.task_id, "outcome": "amend", "amendments": {"name": "王 芳"}})
    before = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    report = db.decide_many(Actor("li", unit), batch)
    assert len(report.decided) == len(batch)
    with db.events.connect() as conn:
        rows = conn.execute(
            select(
                Decision.task_id,
                Decision.outcome,
                Decision.amendments,
                Decision.decided_at,
                Decision.actor_id,
            )
            .where(Decision.task_id.in_([t.task_id for t in mine]))
            .order_by(Decision.task_id)
        ).all()
        states = dict(
            conn.execute(
                select(TASK.c.task_id, TASK.c.state).where(TASK.c.task_id.in_([t.task_id for t in mine]))
            ).all()
        )
    assert [r.task_id for r in rows] == sorted(t.task_id for t in mine)
    assert all(r.actor_id == "li" and _utc(r.decided_at) >= before for r in rows)
    assert set(states.values()) == {"approved"}
    assert next(r.amendments for r in rows if r.task_id == named.task_id) == {"name": "王芳"}
    with pytest.raises(StateError, match="not open"):
        db.decide_many(Actor("li", unit), batch[:1])


def test_the_queue_read_through_the_driver_is_what_sqlalchemy_reads(db: GovDB, tmp_path: Path) -> None:
    from govdb.store.events import Proposal

    _scenario(db, tmp_path, people=30, seed=9)
    db.process(today=TODAY)
    listed = db.tasks(state=None, limit=10_000)
    query = (
        select(Task, Proposal.change, Proposal.payload, Proposal.division_code.label("place"))
        .join(Proposal, Proposal.proposal_id == Task.proposal_id)
        .order_by(Task.task_id)
    )
    with db.events.connect() as conn:
        rows = conn.execute(query).all()
    assert len(listed) == len(rows) > 0
    for view, r in zip(listed, rows, strict=True):
        assert (view.task_id, view.proposal_id, view.unit_id, view.state, view.change) == (
            r.task_id, r.proposal_id, r.unit_id, r.state, r.change,
        )  # fmt: skip
        assert (view.payload, view.created_at, view.division_code) == (
            r.payload,
            r.created_at,
            r.division_code or r.place,
        )
    unit = listed[0].unit_id
    assert [t.task_id for t in db.tasks(unit_id=unit, limit=2)] == [
        t.task_id for t in listed if t.unit_id == unit and t.state == "open"
    ][:2]
