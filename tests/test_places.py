"""Places (空间地理) as master entities: a new building from a hall file, checked by its village,
street and natural resources, promoted with lineage and referenced by the people and enterprises
at its address; a road named and renamed, checked by the street and civil affairs (地名)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import Connection, text, update
from sqlmodel import Session, col, select

from govdb import Actor, GovDB
from govdb.promote.entities import attach_places
from govdb.standards.ids import make_id
from govdb.standards.uscc import make_uscc
from govdb.store.events import Proposal
from govdb.store.master import Enterprise, FieldHistory, Person, Place

TODAY = dt.date(2026, 11, 30)
ADDRESS = "佛山市南海区桂城街道花苑社区南海大道8号"


def _ingest(db: GovDB, path: Path, header: str, rows: list[str], service: str) -> None:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    db.ingest(path, source="hall", key_column="受理编号", service_code=service, occurred_at_column="办理时间")


def _decide_all(db: GovDB) -> list[str]:
    units = []
    while tasks := db.tasks():
        for task in tasks:
            units.append(task.unit_id)
            db.decide(task.task_id, Actor("clerk", task.unit_id), "approve")
    return units


def test_a_building_from_a_hall_file_is_referenced_by_people_and_enterprises(
    db: GovDB, tmp_path: Path
) -> None:
    person_id = make_id("440605", dt.date(1985, 3, 4), 31)
    # Someone registers at the address before the building is in master: no place yet.
    _ingest(
        db,
        tmp_path / "people.csv",
        "受理编号,姓名,身份证号,居住地址,办理时间",
        [f"P1,陈明,{person_id},{ADDRESS},2026-10-01"],
        "hall.resident_registration",
    )
    db.process(today=TODAY)
    _decide_all(db)
    db.promote()
    with Session(db.master) as ms:
        assert ms.exec(select(Person)).one().place_id is None
    _ingest(
        db,
        tmp_path / "building.csv",
        "受理编号,楼栋名称,道路名称,楼栋地址,办理时间",
        [f"B1,花苑大厦,南海大道,{ADDRESS},2026-11-01"],
        "hall.building_registration",
    )
    report = db.process(today=TODAY)
    assert report.proposals.new_places == 1 and report.proposals.proposals == 1
    assert _decide_all(db) == [
        "village:440605011005",
        "street:440605011",
        "department:natural_resources:440605",
    ]
    promoted = db.promote()
    assert promoted.places_created == 1 and promoted.places_referenced == 1
    with Session(db.master) as ms:
        place = ms.exec(select(Place)).one()
        person = ms.exec(select(Person)).one()
        lineage = ms.exec(select(FieldHistory).where(FieldHistory.entity_kind == "place")).all()
    assert (place.kind, place.name, place.road, place.division_code) == (
        "building",
        "花苑大厦",
        "南海大道",
        "440605011005",
    )
    assert person.place_id == place.place_id and place.address == person.address
    assert {r.field for r in lineage} == {"kind", "name", "address", "road", "building", "division_code"}
    assert all(r.entity_id == place.place_id and len(r.checks) == 3 for r in lineage)
    # The same building again changes nothing; an enterprise registered there references it.
    _ingest(
        db,
        tmp_path / "again.csv",
        "受理编号,楼栋名称,道路名称,楼栋地址,办理时间",
        [f"B2,花苑大厦,南海大道,{ADDRESS},2026-11-05"],
        "hall.building_registration",
    )
    code = make_uscc("440605", 7)
    _ingest(
        db,
        tmp_path / "enterprise.csv",
        "受理编号,统一社会信用代码,企业名称,法定代表人,住所,办理时间",
        [f"E1,{code},佛山市南海区花苑茶餐厅有限公司,陈明,{ADDRESS},2026-11-06"],
        "hall.enterprise_registration",
    )
    again = db.process(today=TODAY)
    assert again.proposals.unchanged == 1 and again.proposals.proposals == 1
    _decide_all(db)
    db.promote()
    with Session(db.master) as ms:
        enterprise = ms.exec(select(Enterprise)).one()
        assert len(ms.exec(select(Place)).all()) == 1
    assert enterprise.place_id == place.place_id
    # Attaching again rewrites no row whose building is already its place (PostgreSQL would
    # write a new version of it and an entry in each of its indexes), and counts only changes.
    with db.master.begin() as conn:
        version = _row_version(conn, person.person_id)
        assert attach_places(conn, [person.person_id], [enterprise.enterprise_id], [ADDRESS]) == 0
        assert _row_version(conn, person.person_id) == version
        conn.execute(update(Person.__table__).values(place_id=None))  # type: ignore[attr-defined]
        assert attach_places(conn, [person.person_id], [], []) == 1
    with Session(db.master) as ms:
        assert ms.exec(select(Person)).one().place_id == place.place_id


def _row_version(conn: Connection, person_id: str) -> object:
    """PostgreSQL: the transaction that wrote the row's current version (SQLite: nothing to see)."""
    if conn.dialect.name != "postgresql":
        return None
    return conn.execute(text("SELECT xmin::text FROM person WHERE person_id = :p"), {"p": person_id}).scalar()


