"""Access policies: masks that cannot be undone from what else is shown, reads bound to a county,
look-ups shown as the policy allows, and the audit key's handling."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import shutil
import stat
from pathlib import Path

import pytest
import yaml
from sqlmodel import Session, select

from govdb import (
    AccessDeniedError,
    Actor,
    ConfigError,
    GovDB,
    JurisdictionError,
    RuleFileError,
    load_rulebook,
)
from govdb.access.audit import KEY_ENV, load_key
from govdb.demo import run_demo_on
from govdb.rulebook.loader import default_rules_dir
from govdb.standards.ids import CHECK_CHARS, WEIGHTS
from govdb.store.master import Credential, Person

from .conftest import TODAY, neighbour_transport

CIVIL = Actor("ca.clerk", "department:civil_affairs:440605")
HOUSING = Actor("housing.clerk", "department:housing:440605")


@pytest.fixture()
def certified(db: GovDB, tmp_path: Path) -> tuple[Person, Credential]:
    """The demo's stores and one person with a disability certificate whose number embeds the ID."""
    run_demo_on(db, tmp_path, people=120, seed=4, today=TODAY)
    with Session(db.master) as ms:
        person, cert = ms.exec(
            select(Person, Credential).join(Credential, Credential.person_id == Person.person_id)
        ).first()
    assert cert.number.startswith(person.id_number)  # what makes the certificate number sensitive
    return person, cert


def _candidates(masked_id: str, shown: dict[str, object], today: dt.date) -> list[str]:
    """Every ID number consistent with the masked one and with every other value shown: the
    attacker's search over the hidden digits (a birth date, for the shipped 6+4 mask)."""
    head, tail = masked_id[:6], masked_id[14:]
    out = []
    day = dt.date(1900, 1, 1)
    while day <= today:
        digits = head + day.strftime("%Y%m%d") + tail[:3]
        if CHECK_CHARS[sum(int(c) * w for c, w in zip(digits, WEIGHTS, strict=True)) % 11] == tail[3]:
            number = digits + tail[3]
            ok = True
            if isinstance(shown.get("birth_date"), str) and "*" not in shown["birth_date"]:
                ok &= shown["birth_date"] == day.isoformat()
            if isinstance(shown.get("age"), int):
                ok &= (
                    today.year - day.year - ((today.month, today.day) < (day.month, day.day)) == shown["age"]
                )
            number_shown = shown.get("disability_number")
            if isinstance(number_shown, str) and "*" not in number_shown:
                ok &= number_shown.startswith(number)
            if ok:
                out.append(number)
        day += dt.timedelta(days=1)
    return out


def test_a_masked_id_cannot_be_filled_in_from_the_other_fields(
    db: GovDB, certified: tuple[Person, Credential]
) -> None:
    person, _ = certified
    form = db.prefill("public_rental_housing", id_number=person.id_number, actor=CIVIL, today=TODAY)
    shown = {f.name: f.value for f in form.fields}
    assert "*" in shown["id_number"] and shown["id_number"] != person.id_number
    # Everything derived from the ID is hidden too, and says so.
    for name in ("birth_date", "gender", "age", "disability_number"):
        assert shown[name] == "***", name
        assert next(f for f in form.fields if f.name == name).masked
    # No shown value carries the ID or its hidden digits.
    hidden_digits = person.id_number[6:14]
    assert not any(person.id_number in str(v) or hidden_digits in str(v) for v in shown.values() if v)
    candidates = _candidates(shown["id_number"], shown, TODAY)
    assert person.id_number in candidates and len(candidates) > 1000


def test_without_the_derivations_the_same_attack_recovers_the_id(
    db: GovDB, certified: tuple[Person, Credential], tmp_path: Path
) -> None:
    """The attack above works, so its failure there means something: with no `derived` rules the
    unmasked birth date gives the ID back."""
    person, _ = certified
    folder = tmp_path / "rules"
    shutil.copytree(default_rules_dir(), folder)
    path = folder / "access" / "departments.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["derived"] = {}
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    loose = load_rulebook(folder)
    leaky = GovDB(db.config, loose, create=False, check_rules=False)
    try:
        with pytest.raises(AccessDeniedError, match="not the ones applied"):  # not before it is applied
            leaky.prefill("public_rental_housing", id_number=person.id_number, actor=CIVIL, today=TODAY)
        leaky.apply_rules(Actor("zhou", "department:data_bureau:440605"))
        form = leaky.prefill("public_rental_housing", id_number=person.id_number, actor=CIVIL, today=TODAY)
    finally:
        leaky.close()
    shown = {f.name: f.value for f in form.fields}
    assert _candidates(shown["id_number"], shown, TODAY) == [person.id_number]


def test_past_and_full_values_follow_the_same_policy_per_department(
    db: GovDB, certified: tuple[Person, Credential]
) -> None:
    person, cert = certified
    full = db.prefill("public_rental_housing", id_number=person.id_number, actor=HOUSING, today=TODAY)
    values = {f.name: f.value for f in full.fields}
    assert values["id_number"] == person.id_number and values["disability_number"] == cert.number
    assert values["birth_date"] == person.birth_date.isoformat() and not any(f.masked for f in full.fields)


