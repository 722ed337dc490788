"""`promote` sets aside an approved proposal whose payload master cannot store (govdb.promote.storable):
it moves to `unpromotable` with its reason and the rest of the run promotes. On PostgreSQL such a
proposal (a NUL in its payload, edited into the event store) used to fail every promote for good."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import sqlalchemy as sa
from sqlalchemy import select, text

import govdb.promote
from govdb import Actor, GovDB
from govdb.demo import make_disability_records, make_hall_events, make_people
from govdb.promote.storable import unstorable
from govdb.standards.ids import make_id
from govdb.store.engine import make_engine, migrate
from govdb.store.events import Event, Proposal
from govdb.store.master import Credential, FieldHistory, Person

from ..conftest import TODAY

PROPOSAL = Proposal.__table__  # type: ignore[attr-defined]
EVENT = Event.__table__  # type: ignore[attr-defined]


def _approve_all(db: GovDB) -> None:
    while tasks := db.tasks(limit=10_000):
        for unit in {t.unit_id for t in tasks}:
            batch = [{"task_id": t.task_id, "outcome": "approve"} for t in tasks if t.unit_id == unit]
            db.decide_many(Actor("clerk", unit), batch)


def _edit_payload(db: GovDB, proposal_id: str, payload: dict[str, Any]) -> None:
    """An edit of the event store: the payload as JSON text with escapes, as the column holds it."""
    value = "CAST(:t AS json)" if db.events.dialect.name == "postgresql" else ":t"
    with db.events.begin() as conn:
        conn.execute(
            text(f"UPDATE proposal SET payload = {value} WHERE proposal_id = :p"),
            {"t": json.dumps(payload), "p": proposal_id},
        )


def _approved(db: GovDB) -> dict[str, Any]:
    with db.events.connect() as conn:
        rows = conn.execute(
            select(
                PROPOSAL.c.proposal_id,
                PROPOSAL.c.change,
                PROPOSAL.c.entity_kind,
                PROPOSAL.c.payload,
                PROPOSAL.c.event_id,
            )
            .where(PROPOSAL.c.state == "approved")
            .order_by(PROPOSAL.c.created_at, PROPOSAL.c.proposal_id)
        ).all()
    return {r.proposal_id: r for r in rows}


def test_a_proposal_holding_a_nul_is_set_aside_and_every_other_one_promotes(
    db: GovDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register = make_people(60, seed=3, today=TODAY)
    db.load_people(register.slice(10), source="public_security")  # the first ten are new
    make_hall_events(register, tmp_path / "hall.csv", seed=3, today=TODAY)
    db.ingest(
        tmp_path / "hall.csv", source="hall", service_code="hall.resident_registration", key_column="受理编号"
    )
    token = db.register_source("cdpf_system")
    make_disability_records(register.slice(10), tmp_path / "cdpf.csv", seed=3, today=TODAY)
    db.ingest(tmp_path / "cdpf.csv", source="cdpf_system", key_column="记录编号",
              service_code="cdpf.disability_certificate", source_token=token)  # fmt: skip
    db.process(today=TODAY)
    _approve_all(db)
    approved = _approved(db)
    person = next(p for p in approved.values() if p.change == "new_person")
    credential = next(p for p in approved.values() if p.entity_kind == "credential")
    _edit_payload(db, person.proposal_id, {**person.payload, "name": person.payload["name"] + "\x00"})
    attributes = {**credential.payload["attributes"], "disability_category": "肢\x00体"}
    _edit_payload(db, credential.proposal_id, {**credential.payload, "attributes": attributes})
    monkeypatch.setattr(govdb.promote, "CHUNK", 4)  # several chunks, the first holding one of them
    assert list(approved).index(person.proposal_id) < 4 or list(approved).index(credential.proposal_id) < 4

    report = db.promote()

    aside = {person.proposal_id, credential.proposal_id}
    assert report.set_aside == 2 and set(report.set_aside_ids) == aside == set(report.set_aside_reasons)
    assert report.set_aside_reasons[person.proposal_id] == (
        f"proposal {person.proposal_id} (event {person.event_id}): name holds a NUL character (U+0000): "
        + repr(person.payload["name"] + "\x00")
    )
    assert (
        "attributes.disability_category holds a NUL character (U+0000): '肢\\x00体'"
        in (report.set_aside_reasons[credential.proposal_id])
    )
    assert report.promoted == len(approved) - 2 and set(report.promoted_ids) == set(approved) - aside
    with db.events.connect() as conn:
        states = dict(conn.execute(select(PROPOSAL.c.proposal_id, PROPOSAL.c.state)).all())
        kept = dict(
            conn.execute(
                select(PROPOSAL.c.proposal_id, PROPOSAL.c.payload).where(PROPOSAL.c.proposal_id.in_(aside))
            ).all()
        )
        event_states = dict(conn.execute(select(EVENT.c.event_id, EVENT.c.status)).all())
    assert {i: states[i] for i in approved} == {
        i: "unpromotable" if i in aside else "promoted" for i in approved
    }
    assert kept[person.proposal_id]["_unpromotable"] == report.set_aside_reasons[person.proposal_id]
    assert event_states[person.event_id] == event_states[credential.event_id] == "proposed"
    with db.master.connect() as conn:
        names = conn.execute(select(Person.__table__.c.id_number)).scalars().all()  # type: ignore[attr-defined]
        numbers = conn.execute(select(Credential.__table__.c.number)).scalars().all()  # type: ignore[attr-defined]
        values = conn.execute(select(FieldHistory.__table__.c.value)).scalars().all()  # type: ignore[attr-defined]
    assert person.payload["id_number"] not in names and credential.payload["number"] not in numbers
    assert not any("\x00" in (v or "") for v in values)

    # Later proposals promote; the one set aside does not come back.
    window = pl.DataFrame(
        {"编号": ["K1"], "姓名": ["改名字"], "身份证号": [register["id_number"][20]],
         "村居代码": [register["division_code"][20]]}
    )  # fmt: skip
    db.ingest_frame(window, source="hall", key_column="编号", service_code="hall.resident_registration")
    db.process(today=TODAY)
    _approve_all(db)
    later = db.promote()
    assert later.set_aside == 0 and later.promoted == 1


BASE = {
    "proposal_id": "p1",
    "event_id": 1,
    "entity_id": None,
    "source": "hall",
    "department": None,
}


@pytest.mark.parametrize(
    ("proposal", "why"),
    [
        ({"entity_kind": "person", "payload": {"id_number": "440605199001020011", "name": "张伟"}}, None),
        (
            {
                "entity_kind": "credential",
                "payload": {"kind": "disability", "number": "N1", "attributes": {"grade": {"note": "a\x00"}}},
            },
            "attributes.grade.note holds a NUL character (U+0000): 'a\\x00'",
        ),
        (
            {"entity_kind": "person", "payload": {"id_number": "440605199001020011", "na\x00me": "x"}},
            "na\\x00me holds a NUL character (U+0000): 'na\\x00me'",
        ),
        (
            {"entity_kind": "person", "payload": {"id_number": "440605199001020011", "gender": "男性"}},
            "gender is 2 characters, master holds 1",
        ),
        (
            {
                "entity_kind": "person",
                "payload": {"id_number": "440605199001020011", "birth_date": "1990/1/2"},
            },
            "birth_date '1990/1/2' is not a date written YYYY-MM-DD",
        ),
        ({"entity_kind": "person", "payload": {"name": "张伟"}}, "a new person without an id_number"),
        (
            {"entity_kind": "person", "payload": {"id_number": "440605199001020011", "address": {"a": 1}}},
            "address is not text: {'a': 1}",
        ),
        *(
            (
                {"entity_kind": "person", "payload": {"id_number": "440605199001020011", "phone": value}},
                f"phone is not text: {value}",
            )
            for value in (13755550009, 1.5, True)
        ),
        ({"entity_kind": "credential", "payload": {"kind": "disability"}}, "number is not text: None"),
        ({"entity_kind": "place", "payload": {"kind": "road", "name": "路" * 129}}, "name is 129 characters"),
        (
            {"entity_kind": "person", "source": "s" * 120, "payload": {"id_number": "440605199001020011"}},
            "its lineage source is 129 characters, master holds 128",
        ),
        (
            {"entity_kind": "person", "source": "ha\ud800ll", "payload": {"id_number": "440605199001020011"}},
            "its source holds a lone surrogate",
        ),
    ],
)
def test_what_master_cannot_store_is_named_with_its_value_escaped(
    proposal: dict[str, Any], why: str | None
) -> None:
    found = unstorable(BASE | proposal)
    if why is None:
        assert found is None
    else:
        assert found is not None and found.startswith("proposal p1 (event 1): ") and why in found


def test_the_migration_takes_the_new_state_and_its_downgrade_gives_it_back(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'events.sqlite'}")
    migrate(engine, "events", "events_0012")
    event = (
        "INSERT INTO event (event_id, source_system, source_key, batch_id, raw, quality_flags, status,"
        " content_sha256, received_at) VALUES (1, 's', 'k', 'b', '{}', '[]', 'proposed', 'h', '2026-12-01')"
    )
    proposal = (
        "INSERT INTO proposal (proposal_id, event_id, change, entity_kind, payload, source, state,"
        " created_at, updated_at, round) VALUES (:p, 1, 'new_person', 'person', '{}', 's', :state,"
        " '2026-12-01', '2026-12-01', :round)"
    )
    with engine.begin() as conn:
        conn.execute(text(event))
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(text(proposal), {"p": "a", "state": "unpromotable", "round": 0})
    migrate(engine, "events", "events_0013")
    with engine.begin() as conn:
        conn.execute(text(proposal), {"p": "a", "state": "unpromotable", "round": 0})
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(text(proposal), {"p": "b", "state": "Unpromotable", "round": 1})
    migrate_down(engine, "events_0012")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT state FROM proposal")).scalars().all() == ["approved"]
    engine.dispose()


def migrate_down(engine: sa.Engine, revision: str, store: str = "events") -> None:
    """alembic's downgrade of a SQLite store to `revision`, set up as `migrate` sets up its
    upgrade (which only goes up)."""
    from alembic import command
    from alembic.config import Config

    from govdb.store.engine import MIGRATIONS

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", str(MIGRATIONS / store / "versions"))
    config.attributes["store"] = store
    with engine.connect() as connection:
        connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
        with connection.begin():
            config.attributes["connection"] = connection
            command.downgrade(config, revision)


def test_a_change_to_a_person_reverted_since_its_approval_is_set_aside(db: GovDB, tmp_path: Path) -> None:
    """The bureau reverts a person's registration while a change to them waits, approved: the
    change is set aside (it would have made a person without ID number or name, and failed every
    promote after it), and the next promote has nothing left to fail on."""
    register = make_people(20, seed=3, today=TODAY)
    db.load_people(register, source="public_security")
    home = register.row(0, named=True)["division_code"]
    token = db.register_source("hall_window_system")
    new_id = make_id("440106", dt.date(1970, 3, 4), 11)
    hall = "受理编号,姓名,性别,身份证号,出生日期,联系电话,居住地址,村居代码,办理时间\n"
    (tmp_path / "a.csv").write_text(
        hall + f"N1,欧阳新,男,{new_id},1970-03-04,13911112222,南海区桂城街道桂澜路8号,{home},"
        "2026-01-01 09:00\n",
        encoding="utf-8",
    )
    db.ingest(tmp_path / "a.csv", source="hall_window_system", source_token=token, key_column="受理编号",
              occurred_at_column="办理时间", service_code="hall.resident_registration")  # fmt: skip
    db.process(today=TODAY)
    _approve_all(db)
    assert db.promote().people_created == 1
    (tmp_path / "b.csv").write_text(  # a contact update needs no ID number
        "受理编号,姓名,性别,出生日期,联系电话,居住地址,村居代码,办理时间\n"
        f"U1,欧阳新,男,1970-03-04,13933334444,南海区桂城街道桂澜路8号,{home},2026-02-01 09:00\n",
        encoding="utf-8",
    )
    db.ingest(tmp_path / "b.csv", source="hall_window_system", source_token=token, key_column="受理编号",
              occurred_at_column="办理时间", service_code="hall.contact_update")  # fmt: skip
    db.process(today=TODAY)
    _approve_all(db)
    update = next(p for p in _approved(db).values())
    assert update.payload.get("id_number") is None
    with db.events.connect() as conn:
        registration = conn.execute(
            select(PROPOSAL.c.proposal_id).where(
                PROPOSAL.c.change == "new_person", PROPOSAL.c.state == "promoted"
            )
        ).scalar_one()
    db.revert(registration, actor=Actor("sun", "department:data_bureau:440605"), reason="重复登记")
    report = db.promote()
    assert report.promoted == 0 and report.set_aside_ids == [update.proposal_id]
    assert "who is no longer in master" in report.set_aside_reasons[update.proposal_id]
    with db.events.connect() as conn:
        state = conn.execute(
            select(PROPOSAL.c.state).where(PROPOSAL.c.proposal_id == update.proposal_id)
        ).scalar_one()
    assert state == "unpromotable"
    again = db.promote()
    assert again.promoted == 0 and again.set_aside == 0
    with db.master.connect() as conn:
        assert conn.execute(select(Person.person_id).where(Person.name == "欧阳新")).first() is None
