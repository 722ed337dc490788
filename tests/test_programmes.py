"""Proactive programmes with expressive rules: all / any / not and ranges, monthly cycles, offers
moved on by the programme's department only, delivered cards as master credentials with lineage,
and an audited, masked export of who was selected and why. Every programme file runs end to end."""

from __future__ import annotations

import datetime as dt
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from sqlalchemy import insert
from sqlmodel import Session, select

from govdb import Actor, GovDB, load_rulebook
from govdb.errors import AccessDeniedError, JurisdictionError, RuleFileError, StateError
from govdb.rulebook import Rulebook
from govdb.serve.programmes import WITHHELD_CONDITION
from govdb.standards.divisions import subtree
from govdb.standards.ids import make_id
from govdb.store.master import AuditLog, BulkLoad, Credential, FieldHistory, Issuance, OrgUnit, Person
from tests.conftest import REPO, TODAY, neighbour_transport, open_backend

TRANSPORT = Actor("wang", "department:transport:440605")
CIVIL = Actor("zhao", "department:civil_affairs:440605")
HOUSING = Actor("liu", "department:housing:440605")
VILLAGES = subtree("440605").filter(pl.col("level") == 5).get_column("code").to_list()
PROGRAMME_FILES = sorted((REPO / "rules" / "programmes").glob("*.yaml"))


def _born(age: int, *, days: int = 30) -> dt.date:
    """A birth date making someone `age` on TODAY (their birthday `days` ago)."""
    return (TODAY - dt.timedelta(days=days)).replace(year=TODAY.year - age)


def _people(db: GovDB, ages: dict[str, int], *, village: int = 0) -> dict[str, str]:
    """Load one person per name with the given age; returns name -> person_id."""
    rows = [
        {
            "id_number": make_id("440605", _born(age), 100 + 2 * i),
            "name": name,
            "gender": "M",
            "birth_date": _born(age),
            "phone": f"1380000{i:04d}",
            "address": f"广东省佛山市南海区桂城街道{name}路{i + 1}号",
            "division_code": VILLAGES[village],
        }
        for i, (name, age) in enumerate(ages.items())
    ]
    db.load_people(pl.DataFrame(rows), source="public_security")
    with db.master.connect() as conn:
        found = conn.execute(select(Person.__table__.c.name, Person.__table__.c.person_id)).all()  # type: ignore[attr-defined]
    return {name: pid for name, pid in found if name in ages}


def _credential(db: GovDB, person_id: str, kind: str, **attributes: str) -> None:
    """Test setup: a credential another department's system put in master (its own path is tested
    in test_pipeline); written directly so the population here is exactly what each test says."""
    with db.master.begin() as conn:
        conn.execute(
            insert(Credential.__table__),  # type: ignore[attr-defined]
            [
                {
                    "credential_id": f"C{uuid.uuid4().hex[:15]}",
                    "person_id": person_id,
                    "kind": kind,
                    "number": uuid.uuid4().hex[:12],
                    "attributes": attributes,
                    "issuer": "civil_affairs",
                    "created_at": dt.datetime.now(dt.UTC),
                }
            ],
        )


def _rules_with(tmp_path: Path, name: str, programme: dict[str, Any]) -> Path:
    root = tmp_path / "rules"
    if not root.exists():
        shutil.copytree(REPO / "rules", root)
    (root / "programmes" / f"{name}.yaml").write_text(
        yaml.safe_dump(programme, allow_unicode=True), encoding="utf-8"
    )
    return root


# --- expressive eligibility --------------------------------------------------------------------

MIXED = {
    "kind": "programme",
    "version": 1,
    "name": "senior_transit_card",
    "title": "test",
    "department": "transport",
    "cycle": "yearly",
    "eligibility": [
        {"block": "alive"},
        {
            "any": [
                {"block": "age_between", "params": {"min": 70, "max": 79}},
                {"block": "has_credential", "params": {"kind": "disability_certificate"}},
            ]
        },
        {"not": {"block": "has_credential", "params": {"kind": "care_home_resident"}}},
    ],
}


