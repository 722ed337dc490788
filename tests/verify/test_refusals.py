"""`process` refuses a standardized record edited in the store to hold what master cannot store
(govdb.verify.refusals): the event is not proposed, it is `invalid` with a flag and a reason that
names it, the field and the value (escaped); the rest of its batch is proposed and promotes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from govdb import Actor, GovDB, validate
from govdb.demo import make_hall_events, make_people
from govdb.store.events import Event, Link, Proposal
from govdb.store.master import Person
from govdb.store.states import EventStatus
from govdb.store.storable import suspects
from govdb.verify.chunk_writes import ChunkWork
from govdb.verify.entity_proposals import ENTERPRISE_WIDTH
from govdb.verify.refusals import decode_records, payload_problems, refuse

from ..conftest import TODAY, open_backend

EVENT = Event.__table__  # type: ignore[attr-defined]
PROPOSAL = Proposal.__table__  # type: ignore[attr-defined]
LINK = Link.__table__  # type: ignore[attr-defined]
PERSON = Person.__table__  # type: ignore[attr-defined]


def _standardized_hall(db: GovDB, folder: Path) -> tuple[dict[int, dict[str, Any]], set[str]]:
    """Hall registrations standardized (not yet proposed), 30 of 40 people in master: each
    standardized event's record, and the ID numbers master holds."""
    register = make_people(40, seed=3, today=TODAY)
    db.load_people(register.slice(10), source="public_security")  # the first ten are new
    make_hall_events(register, folder / "hall.csv", seed=3, today=TODAY)
    db.ingest(
        folder / "hall.csv", source="hall", service_code="hall.resident_registration", key_column="受理编号"
    )
    validate.standardize_events(db.events, db.rules, today=TODAY, address_hint=db.served_county())
    with db.events.connect() as conn:
        rows = conn.execute(
            select(EVENT.c.event_id, EVENT.c.standardized).where(EVENT.c.status == "standardized")
        ).all()
    return {r.event_id: r.standardized for r in rows}, set(register.slice(10)["id_number"].to_list())


def _edit(db: GovDB, event_id: int, record: Any) -> None:
    """What an insider or a faulty tool does: rewrite the standardized record in the store, as
    JSON text with escapes (`\\u0000`), as a JSON column holds it."""
    value = "CAST(:t AS json)" if db.events.dialect.name == "postgresql" else ":t"
    with db.events.begin() as conn:
        conn.execute(
            text(f"UPDATE event SET standardized = {value} WHERE event_id = :e"),
            {"t": json.dumps(record), "e": event_id},
        )


def _approve_all(db: GovDB) -> None:
    while tasks := db.tasks(limit=10_000):
        for unit in {t.unit_id for t in tasks}:
            batch = [{"task_id": t.task_id, "outcome": "approve"} for t in tasks if t.unit_id == unit]
            db.decide_many(Actor("clerk", unit), batch)


def test_a_record_edited_to_hold_what_master_cannot_store_is_refused_and_the_rest_promote(
    db: GovDB, tmp_path: Path
) -> None:
    """A NUL (which made PostgreSQL fail `process`, or `promote` for good), a lone surrogate, a
    division code wider than master's column, a date master cannot read and a record that is no
    JSON object: each event is refused, the others of the batch are proposed and promoted."""
    records, known = _standardized_hall(db, tmp_path)
    new = [e for e, r in sorted(records.items()) if r.get("id_number") and r["id_number"] not in known]
    old = [e for e, r in sorted(records.items()) if r.get("id_number") in known]
    assert len(new) >= 3 and len(old) >= 2
    edits = {
        new[0]: (
            {**records[new[0]], "name": records[new[0]]["name"] + "\x00"},
            "name:nul_character",
            "name holds a NUL character (U+0000), which master cannot store: '",
        ),
        new[1]: (
            {**records[new[1]], "address": "桂城\ud800街道"},
            "address:lone_surrogate",
            "address holds a lone surrogate (U+D800-U+DFFF without its pair), which master cannot store: "
            "'桂城\\ud800街道'",
        ),
        new[2]: (
            {**records[new[2]], "division_code": "4406050110501234"},
            "division_code:too_long",
            "division_code is 16 characters, master holds 12: '4406050110501234'",
        ),
        old[0]: (
            {**records[old[0]], "birth_date": "1990/01/02"},
            "birth_date:not_a_stored_date",
            "birth_date '1990/01/02' is not a date written YYYY-MM-DD",
        ),
        old[1]: (
            [1, 2],
            "standardized:record_unreadable",
            "its standardized record is not a JSON object: '[1, 2]'",
        ),
    }
    for event_id, (record, _, _) in edits.items():
        _edit(db, event_id, record)

    report = db.process(today=TODAY).proposals

    assert report.refused == len(edits) and set(report.refused_events) == set(edits)
    assert report.refused_events[new[0]].endswith("\\x00'")  # the NUL shown escaped
    with db.events.connect() as conn:
        states = {
            r.event_id: r
            for r in conn.execute(select(EVENT.c.event_id, EVENT.c.status, EVENT.c.quality_flags))
        }
        proposed_for = set(conn.execute(select(PROPOSAL.c.event_id)).scalars())
        linked = set(conn.execute(select(LINK.c.event_id)).scalars())
    for event_id, (_, flag, why) in edits.items():
        assert report.refused_events[event_id].startswith(f"event {event_id}: ")
        assert why in report.refused_events[event_id]
        assert states[event_id].status == "invalid" and flag in states[event_id].quality_flags
        assert event_id not in proposed_for and event_id not in linked
    rest = set(records) - set(edits)
    assert rest <= proposed_for | {e for e in rest if states[e].status in ("confirmed", "unlinked")}
    assert report.proposals == len(proposed_for) > 0
    _approve_all(db)
    promoted = db.promote()
    assert promoted.promoted == report.proposals and promoted.set_aside == 0
    with db.master.connect() as conn:
        people = conn.execute(select(PERSON.c.id_number, PERSON.c.name, PERSON.c.address)).all()
    assert not any("\x00" in f"{p.name}{p.address}" for p in people)
    held = {p.id_number for p in people}
    assert {records[e]["id_number"] for e in new[:3]}.isdisjoint(held)  # refused: nobody created
    assert {records[e]["id_number"] for e, r in records.items() if e in rest and e in proposed_for} <= held

    # What was received is untouched: taken again, the events are standardized anew and proposed.
    again = db.process(today=TODAY, retry="invalid")
    assert again.proposals.refused == 0
    with db.events.connect() as conn:
        after = dict(
            conn.execute(select(EVENT.c.event_id, EVENT.c.status).where(EVENT.c.event_id.in_(edits))).all()
        )
    assert set(after.values()) <= {"proposed", "confirmed"}, after


