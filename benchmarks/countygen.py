"""A seeded, vectorised generator of one county: its population register and a year's event files.

南海区 (Foshan, 440605) with its real streets and villages from the shipped division table
(statistical village codes). The register holds residents with valid resident IDs (GB 11643 check
digit; most born in the county, some elsewhere), Chinese names, birth dates from an age pyramid
(about 1.4% turn 60 in the programme's year, about 17% are 60 or over), mobile phones, addresses
written the way the address standard places them to their village, and the village code. No real
person's data is used.

The event files, written as halls and departments export them:

- `hall_registrations.csv` (GBK, CRLF; service `hall.resident_registration`): new residents (not in
  the register), address changes inside the village, moves between villages, and exact repeats
  (the register's own content, written in other date formats: they must open no task);
- `contact_updates.csv` (UTF-8; service `hall.contact_update`, other header names): phone changes;
- `cdpf_certificates.csv` (UTF-8 with BOM; service `cdpf.disability_certificate`): disability
  certificates from the disabled persons' federation's system, mostly for older people.

Each record's key says what it is (NW new, AD address, MV move, RP repeat, PH phone, CD
certificate), so a benchmark can check what became of each kind.

    python benchmarks/countygen.py --people 1000000 --events 1000000 --out /tmp/county

writes register.parquet and the three event files, and prints how long it took.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from govdb.standards.divisions import division_table, subtree
from govdb.standards.ids import check_char, digits17

COUNTY = "440605"
PREFIX = "广东省佛山市南海区"
SURNAMES = list(
    "陈梁李黄何张罗林吴刘关冯邓潘谢杨郭周区麦叶伍曾蔡苏卢朱钟胡徐赵江郑孔邝彭温莫岑简招庞余"
    "王孙马高袁许韩唐董萧程沈姚崔谭陆汪范金石廖贾夏韦方白邹孟熊秦邱尹薛段雷侯龙史陶黎顾毛"
)
COMPOUND = ["欧阳", "司徒", "上官"]
GIVEN = list(
    "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂华玉萍红玲芬燕彬鹏辉斌宇浩凯健俊帆帅旭宁"
    "龙林欣婷雪梅琳晶莉颖倩晓瑞佳嘉子轩涵梓文博思雨泽诗怡宏志国建新春海波成荣东飞云峰亮锦添"
)
ROADS = [
    *("桂澜路", "海八路", "佛平路", "南桂路", "灯湖东路", "千灯湖路", "宝翠路", "海五路", "石龙路"),
    *("文华路", "天佑路", "建设大道", "环湖路", "德胜路", "金沙大道", "广云路", "桃园路", "樵高路"),
    *("松岗路", "里和路", "和顺路", "大学路", "中心大道", "新村路"),
]
DATE_FORMATS = ["%Y-%m-%d", "%Y/%m/%d", "%Y%m%d", "%Y年%m月%d日"]
HALL_HEADER = [
    *("受理编号", "姓名", "性别", "身份证号", "出生日期"),
    *("联系电话", "居住地址", "村居代码", "办理时间"),
]
CONTACT_HEADER = ["业务编号", "申请人姓名", "身份证号码", "手机号码", "办理时间"]
CDPF_HEADER = ["记录编号", "姓名", "身份证号", "残疾人证号", "残疾类别", "残疾等级", "办证日期"]
CATEGORIES = ("new", "phone", "address", "move", "repeat", "cert")
KEY_PREFIX = {"new": "NW", "address": "AD", "move": "MV", "repeat": "RP", "phone": "PH", "cert": "CD"}


@dataclass(frozen=True)
class Mix:
    """Shares of the events by kind (normalised to sum to 1)."""

    new: float = 0.10
    phone: float = 0.25
    address: float = 0.20
    move: float = 0.10
    repeat: float = 0.25
    cert: float = 0.10

    @classmethod
    def parse(cls, text: str | None) -> Mix:
        """`new=0.1,phone=0.3,...` (kinds not named keep their default)."""
        if not text:
            return cls()
        values = {}
        for part in text.split(","):
            name, _, share = part.partition("=")
            if name.strip() not in CATEGORIES:
                raise SystemExit(f"unknown event kind {name!r} in --mix; kinds: {', '.join(CATEGORIES)}")
            values[name.strip()] = float(share)
        return cls(**values)

    def counts(self, n: int) -> dict[str, int]:
        shares = np.array([getattr(self, c) for c in CATEGORIES], dtype=float)
        shares = shares / shares.sum()
        counts = np.floor(shares * n).astype(int)
        counts[int(np.argmax(shares))] += n - int(counts.sum())
        return dict(zip(CATEGORIES, (int(c) for c in counts), strict=True))


@dataclass
class County:
    """What the generator wrote: the register, the files with their ingest options, and counts."""

    register: pl.DataFrame
    newcomers: pl.DataFrame
    files: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    cdpf: tuple[Path, dict[str, Any]] | None = None


def villages() -> pl.DataFrame:
    """The county's villages: code, township code, and the written address prefix down to the
    village (广东省佛山市南海区桂城街道桂一社区), as people write their village (居委会 dropped)."""
    tree = subtree(COUNTY, scheme="nbs")
    towns = tree.filter(pl.col("level") == 4).select(
        pl.col("code").alias("parent_code"), pl.col("name").alias("town")
    )
    return (
        tree.filter(pl.col("level") == 5)
        .join(towns, on="parent_code", how="left")
        .select(
            "code",
            pl.col("parent_code").alias("town_code"),
            (
                pl.lit(PREFIX)
                + pl.col("town")
                + pl.col("name").str.replace(r"居委会$", "").str.replace(r"委会$", "")
            ).alias("prefix"),
            # industrial-park communities are small; residents' and villagers' committees are not
            pl.col("name").str.ends_with("委会").alias("committee"),
        )
        .sort("code")
    )


def _zipf(k: int, s: float = 1.0) -> np.ndarray:
    weights = 1.0 / np.arange(1, k + 1) ** s
    return weights / weights.sum()


def _age_weights() -> tuple[np.ndarray, np.ndarray]:
    """Ages 1-99 at the end of the programme's year: flat to 59, then thinning out."""
    ages = np.arange(1, 100)
    weights = np.where(ages < 60, 1.0, np.exp(-(ages - 60) / 14.0))
    weights = weights * np.where((ages >= 20) & (ages < 45), 1.25, 1.0)  # working-age inflow
    return ages, weights / weights.sum()


