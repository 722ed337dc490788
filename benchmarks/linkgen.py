"""A seeded generator of Chinese person records with ground truth, for linkage benchmarks.

Master: people in households (shared surname, address and often phone) living in real villages of
the shipped division table, with valid resident IDs. Events: submissions about master people
(some repeated) and about people not in master (some of them relatives of master people, living in
the same household), written the way service halls receive them: missing and corrupted IDs,
15-digit IDs, homophone, look-alike and traditional characters, names in pinyin, dates in every
format, changed phones, abbreviated and moved addresses.

    python benchmarks/linkgen.py --master 1000000 --events 1000000 --profile hard --out /tmp/lk

writes master.parquet, events.parquet and truth.parquet (event_id -> person_id or null).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from govdb.standards.divisions import division_table
from govdb.standards.hanzi import DATA as HANZI_DATA
from govdb.standards.ids import check_char, digits17
from govdb.standards.names import char_readings

SURNAMES = list(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
COMPOUND = ["欧阳", "司马", "诸葛", "上官"]
GIVEN = list(
    "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂英华玉萍红娥玲芬燕彬鹏辉斌宇浩凯健俊帆帅旭宁"
    "龙林欣婷雪梅琳晶莉颖倩婕晓瑞佳嘉子轩涵梓文博思雨泽一诗佳怡宏志国建新春海波成荣东飞云峰亮"
)


@dataclass(frozen=True)
class Profile:
    in_master: float  # share of distinct event people who are in master
    relatives: float  # share of the people not in master who live in a master household
    repeats: float  # share of events that repeat an earlier submission's person
    id_missing: float
    id_one_digit: float
    id_transposed: float
    id_15: float
    name_homophone: float
    name_lookalike: float
    name_traditional: float
    name_pinyin: float
    date_missing: float
    date_swapped: float
    date_one_part: float
    phone_missing: float
    phone_changed: float
    address_missing: float
    address_abbreviated: float
    address_moved: float
    gender_missing: float


PROFILES = {
    "easy": Profile(
        in_master=0.8, relatives=0.3, repeats=0.1, id_missing=0.15, id_one_digit=0.03, id_transposed=0.02,
        id_15=0.05, name_homophone=0.04, name_lookalike=0.01, name_traditional=0.02, name_pinyin=0.01,
        date_missing=0.05, date_swapped=0.01, date_one_part=0.02, phone_missing=0.1, phone_changed=0.1,
        address_missing=0.05, address_abbreviated=0.4, address_moved=0.05, gender_missing=0.3,
    ),
    "hard": Profile(
        in_master=0.7, relatives=0.4, repeats=0.15, id_missing=0.8, id_one_digit=0.05, id_transposed=0.03,
        id_15=0.05, name_homophone=0.1, name_lookalike=0.03, name_traditional=0.05, name_pinyin=0.03,
        date_missing=0.15, date_swapped=0.02, date_one_part=0.04, phone_missing=0.2, phone_changed=0.4,
        address_missing=0.1, address_abbreviated=0.5, address_moved=0.3, gender_missing=0.5,
    ),
}  # fmt: skip


def _villages(rng: np.random.Generator, n: int) -> pl.DataFrame:
    """n real villages (12-digit NBS codes) with their full written address prefix."""
    table = division_table()
    names = dict(zip(table.get_column("code").to_list(), table.get_column("name").to_list(), strict=True))
    villages = table.filter(pl.col("level") == 5).select("code", pl.col("parent_code").alias("parent"))
    chosen = villages[rng.choice(villages.height, n, replace=False)]
    rows = []
    for code, parent in chosen.iter_rows():
        township, county = parent, parent[:6]
        city, province = county[:4] + "00", county[:2] + "0000"
        parts = [names.get(c, "") for c in (province, city, county, township, code)]
        rows.append((code, "".join(p for p in parts[:3] if p), "".join(p for p in parts[3:] if p)))
    return pl.DataFrame(rows, schema=["village_code", "upper", "lower"], orient="row")


def _ids(region: pl.Expr, birth: pl.Expr, seq: pl.Expr) -> pl.Expr:
    first17 = region + birth.dt.strftime("%Y%m%d") + seq.cast(pl.String).str.zfill(3)
    return first17 + check_char(digits17(first17))


def make_master(n: int, rng: np.random.Generator) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Master people and their households (household_id on each person)."""
    sizes = rng.choice([1, 2, 3, 4, 5], size=n, p=[0.25, 0.3, 0.25, 0.15, 0.05])
    sizes = sizes[: np.searchsorted(np.cumsum(sizes), n) + 1]
    households = len(sizes)
    villages = _villages(rng, max(1, min(households // 40 + 1, 200_000)))
    hh = pl.DataFrame(
        {
            "household_id": np.arange(households),
            "village": rng.integers(0, villages.height, households),
            "surname": np.where(
                rng.random(households) < 0.01,
                rng.choice(COMPOUND, households),
                rng.choice(SURNAMES, households, p=_zipf(len(SURNAMES))),
            ),
            "house": rng.integers(1, 300, households),
            "hh_phone": rng.integers(13_000_000_000, 19_999_999_999, households).astype(str),
        }
    ).join(villages.with_row_index("village"), on="village")
    person_hh = np.repeat(np.arange(households), sizes)[:n]
    given_len = rng.choice([1, 2], n, p=[0.35, 0.65])
    g1 = rng.choice(GIVEN, n, p=_zipf(len(GIVEN), 0.8))
    g2 = rng.choice(GIVEN, n, p=_zipf(len(GIVEN), 0.8))
    days = rng.integers(0, 365 * 85, n)
    people = pl.DataFrame(
        {
            "household_id": person_hh,
            "given": np.where(given_len == 1, g1, np.char.add(g1, g2)),
            "birth_date": (np.datetime64("1930-01-01") + days.astype("timedelta64[D]")),
            "seq": rng.integers(0, 1000, n),
            "own_phone": rng.integers(13_000_000_000, 19_999_999_999, n).astype(str),
            "shares_phone": rng.random(n) < 0.5,
        }
    ).join(hh, on="household_id", how="left", maintain_order="left")
    people = people.with_row_index("i").with_columns(
        pl.col("birth_date").cast(pl.Date),
        (pl.lit("P") + pl.col("i").cast(pl.String).str.zfill(8)).alias("person_id"),
        (pl.col("surname") + pl.col("given")).alias("name"),
    )
    people = people.with_columns(
        _ids(pl.col("village_code").str.slice(0, 6), pl.col("birth_date"), pl.col("seq")).alias("id_number"),
        pl.when(pl.col("seq") % 2 == 1).then(pl.lit("男")).otherwise(pl.lit("女")).alias("gender"),
        pl.when(pl.col("shares_phone"))
        .then(pl.col("hh_phone"))
        .otherwise(pl.col("own_phone"))
        .alias("phone"),
        (pl.col("upper") + pl.col("lower") + pl.col("house").cast(pl.String) + pl.lit("号")).alias("address"),
    )
    return people, villages


def _zipf(k: int, s: float = 1.0) -> np.ndarray:
    weights = 1.0 / np.arange(1, k + 1) ** s
    return weights / weights.sum()


def _substitute(names: list[str], table: dict[str, list[str]], rng: np.random.Generator) -> list[str]:
    """Replace one replaceable character of each name (left unchanged when none is)."""
    out = []
    for name in names:
        spots = [i for i, c in enumerate(name) if c in table]
        if not spots:
            out.append(name)
            continue
        i = spots[rng.integers(len(spots))]
        options = table[name[i]]
        out.append(name[:i] + options[rng.integers(len(options))] + name[i + 1 :])
    return out


def _tables() -> tuple[dict[str, list[str]], dict[str, list[str]], dict[str, list[str]]]:
    readings = char_readings()
    pool = set(GIVEN) | set(SURNAMES) | set("".join(COMPOUND))
    common = set(GIVEN) | set("玮晓那丽莉立力利李理礼黎")
    by_reading: dict[str, list[str]] = {}
    # Sorted: set order changes with each process's string hashing, and the data must not.
    for char in sorted(common | pool):
        by_reading.setdefault(readings.get(char, char), []).append(char)
    homophones = {
        c: [o for o in by_reading[readings.get(c, c)] if o != c]
        for c in sorted(set(GIVEN))
        if len(by_reading[readings.get(c, c)]) > 1
    }
    lookalike: dict[str, list[str]] = {}
    for line in (HANZI_DATA / "lookalikes.tsv").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            group = line.split("\t")
            for c in group:
                lookalike[c] = [o for o in group if o != c]
    traditional: dict[str, list[str]] = {}
    for trad, simp in pl.read_parquet(HANZI_DATA / "traditional.parquet").iter_rows():
        if simp in pool:
            traditional.setdefault(simp, []).append(trad)
    return homophones, lookalike, traditional


def _pinyin(names: list[str]) -> list[str]:
    readings = char_readings()
    out = []
    for name in names:
        syllables = [readings.get(c, c) for c in name]
        out.append(syllables[0].title() + " " + "".join(syllables[1:]).title())
    return out


def _date_text(dates: pl.Series, rng: np.random.Generator) -> pl.Series:
    style = pl.Series(rng.integers(0, 4, len(dates)))
    frame = pl.DataFrame({"d": dates, "s": style})
    y, m, d = (
        pl.col("d").dt.year().cast(pl.String),
        pl.col("d").dt.month().cast(pl.String),
        pl.col("d").dt.day().cast(pl.String),
    )
    return frame.select(
        pl.when(pl.col("s") == 0).then(pl.col("d").dt.strftime("%Y-%m-%d"))
        .when(pl.col("s") == 1).then(y + "/" + m + "/" + d)
        .when(pl.col("s") == 2).then(pl.col("d").dt.strftime("%Y%m%d"))
        .otherwise(y + "年" + m + "月" + d + "日")
    ).to_series()  # fmt: skip


def make_events(
    master: pl.DataFrame, villages: pl.DataFrame, n: int, profile: Profile, rng: np.random.Generator
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Events as written, and the truth (event_id -> person_id, null for people not in master)."""
    distinct = int(n / (1 + profile.repeats))
    known = int(distinct * profile.in_master)
    unknown = distinct - known
    who = rng.choice(master.height, known, replace=False)
    base = master[who].select(
        "person_id", "name", "gender", "birth_date", "id_number", "phone", "address", "village_code"
    )
    # People not in master: relatives living in a master household, and strangers.
    relatives = int(unknown * profile.relatives)
    strangers_master, _ = make_master(
        max(unknown - relatives, 1), np.random.default_rng(rng.integers(1 << 31))
    )
    strangers = strangers_master.head(unknown - relatives).select(
        pl.lit(None, pl.String).alias("person_id"),
        "name",
        "gender",
        "birth_date",
        "id_number",
        "phone",
        "address",
        "village_code",
    )
    hosts = master[rng.choice(master.height, relatives)]
    rel_days = rng.integers(0, 365 * 85, relatives)
    rel = (
        hosts.select(
            pl.lit(None, pl.String).alias("person_id"),
            (
                pl.col("surname")
                + pl.Series(rng.choice(GIVEN, relatives))
                + pl.Series(rng.choice(GIVEN, relatives))
            ).alias("name"),
            pl.Series(rng.choice(["男", "女"], relatives)).alias("gender"),
            pl.Series(np.datetime64("1930-01-01") + rel_days.astype("timedelta64[D]"))
            .cast(pl.Date)
            .alias("birth_date"),
            "village_code",
            "phone",
            "address",
            pl.Series(rng.integers(0, 1000, relatives)).alias("seq"),
        )
        .with_columns(
            _ids(pl.col("village_code").str.slice(0, 6), pl.col("birth_date"), pl.col("seq")).alias(
                "id_number"
            )
        )
        .select(strangers.columns)
    )
    people = pl.concat([base, strangers, rel])
    repeats = n - people.height
    if repeats > 0:
        people = pl.concat([people, people[rng.integers(0, people.height, repeats)]])
    people = people[rng.permutation(people.height)].with_row_index("e")
    m = people.height
    homophones, lookalikes, traditional = _tables()

    def pick(p: float) -> np.ndarray:
        return rng.random(m) < p

    names = people.get_column("name").to_list()
    for p, table in (
        (profile.name_homophone, homophones),
        (profile.name_lookalike, lookalikes),
        (profile.name_traditional, traditional),
    ):
        chosen = np.flatnonzero(pick(p))
        replaced = _substitute([names[i] for i in chosen], table, rng)
        for i, value in zip(chosen, replaced, strict=True):
            names[i] = value
    chosen = np.flatnonzero(pick(profile.name_pinyin))
    for i, value in zip(chosen, _pinyin([names[i] for i in chosen]), strict=True):
        names[i] = value

    ids = people.get_column("id_number").to_list()
    for i in np.flatnonzero(pick(profile.id_one_digit)):
        k = int(rng.integers(0, 17))
        ids[i] = ids[i][:k] + str((int(ids[i][k]) + 1 + int(rng.integers(0, 8))) % 10) + ids[i][k + 1 :]
    for i in np.flatnonzero(pick(profile.id_transposed)):
        k = int(rng.integers(6, 16))
        ids[i] = ids[i][:k] + ids[i][k + 1] + ids[i][k] + ids[i][k + 2 :]
    for i in np.flatnonzero(pick(profile.id_15)):
        if ids[i][6:8] == "19":
            ids[i] = ids[i][:6] + ids[i][8:17]
    id_missing = pick(profile.id_missing)

    dates = people.get_column("birth_date")
    frame = pl.DataFrame(
        {
            "d": dates,
            "swap": pick(profile.date_swapped),
            "one": pick(profile.date_one_part),
            "shift": rng.integers(1, 5, m),
        }
    )
    dates = frame.select(
        pl.when(pl.col("swap") & (pl.col("d").dt.day() <= 12))
        .then(pl.date(pl.col("d").dt.year(), pl.col("d").dt.day(), pl.col("d").dt.month()))
        .when(pl.col("one"))
        .then(pl.col("d").dt.offset_by(pl.format("{}y", pl.col("shift"))))
        .otherwise(pl.col("d"))
    ).to_series()
    moved_villages = villages[rng.integers(0, villages.height, m)]
    upper_short = moved_villages.get_column("upper")
    address = people.select(
        pl.when(pl.Series(pick(profile.address_moved)))
        .then(
            pl.Series(upper_short)
            + pl.Series(moved_villages.get_column("lower"))
            + pl.Series(rng.integers(1, 300, m)).cast(pl.String)
            + "号"
        )
        .otherwise(pl.col("address"))
    ).to_series()
    abbreviated = pick(profile.address_abbreviated)
    address = (
        pl.DataFrame({"a": address, "abbr": abbreviated})
        .select(
            pl.when(pl.col("abbr"))
            .then(pl.col("a").str.replace(r"^.+?省|^.+?自治区", "").str.replace(r"^.+?市", ""))
            .otherwise(pl.col("a"))
        )
        .to_series()
    )
    events = pl.DataFrame(
        {
            "event_id": [f"E{i:08d}" for i in range(m)],
            "name": names,
            "gender": people.get_column("gender"),
            "birth_date": _date_text(dates, rng),
            "id_number": ids,
            "phone": people.get_column("phone"),
            "address": address,
        }
    ).with_columns(
        pl.when(pl.Series(pick(profile.gender_missing)))
        .then(None)
        .otherwise(pl.col("gender"))
        .alias("gender"),
        pl.when(pl.Series(pick(profile.date_missing)))
        .then(None)
        .otherwise(pl.col("birth_date"))
        .alias("birth_date"),
        pl.when(pl.Series(id_missing)).then(None).otherwise(pl.col("id_number")).alias("id_number"),
        pl.when(pl.Series(pick(profile.phone_missing)))
        .then(None)
        .when(pl.Series(pick(profile.phone_changed)))
        .then(pl.Series(rng.integers(13_000_000_000, 19_999_999_999, m).astype(str)))
        .otherwise(pl.col("phone"))
        .alias("phone"),
        pl.when(pl.Series(pick(profile.address_missing)))
        .then(None)
        .otherwise(pl.col("address"))
        .alias("address"),
    )
    truth = pl.DataFrame(
        {"event_id": events.get_column("event_id"), "person_id": people.get_column("person_id")}
    )
    return events, truth


def generate(
    master_n: int, events_n: int, profile: str, seed: int = 7
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    rng = np.random.default_rng(seed)
    master, villages = make_master(master_n, rng)
    events, truth = make_events(master, villages, events_n, PROFILES[profile], rng)
    master_out = master.select("person_id", "name", "gender", "birth_date", "id_number", "phone", "address")
    return master_out, events, truth


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--master", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="easy")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    master, events, truth = generate(args.master, args.events, args.profile, args.seed)
    master.write_parquet(args.out / "master.parquet")
    events.write_parquet(args.out / "events.parquet")
    truth.write_parquet(args.out / "truth.parquet")
    unknown = truth.get_column("person_id").null_count()
    print(f"{args.out}: {master.height} master, {events.height} events, {unknown} not in master")


if __name__ == "__main__":
    main()
