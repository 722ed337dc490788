"""A promote of several chunks works the next chunk out in a second process
(govdb.promote.planner) while it writes this one: master must end as a run in one process leaves
it; a chunk whose people another writer changed meanwhile is worked out again where it is written;
a planning process that dies or hangs stops the run with what master holds kept."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import time
from pathlib import Path
from typing import Any, ClassVar

import polars as pl
import pytest
from sqlalchemy import select, text

import govdb.promote
from govdb import Actor, GovDB
from govdb.base.clock import utcnow
from govdb.correct._writes import feed, supersede
from govdb.demo import CDPF_HEADER, make_people, write_csv
from govdb.errors import StateError
from govdb.promote.apply import ChunkWork, work_out
from govdb.promote.planner import ChunkPlanner, PromotePlannerError
from govdb.promote.reads import read_chunk
from govdb.store.engine import make_engine
from govdb.store.locks import snapshot, writing
from govdb.store.master import FieldHistory, Person, Promotion

from ..conftest import TODAY, open_backend
from .test_chunks import _approve, _approved_county, _completed_by_the_next_run, _queue, _stores
from .test_order_and_recovery import _hall


class _Counted(ChunkPlanner):
    """A planning process that keeps the chunks it was sent, and the process it ran in."""

    made: ClassVar[list[_Counted]] = []
    stop_at_start = False

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.sent: list[list[str]] = []
        _Counted.made.append(self)
        if self.stop_at_start:
            os.kill(self._child.pid, signal.SIGSTOP)

    def submit(self, proposal_ids: list[str], today: dt.date) -> None:
        self.sent.append(list(proposal_ids))
        super().submit(proposal_ids, today)


def _master(db: GovDB) -> tuple[list[Any], list[Any], list[Any]]:
    """What promote wrote to master, without the times it was written at."""
    with db.master.connect() as conn:
        people = conn.execute(
            select(
                Person.person_id, Person.name, Person.phone, Person.address, Person.division_code
            ).order_by(Person.id_number)
        ).all()
        lineage = conn.execute(
            select(
                FieldHistory.proposal_id,
                FieldHistory.field,
                FieldHistory.value,
                FieldHistory.valid_from,
                FieldHistory.valid_to,
                FieldHistory.checks,
            )
            .where(FieldHistory.proposal_id.is_not(None))
            .order_by(FieldHistory.proposal_id, FieldHistory.field, FieldHistory.valid_from)
        ).all()
        promotions = conn.execute(
            select(Promotion.proposal_id, Promotion.entity_kind, Promotion.changes).order_by(
                Promotion.proposal_id
            )
        ).all()
    return people, lineage, promotions


def _timeless(row: Any) -> str:
    """A lineage row without its proposal id, its checks without the times they were made at."""
    *held, checks = tuple(row)[1:]
    chain = json.loads(checks) if isinstance(checks, str) else checks
    return repr((*held, [{k: v for k, v in check.items() if k != "at"} for check in chain]))


def _without_person_ids(people: list[Any]) -> list[Any]:
    return [tuple(row)[1:] for row in people]  # new people get new random ids in each store


def test_the_next_chunk_is_worked_out_in_a_second_process_and_master_ends_the_same(
    db: GovDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = _approved_county(db, tmp_path, moved_twice=4)
    monkeypatch.setattr(govdb.promote, "CHUNK", 3)
    plan = govdb.promote._chunk_plan(db.events, db.master)
    monkeypatch.setattr(govdb.promote, "ChunkPlanner", _Counted)
    _Counted.made.clear()
    original = govdb.promote._promote_chunk

    def first_late(*args: Any) -> Any:  # the next chunks are worked out before the first is
        if args[7] is None:
            time.sleep(1.5)
        return original(*args)

    monkeypatch.setattr(govdb.promote, "_promote_chunk", first_late)

    report = db.promote()

    monkeypatch.setattr(govdb.promote, "_promote_chunk", original)
    (planner,) = _Counted.made
    # Every chunk after the first was sent there, each before the chunk before it was written,
    # worked out there and written as worked out.
    assert planner.sent == plan[1:] and len(plan) >= 5
    assert planner._child.poll() == 0  # closed with the run, not killed
    assert report.worked_beside == len(plan) - 1
    assert report.promoted == len(queue) == len(set(report.promoted_ids))
    applied, states = _stores(db)
    assert applied == len(queue) and {states[p] for p in queue} == {"promoted"}
    with_planner = _master(db)
    # Record time follows the order chunks were written in, not the order they were worked out
    # in (the first chunk is worked out here, after the planning process began the next ones).
    with db.master.connect() as conn:
        recorded = (
            conn.execute(
                select(FieldHistory.recorded_at)
                .where(FieldHistory.proposal_id.is_not(None))
                .order_by(FieldHistory.id)
            )
            .scalars()
            .all()
        )
        applied_at = conn.execute(select(Promotion.applied_at).order_by(Promotion.applied_at)).scalars().all()
    assert recorded == sorted(recorded) and set(recorded) <= set(applied_at)
    assert len(set(applied_at)) == len(plan)  # one time per chunk, each when it was written

    # The same county again, worked out in this process alone.
    monkeypatch.setenv("GOVDB_PROMOTE_PROCESS", "0")
    backend = "postgresql" if db.master.dialect.name == "postgresql" else "sqlite"
    with open_backend(backend, tmp_path / "again", db.rules) as other:
        other.serve_district("440605")
        (tmp_path / "again-files").mkdir()
        _approved_county(other, tmp_path / "again-files", moved_twice=4)
        _Counted.made.clear()
        alone_report = other.promote()
        assert alone_report.promoted == len(queue) and alone_report.worked_beside == 0
        assert _Counted.made == []
        alone = _master(other)
        assert _keys(other) == _keys(db)
    for counted in ("people_created", "fields_updated", "past_values", "conflicts", "keys_refreshed"):
        assert getattr(report, counted) == getattr(alone_report, counted), counted
    assert _without_person_ids(with_planner[0]) == _without_person_ids(alone[0])
    # Lineage and promotions are keyed by proposal ids, which differ between the two stores:
    # compared without them, in the order of what they hold.
    assert sorted(map(_timeless, with_planner[1])) == sorted(map(_timeless, alone[1]))
    assert sorted(map(repr, (tuple(r)[1:] for r in with_planner[2]))) == sorted(
        map(repr, (tuple(r)[1:] for r in alone[2]))
    )


def _keys(db: GovDB) -> list[tuple[str, str]]:
    """Every link key, by the ID number of the person it finds."""
    with db.master.connect() as conn:
        return sorted(
            conn.exec_driver_sql(
                "SELECT k.key, p.id_number FROM linkkey k JOIN person p ON p.person_id = k.person_id"
            ).all()
        )


@pytest.mark.parametrize("checked", [True, False])
def test_a_chunk_whose_person_another_writer_changed_meanwhile_is_worked_out_again(
    checked: bool, db: GovDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A correction lands on a person of the next chunk after the planning process read it and
    before this process writes it: the chunk is worked out again, on master as it now is (the
    correction's value closed by the later change, one current value). Unchecked, the work read
    before the correction would close a lineage row the correction already closed."""
    queue = _approved_county(db, tmp_path, moved_twice=4)
    monkeypatch.setattr(govdb.promote, "CHUNK", 3)
    original = govdb.promote._promote_chunk
    changed: list[tuple[str, str]] = []

    def correct_then_write(*args: Any) -> Any:
        worked: ChunkWork | None = args[7]
        if worked is not None and worked.work is not None and worked.work.closes and not changed:
            _, row_id = worked.work.closes[0]  # a current value the planned work closes
            now = utcnow()
            with writing(db.master) as conn:
                person, field = conn.execute(
                    select(FieldHistory.entity_id, FieldHistory.field).where(FieldHistory.id == row_id)
                ).one()
                supersede(
                    conn,
                    "person",
                    person,
                    field,
                    "corrected",
                    valid_from=TODAY - dt.timedelta(days=400),
                    now=now,
                    source="test",
                    checks=[],
                )
                feed(conn, [("person", person, field, "update", TODAY)], "correction", "test", now)
            changed.append((person, field))
        return original(*args)

    monkeypatch.setattr(govdb.promote, "_promote_chunk", correct_then_write)
    plan = govdb.promote._chunk_plan(db.events, db.master)
    if not checked:
        monkeypatch.setattr(ChunkWork, "still_holds", lambda self, conn, rules: True)
        with pytest.raises(StateError, match="current lineage row"):
            db.promote()
        return
    report = db.promote()

    assert changed and report.promoted == len(queue)
    # Every chunk after the first was written as worked out there, but this one.
    assert report.worked_beside == len(plan) - 2 >= 2
    ((person, field),) = changed
    with db.master.connect() as conn:
        rows = conn.execute(
            select(FieldHistory.value, FieldHistory.source, FieldHistory.valid_to)
            .where(FieldHistory.entity_id == person, FieldHistory.field == field)
            .order_by(FieldHistory.id)
        ).all()
    assert [r.valid_to is None for r in rows].count(True) == 1
    assert ("corrected", "test") in [(r.value, r.source) for r in rows]
    current = next(r for r in rows if r.valid_to is None)
    assert current.value != "corrected"  # the promoted change, dated after the correction's day
    _completed_by_the_next_run(db, queue, unmarked=0, unapplied=0)


