"""Chunks planned by person keep the order the queue gives where it decides an outcome (claims on
one certificate number, registrations of one newcomer), and a run stopped before its marking
leaves nothing a correction or the next run gets wrong (on both backends)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

import govdb.promote
from govdb import Actor, GovDB
from govdb.demo import CDPF_HEADER, HALL_HEADER, make_people, write_csv

from ..conftest import TODAY
from .test_chunks import _approve, _approved_county

DAY = f"{TODAY:%Y-%m-%d}"


def _hall(db: GovDB, path: Path, key: str, p: dict[str, Any], phone: str, when: str) -> None:
    row = [
        key,
        p["name"],
        "男" if p["gender"] == "M" else "女",
        p["id_number"],
        f"{p['birth_date']:%Y-%m-%d}",
        phone,
        p["address"],
        p["division_code"],
        when,
    ]
    write_csv(path, HALL_HEADER, [row], "utf-8")
    db.ingest(
        path,
        source="hall",
        service_code="hall.resident_registration",
        key_column="受理编号",
        occurred_at_column="办理时间",
    )
    db.process(today=TODAY)


def test_first_claimant_of_a_certificate_number_keeps_it(
    db: GovDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two people claim one certificate number on the same day, in different chunks: whoever is
    first in the queue holds it, the second is a conflict (never whoever has the lower person id)."""
    monkeypatch.setattr(govdb.promote, "CHUNK", 1)
    register = make_people(20, seed=5, today=TODAY)
    db.load_people(register, source="public_security")
    with db.master.connect() as conn:
        pid = dict(conn.execute(text("SELECT id_number, person_id FROM person")).all())
    first, second = sorted(
        list(register.iter_rows(named=True))[:2], key=lambda p: pid[p["id_number"]], reverse=True
    )
    number = first["id_number"] + "11"
    for n, p in enumerate((first, second)):
        write_csv(
            tmp_path / f"c{n}.csv",
            CDPF_HEADER,
            [[f"CDPF{n}", p["name"], p["id_number"], number, "肢体", "一级", DAY]],
            "utf-8-sig",
        )
        db.ingest(
            tmp_path / f"c{n}.csv",
            source="cdpf",
            service_code="cdpf.disability_certificate",
            key_column="记录编号",
            occurred_at_column="办证日期",
        )
        db.process(today=TODAY)  # the first claim is queued first
    _approve(db)
    assert db.promote().conflicts == 1
    with db.master.connect() as conn:
        holder = conn.execute(
            text("SELECT person_id FROM credential WHERE number = :n"), {"n": number}
        ).scalar()
    assert holder == pid[first["id_number"]], "the second claimant (lower person id) got the certificate"


def test_a_late_new_person_proposal_does_not_overwrite_a_later_update_of_that_person(
    db: GovDB, tmp_path: Path
) -> None:
    """E1 and E2 register the same newcomer (both proposed as new); E1 is promoted, then E3 (later
    the same day) updates the person. E2 and E3 promoted together are applied in (valid day, queue)
    order, in one chunk: E2 is planned with the person its ID number names, so E3's phone is current."""
    register = make_people(20, seed=5, today=TODAY)
    db.load_people(register.slice(1), source="public_security")
    newcomer = register.row(0, named=True)
    _hall(db, tmp_path / "e1.csv", "E1", newcomer, "13900000001", f"{DAY} 09:00")
    with db.events.connect() as conn:
        (e1,) = conn.execute(text("SELECT proposal_id FROM proposal")).scalars().all()
    _hall(db, tmp_path / "e2.csv", "E2", newcomer, "13900000002", f"{DAY} 10:00")
    _approve(db, lambda p: p == e1)
    assert db.promote().people_created == 1
    _hall(db, tmp_path / "e3.csv", "E3", newcomer, "13900000003", f"{DAY} 11:00")
    _approve(db)
    assert db.promote().promoted == 2
    with db.master.connect() as conn:
        phone = conn.execute(
            text("SELECT phone FROM person WHERE id_number = :i"), {"i": newcomer["id_number"]}
        ).scalar()
    assert phone == "13900000003"


