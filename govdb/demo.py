"""A synthetic district that runs the whole data path: `govdb demo` and the tests use it.

南海区 (Foshan, 440605) with its real streets and villages from the shipped division table;
residents with valid ID numbers in the population register; service-hall events (new residents,
address changes, some with errors, one unreadable row, one duplicate) as a GBK file, as many
older halls still export; disability certificates from the disabled persons' federation's own
system. Everything is seeded, so a run is reproducible. No real person's data is used.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from govdb.access.audit import AuditVerification
from govdb.api import DistrictReport, GovDB, ProcessReport
from govdb.errors import JurisdictionError
from govdb.ingest import IngestReport
from govdb.promote import PromoteReport
from govdb.serve import PrefillResult, ProgrammeRun
from govdb.serve.enterprise import EnterprisePrefill
from govdb.standards.divisions import subtree
from govdb.standards.ids import make_id
from govdb.standards.uscc import make_uscc
from govdb.verify import Actor

COUNTY = "440605"
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗梁宋郑谢韩唐冯邓曹彭曾肖田潘袁蔡单欧阳"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉梅建国志红文斌德辉佳怡子涵浩然"
ROADS = ["桂澜路", "南海大道", "海八路", "佛平路", "南桂路", "灯湖东路", "千灯湖路", "狮山大道"]
HALL_HEADER = [
    "受理编号",
    "姓名",
    "性别",
    "身份证号",
    "出生日期",
    "联系电话",
    "居住地址",
    "村居代码",
    "办理时间",
]
CDPF_HEADER = ["记录编号", "姓名", "身份证号", "残疾人证号", "残疾类别", "残疾等级", "办证日期"]


@dataclass
class DemoReport:
    """Everything the demo did, step by step, for the CLI to render."""

    home: Path
    district: DistrictReport
    people_loaded: int
    ingests: list[IngestReport]
    reingest: IngestReport
    process: ProcessReport
    decisions: int
    auto_approved: int
    rejected: list[str]
    refused: str
    promote: PromoteReport
    prefill: PrefillResult
    first_run: ProgrammeRun
    second_run: ProgrammeRun
    counts: dict[str, int] = field(default_factory=dict)
    audit: AuditVerification | None = None
    enterprise_prefill: EnterprisePrefill | None = None  # 食品经营许可 for a registered enterprise


def _name(rng: random.Random) -> str:
    surname = "欧阳" if rng.random() < 0.02 else rng.choice(SURNAMES[:-2])
    return surname + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2, 2))))


def _short(village: str) -> str:
    """朗沙社区居委会 -> 朗沙社区, 某某村委会 -> 某某村: how people write their village."""
    return village.removesuffix("居委会").removesuffix("委会")


def _phone(rng: random.Random) -> str:
    return f"1{rng.choice('3456789')}{rng.randrange(10**9):09d}"


def make_people(n: int, *, seed: int, today: dt.date) -> pl.DataFrame:
    """The population register: n residents spread over the district's villages, ages 0-95."""
    rng = random.Random(seed)
    villages = subtree(COUNTY).filter(pl.col("level") == 5).select("code", "name", "parent_code").rows()
    towns = dict(subtree(COUNTY).filter(pl.col("level") == 4).select("code", "name").rows())
    used: set[str] = set()
    rows: list[dict[str, Any]] = []
    while len(rows) < n:
        # A tenth of the register turns 60 within the demo's year, so the programme has work.
        if rng.random() < 0.1:
            birth = today.replace(year=today.year - 60) - dt.timedelta(days=rng.randrange(0, 300))
        else:
            birth = today - dt.timedelta(days=rng.randrange(365, 95 * 365))
        gender = rng.choice("MF")
        seq = rng.randrange(0, 500) * 2 + (1 if gender == "M" else 0)
        id_number = make_id(COUNTY, birth, seq)
        if id_number in used:
            continue
        used.add(id_number)
        code, vname, town = rng.choice(villages)
        rows.append(
            {
                "id_number": id_number,
                "name": _name(rng),
                "gender": gender,
                "birth_date": birth,
                "phone": _phone(rng),
                "division_code": code,
                "address": f"广东省佛山市南海区{towns[town]}{_short(vname)}"
                f"{rng.choice(ROADS)}{rng.randrange(1, 300)}号",
            }
        )
    return pl.DataFrame(rows)