def test_a_planning_process_that_dies_stops_the_run_with_master_s_chunks_kept(
    db: GovDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after the first chunk: the run stops with an error that says so and how to finish;
    what master holds is marked, and the next run completes the rest, each once."""
    queue = _approved_county(db, tmp_path)
    monkeypatch.setattr(govdb.promote, "CHUNK", 4)
    monkeypatch.setattr(govdb.promote, "ChunkPlanner", _Counted)
    _Counted.made.clear()
    original = govdb.promote._promote_chunk
    written: list[int] = []

    def chunk_then_kill(*args: Any) -> Any:
        aside = original(*args)
        written.append(len(args[4]))
        if len(written) == 1:
            child = _Counted.made[0]._child
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
        return aside

    monkeypatch.setattr(govdb.promote, "_promote_chunk", chunk_then_kill)
    with pytest.raises(
        PromotePlannerError, match=r"planning process stopped \(exit status -9\).*run `govdb promote`"
    ):
        db.promote()
    monkeypatch.setattr(govdb.promote, "_promote_chunk", original)

    applied, states = _stores(db)
    assert applied == written[0] and sum(states[p] == "promoted" for p in queue) == applied
    _completed_by_the_next_run(db, queue, unmarked=0, unapplied=len(queue) - applied)


def test_a_planning_process_that_answers_nothing_is_stopped_as_hung(
    db: GovDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if db.master.dialect.name != "sqlite":
        pytest.skip("the planning process is the same on both stores: once is enough")
    queue = _approved_county(db, tmp_path)
    monkeypatch.setattr(govdb.promote, "CHUNK", 4)
    monkeypatch.setattr(govdb.promote, "ChunkPlanner", _Counted)
    monkeypatch.setenv("GOVDB_PROMOTE_TIMEOUT", "1.5")
    first = govdb.promote._chunk_plan(db.events, db.master)[0]
    _Counted.made.clear()
    monkeypatch.setattr(_Counted, "stop_at_start", True)  # stopped, not dead: it never answers
    started = time.monotonic()
    with pytest.raises(PromotePlannerError, match=r"answered nothing for 1.5 s and was stopped as hung"):
        db.promote()
    assert 1.4 < time.monotonic() - started < 60
    assert _Counted.made[0]._child.poll() is not None
    applied, states = _stores(db)
    assert applied == len(first) and {p for p in queue if states[p] == "promoted"} == set(first)


@pytest.mark.parametrize("said", ["soon", "0", "-5", "inf"])
def test_a_promote_timeout_that_is_no_number_of_seconds_is_refused_by_name(
    said: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from govdb.errors import ConfigError
    from govdb.promote.planner import SILENCE_SECONDS, _silence

    monkeypatch.setenv("GOVDB_PROMOTE_TIMEOUT", said)
    with pytest.raises(ConfigError, match=r"GOVDB_PROMOTE_TIMEOUT=.* is not a number of seconds"):
        _silence()
    monkeypatch.delenv("GOVDB_PROMOTE_TIMEOUT")
    assert _silence() == SILENCE_SECONDS


def test_no_planning_process_for_one_chunk_an_in_memory_store_or_when_the_deployment_says_no(
    tmp_path: Path, rules: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(govdb.promote, "ChunkPlanner", _Counted)
    _Counted.made.clear()
    with GovDB.open(tmp_path / "home", rules=rules) as db, contextlib.ExitStack() as stack:
        # One chunk: nothing to work out beside it.
        args = (stack, db.events, db.master, rules, rules.fingerprint())
        assert govdb.promote._planning_process(*args, [["a proposal"]]) is None
        assert govdb.promote._planning_process(*args, [["a"], ["b"]]) is not None
    assert _Counted.made[0]._child.poll() == 0  # closed with the stack
    _Counted.made.clear()
    assert not ChunkPlanner.usable(make_engine("sqlite://"), make_engine("sqlite://"))
    monkeypatch.setenv("GOVDB_PROMOTE_PROCESS", "off")
    with GovDB.open(tmp_path / "off", rules=rules) as db:
        db.serve_district("440605")
        (tmp_path / "off-files").mkdir()
        queue = _approved_county(db, tmp_path / "off-files")
        monkeypatch.setattr(govdb.promote, "CHUNK", 4)
        assert db.promote().promoted == len(queue)
    assert _Counted.made == []


def _worked(db: GovDB, ids: list[str]) -> ChunkWork:
    """The chunk of these proposals worked out as the planning process does, nothing written."""
    with db.events.connect() as conn:
        read = read_chunk(conn, ids)
    with snapshot(db.master) as conn:
        return work_out(conn, db.rules, *read, db.rules.fingerprint(), TODAY)


def _cdpf(db: GovDB, path: Path, holder: dict[str, Any], number: str) -> None:
    """A disability certificate for `holder`, from the federation's file, processed."""
    row = ["CDPF1", holder["name"], holder["id_number"], number, "肢体", "一级", f"{TODAY:%Y-%m-%d}"]
    write_csv(path, CDPF_HEADER, [row], "utf-8-sig")
    db.ingest(
        path,
        source="cdpf",
        service_code="cdpf.disability_certificate",
        key_column="记录编号",
        occurred_at_column="办证日期",
    )
    db.process(today=TODAY)


def _holds(db: GovDB, worked: ChunkWork) -> bool:
    with writing(db.master) as conn:
        return worked.still_holds(conn, db.rules)


def test_work_does_not_hold_once_a_person_it_creates_or_a_keyless_one_it_keys_is_there(
    db: GovDB, tmp_path: Path
) -> None:
    """What a chunk creates, created since by another writer (a load of a newcomer it registers),
    and keys written since for a person it re-keys who had none: the feed names neither by an
    entity the work read, so the writer looks for them itself."""
    queue = _approved_county(db, tmp_path, moved_twice=3)
    worked = _worked(db, queue)
    assert worked.work is not None and worked.new_numbers and _holds(db, worked)
    newcomer = next(r for r in worked.work.new_people.values() if r["id_number"] == worked.new_numbers[0])
    db.load_people(
        pl.DataFrame([{k: v for k, v in newcomer.items() if k != "person_id"}]), source="public_security"
    )
    assert not _holds(db, worked)

    # A person of master it re-keys, whose keys were gone when it was worked out.
    worked = _worked(db, queue)
    assert worked.work is not None and _holds(db, worked)
    person = sorted(set(worked.work.changed_people))[0]
    with writing(db.master) as conn:
        kept = (
            conn.execute(text("SELECT key FROM linkkey WHERE person_id = :p"), {"p": person}).scalars().all()
        )
        conn.execute(text("DELETE FROM linkkey WHERE person_id = :p"), {"p": person})
    worked = _worked(db, queue)
    assert worked.keyless == [person] and _holds(db, worked)
    with writing(db.master) as conn:
        conn.execute(
            text("INSERT INTO linkkey (key, person_id) VALUES (:k, :p)"), {"k": kept[0], "p": person}
        )
    assert not _holds(db, worked)


def test_work_does_not_hold_once_a_credential_it_creates_is_there(db: GovDB, tmp_path: Path) -> None:
    register = make_people(20, seed=5, today=TODAY)
    db.load_people(register, source="public_security")
    holder = register.row(0, named=True)
    number = holder["id_number"] + "11"
    _cdpf(db, tmp_path / "c.csv", holder, number)
    _approve(db)
    with db.events.connect() as conn:
        queue = _queue(conn, "approved")
    worked = _worked(db, queue)
    assert worked.new_credentials == [("disability_certificate", number)] and _holds(db, worked)
    with writing(db.master) as conn:
        person = conn.execute(text("SELECT person_id FROM person ORDER BY person_id LIMIT 1")).scalar()
        conn.execute(
            text(
                "INSERT INTO credential (credential_id, person_id, kind, number, attributes, created_at) "
                "VALUES ('CX', :p, 'disability_certificate', :n, '{}', '2026-11-23 00:00:00')"
            ),
            {"p": person, "n": number},
        )
    assert not _holds(db, worked)


def test_work_does_not_hold_once_a_person_it_found_gone_is_loaded_again(db: GovDB, tmp_path: Path) -> None:
    """A certificate claim on a person whose registration was reverted is set aside by the work
    (nobody to hold it); the register loaded again meanwhile, with that person's id, puts them
    back: the feed names them, so the claim is worked out again and promoted, as in one process."""
    register = make_people(20, seed=5, today=TODAY)
    db.load_people(register.slice(1), source="public_security")
    newcomer = register.row(0, named=True)
    _hall(db, tmp_path / "reg.csv", "R1", newcomer, "13700000001", f"{TODAY:%Y-%m-%d} 09:00")
    _approve(db)
    assert db.promote().people_created == 1
    with db.master.connect() as conn:
        person, registration = conn.execute(
            text("SELECT entity_id, proposal_id FROM promotion WHERE entity_kind = 'person'")
        ).one()
    number = newcomer["id_number"] + "11"
    _cdpf(db, tmp_path / "c.csv", newcomer, number)
    _approve(db)
    with db.events.connect() as conn:
        (claim,) = _queue(conn, "approved")
    db.revert(registration, actor=Actor("sun", "department:data_bureau:440605"), reason="wrong person")
    worked = _worked(db, [claim])
    assert list(worked.aside) == [claim] and _holds(db, worked)
    row = {k: newcomer[k] for k in ("id_number", "name", "gender", "birth_date", "phone", "address")}
    db.load_people(
        pl.DataFrame([{**row, "division_code": newcomer["division_code"], "person_id": person}]),
        source="public_security",
    )
    assert not _holds(db, worked)


def test_a_planning_process_that_takes_nothing_it_is_sent_is_stopped_as_hung(
    tmp_path: Path, rules: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Frozen while the pipe is full, it would block the writer's send for ever: the send waits
    the silence limit too."""
    monkeypatch.setenv("GOVDB_PROMOTE_TIMEOUT", "1.5")
    with GovDB.open(tmp_path / "home", rules=rules) as db:
        planner = ChunkPlanner(db.events, db.master, rules, rules.fingerprint())
        with planner:
            os.kill(planner._child.pid, signal.SIGSTOP)
            started = time.monotonic()
            many = [f"{n:036d}" for n in range(100_000)]  # megabytes: more than a pipe holds
            with pytest.raises(PromotePlannerError, match=r"took nothing it was sent for 1.5 s"):
                planner.submit(many, TODAY)
            assert 1.4 < time.monotonic() - started < 60
        assert planner._child.poll() is not None


def test_work_does_not_hold_once_master_s_keys_are_written_again(db: GovDB, tmp_path: Path) -> None:
    """Serving a second county between planning and writing keys everyone again without a county
    hint: the work's key changes were worked out against the keys as they were."""
    queue = _approved_county(db, tmp_path)
    worked = _worked(db, queue)
    assert worked.keys is not None and _holds(db, worked)
    db.serve_district("440604")  # 禅城区 too
    assert not _holds(db, worked)
