"""The whole data path on a generated county (issue 10), step by step, on SQLite or PostgreSQL.

    python benchmarks/bench_county.py --people 1000000 --events 1000000 [--pg URL] [--home DIR]
                                      [--decisions 100000] [--decide-all] [--profile STEP]

`countygen.py` writes 南海区's population register and a year's event files (new residents, phone
changes, address changes inside the village, moves between villages, exact repeats, disability
certificates). Then, each step timed (wall time; resident memory at its end and its own peak):

1. `serve_district("440605")`; `load_people` (the register, an authoritative bulk load);
2. ingest the hall files, and the certificates from the federation's registered source
   (`register_source("cdpf_system")` and its token);
3. `process` (standardize, validate, link, propose, open tasks); repeats must open no task;
4. decide open tasks in batches per unit with `decide_many` (approve most, reject some, amend a
   few), village tasks, then the street tasks they opened, then department ones, until
   `--decisions` are made; `--decide-all` then decides the rest (timed apart), so that promote
   sees every proposal approved;
5. `promote`; the senior transit card programme twice (the second run must issue nothing);
6. `prefill` of 2,000 random people and `link_one` of 2,000 records (half exact, half mistyped):
   p50 and p99.

`--pg postgresql+psycopg://postgres@127.0.0.1:5432/test` puts both stores in two fresh schemas of
that database (dropped afterwards unless `--keep`); otherwise two SQLite files in `--home`. Prints a
table (with each figure scaled linearly to the issue's 1M targets) and appends one JSON line to
benchmarks/county_results.jsonl. Steps whose API is missing in this govdb are skipped with a note.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import json
import math
import os
import pstats
import re
import resource
import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import create_engine, func, select, text

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import countygen  # noqa: E402

from govdb import Actor, GovDB  # noqa: E402

COUNTY = countygen.COUNTY
BATCH = 500
# The targets at 1M people / 1M events, and what each step's figure scales with.
TARGETS: dict[str, tuple[float, str]] = {
    "load_people": (60.0, "people"),
    "ingest": (15.0, "events"),
    "process": (120.0, "events"),
    "decide": (30.0, "decisions"),
    "promote": (120.0, "promoted"),
    "programme": (10.0, "people"),
}
TARGET_SCALE = {"people": 1_000_000, "events": 1_000_000, "decisions": 100_000, "promoted": 1_000_000}
REJECT_REASONS = ["经村居核查，该人员不在本辖区居住", "地址与实际不符", "材料不全，请补充后重新提交"]


# --- measuring ----------------------------------------------------------------------------------


def _status_kb(name: str) -> int:
    try:
        found = re.search(rf"^{name}:\s+(\d+)", Path("/proc/self/status").read_text(), re.M)
    except OSError:
        return 0
    return int(found.group(1)) if found else 0


def _reset_peak() -> bool:
    """Reset this process's peak resident set (VmHWM), so each step reports its own peak."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@dataclass
class Step:
    name: str
    seconds: float = 0.0
    rows: int | None = None
    rss_mb: float = 0.0
    peak_mb: float | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class StopAfter(Exception):
    """--stop-after STEP: the step is done, the rest is not run (nothing is recorded)."""