def write_csv(path: Path, header: list[str], rows: list[list[str]], encoding: str, extra: str = "") -> None:
    """Write rows as an exporting hall system would: CRLF lines, the given encoding, `extra` appended."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_bytes((buffer.getvalue() + extra).encode(encoding))


def make_hall_events(people: pl.DataFrame, path: Path, *, seed: int, today: dt.date) -> None:
    """Service-hall registrations (GBK): new residents, address changes, errors, a bad row, a repeat."""
    rng = random.Random(seed + 1)
    villages = subtree(COUNTY).filter(pl.col("level") == 5).get_column("code").to_list()
    n = max(people.height // 10, 8)
    rows: list[list[str]] = []
    stamp = dt.datetime.combine(today, dt.time(9, 0))
    for i in range(n):  # newcomers registering in the district
        birth = today - dt.timedelta(days=rng.randrange(20 * 365, 70 * 365))
        id_number = make_id("440106", birth, rng.randrange(0, 999))
        rows.append(
            [
                f"SL{i:05d}",
                _name(rng),
                rng.choice("男女"),
                id_number,
                f"{birth:%Y/%m/%d}",
                _phone(rng),
                f"南海区桂城街道{rng.choice(ROADS)}{rng.randrange(1, 99)}号",
                rng.choice(villages),
                f"{stamp:%Y-%m-%d %H:%M}",
            ]
        )
    movers = people.sample(n=min(n, people.height), seed=seed)
    for j, p in enumerate(movers.iter_rows(named=True)):  # residents reporting a new address
        rows.append(
            [
                f"SL{n + j:05d}",
                p["name"],
                "男" if p["gender"] == "M" else "女",
                p["id_number"],
                f"{p['birth_date']:%Y年%m月%d日}",
                p["phone"],
                f"{p['address'].split('号')[0]}号之{j + 1}",
                p["division_code"],
                f"{stamp:%Y-%m-%d %H:%M}",
            ]
        )
    # Errors people make: a wrong check digit, an impossible birth date, a missing village.
    bad_id = rows[0][3][:-1] + ("0" if rows[0][3][-1] != "0" else "1")
    rows.append(
        [
            "SL90001",
            "陈错号",
            "男",
            bad_id,
            "1980-01-01",
            "13800000000",
            "桂城",
            villages[0],
            f"{stamp:%Y-%m-%d}",
        ]
    )
    rows.append(
        [
            "SL90002",
            "林日期",
            "女",
            "440605199002301234",
            "1990-02-30",
            "0757-8628123",
            "桂城",
            villages[0],
            f"{stamp:%Y-%m-%d}",
        ]
    )
    rows.append(rows[n + 1])  # the same registration sent twice
    unreadable = "SL90003,坏行,男,只有四列\r\n"  # too few fields: quarantined with its line number
    write_csv(path, HALL_HEADER, rows, "gbk", extra=unreadable)


ENTERPRISE_HEADER = [
    "登记编号",
    "统一社会信用代码",
    "企业名称",
    "法定代表人",
    "住所",
    "联系电话",
    "经营范围",
    "登记状态",
    "登记日期",
]
TRADES = [("五金", "五金产品批发"), ("餐饮", "餐饮服务"), ("纺织", "针纺织品销售"), ("物流", "道路货物运输")]


def make_enterprises(people: pl.DataFrame, path: Path, *, seed: int, today: dt.date) -> list[str]:
    """Registrations from market regulation's own system (UTF-8): a few enterprises of the district
    with register residents as legal representatives; returns their credit codes."""
    rng = random.Random(seed + 3)
    reps = people.sample(n=min(4, people.height), seed=seed + 3)
    rows, codes = [], []
    for i, p in enumerate(reps.iter_rows(named=True)):
        trade, scope = TRADES[i % len(TRADES)]
        code = make_uscc(COUNTY, rng.randrange(10**7, 10**8))
        codes.append(code)
        name = f"佛山市南海区{p['name'][0]}{rng.choice('华兴盛达隆')}{trade}有限公司"
        address = f"南海区桂城街道{rng.choice(ROADS)}{rng.randrange(1, 99)}号"
        rows.append(
            [f"DJ{i:04d}", code, name, p["name"], address, _phone(rng), scope, "存续", f"{today:%Y-%m-%d}"]
        )
    write_csv(path, ENTERPRISE_HEADER, rows, "utf-8")
    return codes


def make_disability_records(people: pl.DataFrame, path: Path, *, seed: int, today: dt.date) -> None:
    """Certificates from the federation's own system (UTF-8 with BOM), mostly for older people."""
    rng = random.Random(seed + 2)
    cutoff = today.replace(year=today.year - 55)
    older = people.filter(pl.col("birth_date") <= cutoff)
    chosen = older.sample(fraction=0.25, seed=seed) if older.height else older
    rows = []
    for i, p in enumerate(chosen.iter_rows(named=True)):
        category = "肢体" if i % 2 == 0 else rng.choice(["视力", "听力", "言语", "智力"])
        grade = ["一级", "二级", "三级", "四级"][i % 4 if category != "肢体" else rng.choice((0, 1, 2))]
        rows.append(
            [
                f"CDPF{i:05d}",
                p["name"],
                p["id_number"],
                f"{p['id_number']}{i % 7 + 1}{rng.randrange(1, 5)}",
                category,
                grade,
                f"{today - dt.timedelta(days=rng.randrange(30, 3000)):%Y-%m-%d}",
            ]
        )
    write_csv(path, CDPF_HEADER, rows, "utf-8-sig")


