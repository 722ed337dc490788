"""`GovDB.link_one` of two code trees side by side, against a county of N people in SQLite.

    python benchmarks/ab_link_one.py --people 1000000 --lookups 2000 --pairs 2 \
        --code /work/wt-linkone-base /work/wt-linkone

bench_link_one.py's generated people fall in small blocks; a county's do not: a common given name
in one village is hundreds of people at a million (up to max_block), and those look-ups make the
tail. This builds (once, then reuses) a store under /tmp/govdb-bench-online/county-<N>-s<seed>
from countygen's register (serve_district, load_people, the default model stored), then runs the
same audited look-ups (countygen.link_records: half as the register holds them, half with no ID
number and a given-name character, the date or the phone written otherwise) once per tree and
pair, alternating which goes first, each in a fresh process importing govdb from that tree. Per
run: wall and CPU (this thread's) p50/p95/p99 and a digest of every result (person, decision,
probability, weight, explanation, master row), which must be the same for both trees. The machine
load before each run is printed too; figures go to benchmarks/link_one_results.jsonl.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TODAY = dt.date(2026, 11, 30)


def home_of(people: int, seed: int) -> Path:
    return Path(f"/tmp/govdb-bench-online/county-{people}-s{seed}")


def build(people: int, seed: int) -> None:
    """The county store, once: register loaded (keys and features with it), default model stored."""
    import countygen

    from govdb import GovDB
    from govdb.link import store_model

    home = home_of(people, seed)
    if (home / "ready").exists():
        return
    home.mkdir(parents=True, exist_ok=True)
    county = countygen.generate(people, 1000, home / "files", seed=seed, today=TODAY)
    with GovDB.open(home) as db:
        db.serve_district(countygen.COUNTY)
        started = time.perf_counter()
        db.load_people(county.register, source="public_security")
        loaded = time.perf_counter() - started
        store_model(db.master, db.linkage_model())
    (home / "ready").write_text(json.dumps({"load_seconds": loaded}), encoding="utf-8")


def child(people: int, seed: int, lookups: int) -> None:
    """One run in this process (govdb imported from PYTHONPATH): prints its figures as JSON."""
    import countygen

    import govdb
    from govdb import Actor, GovDB

    register = countygen.generate(
        people, 1000, home_of(people, seed) / "files", seed=seed, today=TODAY
    ).register
    records = [record for record, _ in countygen.link_records(register, lookups, seed=seed)]
    reader = {
        "actor": Actor("bench", f"department:transport:{countygen.COUNTY}"),
        "purpose": "identity_lookup",
    }
    with GovDB.open(home_of(people, seed)) as db:
        db.link_one(records[0], **reader)  # the model and the tables, once
        wall, cpu, found = [], [], []
        for record in records:
            started, started_cpu = time.perf_counter(), time.thread_time()
            result = db.link_one(record, **reader)
            wall.append(time.perf_counter() - started)
            cpu.append(time.thread_time() - started_cpu)
            found.append([result.record_id, result.person_id, result.decision, result.match_probability,
                          result.match_weight, result.explanation, result.master])  # fmt: skip
    text = json.dumps(found, sort_keys=True, default=str, ensure_ascii=False)
    figures = {"code": str(Path(govdb.__file__).parent.parent), "lookups": len(records)}
    for name, seconds in (("wall", wall), ("cpu", cpu)):
        ms = np.array(seconds) * 1000
        figures |= {f"{name}_p{q}_ms": round(float(np.percentile(ms, q)), 3) for q in (50, 95, 99)}
    print(json.dumps(figures | {"digest": hashlib.sha256(text.encode()).hexdigest()[:16]}))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--code", nargs=2, type=Path, metavar=("BEFORE", "AFTER"), help="two source trees")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    if args.child:
        child(args.people, args.seed, args.lookups)
        return
    if args.code is None:
        parser.error("--code BEFORE AFTER: the two source trees to compare")
    build(args.people, args.seed)
    runs = []
    for pair in range(args.pairs):
        order = list(args.code) if pair % 2 == 0 else list(reversed(args.code))
        for tree in order:
            load = os.getloadavg()[0]
            command = [sys.executable, __file__, "--child", *("--people", str(args.people)),
                       *("--seed", str(args.seed)), *("--lookups", str(args.lookups))]  # fmt: skip
            env = os.environ | {"PYTHONPATH": str(tree.resolve())}
            out = subprocess.run(command, env=env, cwd=tree, check=True, capture_output=True, text=True)
            figures = json.loads(out.stdout.strip().splitlines()[-1]) | {"pair": pair, "load_before": load}
            print(json.dumps(figures), flush=True)
            runs.append(figures)
    digests = {r["digest"] for r in runs}
    record = {"at": time.strftime("%Y-%m-%d %H:%M"), "bench": "ab_link_one", "people": args.people,
              "same_results": len(digests) == 1, "runs": runs}  # fmt: skip
    print(f"same results in every run: {len(digests) == 1}")
    with open(HERE / "link_one_results.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
