"""Seed a demo hall: the demo district (govdb.demo), the hall's source token, and demo clerk
accounts around one applicant who comes without an ID card and writes their name in
traditional characters."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from examples.hall import accounts
from examples.hall.service import LOOKUP_PURPOSE, SOURCE, Hall
from govdb import Actor, StateError
from govdb.demo import COUNTY, make_people, run_demo_on

TRADITIONAL = str.maketrans(
    "张陈刘杨黄赵吴郑谢邓罗马孙宋冯韩伟丽红华军", "張陳劉楊黃趙吳鄭謝鄧羅馬孫宋馮韓偉麗紅華軍"
)
SEED, PEOPLE = 7, 300


@dataclass
class SeedReport:
    """The accounts made (username -> (password, unit)) and the demo applicant."""

    passwords: dict[str, tuple[str, str]] = field(default_factory=dict)
    applicant: dict[str, str] = field(default_factory=dict)


def seed(hall: Hall, folder: Path, *, passwords: dict[str, str] | None = None) -> SeedReport:
    """Load the demo district into empty stores and create the demo accounts.

    `passwords` fixes some (tests); the others are generated and returned once."""
    db = hall.db
    if db.counts()["person"]:
        raise StateError("these stores already hold people; seed a new home folder (or fresh schemas)")
    today = dt.date.today()
    run_demo_on(db, folder, people=PEOPLE, seed=SEED, today=today)
    hall.source_token = db.register_source(SOURCE)  # the demo's token is replaced: the hall keeps this one
    accounts.put_setting(hall.users, "source_token", hall.source_token)

    applicant = _applicant(hall, today)
    village = applicant["division_code"]
    street = next(u.unit_id for u in db.units("street") if village.startswith(u.division_code))
    other = next(u.unit_id for u in db.units("village") if u.division_code != village)
    plan = [
        ("window1", f"department:transport:{COUNTY}", "window", "王窗口（交通运输窗口）"),
        ("village1", f"village:{village}", "checker", "李村官（村居）"),
        ("village2", other, "checker", "赵村官（另一村居）"),
        ("street1", street, "checker", "陈街道（街道）"),
        ("police1", f"department:public_security:{COUNTY}", "department", "周民警（公安分局）"),
        ("civil1", f"department:civil_affairs:{COUNTY}", "department", "吴科员（民政局）"),
        ("bureau1", f"department:data_bureau:{COUNTY}", "admin", "孙管理员（数据局）"),
    ]
    report = SeedReport(applicant=applicant)
    for username, unit, role, display in plan:
        given = (passwords or {}).get(username)
        secret = accounts.create_account(
            hall.users, username, unit_id=unit, role=role, display_name=display, password=given
        )
        report.passwords[username] = (secret, unit)
    for key, value in applicant.items():
        accounts.put_setting(hall.users, f"applicant.{key}", value)
    return report


def _applicant(hall: Hall, today: dt.date) -> dict[str, str]:
    """A resident whose name has a traditional form and whom link_one finds by name, birth
    date and address alone (the seeding look-ups are audited as the seeding actor)."""
    register = make_people(PEOPLE, seed=SEED, today=today)
    seeder = Actor("hall.seed", f"department:transport:{COUNTY}")
    for person in register.iter_rows(named=True):
        written = person["name"].translate(TRADITIONAL)
        if written == person["name"]:
            continue
        record = {
            "name": written,
            "birth_date": person["birth_date"].strftime("%Y年%m月%d日"),
            "address": person["address"],
        }
        found = hall.db.link_one(record, actor=seeder, purpose=LOOKUP_PURPOSE)
        if (
            found.decision == "match"
            and found.master
            and found.master.get("id_number") == person["id_number"]
        ):
            return {
                **record,
                "id_number": person["id_number"],
                "division_code": str(found.master["division_code"]),
            }
    raise StateError("no demo resident with a traditional-character name was found by link_one")
