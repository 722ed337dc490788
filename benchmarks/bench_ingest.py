"""Ingest benchmark: N service-hall rows (CSV, GBK) into the SQLite event store, then again.

    python benchmarks/bench_ingest.py [--rows 100000] [--repeat 3]

Prints the median wall time of a first ingest (everything stored) and of a repeated ingest
(everything a duplicate), with rows per second and peak memory (ru_maxrss) of the process.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import resource
import statistics
import tempfile
import time
from pathlib import Path

from govdb.demo import HALL_HEADER, write_csv
from govdb.ingest import ingest_file
from govdb.standards.ids import make_id
from govdb.store.engine import make_engine, migrate


def make_file(path: Path, rows: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    body = []
    for i in range(rows):
        birth = dt.date(1940, 1, 1) + dt.timedelta(days=rng.randrange(0, 30000))
        body.append(
            [
                f"SL{i:08d}",
                "张伟",
                "男",
                make_id("440605", birth, rng.randrange(1000)),
                f"{birth:%Y/%m/%d}",
                f"138{rng.randrange(10**8):08d}",
                f"南海区桂城街道南海大道{i % 300}号",
                "440605011001",
                "2026-11-23 09:00",
            ]
        )
    write_csv(path, HALL_HEADER, body, "gbk")


def once(path: Path, folder: Path) -> tuple[float, float]:
    engine = make_engine(f"sqlite:///{folder / 'events.sqlite'}")
    migrate(engine, "events")
    start = time.perf_counter()
    first = ingest_file(engine, path, source="bench", key_column="受理编号", occurred_at_column="办理时间")
    mid = time.perf_counter()
    second = ingest_file(engine, path, source="bench", key_column="受理编号", occurred_at_column="办理时间")
    end = time.perf_counter()
    assert first.stored == first.read and second.stored == 0 and second.duplicate == second.read
    engine.dispose()
    return mid - start, end - mid


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "hall.csv"
        make_file(data, args.rows)
        runs = []
        for i in range(args.repeat):
            folder = Path(tmp) / f"run{i}"
            folder.mkdir()
            runs.append(once(data, folder))
    first = statistics.median(r[0] for r in runs)
    again = statistics.median(r[1] for r in runs)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"rows={args.rows} repeat={args.repeat}")
    print(f"first ingest  median {first:.2f} s  ({args.rows / first:,.0f} rows/s)")
    print(f"repeat ingest median {again:.2f} s  ({args.rows / again:,.0f} rows/s, all duplicates)")
    print(f"peak memory {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
