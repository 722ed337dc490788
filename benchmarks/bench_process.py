"""`process` (or `promote`) alone, side by side: the current checkout against another on copies of
one county.

    python benchmarks/bench_process.py --people 200000 --events 200000 [--repeat 3] [--baseline DIR]
                                       [--step promote] [--snapshot DIR]
                                       [--pg URL [--stores sqlite,postgresql]]

For `process` the county (countygen's register, loaded, and its hall and certificate files,
ingested) is made once by `bench_county.py --stop-after ingest_cdpf` in `--snapshot` (kept for
later runs); for `promote`, by `bench_county.py --decide-all --stop-after decide_rest` (every task
decided, so promote sees every proposal approved). Each run copies it, opens the copy in a fresh
process and times the step alone; with `--baseline DIR` (another govdb checkout, e.g. a `git
worktree` of an older commit) the two alternate, so their ratio is measured side by side on a
shared machine. Every run prints a digest of what the step stored, so two commits that store the
same thing print the same digest: for `process` events, proposals, tasks, decisions and links (JSON
compared decoded); for `promote` master's people, lineage, conflicts and credentials keyed by what
does not depend on the ids a run draws (ID numbers, credential numbers), and the proposals' states.

With `--pg URL` (a PostgreSQL server, e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test) the
county is also made on PostgreSQL, once, as a database of its own (`govdb_snap_<step>_<people>_
<events>`, kept for later runs, two schemas `snap_master` and `snap_events`); each run clones it
(`CREATE DATABASE ... TEMPLATE`, files copied) and drops the clone afterwards. `--stores` says
which stores each repeat runs, in turn: `sqlite,postgresql` measures the two side by side. Digests
compare runs on one store; the two stores' digests differ where their drivers return other types.
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TODAY = "2026-11-30"
OUTCOME = [
    "SELECT event_id, status, division_code, standardized, quality_flags FROM event ORDER BY event_id",
    "SELECT event_id, change, entity_kind, entity_id, payload, division_code, county_code, source,"
    " department, state, round FROM proposal ORDER BY event_id, change",
    "SELECT p.event_id, t.step, t.level, t.department, t.unit_id, t.division_code, t.state FROM task t"
    " JOIN proposal p USING (proposal_id) ORDER BY p.event_id, t.step",
    "SELECT p.event_id, t.step, d.outcome, d.actor_id FROM decision d JOIN task t USING (task_id)"
    " JOIN proposal p USING (proposal_id) ORDER BY p.event_id, t.step",
    "SELECT event_id, entity_kind, entity_id, score, decision, explanation FROM link ORDER BY event_id",
]
# Promote draws new people's and credentials' ids at random: rows are keyed by ID and credential
# numbers instead (a lineage row by its entity's number).
PROMOTED_MASTER = [
    "SELECT id_number, name, gender, birth_date, phone, address, division_code, place_id IS NULL"
    " FROM person ORDER BY id_number",
    "SELECT coalesce(p.id_number, c.kind || ':' || c.number), h.field, h.value, h.valid_from, h.valid_to,"
    " h.source, h.closed_at IS NULL, CAST(h.event_ids AS TEXT), h.checks FROM fieldhistory h"
    " LEFT JOIN person p ON h.entity_kind = 'person' AND p.person_id = h.entity_id"
    " LEFT JOIN credential c ON h.entity_kind = 'credential' AND c.credential_id = h.entity_id"
    " WHERE h.bulk_load_id IS NULL ORDER BY 1, 2, 4, 5, 3, 6, 8",
    "SELECT c.kind, c.number, p.id_number, c.attributes, c.issuer, c.valid_from FROM credential c"
    " LEFT JOIN person p USING (person_id) ORDER BY 1, 2",
    "SELECT f.proposal_id, f.field, f.master_value, f.proposed_value, f.proposed_source, f.owner_department"
    " FROM conflict f ORDER BY 1, 2",
    "SELECT count(*), count(DISTINCT person_id) FROM linkkey",
    "SELECT proposal_id, entity_kind, keys_refreshed FROM promotion ORDER BY 1",
]
PROMOTED_EVENTS = ["SELECT proposal_id, event_id, state FROM proposal ORDER BY proposal_id"]


PG_SCHEMAS = {"master": "snap_master", "events": "snap_events"}
SERVER_SETTINGS = "('shared_buffers', 'max_wal_size', 'work_mem', 'synchronous_commit', 'max_connections')"


def _pg_database(url: str, name: str) -> str:
    """`url` with its database replaced by `name`."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=name).render_as_string(hide_password=False)