class Bench:
    def __init__(self, profile: str | None, folder: Path, stop_after: str | None = None) -> None:
        self.steps: list[Step] = []
        self.skipped: list[str] = []
        self.profile = profile
        self.folder = folder
        self.stop_after = stop_after

    @contextmanager
    def step(self, name: str, rows: int | None = None, note: str = "") -> Iterator[Step]:
        record = Step(name, rows=rows, note=note)
        peak_ok = _reset_peak()
        profiler = cProfile.Profile() if self.profile == name else None
        print(f"  {name} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        try:
            yield record
        finally:
            if profiler:
                profiler.disable()
            record.seconds = time.perf_counter() - started
            record.rss_mb = _status_kb("VmRSS") / 1024
            record.peak_mb = _status_kb("VmHWM") / 1024 if peak_ok else None
            self.steps.append(record)
            peak = f" (peak {record.peak_mb:,.0f} MB)" if record.peak_mb else ""
            print(f"  {name}: {record.seconds:.2f} s{peak} {record.note}", file=sys.stderr, flush=True)
            if profiler:
                out = self.folder / f"profile-{name}.prof"
                profiler.dump_stats(out)
                buffer = io.StringIO()
                stats = pstats.Stats(profiler, stream=buffer)
                stats.sort_stats("cumulative").print_stats(30)
                stats.sort_stats("tottime").print_stats(25)
                print(buffer.getvalue(), file=sys.stderr)
                print(f"  profile of {name} in {out}", file=sys.stderr)
        if name == self.stop_after:
            raise StopAfter(name)

    def skip(self, name: str, why: str) -> None:
        print(f"  {name}: SKIPPED ({why})", file=sys.stderr, flush=True)
        self.skipped.append(f"{name}: {why}")
        self.steps.append(Step(name, note=f"skipped: {why}"))


def _percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.array(seconds) * 1000
    return {
        "n": len(seconds),
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(ms.max()),
    }


# --- stores -------------------------------------------------------------------------------------


@contextmanager
def open_store(args: argparse.Namespace, home: Path) -> Iterator[tuple[GovDB, str]]:
    """A fresh GovDB: two SQLite files in `home`, or two new schemas of the PostgreSQL database
    (the way tests/conftest.py makes them), dropped afterwards unless --keep."""
    if not args.pg:
        for stale in home.glob("govdb.*.sqlite*"):
            stale.unlink()
        db = GovDB.open(home)
        try:
            yield db, "sqlite"
        finally:
            db.close()
        return
    engine = create_engine(args.pg)
    names = [f"bench_{uuid.uuid4().hex[:10]}_{kind}" for kind in ("master", "events")]
    with engine.begin() as conn:
        for name in names:
            conn.execute(text(f'CREATE SCHEMA "{name}"'))
    sep = "&" if "?" in args.pg else "?"
    master_url, events_url = (f"{args.pg}{sep}options=-csearch_path%3D{name}" for name in names)
    try:
        # A server store takes its audit key from the environment; a fixed one serves a benchmark.
        key = os.environ.get("GOVDB_AUDIT_KEY") or "benchmark-audit-key-not-a-secret"
        db = GovDB.open(master_url=master_url, events_url=events_url, audit_key=key)
        try:
            yield db, "postgresql"
        finally:
            db.close()
    finally:
        if args.keep:
            print(f"kept schemas {names}", file=sys.stderr)
        else:
            with engine.begin() as conn:
                for name in names:
                    conn.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
        engine.dispose()


# --- decisions ----------------------------------------------------------------------------------


def _decision(task: Any, rng: np.random.Generator) -> dict[str, Any]:
    """Approve most, reject some (with a reason), amend a few (a field the proposal carries)."""
    roll = rng.random()
    payload = task.payload or {}
    if task.change != "confirm_identity" and roll < 0.05:
        reason = REJECT_REASONS[int(rng.integers(len(REJECT_REASONS)))]
        return {"task_id": task.task_id, "outcome": "reject", "reason": reason, "amendments": None}
    if roll > 0.98 and ("phone" in payload or "address" in payload):
        if "phone" in payload:
            amendments = {"phone": f"136{int(rng.integers(10**8)):08d}"}
        else:
            amendments = {"address": f"{payload['address']}之{int(rng.integers(1, 9))}"}
        return {
            "task_id": task.task_id,
            "outcome": "amend",
            "reason": "按核实结果更正",
            "amendments": amendments,
        }
    return {"task_id": task.task_id, "outcome": "approve", "reason": None, "amendments": None}


@dataclass
class DecideStats:
    decisions: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    by_level: Counter[str] = field(default_factory=Counter)
    list_seconds: float = 0.0
    decide_seconds: float = 0.0
    batches: int = 0
    rounds: int = 0


def decide_tasks(db: GovDB, budget: int | None, *, seed: int, api: str) -> DecideStats:
    """Decide open tasks per unit in batches, level by level, until `budget` decisions are made
    (None: until no task is open). Each round gives the villages a share of what is left, then
    decides the street tasks those approvals opened, then the department tasks."""
    rng = np.random.default_rng(seed)
    stats = DecideStats()
    units = {level: [u.unit_id for u in db.units(level)] for level in ("village", "street", "department")}
    many = getattr(db, "decide_many", None) if api == "decide_many" else None

    def left() -> int:
        return sys.maxsize if budget is None else budget - stats.decisions

    while left() > 0:
        stats.rounds += 1
        before = stats.decisions
        for level in ("village", "street", "department"):
            if left() <= 0:
                break
            share = left() if level != "village" or budget is None else max(1, math.ceil(left() * 0.45))
            quota = max(1, math.ceil(share / max(1, len(units[level]))))
            for unit_id in units[level]:
                want = min(quota, left(), 1_000_000)
                if want <= 0:
                    break
                started = time.perf_counter()
                tasks = db.tasks(unit_id=unit_id, limit=want)
                stats.list_seconds += time.perf_counter() - started
                if not tasks:
                    continue
                actor = Actor(f"{level}.clerk", unit_id)
                decisions = [_decision(t, rng) for t in tasks]
                started = time.perf_counter()
                for start in range(0, len(decisions), BATCH):
                    batch = decisions[start : start + BATCH]
                    if many is not None:
                        many(actor, batch)
                    else:
                        for d in batch:
                            db.decide(
                                d["task_id"],
                                actor,
                                d["outcome"],
                                reason=d["reason"],
                                amendments=d["amendments"],
                            )
                    stats.batches += 1
                stats.decide_seconds += time.perf_counter() - started
                stats.decisions += len(decisions)
                stats.by_level[level] += len(decisions)
                stats.outcomes.update(d["outcome"] for d in decisions)
        if stats.decisions == before:
            break  # nothing open any more
    return stats


# --- checks -------------------------------------------------------------------------------------


def event_outcomes(db: GovDB) -> dict[str, dict[str, int]]:
    """Event status counts per kind of record (the key's two-letter prefix)."""
    from govdb.store.events import Event

    table = Event.__table__  # type: ignore[attr-defined]
    kind = func.substr(table.c.source_key, 1, 2)
    out: dict[str, dict[str, int]] = {}
    with db.events.connect() as conn:
        for prefix, status, n in conn.execute(
            select(kind, table.c.status, func.count()).group_by(kind, table.c.status)
        ):
            out.setdefault(prefix, {})[status] = int(n)
    return out


def person_ids(db: GovDB, id_numbers: list[str]) -> dict[str, str]:
    from govdb.store.master import Person

    table = Person.__table__  # type: ignore[attr-defined]
    out: dict[str, str] = {}
    with db.master.connect() as conn:
        for start in range(0, len(id_numbers), 5000):
            chunk = id_numbers[start : start + 5000]
            out.update(
                conn.execute(
                    select(table.c.id_number, table.c.person_id).where(table.c.id_number.in_(chunk))
                ).all()
            )
    return out


# --- the run ------------------------------------------------------------------------------------


def default_home(args: argparse.Namespace) -> Path:
    backend = "pg" if args.pg else "sqlite"
    return args.home or Path(f"/tmp/govdb-county/{backend}-{args.people}-{args.events}")


def run(args: argparse.Namespace) -> dict[str, Any]:
    home = default_home(args)
    folder = home / "files"
    folder.mkdir(parents=True, exist_ok=True)
    bench = Bench(args.profile, home, args.stop_after)
    today = args.today
    mix = countygen.Mix.parse(args.mix)
    decisions_budget = args.decisions if args.decisions is not None else max(1, args.events // 10)

    with bench.step("generate", note="(not a target)") as s:
        county = countygen.generate(args.people, args.events, folder, mix=mix, seed=args.seed, today=today)
        s.rows = county.register.height + sum(county.counts.values())
        s.extra = {"counts": county.counts}
    hall_events = sum(n for k, n in county.counts.items() if k != "cert")

    results: dict[str, Any] = {}
    with open_store(args, home) as (db, backend):
        print(f"{backend}: {args.people} people, {args.events} events in {home}", file=sys.stderr)
        with bench.step("serve_district") as s:
            district = db.serve_district(COUNTY)
            s.rows = district.divisions
        with bench.step("load_people", rows=county.register.height):
            db.load_people(county.register, source="public_security")

        with bench.step("ingest", rows=hall_events, note="hall files") as s:
            # The hall's system proves itself with its registered token (rules: sources).
            hall_token = db.register_source("hall_window_system")
            reports = [db.ingest(path, source_token=hall_token, **options) for path, options in county.files]
            s.extra = {"stored": sum(r.stored for r in reports), "read": sum(r.read for r in reports)}
        path, options = county.cdpf  # type: ignore[misc]
        if hasattr(db, "register_source"):
            with bench.step("ingest_cdpf", rows=county.counts["cert"], note="registered source") as s:
                token = db.register_source("cdpf_system")
                report = db.ingest(path, source_token=token, **options)
                s.extra = {"stored": report.stored, "read": report.read}
        else:
            bench.skip("ingest_cdpf", "GovDB.register_source does not exist yet; certificates not ingested")

        with bench.step("process") as s:
            processed = db.process(today=today)
            s.rows = processed.validation.rows
            s.extra = asdict(processed.proposals) | {"invalid_rows": processed.validation.error_rows}
        outcomes = event_outcomes(db)
        repeats = outcomes.get(countygen.KEY_PREFIX["repeat"], {})
        repeat_tasks = sum(n for status, n in repeats.items() if status != "confirmed")
        if repeat_tasks:
            print(f"  WARNING: {repeat_tasks} exact repeats not confirmed: {repeats}", file=sys.stderr)

        api = "decide_many" if hasattr(db, "decide_many") else "decide"
        note = "decide_many"
        if api != "decide_many":
            note = "FALLBACK: GovDB.decide per task (no decide_many yet)"
            bench.skipped.append("decide_many: GovDB.decide_many does not exist yet; timed GovDB.decide")
        with bench.step("decide", note=note) as s:
            stats = decide_tasks(db, decisions_budget, seed=args.seed, api=api)
            s.rows = stats.decisions
            s.extra = {
                "outcomes": dict(stats.outcomes),
                "by_level": dict(stats.by_level),
                "list_seconds": stats.list_seconds,
                "decide_seconds": stats.decide_seconds,
                "batches": stats.batches,
                "rounds": stats.rounds,
                "api": api,
            }
        if args.decide_all:
            with bench.step("decide_rest", note=f"{note}, every open task") as s:
                rest = decide_tasks(db, None, seed=args.seed + 1, api=api)
                s.rows = rest.decisions
                s.extra = {"outcomes": dict(rest.outcomes), "by_level": dict(rest.by_level)}
        with bench.step("promote") as s:
            promoted = db.promote()
            s.rows = promoted.promoted
            s.extra = {k: v for k, v in asdict(promoted).items() if k not in ("promoted_ids", "person_ids")}

        as_of = dt.date(today.year, 12, 31)
        clerk = Actor("bench", f"department:transport:{COUNTY}")
        with bench.step("programme", rows=args.people, note=f"as of {as_of}") as s:
            first = db.run_programme("senior_transit_card", as_of=as_of, actor=clerk)
            s.extra = {"eligible": first.eligible, "issued": first.issued, "home": first.home_delivery}
        with bench.step("programme_again", rows=args.people) as s:
            second = db.run_programme("senior_transit_card", as_of=as_of, actor=clerk)
            s.extra = {"issued": second.issued, "already_issued": second.already_issued}
        assert second.issued == 0, f"the second programme run issued {second.issued} cards"
        assert first.issued > 0, "the first programme run issued nothing"

        rng = np.random.default_rng(args.seed + 3)
        sample = county.register.get_column("id_number").to_numpy()
        sample = sample[rng.choice(len(sample), min(args.lookups, len(sample)), replace=False)]
        db.prefill("senior_transit_card", id_number=str(sample[0]), actor=clerk)  # warm
        with bench.step("prefill", rows=len(sample)) as s:
            times = []
            for id_number in sample:
                started = time.perf_counter()
                db.prefill("senior_transit_card", id_number=str(id_number), actor=clerk)
                times.append(time.perf_counter() - started)
            s.extra = _percentiles(times)
        results["prefill"] = s.extra

        lookups = min(args.lookups, county.register.height)
        records = countygen.link_records(county.register, lookups, seed=args.seed)
        started = time.perf_counter()
        lookup = {"actor": clerk, "purpose": "identity_lookup"}  # audited like every personal read
        db.link_one(records[0][0], **lookup)  # the model and the tables, once
        first_call = time.perf_counter() - started
        with bench.step("link_one", rows=len(records)) as s:
            times, found = [], []
            for record, _ in records:
                started = time.perf_counter()
                found.append(db.link_one(record, **lookup))
                times.append(time.perf_counter() - started)
            expected = person_ids(db, [want for _, want in records])
            right = [r.person_id == expected.get(want) for r, (_, want) in zip(found, records, strict=True)]
            exact = [ok for i, ok in enumerate(right) if i % 2 == 0]
            typo = [ok for i, ok in enumerate(right) if i % 2 == 1]
            s.extra = _percentiles(times) | {
                "first_call_s": first_call,
                "right_person_exact": sum(exact) / max(1, len(exact)),
                "right_person_mistyped": sum(typo) / max(1, len(typo)),
            }
        results["link_one"] = s.extra
        counts = db.counts()

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    size_mb = (
        sum(p.stat().st_size for p in home.glob("govdb.*.sqlite*")) / 2**20 if backend == "sqlite" else None
    )
    return {
        "at": time.strftime("%Y-%m-%d %H:%M"),
        "code": _code_version(),
        "backend": backend,
        "people": args.people,
        "events": args.events,
        "decisions_budget": decisions_budget,
        "decide_all": args.decide_all,
        "seed": args.seed,
        "today": today.isoformat(),
        "mix": county.counts,
        "steps": {
            st.name: {
                "seconds": round(st.seconds, 3),
                "rows": st.rows,
                "rss_mb": round(st.rss_mb),
                "peak_mb": None if st.peak_mb is None else round(st.peak_mb),
                "note": st.note,
                **st.extra,
            }
            for st in bench.steps
        },
        "event_outcomes": outcomes,
        "repeats_not_confirmed": repeat_tasks,
        "counts": counts,
        "prefill": results["prefill"],
        "link_one": results["link_one"],
        "peak_rss_mb": round(peak),
        "sqlite_mb": None if size_mb is None else round(size_mb),
        "skipped": bench.skipped,
    }


def print_table(result: dict[str, Any]) -> None:
    print(
        f"\n{result['backend']}: {result['people']:,} people, {result['events']:,} events "
        f"({', '.join(f'{k} {v:,}' for k, v in result['mix'].items())})"
    )
    header = (
        f"{'step':16} {'seconds':>9} {'rows':>10} {'rows/s':>10} {'RSS MB':>7} {'peak MB':>7}  "
        f"{'at 1M (linear)':>14} {'target':>7}"
    )
    print(header)
    print("-" * len(header))
    for name, st in result["steps"].items():
        rows, seconds = st.get("rows"), st["seconds"]
        if st["note"].startswith("skipped"):
            print(f"{name:16} {st['note']}")
            continue
        rate = f"{rows / seconds:10,.0f}" if rows and seconds else " " * 10
        estimate, target = "", ""
        key = {"ingest_cdpf": "ingest", "decide_rest": "decide"}.get(name, name)
        if key in TARGETS and rows:
            limit, unit = TARGETS[key]
            estimate = f"{seconds * TARGET_SCALE[unit] / rows:12.1f} s"
            target = f"{limit:5.0f} s"
        peak = st["peak_mb"] if st["peak_mb"] is not None else ""
        print(
            f"{name:16} {seconds:9.2f} {rows if rows is not None else '':>10} {rate} "
            f"{st['rss_mb']:7} {peak:>7}  {estimate:>14} {target:>7}"
            + (f"  {st['note']}" if st["note"] else "")
        )
    p, lk = result["prefill"], result["link_one"]
    print(f"prefill   p50 {p['p50_ms']:.2f} ms  p99 {p['p99_ms']:.2f} ms (target p99 <= 5 ms)")
    print(
        f"link_one  p50 {lk['p50_ms']:.2f} ms  p99 {lk['p99_ms']:.2f} ms (target p99 <= 10 ms); "
        f"right person: exact {lk['right_person_exact']:.3f}, mistyped {lk['right_person_mistyped']:.3f}"
    )
    print(f"peak memory {result['peak_rss_mb']:,} MB (target <= 4,096 MB)")
    process = result["steps"]["process"]
    print(
        "process: "
        + ", ".join(
            f"{k} {process[k]:,}"
            for k in (
                *("events", "linked", "new_people", "unchanged"),
                *("identity_reviews", "proposals", "unlinked"),
            )
            if k in process
        )
    )
    print(f"event outcomes by kind: {result['event_outcomes']}")
    decide = result["steps"]["decide"]
    print(f"decisions: {decide.get('outcomes')} by level {decide.get('by_level')}")
    print(f"counts: {result['counts']}")
    for note in result["skipped"]:
        print(f"skipped: {note}")


def _code_version() -> str:
    """The commit of the govdb this run imported (a side-by-side run names which side it was),
    marked when its package folder had changes no commit holds."""
    import govdb

    folder = Path(govdb.__file__).resolve().parent
    found = subprocess.run(
        ["git", "-C", str(folder), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    changed = subprocess.run(
        ["git", "-C", str(folder), "status", "--porcelain", "--", "."],
        capture_output=True,
        text=True,
        check=False,
    )
    dirty = "+uncommitted" if changed.stdout.strip() else ""  # the run measured code no commit holds
    return (found.stdout.strip() + dirty) or str(folder)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--decisions", type=int, help="decisions to make (default: a tenth of --events)")
    parser.add_argument("--decide-all", action="store_true", help="then decide every task still open")
    parser.add_argument("--pg", help="PostgreSQL URL (two fresh schemas); default: SQLite in --home")
    parser.add_argument("--home", type=Path, help="folder for the files and SQLite stores")
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL schemas")
    parser.add_argument("--mix", help="event shares, e.g. new=0.1,phone=0.3 (see countygen.Mix)")
    parser.add_argument("--lookups", type=int, default=2000, help="prefill and link_one calls")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--today", type=dt.date.fromisoformat, default=dt.date.today())
    parser.add_argument("--profile", help="cProfile one step (e.g. process) and print its hotspots")
    parser.add_argument("--clean", action="store_true", help="remove --home afterwards")
    parser.add_argument("--stop-after", help="stop after this step (e.g. process); records nothing")
    parser.add_argument("--no-record", action="store_true", help="do not append to county_results.jsonl")
    args = parser.parse_args()
    try:
        result = run(args)
    except StopAfter as stop:
        print(f"  stopped after {stop}", file=sys.stderr)
        return
    print_table(result)
    if not args.no_record:
        with open(HERE / "county_results.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(result, ensure_ascii=False, default=str) + "\n")
    if args.clean:
        shutil.rmtree(default_home(args), ignore_errors=True)


if __name__ == "__main__":
    main()