def _ids(frame: pl.DataFrame) -> pl.Series:
    """Valid 18-digit IDs from region, birth_date and seq (0-999, odd for men)."""
    seq = pl.col("seq").cast(pl.String).str.zfill(3)
    first17 = pl.col("region") + pl.col("birth_date").dt.strftime("%Y%m%d") + seq
    staged = frame.select(first17.alias("f17")).with_columns(digits17(pl.col("f17")).alias("n"))
    return staged.select((pl.col("f17") + check_char(pl.col("n"))).alias("id_number")).to_series()


def _addresses(prefix: pl.Series, rng: np.random.Generator) -> pl.Series:
    n = len(prefix)
    road = pl.Series(np.array(ROADS)[rng.integers(0, len(ROADS), n)])
    house = pl.Series(rng.integers(1, 300, n)).cast(pl.String)
    return prefix + road + house + "号"


def _phones(rng: np.random.Generator, n: int) -> pl.Series:
    second = np.array(list("3456789"))[rng.integers(0, 7, n)]
    rest = rng.integers(0, 10**9, n)
    return pl.Series(np.char.add(np.char.add("1", second), np.char.zfill(rest.astype(str), 9)))


def make_people(n: int, *, seed: int, year: int) -> pl.DataFrame:
    """n distinct residents (unique resident IDs), in villages of the county."""
    rng = np.random.default_rng(seed)
    vill = villages()
    weights = rng.gamma(2.0, 1.0, vill.height) * np.where(vill.get_column("committee").to_numpy(), 1.0, 0.1)
    where = rng.choice(vill.height, n, p=weights / weights.sum())
    ages, age_p = _age_weights()
    age = rng.choice(ages, n, p=age_p)
    # Born in year - age, so `age` is the age reached during the programme's year.
    first_day = (year - age - 1970).astype("datetime64[Y]").astype("datetime64[D]")
    birth = first_day + rng.integers(0, 365, n).astype("timedelta64[D]")
    counties = (
        division_table()
        .filter((pl.col("level") == 3) & (pl.col("code") != COUNTY))
        .get_column("code")
        .sort()
        .to_numpy()
    )
    elsewhere = rng.choice(counties, 80, replace=False)
    region = np.where(rng.random(n) < 0.65, COUNTY, elsewhere[rng.integers(0, 80, n)])
    male = rng.random(n) < 0.51
    compound = rng.random(n) < 0.005
    surname = np.where(
        compound,
        np.array(COMPOUND)[rng.integers(0, len(COMPOUND), n)],
        np.array(SURNAMES)[rng.choice(len(SURNAMES), n, p=_zipf(len(SURNAMES), 0.9))],
    )
    g1 = np.array(GIVEN)[rng.choice(len(GIVEN), n, p=_zipf(len(GIVEN), 0.7))]
    g2 = np.array(GIVEN)[rng.choice(len(GIVEN), n, p=_zipf(len(GIVEN), 0.7))]
    given = np.where(rng.random(n) < 0.3, g1, np.char.add(g1, g2))
    people = pl.DataFrame(
        {
            "region": region,
            "birth_date": birth,
            "male": male,
            "start": rng.integers(0, 500, n),
            "name": np.char.add(surname, given),
            "village": where.astype(np.int64),
        }
    ).with_columns(pl.col("birth_date").cast(pl.Date))
    # The sequence number is unique within (region, birth date): the k-th person of a group gets
    # (group start + k) mod 500, doubled, plus one for men.
    k = pl.int_range(pl.len()).over("region", "birth_date")
    start = pl.col("start").first().over("region", "birth_date")
    people = people.with_columns(
        (((start + k) % 500) * 2 + pl.col("male").cast(pl.Int64)).alias("seq"),
        pl.len().over("region", "birth_date").alias("_group"),
    )
    if people.get_column("_group").max() > 500:  # type: ignore[operator]
        raise ValueError("more than 500 people share a region and birth date; IDs would collide")
    people = people.with_columns(_ids(people))
    vill_rows = vill.with_row_index("village").with_columns(pl.col("village").cast(pl.Int64))
    people = people.join(vill_rows, on="village", how="left", maintain_order="left")
    return people.select(
        "id_number",
        "name",
        pl.when(pl.col("male")).then(pl.lit("M")).otherwise(pl.lit("F")).alias("gender"),
        "birth_date",
        _phones(rng, n).alias("phone"),
        _addresses(people.get_column("prefix"), rng).alias("address"),
        pl.col("code").alias("division_code"),
    )


