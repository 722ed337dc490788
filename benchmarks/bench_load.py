"""`GovDB.load_people` of a county register into an empty master store, old code beside new.

The register (countygen's people) is made once and kept as parquet in /tmp. Each run is a fresh
process with a fresh store, so a run's peak RSS is its own; with `--baseline DIR` the runs
alternate between that tree's code and this one's (PYTHONPATH switched), so both meet the same
load on the machine. Each run prints wall and CPU seconds, peak RSS and, unless `--no-digest`, a
digest of every master table (person ids mapped to ID numbers, load ids and times masked,
surrogate integer keys left out) and of the schema, so two commits that store the same thing
print the same digest.

    python benchmarks/bench_load.py --people 300000 --baseline /work/wt-load-base --pairs 2
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TREE = HERE.parent
COUNTY = "440605"
YEAR = 2026
PERSON_COLUMNS = ("person_id", "entity_id", "subject_id")  # columns that hold a person's id
MASKED = ("load_id", "bulk_load_id", "cause_id", "hash", "prev_hash", "mac", "key_id", "rules_dir")  # per run


def register_path(people: int, seed: int) -> Path:
    return Path(tempfile.gettempdir()) / f"govdb-register-{people}-{seed}.parquet"


def make_register(people: int, seed: int) -> Path:
    """The register as countygen makes it for bench_county, written once."""
    path = register_path(people, seed)
    if not path.exists():
        sys.path.insert(0, str(HERE))
        import countygen

        countygen.make_people(people, seed=seed, year=YEAR).write_parquet(path)
    return path


# --- one run, in its own process ------------------------------------------------------------------


def child(args: argparse.Namespace) -> None:
    import polars as pl

    from govdb import GovDB

    register = pl.read_parquet(args.register)
    with tempfile.TemporaryDirectory(dir=args.tmp) as home:
        if args.pg:
            db, drop = _pg_store(args.pg)
        else:
            db, drop = GovDB.open(home), None
        try:
            db.serve_district(COUNTY)
            watch = _PeakWatch() if args.where else None
            usage0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            db.load_people(register, source="public_security")
            wall = time.perf_counter() - wall0
            if watch is not None:
                print(watch.stop(), file=sys.stderr)
            usage = resource.getrusage(resource.RUSAGE_SELF)
            out: dict[str, Any] = {
                "wall": round(wall, 2),
                "cpu": round(usage.ru_utime + usage.ru_stime - usage0.ru_utime - usage0.ru_stime, 2),
                "peak_mb": round(usage.ru_maxrss / 1024),
            }
            if args.digest:
                with db.master.connect() as conn:
                    out["digest"] = digest(conn)
            print(json.dumps(out), flush=True)
        finally:
            db.close()
            if drop is not None:
                drop()


class _PeakWatch:
    """Samples the process's RSS every 20 ms and keeps the threads' stacks at the highest."""

    def __init__(self) -> None:
        import threading

        self.peak, self.where = 0, ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import threading
        import traceback

        page = os.sysconf("SC_PAGE_SIZE")
        while not self._stop.wait(0.02):
            with open("/proc/self/statm") as f:
                rss = int(f.read().split()[1]) * page
            if rss > self.peak:
                stacks = [
                    "".join(traceback.format_stack(frame)[-5:])
                    for ident, frame in sys._current_frames().items()
                    if ident != threading.get_ident()
                ]
                self.peak, self.where = rss, "\n".join(stacks)

    def stop(self) -> str:
        self._stop.set()
        self._thread.join()
        return f"peak RSS {self.peak / 2**20:.0f} MB in:\n{self.where}"


def _pg_store(url: str) -> tuple[Any, Any]:
    """Two fresh schemas of the server's database, dropped after the run."""
    import uuid

    from sqlalchemy import create_engine, text

    from govdb import GovDB

    engine = create_engine(url)
    names = [f"bench_{uuid.uuid4().hex[:10]}_{kind}" for kind in ("master", "events")]
    with engine.begin() as conn:
        for name in names:
            conn.execute(text(f'CREATE SCHEMA "{name}"'))
    sep = "&" if "?" in url else "?"
    master_url, events_url = (f"{url}{sep}options=-csearch_path%3D{name}" for name in names)
    db = GovDB.open(master_url=master_url, events_url=events_url, audit_key="benchmark-audit-key")

    def drop() -> None:
        with engine.begin() as conn:
            for name in names:
                conn.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
        engine.dispose()

    return db, drop