def test_a_standardized_record_that_is_no_json_is_refused_not_a_crash(tmp_path: Path, rules: Any) -> None:
    """SQLite stores any text in a JSON column: a broken one is refused like the rest."""
    with open_backend("sqlite", tmp_path / "home", rules) as db:
        db.serve_district("440605")
        records, _ = _standardized_hall(db, tmp_path)
        broken = min(records)
        with db.events.begin() as conn:
            conn.execute(
                text('UPDATE event SET standardized = \'{"name": "张\' WHERE event_id = :e'), {"e": broken}
            )
        report = db.process(today=TODAY).proposals
        assert list(report.refused_events) == [broken]
        assert (
            'its standardized record is not a JSON object: \'{"name": "张\'' in report.refused_events[broken]
        )
        assert report.proposals > 0


def test_only_the_suspect_texts_are_looked_at_and_only_real_problems_refuse() -> None:
    texts = [
        json.dumps({"name": "张伟"}),
        json.dumps({"name": "张\x00伟"}),  # an escaped NUL
        json.dumps({"note": "\U0001f600"}),  # an emoji written as a surrogate pair: a suspect, not a problem
        json.dumps({"note": "C:\\u0000"}),  # a backslash before u0000: a suspect, not a NUL
        json.dumps({"na\x00me": "x"}),  # a NUL in a key
        None,
    ]
    assert suspects(texts) == [1, 2, 3, 4]
    rows = [{"standardized": t} for t in texts]
    decode_records(rows)
    assert [r.get("unstorable") for r in rows] == [
        None,
        [("name", "nul_character", "张\x00伟")],
        None,
        None,
        [("na\x00me", "nul_character", "na\x00me")],
        None,
    ]
    assert rows[2]["standardized"] == {"note": "\U0001f600"} and rows[5]["standardized"] is None


def test_a_refused_event_back_from_an_identity_check_is_unlinked_its_check_resolved() -> None:
    """`invalid` is retried from what was received and proposed again; an event whose identity
    check already has a proposal would clash with it, so it becomes `unlinked` instead."""
    work, refused = ChunkWork(), {}
    for event_id, status in ((1, "standardized"), (2, "identity_review")):
        event = {"event_id": event_id, "status": status, "quality_flags": ["gender:gender_mismatch"]}
        refuse(work, refused, event, [("name", "nul_character", "a\x00")], f"event {event_id}: why")
    assert work.status == {
        (EventStatus.standardized, EventStatus.invalid): [{"event_id": 1}],
        (EventStatus.identity_review, EventStatus.unlinked): [{"event_id": 2}],
    }
    assert work.flags[0] == {"k_event_id": 1, "v_flags": ["gender:gender_mismatch", "name:nul_character"]}
    assert refused == {1: "event 1: why", 2: "event 2: why"}


def test_an_enterprise_value_wider_than_master_is_a_problem() -> None:
    payload = {"name": "佛山市南海区某某有限公司", "legal_representative": "张" * 65, "uscc": None}
    assert payload_problems(payload, ENTERPRISE_WIDTH) == [("legal_representative", "too_long", "张" * 65)]


@pytest.mark.parametrize("field", ["name", "address"])
def test_a_nul_key_is_shown_escaped_in_the_flag(field: str) -> None:
    work, refused = ChunkWork(), {}
    event = {"event_id": 7, "status": "standardized", "quality_flags": []}
    refuse(work, refused, event, [(f"{field}\x00", "nul_character", f"{field}\x00")], "why")
    assert work.flags[0]["v_flags"] == [f"{field}\\x00:nul_character"]