def test_a_road_is_named_and_renamed_by_the_street_and_civil_affairs(db: GovDB, tmp_path: Path) -> None:
    header = "受理编号,道路名称,原路名,区划代码,办理时间"
    _ingest(db, tmp_path / "road.csv", header, ["R1,海八路,,440605011,2026-09-01"], "hall.road_naming")
    db.process(today=TODAY)
    assert _decide_all(db) == ["street:440605011", "department:civil_affairs:440605"]
    db.promote()
    # Renamed: found under its former name, checked by the units of its division in master.
    _ingest(
        db, tmp_path / "rename.csv", header, ["R2,海八东路,海八路,440605011,2026-11-10"], "hall.road_naming"
    )
    report = db.process(today=TODAY)
    assert report.proposals.linked == 1 and report.proposals.proposals == 1
    with Session(db.events) as es:
        rename = es.exec(select(Proposal).where(Proposal.event_id == 2)).one()
    assert rename.entity_kind == "place" and rename.division_code == "440605011"
    assert _decide_all(db) == ["street:440605011", "department:civil_affairs:440605"]
    assert db.promote().fields_updated >= 3
    with Session(db.master) as ms:
        road = ms.exec(select(Place)).one()
        names = ms.exec(
            select(FieldHistory)
            .where(FieldHistory.entity_kind == "place", FieldHistory.field == "name")
            .order_by(col(FieldHistory.valid_from))
        ).all()
    assert (road.kind, road.name, road.division_code) == ("road", "海八东路", "440605011")
    assert [(h.value, h.valid_from, h.valid_to) for h in names] == [
        ("海八路", dt.date(2026, 9, 1), dt.date(2026, 11, 10)),
        ("海八东路", dt.date(2026, 11, 10), None),
    ]


def test_two_registrations_of_one_place_make_one_place(db: GovDB, tmp_path: Path) -> None:
    """Pending together, two registrations of one building (one standardized address) and of one
    road name (one county) make one master place each; the second is compared, not added."""
    address = "佛山市南海区桂城街道花苑社区南海大道8号"
    building = "受理编号,楼栋名称,道路名称,楼栋地址,办理时间"
    files = [
        (
            "b1.csv",
            building,
            [f"B1,花苑大厦,南海大道,{address},2026-11-01"],
            "hall.building_registration",
            "hallA",
        ),
        (
            "b2.csv",
            building,
            [f"B1,花苑大厦A座,南海大道,{address},2026-11-02"],
            "hall.building_registration",
            "hallB",
        ),
        (
            "r1.csv",
            "受理编号,道路名称,村居代码,办理时间",
            ["R1,桂澜北路,440605011005,2026-11-01", "R2,桂澜北路,440605011001,2026-11-02"],
            "hall.road_naming",
            "hallA",
        ),
    ]
    for name, header, rows, service, source in files:
        path = tmp_path / name
        path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
        db.ingest(
            path, source=source, key_column="受理编号", service_code=service, occurred_at_column="办理时间"
        )
    db.process(today=dt.date(2026, 11, 30))
    while tasks := db.tasks():
        for task in tasks:
            db.decide(task.task_id, Actor("clerk", task.unit_id), "approve")
    db.promote()
    with Session(db.master) as ms:
        places = ms.exec(select(Place)).all()
    assert sorted(p.kind for p in places) == ["building", "road"]
