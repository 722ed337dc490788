"""Ingest benchmark: N service-hall rows (CSV, GBK) into the SQLite event store, then again.

    python benchmarks/bench_ingest.py [--rows 100000] [--repeat 3] [--baseline DIR]

Two files of the same rows: `plain` as hall systems export them (no quotes), `quoted` with every
cell quoted (the csv module's slower path, which also finds quotes that never close). Each repeat
ingests each file into a fresh store in a fresh process, then ingests it again (every row a
duplicate). With `--baseline DIR` (another govdb checkout, e.g. a `git worktree` of an older commit)
every repeat runs the baseline right after the current code on the same files, so the ratio of the
two is measured side by side. Prints medians, rows per second, CPU seconds of the first ingest
(user + system, all threads: less sensitive than wall time to other work on a shared machine) and
peak memory (ru_maxrss) per run.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
HALL_HEADER = ["受理编号", "姓名", "性别", "身份证号", "出生日期", "联系电话", "地址", "村居代码", "办理时间"]


def make_file(path: Path, rows: int, *, quoted: bool = False, seed: int = 1) -> None:
    from govdb.standards.ids import make_id

    rng = random.Random(seed)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n", quoting=csv.QUOTE_ALL if quoted else csv.QUOTE_MINIMAL)
    writer.writerow(HALL_HEADER)
    for i in range(rows):
        birth = dt.date(1940, 1, 1) + dt.timedelta(days=rng.randrange(0, 30000))
        writer.writerow(
            [
                f"SL{i:08d}",
                "张伟",
                "男",
                make_id("440605", birth, rng.randrange(1000)),
                f"{birth:%Y/%m/%d}",
                f"138{rng.randrange(10**8):08d}",
                f"南海区桂城街道南海大道{i % 300}号",
                "440605011001",
                f"2026-11-{1 + i % 28:02d} {8 + i % 10:02d}:{i % 60:02d}",
            ]
        )
    path.write_bytes(buffer.getvalue().encode("gbk"))


def worker(path: Path, folder: Path) -> None:
    """One measured run in this process: first ingest, then the same file again."""
    import resource
    import time

    import govdb
    from govdb.ingest import ingest_file
    from govdb.store.engine import make_engine, migrate

    expected = Path(os.environ["PYTHONPATH"]).resolve()
    assert Path(govdb.__file__).resolve().is_relative_to(expected), (
        f"{govdb.__file__} is not under {expected}"
    )

    engine = make_engine(f"sqlite:///{folder / 'events.sqlite'}")
    migrate(engine, "events")
    options = {"source": "bench", "key_column": "受理编号", "occurred_at_column": "办理时间"}
    start, cpu = time.perf_counter(), time.process_time()
    first = ingest_file(engine, path, **options)
    mid, cpu = time.perf_counter(), time.process_time() - cpu
    second = ingest_file(engine, path, **options)
    end = time.perf_counter()
    assert first.stored == first.read and second.stored == 0 and second.duplicate == second.read
    engine.dispose()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"first": mid - start, "first_cpu": cpu, "again": end - mid, "peak_mb": peak}))


def run(checkout: Path, path: Path, folder: Path) -> dict[str, float]:
    folder.mkdir()
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    out = subprocess.run(
        [sys.executable, str(HERE / "bench_ingest.py"), "--worker", str(path), str(folder)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="another govdb checkout to measure side by side")
    parser.add_argument("--worker", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    checkouts = {"current": HERE.parent}
    if args.baseline:
        checkouts["baseline"] = args.baseline.resolve()
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for kind in ("plain", "quoted"):
            files[kind] = Path(tmp) / f"hall-{kind}.csv"
            make_file(files[kind], args.rows, quoted=kind == "quoted")
        for i in range(args.repeat):
            for kind, path in files.items():
                for name, checkout in checkouts.items():
                    runs = results.setdefault((kind, name), [])
                    runs.append(run(checkout, path, Path(tmp) / f"{kind}-{name}-{i}"))
    print(f"rows={args.rows} repeat={args.repeat}")
    for (kind, name), runs in results.items():
        first = statistics.median(r["first"] for r in runs)
        cpu = statistics.median(r.get("first_cpu", float("nan")) for r in runs)
        again = statistics.median(r["again"] for r in runs)
        peak = max(r["peak_mb"] for r in runs)
        print(
            f"{kind:6} {name:8} first {first:6.2f} s ({args.rows / first:8,.0f} rows/s, cpu {cpu:5.2f} s)  "
            f"again {again:5.2f} s ({args.rows / again:8,.0f} rows/s)  peak {peak:.0f} MB"
        )
    if args.baseline:
        for kind in files:
            ratios = [
                c["first"] / b["first"]
                for c, b in zip(results[(kind, "current")], results[(kind, "baseline")], strict=True)
            ]
            shown = ", ".join(f"{r:.2f}" for r in ratios)
            print(f"{kind:6} current/baseline first-ingest time per repeat: {shown}")
            cpu_ratios = [
                c["first_cpu"] / b["first_cpu"]
                for c, b in zip(results[(kind, "current")], results[(kind, "baseline")], strict=True)
            ]
            shown = ", ".join(f"{r:.2f}" for r in cpu_ratios)
            print(f"{kind:6} current/baseline first-ingest CPU time per repeat: {shown}")


if __name__ == "__main__":
    main()