def _pg_admin(url: str, *statements: str) -> list[Any]:
    """Statements outside a transaction (CREATE / DROP DATABASE), on the server's `url`."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            results = [conn.execute(text(s)) for s in statements]
            return [r.all() if r.returns_rows else None for r in results]
    finally:
        engine.dispose()


def _store_url(database_url: str, schema: str) -> str:
    sep = "&" if "?" in database_url else "?"
    return f"{database_url}{sep}options=-csearch_path%3D{schema}"


def _digest_rows(queries: dict[Any, list[str]], fetch: Callable[[Any, str], Iterable[Any]]) -> str:
    digest = hashlib.sha256()
    for store, statements in queries.items():
        for query in statements:
            for row in fetch(store, query):
                decoded = [json.loads(v) if isinstance(v, str) and v[:1] in "{[" else v for v in row]
                digest.update(json.dumps(decoded, sort_keys=True, ensure_ascii=False, default=str).encode())
    return digest.hexdigest()[:16]


def worker(snapshot: Path | str, run: Path, step: str, pg: str | None = None) -> None:
    """One measured `process` or `promote` on a fresh copy of the snapshot, in this process: the
    SQLite files in `snapshot`, or (`pg`) the PostgreSQL database named `snapshot`, cloned."""
    import datetime as dt
    import resource
    import sqlite3
    import time

    import govdb
    from govdb.api import GovDB

    expected = Path(os.environ["PYTHONPATH"]).resolve()
    assert Path(govdb.__file__).resolve().is_relative_to(expected), (
        f"{govdb.__file__} is not under {expected}"
    )
    if pg:
        clone = run.name
        _pg_admin(
            pg,
            f'DROP DATABASE IF EXISTS "{clone}"',
            f'CREATE DATABASE "{clone}" TEMPLATE "{snapshot}" STRATEGY FILE_COPY',
        )
        # Not left behind when the run fails (its connections ended with it).
        atexit.register(_pg_admin, pg, f'DROP DATABASE IF EXISTS "{clone}" WITH (FORCE)')
        urls = {kind: _store_url(_pg_database(pg, clone), schema) for kind, schema in PG_SCHEMAS.items()}
        key = os.environ.get("GOVDB_AUDIT_KEY") or "benchmark-audit-key-not-a-secret"
        db = GovDB.open(master_url=urls["master"], events_url=urls["events"], audit_key=key)
    else:
        shutil.rmtree(run, ignore_errors=True)
        shutil.copytree(snapshot, run)
        db = GovDB.open(run)

    def children_cpu() -> float:  # a linking process (govdb.link.worker), once it has exited
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    start, cpu, child_cpu = time.perf_counter(), time.process_time(), children_cpu()
    if step == "promote":
        promoted = db.promote()
        counted: dict[str, Any] = {"promoted": promoted.promoted, "keys_refreshed": promoted.keys_refreshed}
        queries = {"master": PROMOTED_MASTER, "events": PROMOTED_EVENTS}
    else:
        report = db.process(today=dt.date.fromisoformat(TODAY))
        counted = {"proposals": report.proposals.proposals}
        queries = {"events": OUTCOME}
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    child_cpu = children_cpu() - child_cpu
    db.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # The largest child's own peak: with a linking process, both peaks added bound the run's.
    child_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 if child_cpu else 0.0
    if pg:
        from sqlalchemy import create_engine, text

        engines = {kind: create_engine(url) for kind, url in urls.items()}
        try:
            with engines["master"].connect() as master, engines["events"].connect() as events:
                conns = {"master": master, "events": events}
                digest = _digest_rows(queries, lambda store, query: conns[store].execute(text(query)))
        finally:
            for engine in engines.values():
                engine.dispose()
        # The server's memory and log settings bound what PostgreSQL can do: each run says them.
        (settings,) = _pg_admin(
            pg, f"SELECT name, current_setting(name) FROM pg_settings WHERE name IN {SERVER_SETTINGS}"
        )
        counted["server"] = dict(settings)
        _pg_admin(pg, f'DROP DATABASE "{clone}"')
    else:
        files = {"master": run / "govdb.master.sqlite", "events": run / "govdb.events.sqlite"}
        with sqlite3.connect(files["master"]) as master, sqlite3.connect(files["events"]) as events:
            conns = {"master": master, "events": events}
            digest = _digest_rows(queries, lambda store, query: conns[store].execute(query))
        shutil.rmtree(run, ignore_errors=True)
    result = {"wall": wall, "cpu": cpu + child_cpu, "child_cpu": child_cpu, "peak_mb": peak}
    result |= {"child_peak_mb": child_peak, **counted}
    print(json.dumps(result | {"digest": digest}))


def _county_command(args: argparse.Namespace) -> list[str]:
    command = [sys.executable, str(HERE / "bench_county.py"), "--people", str(args.people)]
    command += ["--events", str(args.events), "--home", str(args.snapshot), "--today", TODAY]
    if args.step == "promote":
        command += ["--decide-all", "--stop-after", "decide_rest"]
    else:
        command += ["--stop-after", "ingest_cdpf"]
    return [*command, "--no-record"]


def make_snapshot(args: argparse.Namespace) -> None:
    if "sqlite" in args.stores and not (args.snapshot / "govdb.events.sqlite").exists():
        subprocess.run(_county_command(args), check=True)
    if "postgresql" in args.stores:
        make_pg_snapshot(args)


def pg_snapshot_name(args: argparse.Namespace) -> str:
    return f"govdb_snap_{args.step}_{args.people}_{args.events}"


def make_pg_snapshot(args: argparse.Namespace) -> None:
    """The county in a database of its own, its two schemas renamed to PG_SCHEMAS (made once)."""
    name = pg_snapshot_name(args)
    (found,) = _pg_admin(args.pg, f"SELECT 1 FROM pg_database WHERE datname = '{name}'")
    if found:
        (schemas,) = _pg_admin(
            _pg_database(args.pg, name), "SELECT nspname FROM pg_namespace ORDER BY nspname"
        )
        if set(PG_SCHEMAS.values()) <= {s for (s,) in schemas}:
            return
        raise SystemExit(f"database {name} holds no finished snapshot: drop it and run again")
    _pg_admin(args.pg, f'CREATE DATABASE "{name}"')
    url = _pg_database(args.pg, name)
    subprocess.run([*_county_command(args), "--pg", url, "--keep"], check=True)
    (schemas,) = _pg_admin(url, "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'bench_%'")
    for (schema,) in schemas:
        kind = schema.rsplit("_", 1)[1]
        _pg_admin(url, f'ALTER SCHEMA "{schema}" RENAME TO "{PG_SCHEMAS[kind]}"')


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--people", type=int, default=200_000)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="another govdb checkout to measure side by side")
    parser.add_argument("--snapshot", type=Path, help="the county before process (made if missing)")
    parser.add_argument("--step", choices=("process", "promote"), default="process")
    parser.add_argument("--pg", help="a PostgreSQL server's URL, for --stores postgresql")
    parser.add_argument(
        "--stores",
        type=lambda v: v.split(","),
        help="stores each repeat runs in turn: sqlite, postgresql or both (default: sqlite; with --pg, both)",
    )
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(
            Path(args.worker[0]) if not args.pg else args.worker[0], Path(args.worker[1]), args.step, args.pg
        )
        return
    args.stores = args.stores or (["sqlite", "postgresql"] if args.pg else ["sqlite"])
    if not set(args.stores) <= {"sqlite", "postgresql"} or ("postgresql" in args.stores and not args.pg):
        parser.error("--stores takes sqlite and postgresql (postgresql with --pg URL)")
    args.snapshot = args.snapshot or Path(f"/tmp/govdb-{args.step}-{args.people}-{args.events}")
    make_snapshot(args)
    checkouts = {"current": HERE.parent} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    runs: dict[str, list[dict[str, float]]] = {
        f"{name}/{store}" if len(args.stores) > 1 else name: [] for name in checkouts for store in args.stores
    }
    for i in range(args.repeat):
        for (name, checkout), store in [(c, s) for c in checkouts.items() for s in args.stores]:
            label = f"{name}/{store}" if len(args.stores) > 1 else name
            if store == "postgresql":
                where = [pg_snapshot_name(args), f"govdb_run_{name}", "--pg", args.pg]
            else:
                where = [str(args.snapshot), str(args.snapshot) + f"-run-{name}"]
            out = subprocess.run(
                [sys.executable, __file__, "--step", args.step, "--worker", *where[:2], *where[2:]],
                env={**os.environ, "PYTHONPATH": str(checkout)},
                capture_output=True,
                text=True,
                check=True,
            )
            runs[label].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"repeat {i + 1} {label:8} {runs[label][-1]}", flush=True)
    for name, results in runs.items():
        if not results:  # --repeat 0: the snapshot alone
            continue
        wall = statistics.median(r["wall"] for r in results)
        cpu = statistics.median(r["cpu"] for r in results)
        # With a linking process: both peaks added, an upper bound of the run's.
        peak = max(r["peak_mb"] + r.get("child_peak_mb", 0.0) for r in results)
        digests = sorted({str(r["digest"]) for r in results})
        print(
            f"{name:8} {args.step} median {wall:7.2f} s, cpu {cpu:7.2f} s, peak {peak:,.0f} MB, "
            f"digest {digests}"
        )
    pairs = [(f"current/{s}", f"baseline/{s}", f"current/baseline on {s}") for s in args.stores]
    pairs = [("current", "baseline", "current/baseline")] if len(args.stores) == 1 else pairs
    if len(args.stores) > 1:
        pairs += [(f"{n}/postgresql", f"{n}/sqlite", f"{n}: postgresql/sqlite") for n in checkouts]
    for over, under, title in pairs:
        if over in runs and under in runs and args.repeat:
            ratios = [o["wall"] / u["wall"] for o, u in zip(runs[over], runs[under], strict=True)]
            print(f"{title} per repeat: " + ", ".join(f"{r:.2f}" for r in ratios))


if __name__ == "__main__":
    main()