def test_not_any_and_ranges_select_exactly_the_right_people(tmp_path: Path) -> None:
    root = _rules_with(tmp_path, "senior_transit_card", MIXED)
    rules = load_rulebook(root)
    # Access: transport must see the credential kinds its conditions speak of (else withheld).
    with open_backend("sqlite", tmp_path / "home", rules) as db:
        db.serve_district("440605")
        ids = _people(
            db,
            {
                "甲七十": 70,
                "乙七九": 79,
                "丙八十": 80,
                "丁六九": 69,
                "戊残疾": 40,
                "己养老": 75,
                "庚残八五": 85,
            },
        )
        _credential(db, ids["戊残疾"], "disability_certificate", disability_category="肢体")
        _credential(db, ids["庚残八五"], "disability_certificate", disability_category="视力")
        _credential(db, ids["己养老"], "care_home_resident")
        run = db.run_programme("senior_transit_card", as_of=TODAY, actor=TRANSPORT)
    chosen = {s["person_id"]: s for s in run.selected}
    names = {v: k for k, v in ids.items()}
    assert sorted(names[p] for p in chosen) == sorted(["甲七十", "乙七九", "戊残疾", "庚残八五"])
    assert run.cycle == "2026" and run.issued == 4
    # Which branch matched, in words; the exclusion is why 己 was left out.
    assert f"aged 70 to 79 on {TODAY}" in chosen[ids["甲七十"]]["reasons"]
    assert not any("70 to 79" in r for r in chosen[ids["戊残疾"]]["reasons"])
    # transport is not granted disability certificates: that branch's words are withheld.
    assert any("another department" in r for r in chosen[ids["戊残疾"]]["reasons"])
    assert "not: holds a care_home_resident" not in chosen[ids["甲七十"]]["reasons"]
    assert WITHHELD_CONDITION in chosen[ids["甲七十"]]["reasons"]
    assert [names[e["person_id"]] for e in run.excluded] == ["己养老"]


def test_reasons_name_the_matched_branches_when_the_reader_may_see_them(tmp_path: Path) -> None:
    programme = {**MIXED, "department": "civil_affairs", "name": "elderly_allowance"}
    root = _rules_with(tmp_path, "elderly_allowance", programme)
    with open_backend("sqlite", tmp_path / "home", load_rulebook(root)) as db:
        db.serve_district("440605")
        ids = _people(db, {"戊残疾": 40, "己养老": 75})
        _credential(db, ids["戊残疾"], "disability_certificate")
        _credential(db, ids["己养老"], "care_home_resident")
        run = db.run_programme("elderly_allowance", as_of=TODAY, actor=CIVIL)
    (person,) = run.selected
    assert person["reasons"] == ["alive", "holds a disability_certificate", "not: holds a care_home_resident"]
    (excluded,) = run.excluded
    assert excluded["person_id"] == ids["己养老"]
    assert excluded["reasons"] == ["excluded: holds a care_home_resident"]


@pytest.mark.parametrize(
    ("change", "where", "says"),
    [
        ({"any": []}, "eligibility.3.any", "at least 1 item"),
        ({"nay": [{"block": "alive"}]}, "eligibility.3", "exactly one of"),
        ({"block": "alive", "any": [{"block": "alive"}]}, "eligibility.3", "exactly one of"),
        (
            {"not": {"block": "age_between", "params": {"min": 90, "max": 80}}},
            "eligibility.3.not.params",
            "above",
        ),
        ({"any": [{"block": "age_between", "params": {"mn": 80}}]}, "eligibility.3.any.0.params.mn", "Extra"),
        ({"all": [{"not": {"block": "aged"}}]}, "eligibility.3.all.0.not.block", "no eligibility block"),
    ],
)
def test_a_bad_condition_fails_at_load_naming_file_and_field(
    tmp_path: Path, change: dict[str, Any], where: str, says: str
) -> None:
    bad = {**MIXED, "eligibility": [*MIXED["eligibility"], change]}
    root = _rules_with(tmp_path, "senior_transit_card", bad)
    with pytest.raises(RuleFileError) as info:
        load_rulebook(root)
    text = str(info.value)
    assert f"senior_transit_card.yaml: {where}" in text and says in text, text