def digest(conn: Any) -> dict[str, str]:
    """sha256 of every master table's rows (sorted; person ids as ID numbers, load ids and times
    masked, integer surrogate keys left out but counted) and of the schema's definitions."""
    from sqlalchemy import DateTime, Integer, inspect

    from govdb.store.master import MasterModel

    pg = conn.dialect.name == "postgresql"
    out: dict[str, str] = {}
    ids = "(SELECT p.id_number FROM person p WHERE p.person_id = {c})"
    for table in MasterModel.metadata.sorted_tables:
        keys = [c.name for c in table.primary_key.columns]
        surrogate = [
            c.name for c in table.columns if c.name in keys and isinstance(c.type, Integer) and len(keys) == 1
        ]
        exprs = []
        for column in table.columns:
            name, quoted = column.name, f't."{column.name}"'
            if name in surrogate:
                continue
            if isinstance(getattr(column.type, "impl", column.type), DateTime):
                expr = f"CASE WHEN {quoted} IS NULL THEN NULL ELSE 'T' END"
            elif name in MASKED:
                expr = f"CASE WHEN {quoted} IS NULL THEN NULL ELSE 'L' END"
            elif name in PERSON_COLUMNS:
                expr = f"coalesce({ids.format(c=quoted)}, {quoted})"
            elif name == "features":
                text_of = f"CAST({quoted} AS TEXT)" if pg else quoted
                expr = f"replace({text_of}, t.person_id, {ids.format(c='t.person_id')})"
            else:
                expr = f"CAST({quoted} AS TEXT)"
            exprs.append(expr)
        order = ", ".join(str(i + 1) for i in range(len(exprs)))
        statement = f'SELECT {", ".join(exprs)} FROM "{table.name}" t ORDER BY {order}'
        h, rows = hashlib.sha256(), 0
        cursor = conn.connection.driver_connection.cursor()
        cursor.execute(statement)
        while batch := cursor.fetchmany(100_000):
            rows += len(batch)
            h.update(repr(batch).encode())
        for name in surrogate:  # which values, not which row holds which
            cursor.execute(f'SELECT count("{name}"), min("{name}"), max("{name}") FROM "{table.name}"')
            h.update(repr(cursor.fetchall()).encode())
        cursor.close()
        out[table.name] = f"{rows}:{h.hexdigest()[:16]}"
    schema = inspect(conn)
    definitions = []
    for name in sorted(schema.get_table_names()):
        indexes = sorted(
            (ix["name"] or "", ix["column_names"], ix["unique"]) for ix in schema.get_indexes(name)
        )
        definitions.append((name, [c["name"] for c in schema.get_columns(name)], indexes))
    out["schema"] = hashlib.sha256(repr(definitions).encode()).hexdigest()[:16]
    return out


# --- the runs, alternating ---------------------------------------------------------------------


def run_one(tree: Path, args: argparse.Namespace, register: Path) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "--register", str(register)]
    command += ["--pg", args.pg] if args.pg else []
    command += [] if args.digest else ["--no-digest"]
    command += ["--tmp", args.tmp] if args.tmp else []
    env = {**os.environ, "PYTHONPATH": str(tree)}
    started = time.strftime("%H:%M:%S", time.gmtime())
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"run in {tree} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["at"], result["load"] = started, os.getloadavg()[0]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--people", type=int, default=300_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--baseline", type=Path, help="a tree of the old code, run alternately")
    parser.add_argument("--pairs", type=int, default=1, help="runs of each tree")
    parser.add_argument("--pg", help="a PostgreSQL URL (fresh schemas per run) instead of SQLite")
    parser.add_argument("--tmp", help="folder of the SQLite stores (default: the system's)")
    parser.add_argument("--no-digest", dest="digest", action="store_false")
    parser.add_argument("--where", action="store_true", help="print where the peak RSS was (stderr)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--register", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    register = make_register(args.people, args.seed)
    trees = [("new", TREE)] + ([("old", args.baseline.resolve())] if args.baseline else [])
    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in trees}
    for i in range(args.pairs):
        for name, tree in trees if i % 2 == 0 else trees[::-1]:
            result = run_one(tree, args, register)
            results[name].append(result)
            print(name, json.dumps(result), flush=True)
    for name, runs in results.items():
        walls, cpus, peaks = ([r[k] for r in runs] for k in ("wall", "cpu", "peak_mb"))
        print(
            f"{name}: median wall {statistics.median(walls):.2f} s, CPU {statistics.median(cpus):.2f} s, "
            f"peak {statistics.median(peaks):.0f} MB over {len(runs)} run(s)"
        )
    if args.baseline:
        new, old = (statistics.median(r["wall"] for r in results[k]) for k in ("new", "old"))
        cpu_new, cpu_old = (statistics.median(r["cpu"] for r in results[k]) for k in ("new", "old"))
        print(f"ratio new/old: wall {new / old:.2f}, CPU {cpu_new / cpu_old:.2f}")
        if args.digest:
            same = {json.dumps(r["digest"], sort_keys=True) for runs in results.values() for r in runs}
            print("digests: the same" if len(same) == 1 else f"digests DIFFER: {len(same)} distinct")


if __name__ == "__main__":
    main()
