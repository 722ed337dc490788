"""The whole data path on both backends, and the invariants of DESIGN.md that it touches."""

from __future__ import annotations

import ast
from pathlib import Path

import polars as pl
import pytest
from sqlmodel import Session, col, select

import govdb.promote
from govdb import Actor, GovDB, JurisdictionError, StateError
from govdb.demo import COUNTY, DemoReport, run_demo_on
from govdb.store.events import Proposal
from govdb.store.master import Credential, FieldHistory, Issuance, Person, Promotion

from .conftest import TODAY

PACKAGE = Path(__file__).resolve().parents[1] / "govdb"


@pytest.fixture
def demo(db: GovDB, tmp_path: Path) -> DemoReport:
    return run_demo_on(db, tmp_path, people=150, seed=3, today=TODAY)


def test_demo_runs_every_stage(db: GovDB, demo: DemoReport) -> None:
    assert demo.ingests[0].quarantined == 1 and demo.ingests[0].duplicate == 1
    assert demo.reingest.stored == 0
    assert demo.process.validation.error_rows == 2  # the wrong check digit and the impossible date
    assert demo.promote.promoted > 0 and demo.promote.people_created > 0 and demo.promote.credentials > 0
    assert len(demo.rejected) == 1 and "outside that jurisdiction" in demo.refused
    assert all(f.source for f in demo.prefill.fields if f.value is not None)
    assert demo.first_run.issued > 0 and demo.first_run.home_delivery > 0
    assert (demo.second_run.issued, demo.second_run.already_issued) == (0, demo.first_run.issued)


def test_home_delivery_follows_mobility_certificates(db: GovDB, demo: DemoReport) -> None:
    with Session(db.master) as ms:
        ledger = ms.exec(select(Issuance)).all()
        certs = {c.person_id: c.attributes for c in ms.exec(select(Credential)).all()}
        people = {p.person_id: p for p in ms.exec(select(Person)).all()}
    for row in ledger:
        cert = certs.get(row.person_id, {})
        walks = not (
            cert.get("disability_category") == "肢体" and cert.get("disability_grade") in ("一级", "二级")
        )
        assert row.delivery == ("pickup" if walks else "home")
        born = people[row.person_id].birth_date
        assert born is not None and born <= TODAY.replace(year=TODAY.year - 60)


def test_master_changes_only_by_promotion_or_bulk_load(db: GovDB, demo: DemoReport) -> None:
    """Invariant 1 and 4: every master value has lineage to a promotion or a recorded bulk load."""
    with Session(db.master) as ms:
        promoted = set(ms.exec(select(Promotion.proposal_id)).all())
        history = ms.exec(select(FieldHistory)).all()
        people = ms.exec(select(Person)).all()
    assert all(h.proposal_id in promoted or h.bulk_load_id for h in history)
    by_person = {h.entity_id for h in history if h.entity_kind == "person"}
    assert {p.person_id for p in people} <= by_person
    verified = [h for h in history if h.proposal_id and h.entity_kind == "person" and h.field == "id_number"]
    assert verified, "new people were promoted"
    levels = [c["level"] for c in verified[0].checks]
    assert levels == ["village", "street", "department"]
    assert all(c["actor"] and c["unit"] for c in verified[0].checks) and verified[0].event_ids


def test_serving_code_never_imports_the_event_store() -> None:
    """Invariant 2: prefill, profiles and programmes read master only. (access/audit.py is the one
    access module that touches the event store: it writes checkpoints of the audit head there.)"""
    access = [p for p in sorted((PACKAGE / "access").glob("*.py")) if p.name != "audit.py"]
    assert len(access) >= 4
    for path in [*sorted((PACKAGE / "serve").glob("*.py")), *access]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
            a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
        }
        assert not {m for m in imported if m and ("store.events" in m or m.startswith("govdb.ingest"))}, path


