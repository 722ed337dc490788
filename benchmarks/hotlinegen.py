"""A seeded 12345 hotline (and school-place applications) for 南海区 with planted truth.

- known KPIs: every ticket's response, closing, resolution, rating and caller follow fixed patterns
  per street; `truth_kpis` counts them with plain Python (not the library's code);
- normal weekly seasonality: each street x category has a fixed weekday profile (Monday peak,
  quiet weekend) with small seeded noise; the control is 噪音扰民 in 桂城街道 with a large Monday peak;
- a Foshan-style surge: 积分入学 applications in 桂城街道 jump on 2026-04-01 (a Wednesday) far
  above the 800 places per month declared in rules/analytics/capacities.yaml;
- a burst word: in the week of 2026-05-11, half the tickets of 里水镇 speak of 登革热;
- a tiny village (5 tickets) whose cells must be suppressed;
- personal data planted in the text (names, phone numbers) that must never come out.

`generate(seed)` returns (hotline frame, school frame, truth); `big_facts(n)` builds a fact frame of
n tickets directly (for the benchmark's aggregation step).
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
import statistics
from collections import defaultdict
from typing import Any

import polars as pl

START = dt.date(2026, 1, 5)  # a Monday
END = dt.date(2026, 5, 31)
SURGE_DAY = dt.date(2026, 4, 1)
SURGE_STREET = "440605011"
BURST_WEEK = dt.date(2026, 5, 11)
BURST_STREET = "440605126"
BURST_WORD = "登革热"
CONTROL = ("噪音扰民", "440605011")
TINY_VILLAGE = "440605121003"  # 儒林社区 in 九江镇: 5 tickets in all
STREETS = {
    "440605011": ("桂城街道", ["440605011001", "440605011004", "440605011005"]),
    "440605121": ("九江镇", ["440605121001", "440605121004"]),
    "440605122": ("西樵镇", ["440605122001", "440605122002"]),
    "440605123": ("丹灶镇", ["440605123001", "440605123005"]),
    "440605124": ("狮山镇", ["440605124001", "440605124004"]),
    "440605125": ("大沥镇", ["440605125001", "440605125002"]),
    "440605126": ("里水镇", ["440605126004", "440605126005"]),
}
# per category: weekday profile (Mon..Sun), department, content template
CATEGORIES = {
    "噪音扰民": (
        [6, 3, 3, 3, 3, 1, 1],
        "生态环境局",
        "市民反映{place}附近夜间施工噪音扰民，影响休息，希望尽快处理。",
    ),
    "占道经营": ([5, 3, 3, 3, 3, 2, 2], "城管局", "反映{place}路口有商贩占道经营，影响车辆通行和行人安全。"),
    "投诉": ([5, 3, 3, 3, 3, 1, 1], "住建局", "投诉{place}小区物业管理不到位，垃圾清运不及时。"),
    "社保": ([4, 3, 3, 3, 2, 0, 0], "人社局", "咨询社保缴费年限和医保报销比例问题。"),
}
# the burst tickets say it in several ways; only the burst word is common to all of them
BURST_TEXTS = [
    "{place}多个小区蚊虫滋生，担心{word}传播，要求喷药灭蚊。",
    "{place}某工地附近出现{word}病例，希望尽快消杀。",
    "咨询{word}疫情防控措施，家中老人如何防护。",
]
CONTROL_PROFILE = [40, 15, 15, 15, 15, 6, 6]
NAMES = "王李张刘陈杨黄赵吴周"
GIVEN = "小明丽华强军芳敏静伟"


def _weekday_count(profile: list[int], day: dt.date, rng: random.Random) -> int:
    base = profile[day.weekday()]
    return max(0, base + (rng.choice((-1, 0, 0, 1)) if base >= 3 else 0))


def _ticket(j: int, street_index: int, received: dt.datetime) -> dict[str, Any]:
    """The fixed per-ticket patterns that make KPIs known: j is the ticket's index in its street."""
    late = j % 20 >= 20 - (2 * street_index)  # street i: 10 % x i answered late (0 % in 桂城)
    unanswered = j % 40 == 39
    first = None if unanswered else received + dt.timedelta(hours=30 if late else 2 + j % 5)
    closed = None if j % 10 == 9 else received + dt.timedelta(hours=24 + (j * 7) % 96)
    resolved = None if closed is None else ("否" if j % 8 == 3 else "是")
    rating = [None, "满意", "基本满意", "满意", "一般", "不满意", "满意", "基本满意"][(j + street_index) % 8]
    return {"first": first, "closed": closed, "resolved": resolved, "satisfaction": rating}


