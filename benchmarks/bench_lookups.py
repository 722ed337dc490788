"""`prefill` and `link_one` against stores that exist, SQLite and PostgreSQL (and code trees) side
by side: the issue's "PostgreSQL within twice SQLite" for look-ups, measured as ratios in one run.

    python benchmarks/bench_lookups.py --sqlite HOME --pg URL --schemas MASTER EVENTS \
        [--lookups 1000] [--rounds 3] [--code TREE ...]

The stores are a county `bench_county.py` left behind (`--home HOME` for SQLite; `--pg URL --keep`
prints the two schemas it kept), both built from the same generated register. Each run is a fresh
process importing govdb from one tree, against one backend: it reads the register back from master
(ID numbers, names, dates, phones, addresses), draws the same people for every run, warms once,
then times `prefill` of each and `link_one` of countygen's records about them (half as master
holds them, half mistyped). Runs alternate backend and tree within each round, so each ratio is of
figures taken minutes apart on the same machine. Prints each run and the medians; with
`--record`, appends them to benchmarks/link_one_results.jsonl.

A tree whose migrations are newer than another's cannot share its store (the older code refuses a
revision it does not know): give one store per tree, in `--code`'s order, as copies of one county
(`cp -r` of a SQLite home; `CREATE DATABASE copy TEMPLATE county` on PostgreSQL):

    python benchmarks/bench_lookups.py --code OLD NEW --sqlite OLD_HOME NEW_HOME \
        --pg URL_OF_OLD_DB URL_OF_NEW_DB --schemas MASTER EVENTS
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
AUDIT_KEY = "benchmark-audit-key-not-a-secret"  # bench_county's key for server stores


def child(store: str, lookups: int, seed: int) -> None:
    """One run in this process (govdb from PYTHONPATH): prints its figures as JSON."""
    import countygen
    import polars as pl
    from sqlalchemy import text

    import govdb
    from govdb import Actor, GovDB

    spec = json.loads(store)
    if "home" in spec:
        db = GovDB.open(Path(spec["home"]))
    else:
        db = GovDB.open(master_url=spec["master"], events_url=spec["events"], audit_key=AUDIT_KEY)
    with db.master.connect() as conn:
        rows = conn.execute(
            text("SELECT id_number, name, gender, birth_date, phone, address FROM person ORDER BY id_number")
        ).all()
    register = pl.DataFrame(
        [tuple(r) for r in rows],
        schema=["id_number", "name", "gender", "birth_date", "phone", "address"],
        orient="row",
    ).with_columns(pl.col("birth_date").cast(pl.String).str.to_date())
    rng = np.random.default_rng(seed)
    people = register.get_column("id_number").to_list()
    sample = [people[i] for i in rng.choice(len(people), lookups, replace=False)]
    records = [record for record, _ in countygen.link_records(register, lookups, seed=seed)]
    clerk = Actor("bench", f"department:transport:{countygen.COUNTY}")
    figures: dict[str, object] = {"code": str(Path(govdb.__file__).parent.parent), "lookups": lookups}
    found = []
    with db:
        db.prefill("senior_transit_card", id_number=sample[0], actor=clerk)  # warm
        db.link_one(records[0], actor=clerk, purpose="identity_lookup")
        for call, items in (("prefill", sample), ("link_one", records)):
            wall = []
            for item in items:
                started = time.perf_counter()
                if call == "prefill":
                    result = db.prefill("senior_transit_card", id_number=item, actor=clerk)
                    found.append([(f.name, str(f.value), f.masked) for f in result.fields])
                else:
                    linked = db.link_one(item, actor=clerk, purpose="identity_lookup")
                    found.append([linked.decision, linked.match_probability])
                wall.append(time.perf_counter() - started)
            ms = np.array(wall) * 1000
            figures |= {f"{call}_p{q}_ms": round(float(np.percentile(ms, q)), 3) for q in (50, 99)}
    text_ = json.dumps(found, sort_keys=True, default=str, ensure_ascii=False)
    print(json.dumps(figures | {"digest": hashlib.sha256(text_.encode()).hexdigest()[:16]}))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sqlite", type=Path, nargs="+", help="a SQLite county's folder (or one per tree)")
    parser.add_argument(
        "--pg", nargs="+", help="PostgreSQL URL of the database holding the schemas (or one per tree)"
    )
    parser.add_argument(
        "--schemas", nargs=2, metavar=("MASTER", "EVENTS"), help="bench_county's kept schemas"
    )
    parser.add_argument("--lookups", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--code", nargs="+", type=Path, default=[HERE.parent], help="source trees")
    parser.add_argument("--record", action="store_true", help="append to link_one_results.jsonl")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    if args.child:
        child(args.child, args.lookups, args.seed)
        return
    stores: dict[str, list[dict[str, str]]] = {}  # backend -> the store of each tree, in --code's order
    for given in (args.sqlite, args.pg):
        if given and len(given) not in (1, len(args.code)):
            parser.error(f"give one store, or one for each of the {len(args.code)} trees: {given}")
    if args.sqlite:
        stores["sqlite"] = [{"home": str(home.resolve())} for home in args.sqlite]
    if args.pg:
        if not args.schemas:
            parser.error("--pg needs --schemas MASTER EVENTS")
        stores["postgresql"] = []
        for url in args.pg:
            sep = "&" if "?" in url else "?"
            master, events = (f"{url}{sep}options=-csearch_path%3D{name}" for name in args.schemas)
            stores["postgresql"].append({"master": master, "events": events})
    if not stores:
        parser.error("name a store: --sqlite HOME and/or --pg URL --schemas MASTER EVENTS")
    runs = []
    for round_ in range(args.rounds):
        order = [(b, t) for b in stores for t in args.code]
        if round_ % 2:
            order.reverse()
        for backend, tree in order:
            load = os.getloadavg()[0]
            store = stores[backend][args.code.index(tree) % len(stores[backend])]
            command = [sys.executable, __file__, "--child", json.dumps(store),
                       "--lookups", str(args.lookups), "--seed", str(args.seed)]  # fmt: skip
            env = os.environ | {"PYTHONPATH": str(tree.resolve())}
            out = subprocess.run(command, env=env, cwd=tree, check=True, capture_output=True, text=True)
            figures = json.loads(out.stdout.strip().splitlines()[-1])
            figures |= {"backend": backend, "round": round_, "load_before": round(load, 2)}
            print(json.dumps(figures), flush=True)
            runs.append(figures)
    medians: dict[str, float] = {}
    for backend in stores:
        for tree in args.code:
            mine = [r for r in runs if r["backend"] == backend and r["code"] == str(tree.resolve())]
            for key in ("prefill_p50_ms", "prefill_p99_ms", "link_one_p50_ms", "link_one_p99_ms"):
                medians[f"{backend} {tree} {key}"] = statistics.median(float(r[key]) for r in mine)
    for name, value in medians.items():
        print(f"{name:90} {value:8.2f}")
    if "sqlite" in stores and "postgresql" in stores:
        for tree in args.code:
            for key in ("prefill_p50_ms", "prefill_p99_ms", "link_one_p50_ms", "link_one_p99_ms"):
                pg, lite = medians[f"postgresql {tree} {key}"], medians[f"sqlite {tree} {key}"]
                print(f"PostgreSQL/SQLite {tree} {key}: {pg / lite:.2f}")
    if args.record:
        record = {"at": time.strftime("%Y-%m-%d %H:%M"), "bench": "bench_lookups", "runs": runs,
                  "date": dt.date.today().isoformat()}  # fmt: skip
        with open(HERE / "link_one_results.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