def _written_dates(dates: pl.Series, rng: np.random.Generator) -> pl.Series:
    style = rng.integers(0, len(DATE_FORMATS), len(dates))
    frame = pl.DataFrame({"d": dates, "s": style})
    expr = pl.col("d").dt.strftime(DATE_FORMATS[0])
    for i, fmt in enumerate(DATE_FORMATS[1:], 1):
        expr = pl.when(pl.col("s") == i).then(pl.col("d").dt.strftime(fmt)).otherwise(expr)
    return frame.select(expr).to_series()


def _stamps(rng: np.random.Generator, n: int, today: dt.date, fmt: str = "%Y-%m-%d %H:%M") -> pl.Series:
    """Times during working hours over the year before `today`."""
    days = rng.integers(1, 365, n).astype("timedelta64[D]")
    minutes = (rng.integers(8 * 60 + 30, 17 * 60 + 30, n)).astype("timedelta64[m]")
    base = np.datetime64(today.isoformat(), "D") - days
    return pl.Series((base.astype("datetime64[m]") + minutes).astype("datetime64[ms]")).dt.strftime(fmt)


def _keys(kind: str, n: int) -> pl.Series:
    return pl.Series(np.char.add(KEY_PREFIX[kind], np.char.zfill(np.arange(n).astype(str), 8)))


def _hall_rows(people: pl.DataFrame, kind: str, rng: np.random.Generator, today: dt.date) -> pl.DataFrame:
    n = people.height
    return pl.DataFrame(
        {
            "受理编号": _keys(kind, n),
            "姓名": people.get_column("name"),
            "性别": people.get_column("gender").replace_strict({"M": "男", "F": "女"}),
            "身份证号": people.get_column("id_number"),
            "出生日期": _written_dates(people.get_column("birth_date"), rng),
            "联系电话": people.get_column("phone"),
            "居住地址": people.get_column("address"),
            "村居代码": people.get_column("division_code"),
            "办理时间": _stamps(rng, n, today),
        }
    )