def test_monthly_cycle_and_unknown_cycle(tmp_path: Path) -> None:
    root = _rules_with(tmp_path, "senior_transit_card", {**MIXED, "cycle": "weekly"})
    with pytest.raises(RuleFileError, match=r"senior_transit_card\.yaml: cycle"):
        load_rulebook(root)


# --- every programme file runs end to end -----------------------------------------------------


@pytest.mark.parametrize("path", PROGRAMME_FILES, ids=[p.stem for p in PROGRAMME_FILES])
def test_every_programme_file_runs_end_to_end(db: GovDB, path: Path) -> None:
    programme = db.rules.programmes[yaml.safe_load(path.read_text(encoding="utf-8"))["name"]]
    ids = _people(db, {"老一": 85, "老二": 92, "少一": 30})
    actor = Actor("clerk", f"department:{programme.department}:440605")
    run = db.run_programme(programme.name, as_of=TODAY, actor=actor)
    assert {s["person_id"] for s in run.selected} == {ids["老一"], ids["老二"]}
    again = db.run_programme(programme.name, as_of=TODAY, actor=actor)
    assert (again.issued, again.already_issued) == (0, 2)
    offers = db.programme_selection(programme.name, actor=actor, statuses=["offered"])
    assert offers.height == 2
    first = int(offers.get_column("issuance_id")[0])
    db.update_issuance([first], to="accepted", actor=actor)
    moved = db.update_issuance([first], to="delivered", actor=actor)
    assert moved.moved == [first]
    assert len(moved.credentials) == (1 if programme.credential else 0)


def test_old_age_allowance_runs_monthly_from_yaml(db: GovDB) -> None:
    """高龄津贴: 80+ paid each month, care-home residents excluded, by civil affairs."""
    ids = _people(db, {"八十": 80, "九十": 90, "七九": 79, "养老院": 88})
    _credential(db, ids["养老院"], "care_home_resident")
    november = db.run_programme("elderly_allowance", as_of=TODAY, actor=CIVIL)
    assert november.cycle == "2026-11"
    assert {s["person_id"] for s in november.selected} == {ids["八十"], ids["九十"]}
    assert [e["person_id"] for e in november.excluded] == [ids["养老院"]]
    assert november.excluded[0]["reasons"] == ["excluded: holds a care_home_resident"]
    assert all(s["delivery"] == "mail" for s in november.selected)
    later = db.run_programme("elderly_allowance", as_of=TODAY + dt.timedelta(days=5), actor=CIVIL)
    assert (later.cycle, later.issued, later.already_issued) == ("2026-11", 0, 2)
    december = db.run_programme("elderly_allowance", as_of=dt.date(2026, 12, 1), actor=CIVIL)
    assert (december.cycle, december.issued) == ("2026-12", 2)
    with Session(db.master) as ms:
        ledger = ms.exec(select(Issuance).where(Issuance.programme == "elderly_allowance")).all()
    assert sorted((r.cycle, r.person_id) for r in ledger) == sorted(
        (c, p) for c in ("2026-11", "2026-12") for p in (ids["八十"], ids["九十"])
    )
    # Who was selected and why, for the department, masked as its policy says.
    frame = db.programme_selection("elderly_allowance", actor=CIVIL, cycle="2026-12")
    assert frame.height == 2 and set(frame.get_column("cycle")) == {"2026-12"}
    assert all("aged 80 or over on 2026-12-01" in r for r in frame.get_column("reasons").to_list())


