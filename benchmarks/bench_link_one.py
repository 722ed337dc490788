"""Latency of `GovDB.link_one` against a master store of N people in SQLite.

    python benchmarks/bench_link_one.py --people 1000000 --lookups 1000

Builds (once, then reuses) a store under /tmp/govdb-bench-online/<N> from the seeded generator:
the people are bulk-loaded (which indexes their blocking keys and stores their features), a model is
trained on generated events and stored. Then times `link_one` on events it has not seen, one at a
time, and checks each decision against a batch run with the same model. Appends the figures to
benchmarks/link_one_results.jsonl.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import polars as pl

from govdb import Actor, GovDB
from govdb.link import link_frames, read_people

HERE = Path(__file__).resolve().parent


def build(home: Path, people: int, seed: int) -> tuple[GovDB, pl.DataFrame]:
    import linkgen

    master, events, _ = linkgen.generate(people, min(people, 200_000), "hard", seed=seed)
    ready = (home / "ready").exists()
    db = GovDB.open(home)
    db.serve_district("440605")  # the reading unit below (its look-ups are audited reads)
    if not ready:
        started = time.perf_counter()
        db.load_people(master.drop("person_id"), source="population_register")
        loaded = time.perf_counter() - started
        started = time.perf_counter()
        db.train_linker(events.head(100_000))
        (home / "ready").write_text(
            json.dumps({"load_seconds": loaded, "train_seconds": time.perf_counter() - started}),
            encoding="utf-8",
        )
    return db, events.tail(min(len(events), 5000))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--lookups", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    home = Path(f"/tmp/govdb-bench-online/{args.people}-s{args.seed}")
    home.mkdir(parents=True, exist_ok=True)
    db, unseen = build(home, args.people, args.seed)
    records = unseen.head(args.lookups)
    reader = {"actor": Actor("bench", "department:transport:440605"), "purpose": "identity_lookup"}
    db.link_one(records.row(0, named=True), **reader)  # load the model and the tables once
    times, results = [], []
    for row in records.iter_rows(named=True):
        started = time.perf_counter()
        results.append(db.link_one(row, **reader))
        times.append(time.perf_counter() - started)
    ms = np.array(times) * 1000
    with db.master.connect() as conn:
        people = read_people(conn)
    batch = link_frames(
        records,
        people,
        db.rules.matching["person"],
        model=db.linkage_model(),
        address_hint=db.served_county(),
    ).links
    expected = dict(
        zip(
            batch.get_column("event_id"),
            zip(batch.get_column("person_id"), batch.get_column("decision"), strict=True),
            strict=True,
        )
    )
    same = sum(expected[r.record_id] == (r.person_id, r.decision) for r in results)
    record = {
        "at": time.strftime("%Y-%m-%d %H:%M"),
        "people": args.people,
        "lookups": len(results),
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(ms.max()),
        "same_decision_as_batch": same / len(results),
        "build": json.loads((home / "ready").read_text(encoding="utf-8")),
    }
    print(json.dumps(record))
    with open(HERE / "link_one_results.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
