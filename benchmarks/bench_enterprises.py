"""Enterprise linkage against a master store of N enterprises in SQLite: a batch of events (as
`govdb process` links them) and one record at a time (`link_one` for enterprises).

    python benchmarks/bench_enterprises.py --enterprises 20000 --events 2000 --lookups 200

The master rows are written straight into a scratch store (a benchmark, not a bulk load). Half
the events carry their valid credit code, half only the name as people write it (a shorter form,
the place prefix dropped), the legal representative and the address. Prints the figures as JSON.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import polars as pl
from sqlalchemy import insert

from govdb.link.enterprises import link_enterprises, link_one_enterprise
from govdb.rulebook import load_rulebook
from govdb.standards.uscc import make_uscc
from govdb.store.engine import StoreConfig, make_engine, migrate
from govdb.store.master import Enterprise

TRADES = ["五金", "餐饮", "纺织", "物流", "电子", "家具", "陶瓷", "建材", "服装", "食品"]
WORDS = "华兴盛达隆顺宏远泰丰鑫源恒通广安德信佳新金银美嘉瑞祥富康"
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
ROADS = ["桂澜路", "南海大道", "海八路", "佛平路", "南桂路", "灯湖东路", "千灯湖路", "狮山大道"]


def generate(n: int, seed: int) -> pl.DataFrame:
    rng = random.Random(seed)
    rows, names = [], set()
    while len(rows) < n:
        core = "".join(rng.choice(WORDS) for _ in range(2)) + rng.choice(TRADES)
        name = f"佛山市南海区{core}有限公司"
        if name in names:
            continue
        names.add(name)
        rows.append(
            {
                "enterprise_id": f"E{len(rows):015d}",
                "uscc": make_uscc("440605", len(rows) + 1),
                "name": name,
                "legal_representative": rng.choice(SURNAMES) + rng.choice(WORDS),
                "address": f"广东省佛山市南海区桂城街道{rng.choice(ROADS)}{rng.randrange(1, 300)}号",
                "phone": f"139{rng.randrange(10**7, 10**8)}",
                "division_code": "440605011005",
            }
        )
    return pl.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--enterprises", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=2_000)
    parser.add_argument("--lookups", type=int, default=200)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    rules = load_rulebook(Path(__file__).resolve().parents[1] / "rules").matching["enterprise"]
    master_rows = generate(args.enterprises, args.seed)
    with tempfile.TemporaryDirectory() as folder:
        config = StoreConfig.resolve(Path(folder))
        master = make_engine(config.master_url)
        migrate(master, "master")
        now = dt.datetime.now(dt.UTC)
        with master.begin() as conn:
            conn.execute(
                insert(Enterprise.__table__),  # type: ignore[attr-defined]
                [{**r, "created_at": now, "updated_at": now} for r in master_rows.to_dicts()],
            )
        picked = master_rows.sample(n=args.events, seed=args.seed)
        events = picked.with_columns(
            pl.int_range(pl.len()).cast(pl.String).alias("event_id"),
            pl.when(pl.int_range(pl.len()) % 2 == 0).then(pl.col("uscc")).alias("uscc"),
            pl.when(pl.int_range(pl.len()) % 2 == 0)
            .then(pl.col("name"))
            .otherwise(
                pl.col("name").str.replace("佛山市南海区", "").str.replace("有限公司", "有限责任公司")
            ),
        ).select("event_id", "uscc", "name", "legal_representative", "address", "phone")
        started = time.perf_counter()
        links = link_enterprises(master, events, rules, address_hint="440605")
        batch_seconds = time.perf_counter() - started
        right = sum(
            1
            for link, eid in zip(links, picked.get_column("enterprise_id"), strict=True)
            if link.person_id == eid
        )
        latencies = []
        for record in events.head(args.lookups).to_dicts():
            started = time.perf_counter()
            link_one_enterprise(master, record, rules, address_hint="440605")
            latencies.append((time.perf_counter() - started) * 1000)
        latencies.sort()
        print(
            json.dumps(
                {
                    "enterprises": args.enterprises,
                    "events": args.events,
                    "batch_seconds": round(batch_seconds, 2),
                    "batch_correct": right / args.events,
                    "link_one_ms_p50": round(statistics.median(latencies), 1),
                    "link_one_ms_p99": round(latencies[int(0.99 * (len(latencies) - 1))], 1),
                }
            )
        )


if __name__ == "__main__":
    main()