def write_csv(frame: pl.DataFrame, path: Path, encoding: str) -> None:
    """As an exporting system writes: CRLF lines, quotes only where needed, the given encoding."""
    text = frame.write_csv(line_terminator="\r\n")
    path.write_bytes(text.encode(encoding))


def make_events(
    register: pl.DataFrame,
    newcomers: pl.DataFrame,
    n: int,
    folder: Path,
    *,
    mix: Mix,
    seed: int,
    today: dt.date,
) -> tuple[list[tuple[Path, dict[str, Any]]], tuple[Path, dict[str, Any]], dict[str, int]]:
    """Write the three event files; returns (hall files with ingest options, the certificate file
    with its options, counts by kind)."""
    rng = np.random.default_rng(seed + 1)
    counts = mix.counts(n)
    vill = villages()
    people_kinds = ("phone", "address", "move", "repeat")
    wanted = sum(counts[k] for k in people_kinds)
    if wanted > register.height:
        raise ValueError(f"{wanted} events about register people need at least that many people")
    if counts["new"] > newcomers.height:
        raise ValueError(f"{counts['new']} new residents need as many newcomers")
    order = rng.permutation(register.height)
    picked: dict[str, pl.DataFrame] = {}
    at = 0
    for kind in people_kinds:
        picked[kind] = register[order[at : at + counts[kind]]]
        at += counts[kind]

    # Address changes inside the village: same village prefix, another road and number.
    addr = picked["address"]
    prefix = addr.join(vill.select("code", "prefix"), left_on="division_code", right_on="code", how="left")
    fresh = _addresses(prefix.get_column("prefix"), rng)
    # one draw in 7,000 repeats the old road and number: make it another flat of that house
    fresh = pl.select(
        pl.when(fresh == addr.get_column("address")).then(fresh + "之1").otherwise(fresh)
    ).to_series()
    addr = addr.with_columns(fresh.alias("address"))
    # Moves: another village of the county (its code and a new address there).
    move = picked["move"]
    target = rng.integers(0, vill.height, move.height)
    same = vill.get_column("code").to_numpy()[target] == move.get_column("division_code").to_numpy()
    target = np.where(same, (target + 1) % vill.height, target)
    dest = vill[target]
    move = move.with_columns(
        dest.get_column("code").alias("division_code"),
        _addresses(dest.get_column("prefix"), rng).alias("address"),
    )
    hall = pl.concat(
        [
            _hall_rows(newcomers.head(counts["new"]), "new", rng, today),
            _hall_rows(addr, "address", rng, today),
            _hall_rows(move, "move", rng, today),
            _hall_rows(picked["repeat"], "repeat", rng, today),
        ]
    )
    hall = hall[rng.permutation(hall.height)]
    hall_path = folder / "hall_registrations.csv"
    write_csv(hall, hall_path, "gbk")

    phone = picked["phone"]
    contact = pl.DataFrame(
        {
            "业务编号": _keys("phone", phone.height),
            "申请人姓名": phone.get_column("name"),
            "身份证号码": phone.get_column("id_number"),
            "手机号码": _phones(rng, phone.height),
            "办理时间": _stamps(rng, phone.height, today, "%Y/%m/%d %H:%M"),
        }
    )
    contact_path = folder / "contact_updates.csv"
    write_csv(contact, contact_path, "utf-8")

    # Certificates: mostly people aged 55 or over, some younger.
    cutoff = dt.date(today.year - 55, 1, 1)
    older = register.filter(pl.col("birth_date") < cutoff)
    younger = register.filter(pl.col("birth_date") >= cutoff)
    n_cert = counts["cert"]
    n_old = min(older.height, int(n_cert * 0.8))
    certified = pl.concat(
        [
            older[rng.choice(older.height, n_old, replace=False)],
            younger[rng.choice(younger.height, min(younger.height, n_cert - n_old), replace=False)],
        ]
    )
    m = certified.height
    categories = np.array(["肢体", "视力", "听力", "言语", "智力", "精神"])
    grades = np.array(["一级", "二级", "三级", "四级"])
    cdpf = pl.DataFrame(
        {
            "记录编号": _keys("cert", m),
            "姓名": certified.get_column("name"),
            "身份证号": certified.get_column("id_number"),
            "残疾人证号": certified.get_column("id_number")
            + pl.Series(rng.integers(1, 8, m)).cast(pl.String)
            + pl.Series(rng.integers(1, 5, m)).cast(pl.String),
            "残疾类别": categories[rng.choice(6, m, p=[0.45, 0.15, 0.15, 0.05, 0.1, 0.1])],
            "残疾等级": grades[rng.choice(4, m, p=[0.15, 0.25, 0.3, 0.3])],
            "办证日期": _stamps(rng, m, today, "%Y-%m-%d"),
        }
    )
    cdpf_path = folder / "cdpf_certificates.csv"
    write_csv(cdpf, cdpf_path, "utf-8-sig")
    counts["cert"] = m

    hall_options = {
        "source": "hall_window_system",
        "key_column": "受理编号",
        "occurred_at_column": "办理时间",
        "service_code": "hall.resident_registration",
        "channel": "window",
    }
    contact_options = {
        "source": "hall_window_system",
        "key_column": "业务编号",
        "occurred_at_column": "办理时间",
        "service_code": "hall.contact_update",
        "channel": "window",
    }
    cdpf_options = {
        "source": "cdpf_system",
        "key_column": "记录编号",
        "occurred_at_column": "办证日期",
        "service_code": "cdpf.disability_certificate",
    }
    return (
        [(hall_path, hall_options), (contact_path, contact_options)],
        (cdpf_path, cdpf_options),
        counts,
    )


