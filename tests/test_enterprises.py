"""Enterprises (法人) through the whole path: a hall file with Chinese headers -> linked by the
unified social credit code -> routed to the street and market regulation (jurisdiction from
master) -> decided -> promoted with survivorship and lineage -> a prefilled enterprise form;
conflicts for market regulation; link_one for enterprises."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from sqlmodel import Session, select

from govdb import Actor, GovDB
from govdb.errors import JurisdictionError
from govdb.standards.uscc import make_uscc
from govdb.store.events import Proposal
from govdb.store.master import AuditLog, Conflict, Enterprise, FieldHistory

TODAY = dt.date(2026, 11, 30)
MARKET = Actor("zhou", "department:market_regulation:440605")
HALL = Actor("li", "department:service_hall:440605")
CODE = make_uscc("440605", 1)
HEADER = "受理编号,统一社会信用代码,企业名称,法定代表人,注册地址,联系电话,经营范围,登记状态,办理时间"


def _write(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return path


def _decide_all(db: GovDB) -> list[tuple[str, str | None]]:
    """Approve every open task as a clerk of its unit; the (level, department) of each, in order."""
    seen = []
    while tasks := db.tasks():
        for task in tasks:
            seen.append((task.level, task.unit_id))
            db.decide(task.task_id, Actor("clerk", task.unit_id), "approve")
    return seen


def _register(db: GovDB, folder: Path, rows: list[str], name: str = "hall.csv", **options: object) -> None:
    db.ingest(
        _write(folder / name, rows),
        source=str(options.pop("source", "hall")),
        key_column="受理编号",
        service_code="hall.enterprise_registration",
        occurred_at_column="办理时间",
        **options,  # type: ignore[arg-type]
    )


def test_an_enterprise_from_a_hall_file_to_a_prefilled_form(db: GovDB, tmp_path: Path) -> None:
    _register(
        db,
        tmp_path,
        [
            f"Q1,{CODE},佛山市南海区华强五金有限公司,张伟,佛山市南海区桂城街道花苑社区南海大道8号,"
            "0757-86281234,五金产品批发；日用百货零售,存续,2026-11-02 09:30",
        ],
    )
    report = db.process(today=TODAY)
    assert report.proposals.proposals == 1 and report.proposals.new_enterprises == 1
    with Session(db.events) as es:
        proposal = es.exec(select(Proposal)).one()
    assert (proposal.entity_kind, proposal.change, proposal.division_code) == (
        "enterprise",
        "new_enterprise",
        "440605011005",
    )
    assert proposal.payload["uscc"] == CODE and proposal.payload["legal_representative"] == "张伟"
    # The street of the registered address, then market regulation of the county.
    assert _decide_all(db) == [("street", "street:440605011"), ("department", MARKET.unit_id)]
    promoted = db.promote()
    assert promoted.enterprises_created == 1 and promoted.promoted == 1
    with Session(db.master) as ms:
        enterprise = ms.exec(select(Enterprise)).one()
        lineage = ms.exec(select(FieldHistory).where(FieldHistory.entity_kind == "enterprise")).all()
    assert (enterprise.uscc, enterprise.name, enterprise.status) == (
        CODE,
        "佛山市南海区华强五金有限公司",
        "存续",
    )
    assert (
        enterprise.division_code == "440605011005"
        and enterprise.business_scope == "五金产品批发;日用百货零售"
    )
    assert {r.field for r in lineage} >= {
        "name",
        "uscc",
        "legal_representative",
        "address",
        "phone",
        "status",
    }
    assert all(r.valid_from == dt.date(2026, 11, 2) and len(r.checks) == 2 for r in lineage)

    form = db.prefill("food_business_licence", uscc=CODE.lower(), actor=MARKET)
    fields = {f.name: f for f in form.fields}
    assert len(form.fields) >= 10 and form.enterprise_id == enterprise.enterprise_id
    assert (
        fields["enterprise_name"].value == "佛山市南海区华强五金有限公司" and fields["enterprise_name"].locked
    )
    assert fields["legal_representative"].verified_by == [
        "street:street:440605011",
        f"department:{MARKET.unit_id}",
    ]
    assert fields["township"].value == "桂城街道" and fields["food_items"].value is None
    assert "营业执照复印件" in form.documents_waived
    by_id = db.prefill("food_business_licence", enterprise_id=enterprise.enterprise_id, actor=MARKET)
    assert [f.value for f in by_id.fields] == [f.value for f in form.fields]
    with Session(db.master) as ms:
        entry = ms.exec(select(AuditLog).where(AuditLog.seq == form.audit_seq)).one()
    assert (entry.subject_kind, entry.subject_id, entry.purpose) == (
        "enterprise",
        enterprise.enterprise_id,
        "food_business_licence",
    )
    # Another county's market regulation reads nothing of it, and the refusal is on record.
    with Session(db.master) as ms:
        from govdb.store.master import OrgUnit

        unit = "department:market_regulation:440604"
        ms.add(OrgUnit(unit_id=unit, name="禅城区市场监督管理局", level="department",
                       division_code="440604", department="market_regulation"))  # fmt: skip
        ms.commit()
    with pytest.raises(JurisdictionError):
        db.prefill(
            "food_business_licence", uscc=CODE, actor=Actor("chen", "department:market_regulation:440604")
        )


def test_a_change_is_routed_by_the_master_division_not_the_events_claim(db: GovDB, tmp_path: Path) -> None:
    token = db.register_source("amr_registration_system")
    _register(
        db,
        tmp_path,
        [f"R1,{CODE},南海华强五金有限公司,张伟,佛山市南海区桂城街道花苑社区南海大道8号,,,存续,2026-10-01"],
        name="amr.csv",
        source="amr_registration_system",
        source_token=token,
    )
    db.process(today=TODAY)
    # Market regulation's own registration system passes its step; the street still checks.
    assert _decide_all(db) == [("street", "street:440605011")]
    db.promote()
    # The hall records a new phone, and claims an address in 九江镇: the street of master checks.
    _register(
        db,
        tmp_path,
        [f"H1,{CODE},南海华强五金有限公司,张伟,佛山市南海区九江镇江滨社区沿江路1号,13800138000,,,2026-11-20"],
    )
    report = db.process(today=TODAY)
    assert report.proposals.proposals == 1 and report.proposals.linked == 1
    with Session(db.events) as es:
        change = es.exec(select(Proposal).where(Proposal.change == "update_enterprise")).one()
    assert change.division_code == "440605011005" and set(change.payload) == {
        "phone",
        "address",
        "division_code",
    }
    tasks = db.tasks()
    assert [t.unit_id for t in tasks] == ["street:440605011"]
    with pytest.raises(JurisdictionError):
        db.decide(tasks[0].task_id, Actor("liu", "street:440605121"), "approve")
    # Master's street first; the street it claims to move to checks the move too (invariant 5).
    assert _decide_all(db) == [
        ("street", "street:440605011"),
        ("street", "street:440605121"),
        ("department", MARKET.unit_id),
    ]
    promoted = db.promote()
    # The phone is the hall's to update; the registered address is market regulation's (比对).
    assert promoted.conflicts == 2 and promoted.fields_updated == 1
    with Session(db.master) as ms:
        enterprise = ms.exec(select(Enterprise)).one()
        conflicts = ms.exec(select(Conflict).order_by(Conflict.field)).all()
    assert enterprise.phone == "13800138000" and enterprise.division_code == "440605011005"
    assert [(c.entity_kind, c.field, c.owner_department, c.master_source) for c in conflicts] == [
        ("enterprise", "address", "market_regulation", "market_regulation"),
        ("enterprise", "division_code", "market_regulation", "market_regulation"),
    ]
    # Market regulation settles them; a division is never amended to a third value (it decides who
    # checks the enterprise), an address may be, within master's column.
    from govdb.errors import StateError

    address, division = conflicts
    with pytest.raises(StateError, match="cannot be amended"):
        db.resolve_conflict(division.id, "amend", actor=MARKET, value="440606005003")  # type: ignore[arg-type]
    with pytest.raises(StateError, match="characters"):
        db.resolve_conflict(address.id, "amend", actor=MARKET, value="路" * 300)  # type: ignore[arg-type]
    done = db.resolve_conflict(address.id, "amend", actor=MARKET, value="佛山市南海区桂城街道南海大道8号")  # type: ignore[arg-type]
    assert (
        done.resolution == "amend"
        and db.resolve_conflict(division.id, "keep", actor=MARKET).resolution == "keep"
    )  # type: ignore[arg-type]


def test_link_one_finds_an_enterprise_by_code_or_by_name(db: GovDB, tmp_path: Path) -> None:
    other = make_uscc("440605", 2)
    _register(
        db,
        tmp_path,
        [
            f"Q1,{CODE},佛山市南海区华强五金有限公司,张伟,佛山市南海区桂城街道花苑社区南海大道8号,"
            "0757-86281234,五金,存续,2026-11-02",
            f"Q2,{other},佛山市南海区明珠餐饮管理有限公司,王芳,佛山市南海区九江镇江滨社区沿江路1号,"
            "13900139000,餐饮服务,存续,2026-11-03",
        ],
    )
    db.process(today=TODAY)
    _decide_all(db)
    db.promote()
    exact = db.link_one({"uscc": CODE}, actor=HALL, purpose="enterprise_lookup", kind="enterprise")
    assert exact.decision == "match" and exact.explanation["hard_rule"] == "same_valid_id"
    assert exact.master is not None and exact.master["name"] == "佛山市南海区华强五金有限公司"
    assert exact.master["phone"] != "0757-86281234"  # the hall sees the phone masked
    by_name = db.link_one(
        {
            "name": "华强五金有限责任公司",
            "legal_representative": "张伟",
            "address": "桂城街道花苑社区南海大道8号",
        },
        actor=MARKET,
        purpose="enterprise_lookup",
        kind="enterprise",
    )
    assert by_name.decision == "match" and by_name.person_id == exact.person_id
    assert by_name.explanation["name"]["level"] == "same_core"
    nobody = db.link_one(
        {"name": "完全不同贸易有限公司"}, actor=MARKET, purpose="enterprise_lookup", kind="enterprise"
    )
    assert nobody.decision == "new" and nobody.person_id is None and nobody.explanation == {}
    with Session(db.master) as ms:
        entries = ms.exec(select(AuditLog).where(AuditLog.action == "link_one")).all()
    assert [e.outcome for e in entries] == ["read", "read", "not_found"]
    assert all(e.subject_kind == "enterprise" for e in entries)
    assert json.dumps(exact.explanation)  # plain data


def test_an_enterprise_without_a_code_links_by_name_in_a_batch(db: GovDB, tmp_path: Path) -> None:
    _register(
        db,
        tmp_path,
        [
            f"Q1,{CODE},佛山市南海区华强五金有限公司,张伟,佛山市南海区桂城街道花苑社区南海大道8号,0757-86281234,五金,存续,2026-11-02"
        ],
    )
    db.process(today=TODAY)
    _decide_all(db)
    db.promote()
    # A change of business scope without the code: found by its name, representative and address.
    _register(
        db,
        tmp_path,
        [
            ",".join(
                [
                    "H2",
                    "",
                    "华强五金有限公司",
                    "张伟",
                    "佛山市南海区桂城街道花苑社区南海大道8号",
                    "",
                    "五金；建材",
                    "",
                    "2026-11-25",
                ]
            )
        ],
        name="change.csv",
    )
    report = db.process(today=TODAY)
    assert report.proposals.linked == 1 and report.proposals.proposals == 1
    with Session(db.events) as es:
        change = es.exec(select(Proposal).where(Proposal.change == "update_enterprise")).one()
    with Session(db.master) as ms:
        enterprise = ms.exec(select(Enterprise)).one()
    assert change.entity_id == enterprise.enterprise_id
    assert change.payload == {"name": "华强五金有限公司", "business_scope": "五金;建材"}


def test_a_second_new_registration_of_a_code_is_compared_not_applied(db: GovDB, tmp_path: Path) -> None:
    """Two registrations of one new code claim two counties while both are pending: the second was
    checked by the other county's units, so master compares it (conflicts) instead of taking it."""
    db.serve_district("440606")
    code = make_uscc("440605", 9)
    first = (
        f"Q1,{code},佛山市南海区华强五金有限公司,张伟,佛山市南海区桂城街道花苑社区南海大道8号,"
        "0757-86281234,五金,存续,2026-11-02 09:30"
    )
    other = (
        f"Q2,{code},佛山市顺德区某某贸易有限公司,李四,佛山市顺德区大良街道金榜社区东乐路1号,"
        "13700137000,贸易,存续,2026-11-03 09:30"
    )
    for name, row in (("a.csv", first), ("b.csv", other)):
        db.ingest(
            _write(tmp_path / name, [row]),
            source="hall",
            key_column="受理编号",
            service_code="hall.enterprise_registration",
            occurred_at_column="办理时间",
        )
        db.process(today=TODAY)
    _decide_all(db)
    report = db.promote()
    with Session(db.master) as ms:
        (firm,) = ms.exec(select(Enterprise).where(Enterprise.uscc == code)).all()
        conflicts = ms.exec(select(Conflict).where(Conflict.entity_id == firm.enterprise_id)).all()
    assert (firm.name, firm.legal_representative) == ("佛山市南海区华强五金有限公司", "张伟")
    assert str(firm.division_code).startswith("440605") and report.conflicts >= 2
    assert {c.field for c in conflicts} >= {"name", "legal_representative"}


