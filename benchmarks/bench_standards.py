"""Standardize + validate benchmark: N event rows (name, ID, phone, birth date, address).

    python benchmarks/bench_standards.py [--rows 1000000] [--repeat 3]

Rows are generated from the shipped division table (villages all over the country, or of one
county with --county, written in full, without the province, or with short forms), with a share
of broken IDs, phones and dates.
Prints the median wall time of `validate_frame` (standardize every column, pandera required-field
checks, failures as a frame), the median rate of address parsing alone on the same addresses,
and the process's peak memory.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import resource
import statistics
import time

import polars as pl

from govdb.standards.addresses import parse_addresses
from govdb.standards.divisions import division_table
from govdb.standards.gazetteer import gazetteer
from govdb.standards.ids import make_id
from govdb.validate import validate_frame

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗梁宋郑谢韩唐冯于董萧程曹袁邓许傅沈曾彭吕苏卢蒋蔡贾丁魏薛叶"
    "阎余潘杜戴夏钟汪田任姜范方石姚谭廖邹熊金陆郝孔白崔康毛邱秦江史顾侯邵孟龙万段雷钱汤尹黎易常武乔贺赖龚文"
)
GIVEN = (
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉梅建国志红文斌德辉佳怡子涵浩然宇轩欣怡梓萱俊杰思远"
)
ROADS = ["人民路", "解放路", "中山路", "建设路", "和平路", "新华路", "胜利路", "文化路", "长江路", "黄河路"]


def make_rows(n: int, seed: int = 1, county: str | None = None) -> pl.DataFrame:
    rng = random.Random(seed)
    table = division_table()
    names = dict(table.filter(pl.col("level") <= 4).select("code", "name").iter_rows())
    villages_table = table.filter(pl.col("level") == 5)
    if county:
        villages_table = villages_table.filter(pl.col("code").str.starts_with(county))
    else:
        villages_table = villages_table.sample(n=50_000, seed=seed)
    villages = villages_table.select("code", "name").rows()
    rows = []
    for _ in range(n):
        code, village = villages[rng.randrange(len(villages))]
        parts = [
            names.get(code[:2] + "0000", ""),
            names.get(code[:4] + "00", ""),
            names.get(code[:6], ""),
            names.get(code[:9], ""),
            village.removesuffix("居委会").removesuffix("委会"),
        ]
        style = rng.random()
        if style < 0.3:
            parts = parts[1:]
        elif style < 0.5:
            parts = [p.removesuffix("省").removesuffix("市") for p in parts[:2]] + parts[2:]
        address = "".join(parts) + f"{rng.choice(ROADS)}{rng.randrange(1, 400)}号"
        birth = dt.date(1930, 1, 1) + dt.timedelta(days=rng.randrange(0, 33000))
        id_number = make_id(code[:6], birth, rng.randrange(1000))
        if rng.random() < 0.03:
            id_number = id_number[:-1] + ("0" if id_number[-1] != "0" else "1")
        date_text = rng.choice(
            [f"{birth:%Y-%m-%d}", f"{birth:%Y/%-m/%-d}", f"{birth:%Y%m%d}", f"{birth:%Y年%-m月%-d日}"]
        )
        phone = f"1{rng.choice('3456789')}{rng.randrange(10**9):09d}"
        if rng.random() < 0.2:
            phone = f"+86 {phone[:3]}-{phone[3:7]}-{phone[7:]}"
        rows.append(
            (
                rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2)))),
                id_number,
                phone,
                date_text,
                address,
            )
        )
    return pl.DataFrame(rows, schema=["name", "id_number", "phone", "birth_date", "address"], orient="row")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--county", help="only addresses in this county (a district deployment), e.g. 440605")
    args = parser.parse_args()
    start = time.perf_counter()
    frame = make_rows(args.rows, county=args.county)
    print(
        f"generated {frame.height:,} rows in {time.perf_counter() - start:.1f} s "
        f"({frame.get_column('address').n_unique():,} distinct addresses, "
        f"{frame.get_column('name').n_unique():,} distinct names)"
    )
    start = time.perf_counter()
    gazetteer()
    print(f"gazetteer built once per process: {time.perf_counter() - start:.2f} s")
    timings, address_rates = [], []
    for _ in range(args.repeat):
        start = time.perf_counter()
        _, report = validate_frame(
            frame,
            required=["name", "id_number", "address"],
            today=dt.date(2026, 11, 23),
            address_hint=args.county,
        )
        timings.append(time.perf_counter() - start)
        start = time.perf_counter()
        parsed = parse_addresses(frame.get_column("address"), hint=args.county)
        address_rates.append(frame.height / (time.perf_counter() - start))
    status = parsed.get_column("address_status").value_counts().sort("address_status").rows()
    levels = parsed.get_column("division_level").value_counts().sort("division_level").rows()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"standardize + validate {args.rows:,} rows: median {statistics.median(timings):.2f} s "
        f"(runs: {', '.join(f'{t:.2f}' for t in timings)})"
    )
    print(f"failures: {report.failures.height:,} in {report.error_rows:,} rows with errors")
    print(f"address parsing alone: median {statistics.median(address_rates):,.0f} addresses/s")
    print(f"address status: {status}; levels: {levels}")
    print(f"peak memory: {peak_mb:,.0f} MB")


if __name__ == "__main__":
    main()