def _fmt(t: dt.datetime | None) -> str | None:
    return None if t is None else t.strftime("%Y-%m-%d %H:%M:%S")


def generate(seed: int = 13) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]]:
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    school: list[dict[str, Any]] = []
    street_j: dict[str, int] = defaultdict(int)
    last_phone: dict[tuple[str, str], str] = {}
    serial = 0
    day = START
    while day <= END:
        for si, (street, (sname, villages)) in enumerate(STREETS.items()):
            for category, (profile, dept, template) in CATEGORIES.items():
                if (category, street) == CONTROL:
                    profile = CONTROL_PROFILE
                n = _weekday_count(profile, day, rng)
                for k in range(n):
                    j = street_j[street]
                    street_j[street] += 1
                    serial += 1
                    received = dt.datetime.combine(day, dt.time(8)) + dt.timedelta(minutes=7 * k + j % 60)
                    village = villages[j % len(villages)]
                    key = (street, category)
                    # every 6th ticket of a street and category comes again from the previous caller
                    phone = last_phone[key] if (j % 6 == 5 and key in last_phone) else f"139{serial:08d}"
                    last_phone[key] = phone
                    person = NAMES[serial % 10] + GIVEN[(serial // 10) % 10] + GIVEN[(serial // 100) % 10]
                    text = template.format(place=sname)
                    if street == BURST_STREET and BURST_WEEK <= day < BURST_WEEK + dt.timedelta(7) and j % 2:
                        text = BURST_TEXTS[j % 6 // 2].format(place=sname, word=BURST_WORD)
                    if j % 9 == 4:
                        text += f"来电人{person}，联系电话{phone}。"
                    t = _ticket(j, si, received)
                    row = {
                        "工单编号": f"GD{serial:08d}",
                        "来电时间": _fmt(received),
                        "诉求类型": category,
                        "诉求内容": text,
                        "所属街道": sname,
                        "村居代码": village,
                        "承办部门": dept,
                        "首次响应时间": _fmt(t["first"]),
                        "办结时间": _fmt(t["closed"]),
                        "是否解决": t["resolved"],
                        "满意度": t["satisfaction"],
                        "来电号码": phone,
                    }
                    if j % 11 == 2:  # placed by its address alone
                        row["村居代码"] = None
                        row["地址"] = f"广东省佛山市南海区{sname}{_village_name(village)}1号"
                    rows.append(row)
        # school places: 桂城 weekdays 5 until the surge, then 70 (weekends 20)
        weekday = day.weekday() < 5
        n = (70 if weekday else 20) if day >= SURGE_DAY and day.month == 4 else (5 if weekday else 0)
        if day.month == 5:
            n = 6 if weekday else 0
        for k in range(n):
            serial += 1
            school.append(
                {
                    "受理编号": f"XW{serial:08d}",
                    "申请时间": _fmt(dt.datetime.combine(day, dt.time(9)) + dt.timedelta(minutes=k)),
                    "事项类型": "积分入学",
                    "村居代码": STREETS[SURGE_STREET][1][k % 3],
                    "办理部门": "教育局",
                    "事项内容": "申请来穗人员随迁子女积分入学学位",
                    "联系电话": f"138{serial:08d}",
                }
            )
        day += dt.timedelta(days=1)
    # the tiny village: 5 tickets in January
    for k in range(5):
        serial += 1
        received = dt.datetime(2026, 1, 6 + k, 10)
        rows.append(
            {
                "工单编号": f"GD{serial:08d}",
                "来电时间": _fmt(received),
                "诉求类型": "社保",
                "诉求内容": "咨询社保缴费年限和医保报销比例问题。",
                "所属街道": "九江镇",
                "村居代码": TINY_VILLAGE,
                "承办部门": "人社局",
                "首次响应时间": _fmt(received + dt.timedelta(hours=1)),
                "办结时间": None,
                "是否解决": None,
                "满意度": None,
                "来电号码": f"137{serial:08d}",
            }
        )
    hotline = pl.DataFrame(rows, infer_schema_length=None)
    return hotline, pl.DataFrame(school), truth_kpis(rows)


def _village_name(code: str) -> str:
    from govdb.standards.divisions import lookup

    return lookup(code).name


def truth_kpis(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """(street code, month 'YYYY-MM') -> the KPIs counted ticket by ticket, by definition."""
    parse = lambda s: dt.datetime.strptime(s, "%Y-%m-%d %H:%M:%S")  # noqa: E731
    street_of = {name: code for code, (name, _) in STREETS.items()}
    by_caller: dict[tuple[str, str], list[dt.datetime]] = defaultdict(list)
    for r in rows:
        by_caller[(r["来电号码"], r["诉求类型"])].append(parse(r["来电时间"]))
    repeats: set[tuple[str, str, dt.datetime]] = set()
    for (phone, cat), times in by_caller.items():
        times.sort()
        for a, b in itertools.pairwise(times):
            if (b - a).total_seconds() <= 30 * 86400:
                repeats.add((phone, cat, b))
    cells: dict[tuple[str, str], dict[str, Any]] = defaultdict(
        lambda: {
            "tickets": 0,
            "responded": 0,
            "closed": 0,
            "resolved": 0,
            "rated": 0,
            "satisfied": 0,
            "repeats": 0,
            "complaints": 0,
            "hours": [],
        }
    )
    for r in rows:
        received = parse(r["来电时间"])
        c = cells[(street_of[r["所属街道"]], received.strftime("%Y-%m"))]
        c["tickets"] += 1
        if r["首次响应时间"] and (parse(r["首次响应时间"]) - received).total_seconds() <= 24 * 3600:
            c["responded"] += 1
        if r["办结时间"]:
            c["closed"] += 1
            c["hours"].append((parse(r["办结时间"]) - received).total_seconds() / 3600)
            c["resolved"] += r["是否解决"] == "是"
        if r["满意度"]:
            c["rated"] += 1
            c["satisfied"] += r["满意度"] in ("满意", "基本满意")
        c["repeats"] += (r["来电号码"], r["诉求类型"], received) in repeats
        c["complaints"] += r["诉求类型"] == "投诉"
    for c in cells.values():
        c["median_hours_to_close"] = statistics.median(c.pop("hours")) if c["closed"] else None
    return dict(cells)


def big_facts(n: int, seed: int = 1) -> pl.DataFrame:
    """n tickets as a fact frame (govdb.analytics.facts.FACT_SCHEMA), a year of a large city, built
    column-wise (for the benchmark's aggregation step)."""
    import numpy as np

    from govdb.standards.divisions import division_table

    rng = np.random.default_rng(seed)
    villages = (
        division_table()
        .filter(pl.col("scheme") == "nbs", pl.col("level") == 5, pl.col("code").str.starts_with("4406"))
        .get_column("code")
        .to_numpy()
    )
    cats = np.array([*CATEGORIES, "供水", "积分入学", "交通", "医疗", "教育", "住房", "市场监管"])
    start = np.datetime64("2025-01-01T00:00:00", "us")
    received = start + rng.integers(0, 365 * 86400, n).astype("timedelta64[s]").astype("timedelta64[us]")
    hour = np.timedelta64(3600, "s").astype("timedelta64[us]")
    first = received + (rng.exponential(8, n) * hour).astype("timedelta64[us]")
    closed = received + (rng.exponential(60, n) * hour).astype("timedelta64[us]")
    closed_mask = rng.random(n) < 0.9
    sat = np.array(["满意", "基本满意", "一般", "不满意", ""])[rng.integers(0, 5, n)]
    return pl.DataFrame(
        {
            "event_id": np.arange(n, dtype=np.int64),
            "service_code": "hotline.12345",
            "division_code": villages[rng.integers(0, len(villages), n)],
            "category": cats[rng.integers(0, len(cats), n)],
            "department": "部门" + pl.Series(rng.integers(0, 40, n)).cast(pl.String),
            "content": None,
            "received": received,
            "first_response": first,
            "closed": pl.Series(closed).set(pl.Series(~closed_mask), None),
            "resolved": rng.random(n) < 0.85,
            "satisfaction": pl.Series(sat).replace("", None),
            "caller": pl.Series(rng.integers(0, n // 3, n).astype(np.uint64)),
        }
    ).with_columns(pl.col("content").cast(pl.String))