def test_a_revert_after_a_killed_run_is_not_undone_by_the_next_run(
    db: GovDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run stopped by Ctrl-C on its third chunk (nothing marked: master is ahead); the data
    bureau reverts a promotion master holds, which first completes its marking; the next promote
    leaves it reverted, in master and in the event store."""
    _approved_county(db, tmp_path)
    monkeypatch.setattr(govdb.promote, "CHUNK", 4)
    original, marking = govdb.promote._promote_chunk, govdb.promote._mark_promoted
    calls: list[int] = []

    def killed(*args: Any) -> Any:
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(1)
        return original(*args)

    def unreachable(*args: Any) -> None:
        raise ConnectionError("the event store went away")

    monkeypatch.setattr(govdb.promote, "_promote_chunk", killed)
    monkeypatch.setattr(govdb.promote, "_mark_promoted", unreachable)
    with pytest.raises(KeyboardInterrupt):  # stopped at once: nothing marked
        db.promote()
    monkeypatch.setattr(govdb.promote, "_promote_chunk", original)
    monkeypatch.setattr(govdb.promote, "_mark_promoted", marking)
    with db.master.connect() as conn:
        held = list(conn.execute(text("SELECT proposal_id FROM promotion ORDER BY proposal_id")).scalars())
    with db.events.connect() as conn:
        states = dict(conn.execute(text("SELECT proposal_id, state FROM proposal")).all())
    assert len(calls) == 2 and len(held) >= 2 and {states[p] for p in held} == {"approved"}
    target = held[0]
    db.revert(target, actor=Actor("sun", "department:data_bureau:440605"), reason="wrong person")
    with db.events.connect() as conn:
        assert conn.execute(
            text("SELECT state FROM proposal WHERE proposal_id = :p"), {"p": target}
        ).scalar() == ("reverted")
    # A split of another held change off its person completes that marking first too.
    with db.events.connect() as conn:
        event_id, person_id = conn.execute(
            text("SELECT event_id, entity_id FROM proposal WHERE proposal_id = :p"), {"p": held[1]}
        ).one()
    split = db.split(
        person_id, [event_id], actor=Actor("sun", "department:data_bureau:440605"), reason="错并"
    )
    assert split.event_ids == [event_id]
    report = db.promote()
    assert report.completed_after_crash == len(held) - 2
    with db.events.connect() as conn:
        states = dict(conn.execute(text("SELECT proposal_id, state FROM proposal")).all())
    with db.master.connect() as conn:
        reverted = conn.execute(
            text("SELECT reverted_at IS NOT NULL FROM promotion WHERE proposal_id = :p"), {"p": target}
        ).scalar()
    assert states[target] == "reverted" and reverted
    assert states[held[1]] == "reverted" and {states[p] for p in held[2:]} == {"promoted"}


def test_a_chunk_failing_every_run_does_not_keep_the_rest_unmarked(
    db: GovDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last chunk fails on every run: every chunk master holds before it is marked all the same."""
    _approved_county(db, tmp_path)
    monkeypatch.setattr(govdb.promote, "CHUNK", 4)
    with db.events.connect() as conn:
        bad = (
            conn.execute(
                text(
                    "SELECT proposal_id FROM proposal WHERE state = 'approved'"
                    " AND change <> 'confirm_identity' ORDER BY created_at DESC, proposal_id DESC"
                )
            )
            .scalars()
            .first()
        )
    original = govdb.promote._promote_chunk

    def failing(*args: Any) -> Any:
        if bad in args[4]:
            raise RuntimeError("deterministic failure")
        return original(*args)

    monkeypatch.setattr(govdb.promote, "_promote_chunk", failing)
    for _ in range(2):
        with pytest.raises(RuntimeError):
            db.promote()
    with db.master.connect() as conn:
        held = set(conn.execute(text("SELECT proposal_id FROM promotion")).scalars())
    with db.events.connect() as conn:
        states = dict(conn.execute(text("SELECT proposal_id, state FROM proposal")).all())
    assert held and {states[p] for p in held} == {"promoted"}


def test_a_chunk_failure_is_raised_as_itself_when_marking_fails_too(
    db: GovDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _approved_county(db, tmp_path)
    monkeypatch.setattr(govdb.promote, "CHUNK", 4)
    original = govdb.promote._promote_chunk
    calls: list[int] = []

    def second_fails(*args: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("the chunk's own failure")
        return original(*args)

    def unreachable(*args: Any) -> None:
        raise ConnectionError("the event store went away")

    monkeypatch.setattr(govdb.promote, "_promote_chunk", second_fails)
    monkeypatch.setattr(govdb.promote, "_mark_promoted", unreachable)
    with pytest.raises(RuntimeError, match="own failure") as raised:
        db.promote()
    assert any("event store went away" in note for note in raised.value.__notes__)