def test_a_department_reads_only_its_own_county(db: GovDB, certified: tuple[Person, Credential]) -> None:
    person, _ = certified
    other = neighbour_transport(db)
    with pytest.raises(JurisdictionError, match="covers 440604") as refused:
        db.prefill("senior_transit_card", id_number=person.id_number, actor=other, today=TODAY)
    assert person.division_code not in str(refused.value)  # where they live is not told either
    found = db.link_one(
        {"name": person.name, "id_number": person.id_number}, actor=other, purpose="identity_lookup"
    )
    assert found.person_id == person.person_id and found.master is None  # who, not what
    assert found.explanation == {} and found.match_weight is None  # no comparison levels either
    run = db.run_programme("senior_transit_card", as_of=TODAY, actor=other, dry_run=True)
    assert run.eligible == 0 and run.selected == []


def test_a_look_up_shows_what_the_window_may_see(db: GovDB, certified: tuple[Person, Credential]) -> None:
    person, _ = certified
    window = Actor("window.li", "department:service_hall:440605")
    found = db.link_one(
        {"name": person.name, "id_number": person.id_number}, actor=window, purpose="identity_lookup"
    )
    assert found.person_id == person.person_id
    assert found.master["name"] == person.name and found.master["id_number"] != person.id_number
    assert found.master["id_number"].startswith(person.id_number[:6]) and "*" in found.master["id_number"]
    assert "birth_date" not in found.master and "address" not in found.master  # not granted
    # The comparison levels of fields it may not see in full would confirm guesses of them.
    assert "name" in found.explanation and not {"birth_date", "gender", "id_number", "phone"} & set(
        found.explanation
    )
    assert "runner_up" not in found.explanation
    # Nobody found: nothing about the nearest person (a reverse phone look-up otherwise).
    probe = db.link_one(
        {"name": "无此人", "phone": person.phone, "birth_date": "1901-01-01"},
        actor=window,
        purpose="identity_lookup",
    )
    assert (probe.decision, probe.person_id, probe.explanation, probe.match_probability) == (
        "new",
        None,
        {},
        0.0,
    )
    reads = db.who_read(id_number=person.id_number, actor=window)
    assert any(r.action == "link_one" and r.outcome == "not_found" for r in reads)  # found by phone digest
    transport = Actor("wang", "department:transport:440605")
    full = db.link_one(
        {"name": person.name, "id_number": person.id_number}, actor=transport, purpose="identity_lookup"
    )
    assert full.master["id_number"] == person.id_number and full.master["birth_date"] == person.birth_date


def test_a_dry_run_shows_selected_people_as_the_policy_allows(
    db: GovDB, certified: tuple[Person, Credential]
) -> None:
    transport = Actor("wang", "department:transport:440605")
    later = TODAY.replace(year=TODAY.year + 3)  # the demo issued to today's seniors; these turn 60 later
    run = db.run_programme("senior_transit_card", as_of=later, actor=transport, dry_run=True)
    assert run.selected and run.issued == 0
    assert all(s["name"] and s["address"] for s in run.selected)
    housing = Actor("li", "department:housing:440605")
    with pytest.raises(AccessDeniedError, match="may not read personal data for purpose"):
        db.run_programme("senior_transit_card", as_of=TODAY, actor=housing, dry_run=True)


def test_derived_fields_must_be_known(tmp_path: Path) -> None:
    folder = tmp_path / "rules"
    shutil.copytree(default_rules_dir(), folder)
    path = folder / "access" / "departments.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["derived"]["id_number"].append("shoe_size")
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(
        RuleFileError, match=r"departments.yaml: derived.id_number.3: unknown master field 'shoe_size'"
    ):
        load_rulebook(folder)


def test_the_audit_key_file_is_made_once_and_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    first = load_key(None, tmp_path)
    mode = stat.S_IMODE(os.stat(tmp_path / "govdb.audit.key").st_mode)
    assert mode == 0o600
    assert load_key(None, tmp_path).key_id == first.key_id  # the same key on every open
    with pytest.raises(ConfigError, match="GOVDB_AUDIT_KEY"):
        load_key(None, None)  # a server database: the key must come from the environment
    with pytest.raises(ConfigError, match="at least 16"):
        load_key("short", None)
    monkeypatch.setenv(KEY_ENV, "x" * 32)
    assert load_key(None, tmp_path).key_id != first.key_id


def test_the_grant_is_closed_over_derivations(rules) -> None:  # type: ignore[no-untyped-def]
    from govdb.access.policy import authorize
    from govdb.verify.actors import ResolvedActor

    who = ResolvedActor("a", "department:civil_affairs:440605", "x", "department", "440605", "civil_affairs")
    grant = authorize(rules, who, "elderly_allowance")
    assert {"birth_date", "gender", "age", "credential.disability_certificate.number"} <= grant.hidden
    assert grant.show("credential.disability_certificate.number", "44060519600101123X11") == ("***", True)
    assert grant.show("credential.disability_certificate.disability_grade", "二级") == ("二级", False)
    assert grant.show("name", "张三") == ("张三", False)
    who = dataclasses.replace(who, unit_id="department:transport:440605", department="transport")
    assert authorize(rules, who, "senior_transit_card").hidden == frozenset()