def test_promotion_completes_after_a_crash_between_the_two_stores(
    db: GovDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _processed_and_approved(db, tmp_path)
    original = govdb.promote._mark_promoted
    calls = {"n": 0}

    def crash(events, master, ids):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        raise RuntimeError("power cut after the master commit")

    monkeypatch.setattr(govdb.promote, "_mark_promoted", crash)
    with pytest.raises(RuntimeError):
        db.promote()
    monkeypatch.setattr(govdb.promote, "_mark_promoted", original)
    with Session(db.master) as ms:
        applied = len(ms.exec(select(Promotion)).all())
        people_before = len(ms.exec(select(Person)).all())
    assert applied == run > 0
    report = db.promote()
    assert (report.promoted, report.completed_after_crash) == (0, run)
    with Session(db.master) as ms:
        assert len(ms.exec(select(Person)).all()) == people_before
    with Session(db.events) as es:
        states = set(es.exec(select(Proposal.state).where(col(Proposal.state) != "rejected")).all())
    assert states == {"promoted"}


def _hall_scenario(db: GovDB, folder: Path, *, people: int, seed: int, department: str | None = None) -> None:
    """A loaded register, a day of hall registrations ingested, and the events processed."""
    from govdb.demo import make_hall_events, make_people

    register = make_people(people, seed=seed, today=TODAY)
    db.load_people(register, source="public_security")
    make_hall_events(register, folder / "hall.csv", seed=seed, today=TODAY)
    # A hall that proves it is the service hall's system gets its trust; a named department gets none.
    proven = {"source": "hall_window_system", "source_token": db.register_source("hall_window_system")}
    db.ingest(
        folder / "hall.csv",
        **(proven if department == "service_hall" else {"source": "hall"}),
        key_column="受理编号",
        service_code="hall.resident_registration",
    )
    db.process(today=TODAY)


def _processed_and_approved(db: GovDB, folder: Path) -> int:
    _hall_scenario(db, folder, people=60, seed=1, department="service_hall")
    approved = 0
    while tasks := db.tasks():
        for task in tasks:
            db.decide(task.task_id, Actor("clerk", task.unit_id), "approve")
    with Session(db.events) as es:
        approved = len(es.exec(select(Proposal).where(Proposal.state == "approved")).all())
    return approved


def test_jurisdiction_is_enforced_at_every_level(db: GovDB, tmp_path: Path) -> None:
    """Invariant 5."""
    _hall_scenario(db, tmp_path, people=40, seed=2)
    task = next(t for t in db.tasks() if t.change == "new_person")
    village = task.unit_id.split(":")[1]
    other_street = next(u.unit_id for u in db.units("street") if not village.startswith(u.division_code))
    with pytest.raises(JurisdictionError, match="needs a village unit"):
        db.decide(task.task_id, Actor("s", f"street:{village[:9]}"), "approve")
    with pytest.raises(StateError, match="needs a reason"):
        db.decide(task.task_id, Actor("v", task.unit_id), "reject")
    db.decide(task.task_id, Actor("v", task.unit_id), "approve")
    with pytest.raises(StateError, match="is approved, not open"):
        db.decide(task.task_id, Actor("v", task.unit_id), "approve")
    street_task = next(t for t in db.tasks() if t.proposal_id == task.proposal_id)
    with pytest.raises(JurisdictionError, match="outside that jurisdiction"):
        db.decide(street_task.task_id, Actor("s", other_street), "approve")
    db.decide(street_task.task_id, Actor("s", f"street:{village[:9]}"), "approve")
    dept_task = next(t for t in db.tasks() if t.proposal_id == task.proposal_id)
    with pytest.raises(JurisdictionError, match="belongs to 'public_security'"):
        db.decide(dept_task.task_id, Actor("d", f"department:civil_affairs:{COUNTY}"), "approve")
    result = db.decide(dept_task.task_id, Actor("d", f"department:public_security:{COUNTY}"), "approve")
    assert result.proposal_state == "approved"


def test_amend_records_the_new_value_and_return_reopens_the_previous_level(db: GovDB, tmp_path: Path) -> None:
    from govdb.store.events import Decision

    _hall_scenario(db, tmp_path, people=40, seed=4, department="service_hall")
    task = next(t for t in db.tasks() if t.change == "update_person")
    village = Actor("v", task.unit_id)
    street = Actor("s", f"street:{task.unit_id.split(':')[1][:9]}")
    db.decide(task.task_id, village, "amend", amendments={"address": "桂城街道南海大道1号"})
    street_task = next(t for t in db.tasks() if t.proposal_id == task.proposal_id)
    returned = db.decide(street_task.task_id, street, "return", reason="门牌号不全")
    assert returned.next_task_id == task.task_id and returned.proposal_state == "pending"
    db.decide(task.task_id, village, "approve")
    street_task = next(t for t in db.tasks() if t.proposal_id == task.proposal_id)
    assert db.decide(street_task.task_id, street, "approve").proposal_state == "approved"
    db.promote()
    person_id = next(p.entity_id for p in _proposals(db) if p.proposal_id == task.proposal_id)
    with Session(db.master) as ms:
        person = ms.get(Person, person_id)
        history = ms.exec(
            select(FieldHistory).where(FieldHistory.entity_id == person_id, FieldHistory.field == "address")
        ).all()
    assert person is not None and person.address == "桂城街道南海大道1号"
    current = next(h for h in history if h.valid_to is None)
    assert [c["outcome"] for c in current.checks] == ["amend", "return", "approve", "approve"]
    assert current.checks[0]["amendments"] == {"address": "桂城街道南海大道1号"}
    assert any(h.valid_to is not None and h.bulk_load_id for h in history)  # the old address, closed
    with Session(db.events) as es:
        assert len(es.exec(select(Decision)).all()) >= 4


def _proposals(db: GovDB) -> list[Proposal]:
    with Session(db.events) as es:
        return list(es.exec(select(Proposal)).all())


def test_issuance_lifecycle(db: GovDB, demo: DemoReport) -> None:
    person = demo.first_run.selected[0]["person_id"]
    with Session(db.master) as ms:
        issuance = ms.exec(select(Issuance).where(Issuance.person_id == person)).one().id
    assert issuance is not None
    clerk = Actor("wang", "department:transport:440605")
    db.update_issuance([issuance], to="accepted", actor=clerk)
    db.update_issuance([issuance], to="delivered", actor=clerk)
    with pytest.raises(StateError, match="cannot go from 'delivered' to 'declined'"):
        db.update_issuance([issuance], to="declined", actor=clerk)
    with Session(db.master) as ms:
        row = ms.exec(select(Issuance).where(Issuance.person_id == person)).one()
    assert row.status == "delivered" and "aged 60 or over" in " ".join(row.reasons)


def test_a_less_trusted_value_becomes_a_conflict_for_the_owner(db: GovDB) -> None:
    import polars as pl

    from govdb.demo import make_people
    from govdb.store.master import Conflict

    register = make_people(5, seed=9, today=TODAY)
    db.load_people(register, source="public_security")
    person = register.row(0, named=True)
    window = pl.DataFrame(
        {
            "编号": ["K1"],
            "姓名": ["改名字"],
            "身份证号": [person["id_number"]],
            "村居代码": [person["division_code"]],
        }
    )
    db.ingest_frame(
        window,
        source="hall",
        key_column="编号",
        service_code="hall.resident_registration",
        department="service_hall",
    )
    db.process(today=TODAY)
    while tasks := db.tasks():
        for task in tasks:
            db.decide(task.task_id, Actor("clerk", task.unit_id), "approve")
    assert db.promote().conflicts == 1
    with Session(db.master) as ms:
        conflict = ms.exec(select(Conflict)).one()
        kept = ms.exec(select(Person).where(Person.id_number == person["id_number"])).one()
    assert (conflict.field, conflict.proposed_value, conflict.owner_department) == (
        "name",
        "改名字",
        "public_security",
    )
    assert kept.name == person["name"]


def test_quality_counts_errors_per_source_and_field(db: GovDB, demo: DemoReport) -> None:
    from govdb.validate import quality

    frame = quality(db.events)
    hall = {r["field"]: r for r in frame.filter(pl.col("source") == "hall_window_system").to_dicts()}
    assert hall["id_number"]["errors"] == 2 and hall["id_number"]["events"] == demo.ingests[0].stored
    assert "id_checksum" in hall["id_number"]["reasons"]
    assert hall["birth_date"]["errors"] == 1
    assert frame.filter(pl.col("source") == "cdpf_system").get_column("errors").sum() == 0


def test_an_address_without_a_village_code_is_placed_and_routed(db: GovDB) -> None:
    from govdb.demo import make_people
    from govdb.standards.ids import make_id

    assert db.served_county() == COUNTY
    window = pl.DataFrame(
        {
            "受理编号": ["A1"],
            "姓名": ["陈新来"],
            "身份证号": [make_id("440106", TODAY.replace(year=1990), 21)],
            "居住地址": ["桂城街道花苑社区３栋１０１"],  # no county: the served county is the hint
        }
    )
    db.load_people(make_people(3, seed=1, today=TODAY), source="public_security")
    db.ingest_frame(window, source="hall", key_column="受理编号", service_code="hall.resident_registration")
    report = db.process(today=TODAY)
    assert report.proposals.proposals == 1 and report.proposals.unroutable == 0
    task = db.tasks()[0]
    assert task.unit_id == "village:440605011005" and task.division_code == "440605011005"


def _statuses(db: GovDB) -> dict[str, tuple[str, str | None, list[str]]]:
    from govdb.store.events import Event

    with Session(db.events) as es:
        return {
            e.source_key: (e.status, e.division_code, e.quality_flags) for e in es.exec(select(Event)).all()
        }


def test_an_address_placed_to_a_village_meets_the_required_division(db: GovDB) -> None:
    """Events without a village code column beside events with one: the address's village is the
    record's division; an address that cannot be placed fails with its own reason."""
    from govdb.standards.ids import make_id

    service = "hall.resident_registration"
    coded = pl.DataFrame(
        {
            "受理编号": ["C1"],
            "姓名": ["李四"],
            "身份证号": [make_id("440106", TODAY.replace(year=1980), 23)],
            "居住地址": ["桂城街道花苑社区5栋"],
            "村居代码": ["440605011005"],
        }
    )
    uncoded = pl.DataFrame(
        {
            "受理编号": ["A1", "A2", "A3"],
            "姓名": ["陈新来", "王五", "赵六"],
            "身份证号": [make_id("440106", TODAY.replace(year=y), 21) for y in (1990, 1985, 1975)],
            "居住地址": ["桂城街道桂一社区南海大道218号", "火星基地1号", "桂城街道"],
        }
    )
    db.ingest_frame(coded, source="hall", key_column="受理编号", service_code=service)
    db.ingest_frame(uncoded, source="hall", key_column="受理编号", service_code=service)
    report = db.process(today=TODAY)
    failures = {(r["row_id"], r["reason"]) for r in report.validation.failures.to_dicts()}
    status = _statuses(db)
    assert status["A1"][:2] == ("proposed", "440605011001")  # placed by its address, at its village
    assert status["C1"][:2] == ("proposed", "440605011005")
    assert status["A2"][0] == "invalid" and "division_code:address_unplaced" in status["A2"][2]
    assert "address:address_unresolved" in status["A2"][2]  # and why it could not be placed
    # A township is not enough: the route's first check is the village's.
    assert status["A3"][0] == "invalid" and status["A3"][2] == ["division_code:division_not_village"]
    assert not any(reason == "required_missing" for _, reason in failures)
    tasks = {t.division_code: t.unit_id for t in db.tasks()}
    assert tasks["440605011001"] == "village:440605011001"


def _rules_with_alias(tmp_path: Path, column: str, alias: str) -> Path:
    """A copy of the shipped rules where `column` is also read from the header `alias`."""
    import shutil

    from .conftest import REPO

    folder = tmp_path / "fixed-rules"
    shutil.copytree(REPO / "rules", folder)
    path = folder / "standards" / "columns.yaml"
    text = path.read_text(encoding="utf-8")
    line = next(x for x in text.splitlines() if x.strip().startswith(f"{column}: ["))
    path.write_text(text.replace(line, line.replace("[", f"[{alias}, ", 1)), encoding="utf-8")
    return folder


def test_invalid_events_are_valid_after_the_rules_are_fixed_and_a_retry(db: GovDB, tmp_path: Path) -> None:
    from govdb import load_rulebook
    from govdb.standards.ids import make_id

    window = pl.DataFrame(
        {
            "受理编号": ["R1", "R2"],
            "姓名": ["陈新来", "王五"],
            "身份证号": [make_id("440106", TODAY.replace(year=y), 21) for y in (1990, 1985)],
            "居所": ["桂城街道花苑社区3栋", "火星基地1号"],  # a header the rules do not know yet
        }
    )
    db.ingest_frame(window, source="hall", key_column="受理编号", service_code="hall.resident_registration")
    first = db.process(today=TODAY)
    assert first.retried == 0 and first.validation.error_rows == 2
    assert {s[0] for s in _statuses(db).values()} == {"invalid"}
    # A retry before the fix changes nothing but is harmless: both are validated again, still invalid.
    again = db.process(today=TODAY, retry="invalid")
    assert again.retried == 2 and again.validation.error_rows == 2
    fixed = GovDB.open(
        master_url=db.config.master_url,
        events_url=db.config.events_url,
        rules=load_rulebook(_rules_with_alias(tmp_path, "address", "居所")),
    )
    try:
        report = fixed.process(today=TODAY, retry="invalid")
        assert report.retried == 2 and report.validation.rows == 2 and report.validation.error_rows == 1
        status = _statuses(fixed)
        assert status["R1"][:2] == ("proposed", "440605011005") and status["R1"][2] == []
        assert status["R2"][0] == "invalid"  # its data is still wrong: retried, and invalid again
        assert report.proposals.proposals == 1
        # Only invalid events move: the proposed one stays where it is, and nothing is proposed twice.
        later = fixed.process(today=TODAY, retry="invalid")
        assert later.retried == 1 and later.proposals.proposals == 0
        assert _statuses(fixed)["R1"][0] == "proposed"
    finally:
        fixed.close()


def test_a_retry_with_nothing_invalid_is_harmless(db: GovDB) -> None:
    from govdb import ConfigError

    report = db.process(today=TODAY, retry="invalid")
    assert (report.retried, report.validation.rows, report.proposals.proposals) == (0, 0, 0)
    with pytest.raises(ConfigError, match="allowed: invalid"):
        db.process(today=TODAY, retry="proposed")