def generate(
    people: int,
    events: int,
    folder: Path,
    *,
    mix: Mix | None = None,
    seed: int = 7,
    today: dt.date | None = None,
) -> County:
    """The register of `people` residents and `events` events written to `folder`."""
    today = today or dt.date.today()
    mix = mix or Mix()
    folder.mkdir(parents=True, exist_ok=True)
    n_new = mix.counts(events)["new"]
    everyone = make_people(people + n_new, seed=seed, year=today.year)
    register, newcomers = everyone.head(people), everyone.slice(people)
    files, cdpf, counts = make_events(register, newcomers, events, folder, mix=mix, seed=seed, today=today)
    return County(register, newcomers, files, counts, cdpf)


def link_records(register: pl.DataFrame, n: int, *, seed: int) -> list[tuple[dict[str, Any], str]]:
    """n records about register people for `link_one`, each with the ID it is about: half written
    exactly as the register holds them, half as people get them wrong (no ID number, a given-name
    character mistyped, the date written otherwise, sometimes a new phone)."""
    rng = np.random.default_rng(seed + 2)
    rows = register[rng.choice(register.height, n, replace=False)]
    written = _written_dates(rows.get_column("birth_date"), rng)
    out = []
    for i, (row, date_text) in enumerate(zip(rows.iter_rows(named=True), written, strict=True)):
        record = {
            "record_id": f"L{i}",
            "name": row["name"],
            "gender": "男" if row["gender"] == "M" else "女",
            "birth_date": row["birth_date"].isoformat(),
            "id_number": row["id_number"],
            "phone": row["phone"],
            "address": row["address"],
        }
        if i % 2:
            name = row["name"]
            spot = len(name) - 1
            record["name"] = name[:spot] + GIVEN[int(rng.integers(len(GIVEN)))]
            record["id_number"] = None
            record["birth_date"] = date_text
            if rng.random() < 0.3:
                record["phone"] = f"139{int(rng.integers(10**8)):08d}"
        out.append((record, row["id_number"]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--mix", help="shares by kind, e.g. new=0.1,phone=0.3 (see Mix)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--today", type=dt.date.fromisoformat, default=dt.date.today())
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    started = time.perf_counter()
    mix = Mix.parse(args.mix)
    county = generate(args.people, args.events, args.out, mix=mix, seed=args.seed, today=args.today)
    county.register.write_parquet(args.out / "register.parquet")
    took = time.perf_counter() - started
    print(f"{args.out}: {county.register.height} people, events {county.counts} in {took:.1f} s")


if __name__ == "__main__":
    main()