def run_demo(
    home: str | Path, *, people: int = 300, seed: int = 7, today: dt.date | None = None
) -> DemoReport:
    """Build the district in SQLite stores in `home` (replacing an earlier demo there) and run it."""
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    for stale in home.glob("govdb.*.sqlite*"):
        stale.unlink()
    with GovDB.open(home) as db:
        return run_demo_on(db, home, people=people, seed=seed, today=today)


def run_demo_on(
    db: GovDB, folder: Path, *, people: int = 300, seed: int = 7, today: dt.date | None = None
) -> DemoReport:
    """Run every stage once on empty stores; the input files are written to `folder`."""
    today = today or dt.date.today()
    district = db.serve_district(COUNTY)
    register = make_people(people, seed=seed, today=today)
    db.load_people(register, source="public_security")
    hall, cdpf = folder / "hall_registrations.csv", folder / "cdpf_certificates.csv"
    make_hall_events(register, hall, seed=seed, today=today)
    make_disability_records(register, cdpf, seed=seed, today=today)
    hall_options = {
        "source": "hall_window_system",
        "source_token": db.register_source("hall_window_system"),
        "key_column": "受理编号",
        "occurred_at_column": "办理时间",
        "service_code": "hall.resident_registration",
        "department": "service_hall",
        "channel": "window",
    }
    ingests = [
        db.ingest(hall, **hall_options),
        db.ingest(
            cdpf,
            source="cdpf_system",
            source_token=db.register_source("cdpf_system"),
            key_column="记录编号",
            occurred_at_column="办证日期",
            service_code="cdpf.disability_certificate",
            department="disabled_federation",
            channel="system",
        ),
    ]
    enterprises = folder / "amr_registrations.csv"
    codes = make_enterprises(register, enterprises, seed=seed, today=today)
    ingests.append(
        db.ingest(
            enterprises,
            source="amr_registration_system",
            source_token=db.register_source("amr_registration_system"),
            key_column="登记编号",
            occurred_at_column="登记日期",
            service_code="hall.enterprise_registration",
            channel="system",
        )
    )
    reingest = db.ingest(hall, **hall_options)
    process = db.process(today=today)
    refused = _refused_attempt(db)
    decisions, rejected = _decide_all(db)
    promote = db.promote()
    senior = _senior_with_certificate(db, today)
    prefill = db.prefill(
        "senior_transit_card",
        id_number=senior,
        actor=Actor("transport.clerk", f"department:transport:{COUNTY}"),
        today=today,
    )
    transport = Actor("transport.programmes", f"department:transport:{COUNTY}")
    first = db.run_programme("senior_transit_card", as_of=today, actor=transport)
    second = db.run_programme("senior_transit_card", as_of=today, actor=transport)
    enterprise_prefill = db.prefill(
        "food_business_licence",
        uscc=codes[0],
        actor=Actor("market.clerk", f"department:market_regulation:{COUNTY}"),
    )
    assert isinstance(prefill, PrefillResult) and isinstance(enterprise_prefill, EnterprisePrefill)
    return DemoReport(
        folder,
        district,
        register.height,
        ingests,
        reingest,
        process,
        decisions,
        process.proposals.auto_approved,
        rejected,
        refused,
        promote,
        prefill,
        first,
        second,
        db.counts(),
        db.verify_audit(),
        enterprise_prefill,
    )