def test_a_source_is_proven_by_its_token_never_by_a_name(db: GovDB, tmp_path: Path) -> None:
    from govdb.errors import StateError

    row = (
        f"Q1,{CODE},佛山市南海区华强五金有限公司,张伟,佛山市南海区桂城街道花苑社区南海大道8号,"
        "0757-86281234,五金,存续,2026-11-02 09:30"
    )
    with pytest.raises(StateError, match="authenticated_source is not an option"):
        db.ingest(
            _write(tmp_path / "a.csv", [row]),
            source="hall",
            key_column="受理编号",
            service_code="hall.enterprise_registration",
            authenticated_source="amr_registration_system",
        )
    assert db.counts()["event"] == 0


def test_an_enterprise_that_moves_is_checked_where_it_moves_to(db: GovDB, tmp_path: Path) -> None:
    """Invariant 5, a move adds the destination: 顺德's street checks a 南海 enterprise's move there."""
    db.serve_district("440606")
    code = make_uscc("440605", 31)
    rows = [
        f"Q1,{code},佛山市南海区华强五金有限公司,张伟,佛山市南海区桂城街道花苑社区南海大道8号,"
        "0757-86281234,五金,存续,2026-11-02 09:30",
        f"Q2,{code},佛山市南海区华强五金有限公司,张伟,佛山市顺德区大良街道金榜社区东乐路1号,"
        "0757-86281234,五金,存续,2026-11-20 09:30",
    ]
    for n, row in enumerate(rows):
        db.ingest(
            _write(tmp_path / f"r{n}.csv", [row]),
            source="hall",
            key_column="受理编号",
            service_code="hall.enterprise_registration",
            occurred_at_column="办理时间",
        )
        db.process(today=TODAY)
        deciders = _decide_all(db)
        db.promote()
    assert ("street", "street:440605011") in deciders  # where master has it
    assert any(level == "street" and str(unit).startswith("street:440606") for level, unit in deciders)
