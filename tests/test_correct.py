"""After promotion, on both backends: the change feed, conflicts resolved by their owners, reverts
(field by field, with lineage, in stack order), splits of wrong merges, and as-of questions."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from sqlmodel import Session, col, select

from govdb import AccessDeniedError, Actor, GovDB, JurisdictionError, NotFoundError
from govdb.demo import COUNTY, make_people
from govdb.errors import StateError
from govdb.link.keys import prepare_keys
from govdb.link.reads import read_people
from govdb.store.events import Event, Proposal
from govdb.store.master import Conflict, FieldHistory, Issuance, Person, Promotion, served_county

from .conftest import TODAY, neighbour_transport
from .test_profile import NEW_PHONE, _senior

POLICE = Actor("zhao", f"department:public_security:{COUNTY}")
HALL = Actor("chen", f"department:service_hall:{COUNTY}")
BUREAU = Actor("sun", f"department:data_bureau:{COUNTY}")
TRANSPORT = Actor("wang", f"department:transport:{COUNTY}")


def _person(db: GovDB, id_number: str) -> Person:
    with Session(db.master) as ms:
        person = ms.exec(select(Person).where(Person.id_number == id_number)).one()
        ms.expunge(person)
        return person


def _all_changes(db: GovDB, since: str = "0", limit: int = 7) -> tuple[list, str]:
    out, cursor = [], since
    while True:
        page = db.changes(cursor, limit=limit)
        out += page.changes
        cursor = page.cursor
        if not page.more:
            return out, cursor


def _promotion_of(db: GovDB, source_key: str) -> str:
    with Session(db.events) as es:
        event = es.exec(select(Event).where(Event.source_key == source_key)).one()
        return es.exec(
            select(Proposal.proposal_id).where(
                Proposal.event_id == event.event_id, Proposal.state == "promoted"
            )
        ).one()


# --- the change feed ---------------------------------------------------------------------------


def test_every_master_change_is_in_the_feed_once_in_order(db: GovDB) -> None:
    senior = _senior(db)
    changes, cursor = _all_changes(db)
    seqs = [c.seq for c in changes]
    assert seqs == list(range(1, len(seqs) + 1)), "no gaps, no repeats"
    with Session(db.master) as ms:
        lineage = ms.exec(select(FieldHistory)).all()
    # One change per lineage row, but a bulk load tells of each person once (no field).
    loaded = {h.entity_id for h in lineage if h.bulk_load_id and h.entity_kind == "person"}
    bulk = [c for c in changes if c.cause == "bulk_load"]
    assert sorted(c.entity_id for c in bulk) == sorted(loaded)
    assert {(c.field, c.op) for c in bulk} == {(None, "insert")}
    others = [h for h in lineage if not (h.bulk_load_id and h.entity_kind == "person")]
    assert len(changes) == len(others) + len(loaded)
    person = _person(db, senior.id_number)
    mine = [c for c in changes if c.entity_id == person.person_id]
    assert {c.cause for c in mine} == {"bulk_load", "promotion"}
    assert {(c.field, c.op) for c in mine if c.cause == "promotion"} >= {
        ("phone", "update"),
        ("address", "update"),
    }
    credential = [c for c in changes if c.entity_kind == "credential"]
    assert credential and {c.op for c in credential} == {"insert"}
    assert db.changes(cursor).changes == [] and db.changes(cursor).cursor == cursor
    # Reading on from a cursor in the middle gives exactly the rest.
    middle = str(seqs[len(seqs) // 2])
    rest, _ = _all_changes(db, middle, limit=1000)
    assert [c.seq for c in rest] == seqs[len(seqs) // 2 + 1 :]
    with pytest.raises(StateError, match="not a cursor"):
        db.changes("abc")


# --- conflicts ---------------------------------------------------------------------------------


def test_owners_list_and_resolve_their_conflicts_once(db: GovDB) -> None:
    senior = _senior(db)  # an unproven hall source proposed another name and phone: two conflicts
    police = db.conflicts(actor=POLICE)
    assert [(c.field, c.proposed_value) for c in police] == [("name", "改名字")]
    hall = db.conflicts(actor=HALL)
    assert [c.field for c in hall] == ["phone"]
    assert hall[0].masked and hall[0].proposed_value != "13700000000"  # the hall sees phones masked
    with pytest.raises(AccessDeniedError):
        db.conflicts(actor=TRANSPORT)  # no reconciliation purpose
    with pytest.raises(AccessDeniedError, match="public_security"):
        db.resolve_conflict(police[0].conflict_id, "accept", actor=HALL)  # not the owner
    with pytest.raises(StateError, match="needs the value"):
        db.resolve_conflict(police[0].conflict_id, "amend", actor=POLICE)

    resolved = db.resolve_conflict(police[0].conflict_id, "accept", actor=POLICE, reason="户籍已变更")
    assert resolved.status == "resolved" and resolved.resolution == "accept"
    assert _person(db, senior.id_number).name == "改名字"
    with pytest.raises(StateError, match="already resolved"):
        db.resolve_conflict(police[0].conflict_id, "keep", actor=POLICE)
    with Session(db.master) as ms:
        row = ms.exec(
            select(FieldHistory).where(
                FieldHistory.field == "name",
                FieldHistory.entity_id == _person(db, senior.id_number).person_id,
                col(FieldHistory.valid_to).is_(None),
            )
        ).one()
    assert row.value == "改名字" and row.source == "public_security"
    assert row.checks[0]["level"] == "conflict" and row.checks[0]["actor"] == "zhao"
    changes, _ = _all_changes(db, limit=1000)
    assert changes[-1].cause == "conflict" and changes[-1].field == "name"

    kept = db.resolve_conflict(hall[0].conflict_id, "keep", actor=HALL, reason="本人确认旧号码有效")
    assert kept.resolution == "keep"
    assert _person(db, senior.id_number).phone == NEW_PHONE  # master kept its value
    assert db.conflicts(actor=HALL) == [] and len(db.conflicts(actor=HALL, status="all")) == 1
    # Every listing and resolution is in the audit log, which still verifies.
    assert db.verify_audit().ok


def test_an_accepted_name_is_keyed_in_the_resolution_s_own_transaction(
    db: GovDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash after the resolution's commit can leave nothing to re-key: the keys change in the
    transaction that changes the name (a re-key after it would fail here, and is not called)."""
    import govdb.correct.conflicts as conflicts
    from govdb.link.reads import stored_keys

    senior = _senior(db)
    (name,) = db.conflicts(actor=POLICE)

    def after_commit(*_: object, **__: object) -> int:
        raise AssertionError("re-keyed after the commit")

    monkeypatch.setattr(conflicts, "refresh_link_keys", after_commit)
    with db.master.connect() as conn:
        before = stored_keys(conn, [_person(db, senior.id_number).person_id])
    db.resolve_conflict(name.conflict_id, "accept", actor=POLICE, reason="户籍已变更")
    person = _person(db, senior.id_number)
    with db.master.connect() as conn:
        after = stored_keys(conn, [person.person_id])
        expected, _ = prepare_keys(
            db.rules.matching["person"], read_people(conn, [person.person_id]), served_county(conn)
        )
    assert person.name == "改名字"
    assert sorted(after.rows()) == sorted(expected.rows()) != sorted(before.rows())