# --- offers move on ---------------------------------------------------------------------------


def _offers(db: GovDB, ages: dict[str, int]) -> tuple[dict[str, str], dict[str, int]]:
    ids = _people(db, ages)
    db.run_programme("senior_transit_card", as_of=TODAY, actor=TRANSPORT)
    with db.master.connect() as conn:
        table = Issuance.__table__  # type: ignore[attr-defined]
        rows = conn.execute(select(table.c.person_id, table.c.id)).all()
    by_person = dict(rows)
    return ids, {name: by_person[pid] for name, pid in ids.items() if pid in by_person}


def test_a_declined_offer_is_never_delivered(db: GovDB) -> None:
    _, offers = _offers(db, {"甲": 61, "乙": 65})
    db.update_issuance([offers["甲"]], to="declined", actor=TRANSPORT)
    with pytest.raises(StateError, match="cannot go from 'declined' to 'delivered'"):
        db.update_issuance([offers["甲"]], to="delivered", actor=TRANSPORT)
    with pytest.raises(StateError, match="cannot go from 'offered' to 'delivered'"):
        db.update_issuance([offers["乙"]], to="delivered", actor=TRANSPORT)
    # All or none: one row that may not move refuses the batch.
    with pytest.raises(StateError):
        db.update_issuance([offers["乙"], offers["甲"]], to="accepted", actor=TRANSPORT)
    with Session(db.master) as ms:
        states = {r.id: r.status for r in ms.exec(select(Issuance)).all()}
    assert states == {offers["甲"]: "declined", offers["乙"]: "offered"}
    with pytest.raises(StateError, match="is not one of"):
        db.update_issuance([offers["乙"]], to="issued", actor=TRANSPORT)


def test_only_the_programmes_department_in_its_county_moves_offers(db: GovDB) -> None:
    _, offers = _offers(db, {"甲": 61})
    with pytest.raises(AccessDeniedError, match="moved by the transport department"):
        db.update_issuance([offers["甲"]], to="accepted", actor=HOUSING)
    with pytest.raises(JurisdictionError, match="outside"):
        db.update_issuance([offers["甲"]], to="accepted", actor=neighbour_transport(db))
    with Session(db.master) as ms:
        ms.add(
            OrgUnit(
                unit_id="village:x", name="x", level="village", division_code=VILLAGES[0], department=None
            )
        )
        ms.commit()
    with pytest.raises(AccessDeniedError):
        db.update_issuance([offers["甲"]], to="accepted", actor=Actor("li", "village:x"))
    with Session(db.master) as ms:
        assert ms.exec(select(Issuance)).one().status == "offered"
    with pytest.raises(AccessDeniedError, match="may not read personal data for purpose"):
        db.programme_selection("senior_transit_card", actor=HOUSING)


def test_delivery_writes_the_card_to_master_with_lineage_in_the_same_transaction(db: GovDB) -> None:
    ids, offers = _offers(db, {"甲": 61, "乙": 66})
    db.update_issuance(list(offers.values()), to="accepted", actor=TRANSPORT)
    with Session(db.master) as ms:
        assert ms.exec(select(Credential)).all() == []  # accepted is not yet a card
    moved = db.update_issuance(list(offers.values()), to="delivered", actor=TRANSPORT)
    assert sorted(c.person_id for c in moved.credentials) == sorted(ids.values())
    with Session(db.master) as ms:
        cards = ms.exec(select(Credential).where(Credential.kind == "senior_transit_card")).all()
        assert sorted(c.person_id for c in cards) == sorted(ids.values())
        for card in cards:
            assert card.issuer == "transport" and card.valid_from is not None and card.number
            history = ms.exec(select(FieldHistory).where(FieldHistory.entity_id == card.credential_id)).all()
            fields = {h.field: h for h in history}
            assert {"person_id", "kind", "number", "issuer", "valid_from", "programme", "issuance_id"} <= set(
                fields
            )
            assert fields["number"].value == card.number and fields["person_id"].value == card.person_id
            assert {h.source for h in history} == {"transport"}
            load = ms.get(BulkLoad, fields["number"].bulk_load_id)
            assert load is not None and (load.source, load.entity_kind) == ("transport", "credential")
            check = fields["number"].checks[0]
            assert (check["level"], check["actor"], check["unit"]) == (
                "authoritative",
                "wang",
                TRANSPORT.unit_id,
            )
    # A card never twice: delivering again is refused and writes nothing.
    with pytest.raises(StateError):
        db.update_issuance(list(offers.values()), to="delivered", actor=TRANSPORT)
    with Session(db.master) as ms:
        assert len(ms.exec(select(Credential)).all()) == 2


