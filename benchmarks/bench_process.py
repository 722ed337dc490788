"""`process` (or `promote`) alone, side by side: the current checkout against another on copies of
one county.

    python benchmarks/bench_process.py --people 200000 --events 200000 [--repeat 3] [--baseline DIR]
                                       [--step promote] [--snapshot DIR]

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
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

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
    " h.source, h.closed_at IS NULL, h.event_ids, h.checks FROM fieldhistory h"
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


def worker(snapshot: Path, run: Path, step: str) -> None:
    """One measured `process` or `promote` on a fresh copy of the snapshot, in this process."""
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
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(snapshot, run)
    db = GovDB.open(run)

    def children_cpu() -> float:  # a linking process (govdb.link.worker), once it has exited
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    start, cpu, child_cpu = time.perf_counter(), time.process_time(), children_cpu()
    if step == "promote":
        promoted = db.promote()
        counted = {"promoted": promoted.promoted, "keys_refreshed": promoted.keys_refreshed}
        queries = {"govdb.master.sqlite": PROMOTED_MASTER, "govdb.events.sqlite": PROMOTED_EVENTS}
    else:
        report = db.process(today=dt.date.fromisoformat(TODAY))
        counted = {"proposals": report.proposals.proposals}
        queries = {"govdb.events.sqlite": OUTCOME}
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    child_cpu = children_cpu() - child_cpu
    db.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # The largest child's own peak: with a linking process, both peaks added bound the run's.
    child_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 if child_cpu else 0.0
    digest = hashlib.sha256()
    for store, statements in queries.items():
        with sqlite3.connect(run / store) as conn:
            for query in statements:
                for row in conn.execute(query):
                    decoded = [json.loads(v) if isinstance(v, str) and v[:1] in "{[" else v for v in row]
                    digest.update(json.dumps(decoded, sort_keys=True, ensure_ascii=False).encode())
    shutil.rmtree(run, ignore_errors=True)
    result = {"wall": wall, "cpu": cpu + child_cpu, "child_cpu": child_cpu, "peak_mb": peak}
    result |= {"child_peak_mb": child_peak, **counted}
    print(json.dumps(result | {"digest": digest.hexdigest()[:16]}))


def make_snapshot(args: argparse.Namespace) -> None:
    if (args.snapshot / "govdb.events.sqlite").exists():
        return
    command = [sys.executable, str(HERE / "bench_county.py"), "--people", str(args.people)]
    command += ["--events", str(args.events), "--home", str(args.snapshot), "--today", TODAY]
    if args.step == "promote":
        command += ["--decide-all", "--stop-after", "decide_rest"]
    else:
        command += ["--stop-after", "ingest_cdpf"]
    subprocess.run([*command, "--no-record"], check=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--people", type=int, default=200_000)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="another govdb checkout to measure side by side")
    parser.add_argument("--snapshot", type=Path, help="the county before process (made if missing)")
    parser.add_argument("--step", choices=("process", "promote"), default="process")
    parser.add_argument("--worker", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker, args.step)
        return
    args.snapshot = args.snapshot or Path(f"/tmp/govdb-{args.step}-{args.people}-{args.events}")
    make_snapshot(args)
    checkouts = {"current": HERE.parent} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in checkouts}
    for i in range(args.repeat):
        for name, checkout in checkouts.items():
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--step",
                    args.step,
                    "--worker",
                    str(args.snapshot),
                    str(args.snapshot) + f"-run-{name}",
                ],
                env={**os.environ, "PYTHONPATH": str(checkout)},
                capture_output=True,
                text=True,
                check=True,
            )
            runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"repeat {i + 1} {name:8} {runs[name][-1]}", flush=True)
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
    if args.baseline and args.repeat:
        ratios = [c["wall"] / b["wall"] for c, b in zip(runs["current"], runs["baseline"], strict=True)]
        print("current/baseline per repeat: " + ", ".join(f"{r:.2f}" for r in ratios))


if __name__ == "__main__":
    main()