def test_another_county_cannot_resolve_or_see_a_conflict(db: GovDB) -> None:
    _senior(db)
    conflict = db.conflicts(actor=POLICE)[0]
    other = neighbour_transport(db)
    neighbour = Actor("qian", other.unit_id.replace("transport", "public_security"))
    with Session(db.master) as ms:
        from govdb.store.master import OrgUnit

        unit = ms.get(OrgUnit, other.unit_id)
        assert unit is not None
        ms.add(
            OrgUnit(
                unit_id=neighbour.unit_id,
                name="邻区公安分局",
                level="department",
                division_code=unit.division_code,
                department="public_security",
            )
        )
        ms.commit()
    assert db.conflicts(actor=neighbour) == []
    with pytest.raises(JurisdictionError):
        db.resolve_conflict(conflict.conflict_id, "accept", actor=neighbour)
    with Session(db.master) as ms:
        assert ms.get(Conflict, conflict.conflict_id).status == "open"  # type: ignore[union-attr]


def test_two_officers_resolving_at_once_resolve_once(db: GovDB) -> None:
    _senior(db)
    conflict = db.conflicts(actor=POLICE)[0]
    import threading

    outcomes: list[str] = []

    def resolve(resolution: str) -> None:
        try:
            db.resolve_conflict(conflict.conflict_id, resolution, actor=POLICE)
            outcomes.append("ok")
        except StateError:
            outcomes.append("refused")

    threads = [threading.Thread(target=resolve, args=(r,)) for r in ("accept", "keep", "accept", "keep")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["ok", "refused", "refused", "refused"]


# --- revert ------------------------------------------------------------------------------------


def _lineage(db: GovDB, person_id: str, name: str) -> list[FieldHistory]:
    with Session(db.master) as ms:
        return list(
            ms.exec(
                select(FieldHistory)
                .where(FieldHistory.entity_id == person_id, FieldHistory.field == name)
                .order_by(col(FieldHistory.id))
            ).all()
        )


def test_a_revert_restores_master_and_lineage_field_by_field(db: GovDB) -> None:
    senior = _senior(db)
    before = _person(db, senior.id_number)
    assert before.phone == NEW_PHONE and before.address != senior.address
    proposal_id = _promotion_of(db, "U1")
    with pytest.raises(AccessDeniedError):
        db.revert(proposal_id, actor=TRANSPORT, reason="误录")  # transport may not correct master
    with pytest.raises(StateError, match="reason"):
        db.revert(proposal_id, actor=BUREAU, reason=" ")

    report = db.revert(proposal_id, actor=BUREAU, reason="窗口误录，非本人变更")
    assert sorted(report.restored) == ["address", "phone"] and not report.entity_deleted
    assert report.issuances_flagged == 1  # the transit card offered after the change
    after = _person(db, senior.id_number)
    assert (after.phone, after.address) == (senior.phone, senior.address)
    assert after.name == before.name and after.birth_date == before.birth_date  # nothing else moved
    phones = _lineage(db, after.person_id, "phone")
    current = [r for r in phones if r.valid_to is None]
    assert len(current) == 1 and current[0].value == senior.phone and current[0].source == "public_security"
    assert current[0].checks[-1]["level"] == "revert" and current[0].checks[-1]["actor"] == "sun"
    wrong = [r for r in phones if r.value == NEW_PHONE]
    assert len(wrong) == 1 and wrong[0].retracted_at is not None
    with Session(db.master) as ms:
        promotion = ms.get(Promotion, proposal_id)
        assert promotion is not None and promotion.reverted_by == f"sun@{BUREAU.unit_id}"
        flagged = ms.exec(select(Issuance).where(Issuance.person_id == after.person_id)).one()
        assert flagged.review_reason and proposal_id in flagged.review_reason
    with Session(db.events) as es:
        assert es.get(Proposal, proposal_id).state == "reverted"  # type: ignore[union-attr]
    with pytest.raises(StateError, match="already reverted"):
        db.revert(proposal_id, actor=BUREAU, reason="again")
    changes, _ = _all_changes(db, limit=1000)
    assert {(c.field, c.cause) for c in changes[-2:]} == {("phone", "revert"), ("address", "revert")}
    # The profile agrees, and as recorded before the revert, master said the new phone.
    profile = db.profile(id_number=senior.id_number, actor=POLICE, purpose="identity_lookup")
    assert profile.get("phone").value == senior.phone  # type: ignore[union-attr]
    then = db.profile(
        id_number=senior.id_number,
        actor=POLICE,
        purpose="identity_lookup",
        recorded_at=promotion.applied_at + (promotion.reverted_at - promotion.applied_at) / 2,
    )
    assert then.get("phone").value == NEW_PHONE  # type: ignore[union-attr]
    assert db.verify_audit().ok


def _update_phone(db: GovDB, person: Person, key: str, phone: str, day: str) -> None:
    db.ingest_frame(
        pl.DataFrame(
            {
                "受理编号": [key],
                "姓名": [person.name],
                "身份证号": [person.id_number],
                "联系电话": [phone],
                "村居代码": [person.division_code],
                "办理时间": [f"{day} 09:00"],
            }
        ),
        source="hall_window_system",
        source_token=db.register_source("hall_window_system"),
        key_column="受理编号",
        occurred_at_column="办理时间",
        service_code="hall.resident_registration",
    )
    db.process(today=TODAY)
    while tasks := db.tasks():
        for task in tasks:
            db.decide(task.task_id, Actor("clerk", task.unit_id), "approve")
    db.promote()


def test_a_revert_re_keys_the_person_in_its_own_master_transaction(
    db: GovDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The restored phone and address are keyed in the transaction that restores them (a re-key
    after it would fail here, and is not called): a crash after the commit leaves nothing stale."""
    import govdb.correct.revert as revert
    from govdb.link.reads import stored_keys

    senior = _senior(db)

    def after_commit(*_: object, **__: object) -> int:
        raise AssertionError("re-keyed after the commit")

    monkeypatch.setattr(revert, "refresh_link_keys", after_commit)
    person_id = _person(db, senior.id_number).person_id
    with db.master.connect() as conn:
        before = stored_keys(conn, [person_id])
    db.revert(_promotion_of(db, "U1"), actor=BUREAU, reason="窗口误录，非本人变更")
    with db.master.connect() as conn:
        after = stored_keys(conn, [person_id])
        people = read_people(conn, [person_id])
        expected, _ = prepare_keys(db.rules.matching["person"], people, served_county(conn))
    assert _person(db, senior.id_number).phone == senior.phone
    assert sorted(after.rows()) == sorted(expected.rows()) != sorted(before.rows())


def test_reverts_keep_to_a_stack_and_a_created_person_goes(db: GovDB) -> None:
    register = make_people(5, seed=9, today=TODAY)
    db.load_people(register, source="public_security", valid_from=dt.date(2020, 1, 1))
    person = _person(db, register.row(0, named=True)["id_number"])
    _update_phone(db, person, "A1", "13911110001", "2026-02-01")
    _update_phone(db, person, "A2", "13911110002", "2026-03-01")
    first, second = _promotion_of(db, "A1"), _promotion_of(db, "A2")
    with pytest.raises(StateError, match="revert the later promotion first"):
        db.revert(first, actor=BUREAU, reason="误录")
    assert _person(db, person.id_number).phone == "13911110002"  # refused: nothing changed
    db.revert(second, actor=BUREAU, reason="误录")
    assert _person(db, person.id_number).phone == "13911110001"
    db.revert(first, actor=BUREAU, reason="误录")
    assert _person(db, person.id_number).phone == person.phone
    current = [r for r in _lineage(db, person.person_id, "phone") if r.valid_to is None]
    assert [r.value for r in current] == [person.phone]

    # Someone new, promoted by mistake, is removed again (and leaves the feed as a delete).
    newcomer = make_people(1, seed=77, today=TODAY).row(0, named=True)
    ghost = Person(
        person_id="x",
        id_number=newcomer["id_number"],
        name=newcomer["name"],
        division_code=person.division_code,
    )
    _update_phone(db, ghost, "N1", "13911110003", "2026-04-01")
    created = _person(db, newcomer["id_number"])
    report = db.revert(_promotion_of(db, "N1"), actor=BUREAU, reason="重复登记")
    assert report.entity_deleted
    with Session(db.master) as ms:
        assert ms.get(Person, created.person_id) is None
    changes, _ = _all_changes(db, limit=1000)
    assert (changes[-1].entity_id, changes[-1].op) == (created.person_id, "delete")
    with pytest.raises(NotFoundError, match="not in master"):
        db.as_of("person", created.person_id, actor=POLICE, purpose="identity_lookup")


# --- split ---------------------------------------------------------------------------------------


def test_a_wrong_merge_is_split_and_the_event_linked_again(db: GovDB) -> None:
    register = make_people(5, seed=11, today=TODAY)
    db.load_people(register, source="public_security", valid_from=dt.date(2020, 1, 1))
    a = _person(db, register.row(0, named=True)["id_number"])
    b = _person(db, register.row(1, named=True)["id_number"])
    # B's phone change, written at the window under A's ID number: it is merged into A.
    _update_phone(db, Person(**{**a.model_dump(), "name": a.name}), "W1", "13922220000", "2026-05-01")
    assert _person(db, a.id_number).phone == "13922220000"
    with Session(db.events) as es:
        event = es.exec(select(Event).where(Event.source_key == "W1")).one()
    with pytest.raises(StateError, match="not a change promoted into person"):
        db.split(b.person_id, [event.event_id], actor=BUREAU, reason="错并")
    with pytest.raises(AccessDeniedError, match="does not own"):
        db.split(a.person_id, [event.event_id], actor=POLICE, reason="错并")  # phones are the hall's

    split = db.split(a.person_id, [event.event_id], actor=BUREAU, reason="错并：实为他人变更")
    assert [r.restored for r in split.reverts] == [["phone"]]
    assert _person(db, a.id_number).phone == a.phone
    with Session(db.events) as es:
        again = es.get(Event, event.event_id)
        assert again is not None and again.status == "standardized" and again.link_round == 1
    db.process(today=TODAY)  # linked again: never to A; its ID is A's, so the window must correct it
    with Session(db.events) as es:
        again = es.get(Event, event.event_id)
        assert again is not None and again.status == "unlinked"
        assert "id_number_of_split_person" in again.quality_flags
    assert _person(db, a.id_number).phone == a.phone


# --- as of ---------------------------------------------------------------------------------------


def test_as_of_answers_valid_time_and_record_time(db: GovDB) -> None:
    senior = _senior(db)
    person = _person(db, senior.id_number)
    now = db.as_of("person", person.person_id, actor=POLICE, purpose="identity_lookup")
    assert {v.field: v.value for v in now}["phone"] == NEW_PHONE
    early = db.as_of(
        "person", person.person_id, actor=POLICE, purpose="identity_lookup", valid_at=dt.date(2026, 2, 1)
    )
    assert {v.field: v.value for v in early}["phone"] == senior.phone  # before the change took effect
    before_load = db.as_of(
        "person",
        person.person_id,
        actor=POLICE,
        purpose="identity_lookup",
        recorded_at=dt.datetime(2000, 1, 1, tzinfo=dt.UTC),
    )
    assert before_load == []  # master had recorded nothing then
    profile = db.profile(
        id_number=senior.id_number, actor=POLICE, purpose="identity_lookup", today=dt.date(2026, 2, 1)
    )
    assert profile.get("phone").value == senior.phone  # type: ignore[union-attr]
    hall = db.as_of("person", person.person_id, actor=HALL, purpose="identity_lookup")
    assert {v.field: v.masked for v in hall}["phone"] is True
    assert "birth_date" not in {v.field for v in hall}  # not granted to the hall: omitted


# --- the feed under concurrent writers (PostgreSQL: real concurrency) ---------------------------


@pytest.mark.pg
def test_the_feed_has_no_gaps_or_repeats_under_concurrent_writers(tmp_path, rules) -> None:  # type: ignore[no-untyped-def]
    import threading

    from .conftest import open_backend

    with open_backend("postgresql", tmp_path, rules) as db:
        db.serve_district("440605")
        _senior(db)  # leaves approved work behind for nothing; promotions below come from new events
        people = make_people(600, seed=21, today=TODAY)
        batches = [people.slice(i * 100, 100) for i in range(6)]
        for n, person in enumerate(make_people(40, seed=22, today=TODAY).iter_rows(named=True)):
            db.ingest_frame(
                pl.DataFrame(
                    {
                        "受理编号": [f"C{n}"],
                        "姓名": [person["name"]],
                        "身份证号": [person["id_number"]],
                        "村居代码": [person["division_code"]],
                        "办理时间": ["2026-06-01 09:00"],
                    }
                ),
                source="hall",
                key_column="受理编号",
                occurred_at_column="办理时间",
                service_code="hall.resident_registration",
            )
        db.process(today=TODAY)
        while tasks := db.tasks():
            for task in tasks:
                db.decide(task.task_id, Actor("clerk", task.unit_id), "approve")
        start = db.changes(None, limit=100_000).cursor
        seen: list[int] = []
        done = threading.Event()
        errors: list[BaseException] = []

        def read() -> None:
            cursor = start
            try:
                while True:
                    finished = done.is_set()
                    page = db.changes(cursor, limit=50)
                    seen.extend(c.seq for c in page.changes)
                    cursor = page.cursor
                    if finished and not page.more:
                        return
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        def load(batch: pl.DataFrame) -> None:
            try:
                db.load_people(batch, source="public_security")
            except BaseException as exc:  # pragma: no cover
                errors.append(exc)

        def promote() -> None:
            try:
                db.promote()
            except BaseException as exc:  # pragma: no cover
                errors.append(exc)

        reader = threading.Thread(target=read)
        reader.start()
        writers = [threading.Thread(target=load, args=(b,)) for b in batches]
        writers.append(threading.Thread(target=promote))
        for w in writers:
            w.start()
        for w in writers:
            w.join()
        done.set()
        reader.join()
        assert not errors, errors
        first = int(start) + 1
        last = int(db.changes(start, limit=100_000).changes[-1].seq)
        assert seen == list(range(first, last + 1)), "the reader saw every change once, in order"
        with Session(db.master) as ms:
            lineage = ms.exec(select(FieldHistory)).all()
        # one change per lineage row, a bulk-loaded person one change whatever their fields
        loaded = {h.entity_id for h in lineage if h.bulk_load_id and h.entity_kind == "person"}
        others = [h for h in lineage if not (h.bulk_load_id and h.entity_kind == "person")]
        assert len(others) + len(loaded) == last


# --- the command line ----------------------------------------------------------------------------


def test_feed_conflicts_revert_and_as_of_from_the_command_line(db: GovDB) -> None:
    import json

    from typer.testing import CliRunner

    from govdb.cli import app

    if db.master.dialect.name != "sqlite" or db.config.home is None:
        pytest.skip("the command line opens the SQLite stores of a home folder")
    senior = _senior(db)
    person = _person(db, senior.id_number)
    runner = CliRunner()

    def run(*args: str):  # type: ignore[no-untyped-def]
        return runner.invoke(app, ["--home", str(db.config.home), *args], catch_exceptions=False)

    result = run("changes", "--since", "0", "--limit", "5", "--json")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [c["seq"] for c in lines[:-1]] == [1, 2, 3, 4, 5] and lines[-1] == {"cursor": "5", "more": True}
    result = run("changes", "--since", "abc")
    assert result.exit_code == 1 and "not a cursor" in result.output and "Traceback" not in result.output

    police = f"zhao@{POLICE.unit_id}"
    result = run("conflicts", "list", "--actor", police, "--json")
    assert result.exit_code == 0, result.output
    (conflict,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert conflict["field"] == "name" and conflict["proposed_value"] == "改名字"
    result = run(
        "conflicts",
        "resolve",
        str(conflict["conflict_id"]),
        "amend",
        "--value",
        "郭敏",
        "--actor",
        police,
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["resolution"] == "amend"
    assert _person(db, senior.id_number).name == "郭敏"
    result = run("conflicts", "resolve", str(conflict["conflict_id"]), "keep", "--actor", police)
    assert result.exit_code == 1 and "already resolved" in result.output

    result = run(
        "revert", _promotion_of(db, "U1"), "--actor", f"sun@{BUREAU.unit_id}", "--reason", "误录", "--json"
    )
    assert result.exit_code == 0, result.output
    assert sorted(json.loads(result.stdout)["restored"]) == ["address", "phone"]

    result = run(
        "as-of",
        "person",
        person.person_id,
        "--valid-at",
        "2026-04-01",
        "--actor",
        police,
        "--purpose",
        "identity_lookup",
        "--json",
    )
    assert result.exit_code == 0, result.output
    values = {v["field"]: v["value"] for v in map(json.loads, result.stdout.splitlines())}
    assert values["phone"] == senior.phone and values["name"] == senior.name  # the rename came later
    result = run(
        "profile",
        senior.id_number,
        "--actor",
        police,
        "--purpose",
        "identity_lookup",
        "--recorded-at",
        "2000-01-01",
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert {f["name"]: f["value"] for f in json.loads(result.stdout)["fields"]}["phone"] is None


def test_a_revert_withdraws_its_conflicts_and_owners_only_revert_their_facts(db: GovDB) -> None:
    senior = _senior(db)
    u2 = _promotion_of(db, "U2")  # the unproven source's change: two conflicts, no field changed
    with pytest.raises(AccessDeniedError, match="does not own"):
        db.revert(_promotion_of(db, "CDPF1"), actor=POLICE, reason="误录")  # the federation's certificate
    before = len(db.who_read(id_number=senior.id_number, actor=HALL))
    report = db.revert(u2, actor=BUREAU, reason="来源不明")
    assert report.restored == [] and report.issuances_flagged == 0  # nothing it changed, nothing to flag
    assert db.conflicts(actor=POLICE) == [] and db.conflicts(actor=HALL) == []
    withdrawn = db.conflicts(actor=POLICE, status="all")
    assert [c.resolution for c in withdrawn] == ["withdrawn"]
    with pytest.raises(StateError, match="already resolved"):
        db.resolve_conflict(withdrawn[0].conflict_id, "accept", actor=POLICE)
    assert _person(db, senior.id_number).name != "改名字"
    with pytest.raises(StateError, match="already reverted"):
        db.revert(u2, actor=BUREAU, reason="again")
    # Refused changes are on record too (who-read lists every entry about the person).
    reads = db.who_read(id_number=senior.id_number, actor=HALL)
    assert [r.outcome for r in reads[before:] if r.action in ("revert", "resolve_conflict")][-2:] == [
        "refused",
        "refused",
    ]
    assert db.verify_audit().ok


def test_a_split_is_all_or_nothing(db: GovDB) -> None:
    register = make_people(5, seed=13, today=TODAY)
    db.load_people(register, source="public_security", valid_from=dt.date(2020, 1, 1))
    a = _person(db, register.row(0, named=True)["id_number"])
    _update_phone(db, a, "S1", "13933330001", "2026-02-01")
    _update_phone(db, a, "S2", "13933330002", "2026-03-01")
    _update_phone(db, a, "S3", "13933330003", "2026-04-01")  # A's own later change: not split off
    with Session(db.events) as es:
        ids = [es.exec(select(Event.event_id).where(Event.source_key == key)).one() for key in ("S1", "S2")]
    with pytest.raises(StateError, match="changed again"):
        db.split(a.person_id, ids, actor=BUREAU, reason="错并")
    assert _person(db, a.id_number).phone == "13933330003"
    with Session(db.events) as es:
        assert {es.get(Event, i).status for i in ids} == {"promoted"}  # type: ignore[union-attr]
        states = es.exec(select(Proposal.state).where(col(Proposal.event_id).in_(ids))).all()
        assert set(states) == {"promoted"}  # neither reverted: the whole split was refused


def test_after_a_revert_a_past_value_beneath_still_answers_its_days(db: GovDB) -> None:
    register = make_people(5, seed=17, today=TODAY)
    db.load_people(register, source="public_security", valid_from=dt.date(2020, 1, 1))
    a = _person(db, register.row(0, named=True)["id_number"])
    _update_phone(db, a, "P1", "13944440001", "2026-03-01")
    _update_phone(db, a, "P0", "13944440000", "2026-02-01")  # learned later, held earlier: a past value
    db.revert(_promotion_of(db, "P1"), actor=BUREAU, reason="误录")

    def phone(day: dt.date) -> str | None:
        values = db.as_of("person", a.person_id, actor=POLICE, purpose="identity_lookup", valid_at=day)
        return {v.field: v.value for v in values}.get("phone")

    assert phone(dt.date(2026, 2, 15)) == "13944440000"  # the past value, verified and not reverted
    assert phone(dt.date(2025, 6, 1)) == a.phone