def test_a_failed_delivery_writes_no_card(db: GovDB) -> None:
    """The card and the move share one transaction: a batch refused part way writes neither."""
    _, offers = _offers(db, {"甲": 61, "乙": 66})
    db.update_issuance([offers["甲"]], to="accepted", actor=TRANSPORT)
    with pytest.raises(StateError):
        db.update_issuance([offers["甲"], offers["乙"]], to="delivered", actor=TRANSPORT)
    with Session(db.master) as ms:
        assert ms.exec(select(Credential)).all() == []
        assert ms.get(Issuance, offers["甲"]).status == "accepted"  # type: ignore[union-attr]


def _race(db: GovDB, ids: list[int], targets: tuple[str, str]) -> list[str]:
    """Two clerks mark the same offers at the same moment; what each got."""
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def mark(target: str) -> None:
        barrier.wait()
        try:
            db.update_issuance(ids, to=target, actor=TRANSPORT)
            outcomes.append(f"moved {target}")
        except StateError:
            outcomes.append("refused")

    threads = [threading.Thread(target=mark, args=(t,)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def test_concurrent_markings_make_one_transition(tmp_path: Path, rules: Rulebook) -> None:
    """Two clerks mark the same offers at once (threads, PostgreSQL): one moves them, one is refused."""
    with open_backend("postgresql", tmp_path / "home", rules) as db:
        db.serve_district("440605")
        _, offers = _offers(db, {f"人{i}": 60 + i for i in range(8)})
        ids = sorted(offers.values())
        for pair in (ids[0:2], ids[2:4], ids[4:6]):  # accept vs decline: one wins, never both
            outcomes = _race(db, pair, ("accepted", "declined"))
            assert len(outcomes) == 2 and outcomes.count("refused") == 1, outcomes
        accepted = [i for i in ids[:6] if _status(db, i) == "accepted"] + ids[6:8]
        db.update_issuance(ids[6:8], to="accepted", actor=TRANSPORT)
        for _ in range(3):
            assert sorted(_race(db, accepted, ("delivered", "delivered"))) in (
                ["moved delivered", "refused"],
                ["refused", "refused"],
            )
        with Session(db.master) as ms:
            cards = ms.exec(select(Credential)).all()
            states = {r.id: r.status for r in ms.exec(select(Issuance)).all()}
        assert {states[i] for i in accepted} == {"delivered"}
        assert sorted(c.person_id for c in cards) == sorted(
            r for r, i in _person_of(db).items() if i in accepted
        )


def _status(db: GovDB, issuance_id: int) -> str:
    with Session(db.master) as ms:
        row = ms.get(Issuance, issuance_id)
        assert row is not None
        return row.status


def _person_of(db: GovDB) -> dict[str, int]:
    with Session(db.master) as ms:
        return {r.person_id: r.id for r in ms.exec(select(Issuance)).all()}  # type: ignore[misc]


# --- the export ---------------------------------------------------------------------------------


def test_export_is_audited_and_masked(db: GovDB) -> None:
    ids = _people(db, {"八十": 82, "九十": 91})
    # A time of day is refused (its zone would move the ledger's day), not stored as a date.
    with pytest.raises(StateError, match="as_of is a date"):
        db.run_programme("elderly_allowance", as_of=dt.datetime(2026, 11, 23, 15, 30), actor=CIVIL)
    run = db.run_programme("elderly_allowance", as_of=TODAY, actor=CIVIL)
    # The run shows what civil_affairs may see (birth dates masked, names in full) ...
    assert sorted(s["name"] for s in run.selected) == ["九十", "八十"]
    assert all(s["birth_date"] and "*" in s["birth_date"] for s in run.selected)
    # ... and the ledger holds the selection as made, one row each, with its reasons.
    with Session(db.master) as ms:
        ledger = ms.exec(select(Issuance).where(Issuance.programme == "elderly_allowance")).all()
        before = len(ms.exec(select(AuditLog)).all())
    assert sorted(r.person_id for r in ledger) == sorted(ids.values())
    assert all(r.as_of == TODAY and r.status == "offered" and r.unverified_inputs == [] for r in ledger)
    assert all(any("aged 80 or over" in why for why in r.reasons) for r in ledger)
    frame = db.programme_selection("elderly_allowance", actor=CIVIL)
    assert sorted(frame.get_column("person_id")) == sorted(ids.values())
    # civil_affairs sees id numbers masked, and with them what they embed (the birth date).
    assert all("*" in (b or "*") for b in frame.get_column("birth_date").to_list())
    assert set(frame.get_column("name")) == {"八十", "九十"}
    with Session(db.master) as ms:
        entries = ms.exec(select(AuditLog).order_by(AuditLog.seq)).all()[before:]
    (entry,) = entries
    assert entry.purpose == "elderly_allowance" and entry.action.startswith("export:")
    assert entry.department == "civil_affairs" and "birth_date" in entry.masked
    assert db.verify_audit().ok
    # Refused reads are audited too.
    with pytest.raises(AccessDeniedError):
        db.programme_selection("elderly_allowance", actor=TRANSPORT)
    with Session(db.master) as ms:
        last = ms.exec(select(AuditLog).order_by(AuditLog.seq.desc())).first()  # type: ignore[attr-defined]
    assert last is not None and last.outcome == "refused"


def test_cli_offers_mark_and_export(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from govdb.cli import app

    home = tmp_path / "home"
    with GovDB.open(home) as db:
        db.serve_district("440605")
        ids = _people(db, {"甲": 61, "乙": 70, "丙": 88})
        _credential(db, ids["丙"], "care_home_resident")
    runner = CliRunner()

    def run(*args: str) -> Any:
        result = runner.invoke(app, ["--home", str(home), *args])
        assert result.exit_code == 0, result.output
        return result

    civil = "zhao@department:civil_affairs:440605"
    transport = "wang@department:transport:440605"
    run("programme", "run", "senior_transit_card", "--as-of", TODAY.isoformat(), "--actor", transport)
    listed = run("programme", "offers", "senior_transit_card", "--actor", transport, "--json").output
    offers = [json.loads(line) for line in listed.splitlines()]  # a listing: one object a line
    assert [o["status"] for o in offers] == ["offered"] * 3
    first = str(offers[0]["issuance_id"])
    run("programme", "mark", first, "--to", "accepted", "--actor", transport)
    done = json.loads(
        run("programme", "mark", first, "--to", "delivered", "--actor", transport, "--json").output
    )
    assert done["moved"] == [int(first)] and done["credentials"][0]["kind"] == "senior_transit_card"
    refused = runner.invoke(
        app, ["--home", str(home), "programme", "mark", first, "--to", "declined", "--actor", transport]
    )
    assert refused.exit_code != 0 and "cannot go from 'delivered'" in refused.output
    assert "Traceback" not in refused.output
    allowance = ("programme", "run", "elderly_allowance", "--as-of", TODAY.isoformat(), "--actor", civil)
    kept_out = run(*allowance, "--csv", "--excluded").output.splitlines()
    assert (
        len(kept_out) == 2 and "丙" in kept_out[1] and "excluded: holds a care_home_resident" in kept_out[1]
    )
    csv_text = run("programme", "export", "senior_transit_card", "--actor", transport, "--csv").output
    assert csv_text.splitlines()[0].startswith("issuance_id,") and len(csv_text.splitlines()) == 4
    refused = runner.invoke(
        app, ["--home", str(home), "programme", "export", "senior_transit_card", "--actor", civil]
    )
    assert refused.exit_code != 0 and "may not read personal data" in refused.output


def test_judging_everyone_at_once_agrees_with_reading_each_person(rules: Rulebook) -> None:
    """The vectorised judgement (blocks once, conditions once per pattern) against a plain
    person-by-person reading of the same conditions, over a random population."""
    import json
    import random

    from govdb.rulebook.models import ProgrammeRules
    from govdb.serve.eligibility import Population, judge

    rng = random.Random(3)
    n = 3000
    births = [TODAY - dt.timedelta(days=rng.randrange(0, 100 * 365)) for _ in range(n)]
    dead = [rng.random() < 0.05 for _ in range(n)]
    people = pl.DataFrame(
        {
            "person_id": [f"P{i}" for i in range(n)],
            "name": ["某"] * n,
            "birth_date": births,
            "death_date": [TODAY if d else None for d in dead],
            "division_code": [rng.choice(VILLAGES) for _ in range(n)],
            "address": ["-"] * n,
        },
        schema_overrides={"death_date": pl.Date},
    )
    held = {
        i: rng.choice(["care_home_resident", "disability_certificate"]) for i in rng.sample(range(n), 600)
    }
    creds = pl.DataFrame(
        {
            "person_id": [f"P{i}" for i in held],
            "kind": list(held.values()),
            "attributes": [json.dumps({})] * len(held),
            "valid_to": [None] * len(held),
        },
        schema_overrides={"valid_to": pl.Date},
    )
    pop = Population(people, creds, VILLAGES, TODAY)
    programme = ProgrammeRules.model_validate(MIXED)
    home_if = [{"any": [{"block": "age_between", "params": {"min": 90}}, {"not": {"block": "alive"}}]}]
    delivery = ProgrammeRules.model_validate({**MIXED, "delivery": {"home_if": home_if}}).delivery
    judged = judge(pop, list(programme.eligibility), list(delivery.home_if)).people

    def age(i: int) -> int:
        b = births[i]
        return TODAY.year - b.year - ((TODAY.month, TODAY.day) < (b.month, b.day))

    eligible = {
        f"P{i}"
        for i in range(n)
        if not dead[i]
        and (70 <= age(i) <= 79 or held.get(i) == "disability_certificate")
        and held.get(i) != "care_home_resident"
    }
    excluded = {
        f"P{i}"
        for i in range(n)
        if not dead[i]
        and (70 <= age(i) <= 79 or held.get(i) == "disability_certificate")
        and held.get(i) == "care_home_resident"
    }
    home = {p for p in eligible if age(int(p[1:])) >= 90}
    got = judged.filter(pl.col("eligible"))
    assert set(got.get_column("person_id")) == eligible and len(eligible) > 100
    assert set(judged.filter(~pl.col("eligible")).get_column("person_id")) == excluded and excluded
    assert set(got.filter(pl.col("home")).get_column("person_id")) == home and home
    for row in got.iter_rows(named=True):
        i = int(row["person_id"][1:])
        assert ("aged 70 to 79 on 2026-11-23" in row["why"]) == (70 <= age(i) <= 79)
        assert ("holds a disability_certificate" in row["why"]) == (held.get(i) == "disability_certificate")
