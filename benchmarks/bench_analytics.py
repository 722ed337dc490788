"""Analytics speed: aggregates over 10^6..10^7 hotline tickets on this machine.

Two paths are measured, side by side, each as the median of --repeat runs:

1. Parquet export (the fast path for a year of a large city): facts exported once from the event
   store (`Analytics.export`: the per-ticket preparation, i.e. decoding and the repeat flag, done
   once), then each query reads the Parquet file and aggregates in polars. Measured at every
   --sizes (default 1M and 10M tickets); the facts are generated column-wise
   (hotlinegen.big_facts) because ingesting 10M events through `process` takes far longer than
   the aggregation being measured.
2. SQL read from the event store (the default path of `govdb analytics`): --db-rows events written
   straight into a fresh event table (status unlinked, standardized JSON as `process` leaves it),
   then `Analytics.kpis` end to end: a filtered SELECT on service and time (pushed down to SQL),
   JSON decoding and time parsing in polars, aggregation. SQLite always; PostgreSQL when
   GOVDB_TEST_PG_URL is set.

Prints one JSON line per measurement and appends them to benchmarks/analytics_results.jsonl.
Usage: python benchmarks/bench_analytics.py [--sizes 1000000,10000000] [--db-rows 1000000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hotlinegen

from govdb.analytics import Analytics
from govdb.rulebook import load_rulebook

RULES = load_rulebook(Path(__file__).resolve().parents[1] / "rules")
OUT = Path(__file__).resolve().parent / "analytics_results.jsonl"


CPU: list[float] = []  # CPU seconds (all threads) of the last median_time, beside the wall time


def median_time(run: Callable[[], object], repeat: int) -> tuple[float, object]:
    """Median wall seconds of `repeat` runs; the median CPU seconds go to CPU[-1] (on a shared
    machine the wall time also measures the neighbours, the CPU time does not)."""
    times, cpu, result = [], [], None
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = run()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    CPU[:] = [statistics.median(cpu)]
    return statistics.median(times), result


def load() -> float:
    return round(os.getloadavg()[0], 1)


def emit(record: dict) -> None:
    if "seconds" in record and CPU:
        record["cpu_seconds"] = round(CPU.pop(), 3)
    record["load1"] = load()
    record["at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    line = json.dumps(record, ensure_ascii=False)
    print(line, flush=True)
    with OUT.open("a", encoding="utf-8") as f:
        f.write(line + "\n")


def parquet_path(n: int, folder: Path, repeat: int) -> None:
    rules = RULES.analytics
    assert rules is not None
    start = time.perf_counter()
    facts = hotlinegen.big_facts(n)
    generated = time.perf_counter() - start
    emit({"path": "parquet", "rows": n, "step": "generate", "seconds": round(generated, 3)})
    # as Analytics.export prepares an export: the repeat flag and the labels recoded by month, once
    prep, facts = median_time(lambda raw=facts: Analytics(None, RULES).prepared(raw), 1)
    path = folder / f"facts_{n}.parquet"
    facts.write_parquet(path, compression="zstd")  # type: ignore[union-attr]
    del facts
    emit(
        {
            "path": "parquet",
            "rows": n,
            "step": "prepare (repeat flag, labels by month: once per export)",
            "seconds": round(prep, 3),
            "file_mb": round(path.stat().st_size / 1e6, 1),
        }
    )
    an = Analytics(None, RULES, facts_file=path)  # each query scans the file: reads only what it needs
    queries: dict[str, Callable[[], pl.DataFrame]] = {
        "kpis by street x month": lambda: an.kpis(by=["street"], period="month"),
        "kpis by village x week": lambda: an.kpis(by=["village"], period="week"),
        "kpis by department x category x month": lambda: an.kpis(
            by=["department", "category"], period="month"
        ),
        "alerts (capacity + history street x category x day)": lambda: an.alerts(),
    }
    for name, query in queries.items():
        seconds, out = median_time(query, repeat)
        emit({"path": "parquet", "rows": n, "step": name, "seconds": round(seconds, 3), "cells": out.height})  # type: ignore[union-attr]


def _event_rows(n: int) -> pl.DataFrame:
    """n events shaped as `process` leaves hotline tickets (standardized JSON of text fields)."""
    facts = hotlinegen.big_facts(n, seed=2)
    fmt = "%Y-%m-%d %H:%M:%S"
    std = facts.select(
        pl.struct(
            pl.col("category"),
            pl.col("department").alias("handler"),
            pl.col("received").dt.strftime(fmt).alias("called_at"),
            pl.col("first_response").dt.strftime(fmt).alias("first_response_at"),
            pl.col("closed").dt.strftime(fmt).alias("closed_at"),
            pl.when(pl.col("resolved")).then(pl.lit("是")).otherwise(pl.lit("否")).alias("resolved"),
            pl.col("satisfaction"),
            ("139" + pl.col("caller").cast(pl.String).str.zfill(8)).alias("phone"),
            pl.col("division_code"),
        )
        .struct.json_encode()
        .alias("standardized")
    ).get_column("standardized")
    return pl.DataFrame(
        {
            "source_key": pl.int_range(n, eager=True).cast(pl.String),
            "content_sha256": pl.int_range(n, eager=True).cast(pl.String),
            "raw": std,
            "standardized": std,
            "occurred_at": facts.get_column("received")
            .dt.replace_time_zone("Asia/Shanghai")
            .dt.convert_time_zone("UTC"),
            "division_code": facts.get_column("division_code"),
        }
    )


def sql_path(url: str | None, n: int, folder: Path, repeat: int, label: str) -> None:
    from govdb.store.bulk import insert_frame
    from govdb.store.engine import make_engine, migrate
    from govdb.store.events import Event

    if url is None:
        url = f"sqlite:///{folder / 'bench.events.sqlite'}"
    engine = make_engine(url)
    migrate(engine, "events")
    rows = _event_rows(n)
    start = time.perf_counter()
    with engine.begin() as conn:
        for s in range(0, n, 100_000):
            insert_frame(
                conn,
                Event.__table__,
                rows.slice(s, 100_000),
                {  # type: ignore[attr-defined]
                    "source_system": "bench",
                    "version": 1,
                    "batch_id": str(uuid.uuid4()),
                    "quality_flags": "[]",
                    "status": "unlinked",
                    "service_code": "hotline.12345",
                    "received_at": dt.datetime.now(dt.UTC),
                },
            )
    emit(
        {
            "path": label,
            "rows": n,
            "step": "write events (setup)",
            "seconds": round(time.perf_counter() - start, 1),
        }
    )
    an = Analytics(engine, RULES)
    seconds, facts = median_time(an.facts, repeat)
    emit(
        {
            "path": label,
            "rows": n,
            "step": "read facts (SQL filter + JSON decode)",
            "seconds": round(seconds, 3),
            "tickets": facts.height,
        }
    )  # type: ignore[union-attr]
    seconds, out = median_time(lambda: an.kpis(by=["street"], period="month"), repeat)
    emit(
        {
            "path": label,
            "rows": n,
            "step": "kpis by street x month (end to end)",
            "seconds": round(seconds, 3),
            "cells": out.height,
        }
    )  # type: ignore[union-attr]
    month = (dt.date(2025, 3, 1), dt.date(2025, 3, 31))
    seconds, out = median_time(
        lambda: an.kpis(by=["street"], period="day", start=month[0], end=month[1]), repeat
    )
    emit(
        {
            "path": label,
            "rows": n,
            "step": "kpis one month by street x day (time filter in SQL)",
            "seconds": round(seconds, 3),
            "cells": out.height,
        }
    )  # type: ignore[union-attr]
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--db-rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    emit({"machine": f"{os.cpu_count()} cores", "polars": pl.__version__, "threads": pl.thread_pool_size()})
    with tempfile.TemporaryDirectory(prefix="govdb-bench-an-") as tmp:
        folder = Path(tmp)
        for n in [int(s) for s in args.sizes.split(",") if s]:
            parquet_path(n, folder, args.repeat)
        if args.db_rows:
            sql_path(None, args.db_rows, folder, args.repeat, "sqlite")
            if pg := os.environ.get("GOVDB_TEST_PG_URL"):
                from sqlalchemy import create_engine, text

                schema = f"bench_{uuid.uuid4().hex[:8]}"
                admin = create_engine(pg)
                with admin.begin() as conn:
                    conn.execute(text(f'CREATE SCHEMA "{schema}"'))
                try:
                    sep = "&" if "?" in pg else "?"
                    sql_path(
                        f"{pg}{sep}options=-csearch_path%3D{schema}",
                        args.db_rows,
                        folder,
                        args.repeat,
                        "postgresql",
                    )
                finally:
                    with admin.begin() as conn:
                        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
                    admin.dispose()


if __name__ == "__main__":
    main()