def _refused_attempt(db: GovDB) -> str:
    """A village actor tries to decide a task of another village: refused (invariant 5)."""
    tasks = [t for t in db.tasks() if t.level == "village"]
    if not tasks:
        return ""
    task = tasks[0]
    other = next(u for u in db.units("village") if u.unit_id != task.unit_id)
    try:
        db.decide(task.task_id, Actor("other.village.clerk", other.unit_id), "approve")
    except JurisdictionError as exc:
        return str(exc)
    raise AssertionError("an actor outside the jurisdiction was not refused")


def _decide_all(db: GovDB) -> tuple[int, list[str]]:
    """Demo actors of each unit decide their open tasks in one batch per unit; the first street
    check of a new person rejects."""
    decisions, rejected = 0, list[str]()
    while tasks := db.tasks(limit=10_000):
        by_unit: dict[str, list[dict[str, object]]] = {}
        for task in tasks:
            batch = by_unit.setdefault(task.unit_id, [])
            if task.level == "street" and not rejected and task.change == "new_person":
                reason = "经街道核查，该地址无此人居住"
                batch.append({"task_id": task.task_id, "outcome": "reject", "reason": reason})
                rejected.append(f"{task.payload.get('name')} ({task.proposal_id[:8]}): {reason}")
            else:
                batch.append({"task_id": task.task_id, "outcome": "approve"})
        for unit_id, batch in by_unit.items():
            level = unit_id.split(":", 1)[0]
            decisions += len(db.decide_many(Actor(f"{level}.clerk", unit_id), batch).decided)
    return decisions, rejected


def _senior_with_certificate(db: GovDB, today: dt.date) -> str:
    """The ID number of a resident aged 60+ with a disability certificate, preferring one whose
    record also passed village and street checks (so the prefilled form shows both lineages)."""
    from sqlmodel import Session, col, select

    from govdb.store.master import Credential, FieldHistory, Person

    with Session(db.master) as ms:
        rows = ms.exec(
            select(Person, Credential).join(Credential, col(Credential.person_id) == col(Person.person_id))
        ).all()
        checked = set(
            ms.exec(select(FieldHistory.entity_id).where(col(FieldHistory.proposal_id).is_not(None))).all()
        )
    limit = today.replace(year=today.year - 60)

    def rank(pair: tuple[Person, Credential]) -> tuple[bool, bool, bool]:
        person, cert = pair
        senior = bool(person.birth_date and person.birth_date <= limit)
        return senior, person.person_id in checked, cert.attributes.get("disability_category") == "肢体"

    return max(rows, key=rank)[0].id_number
