"""Load on the service-hall backend (examples/hall) over loopback: N clerks' clients at once.

    python benchmarks/bench_hall.py --clients 50 --seconds 60 [--pg postgresql+psycopg://...]

Seeds the demo hall (SQLite in a temporary home, or two fresh PostgreSQL schemas), starts it with
`python -m examples.hall serve` in its own process (one uvicorn worker), signs every client in as a
window clerk (argon2, once per client), then each client asks for prefilled forms of residents of
the demo register, waiting `--think` seconds (uniformly 0.5x-1.5x) between forms as a clerk at a
window does; `--think 0` is a closed loop that saturates the server. Latencies are end to end
(httpx, client side). Afterwards the audit chain must hold exactly one new entry per successful
read and verify. Appends the figures to benchmarks/hall_results.jsonl.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
from sqlalchemy import create_engine, text

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.append(str(REPO))  # examples.hall, after the installed govdb

from examples.hall import open_hall  # noqa: E402
from examples.hall.seed import PEOPLE, SEED, seed  # noqa: E402
from govdb.demo import make_people  # noqa: E402

FORM = "senior_transit_card"
PASSWORD = "bench-window-pass"
AUDIT_KEY = "bench-audit-key-0123456789abcdef"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def client(
    http: httpx.AsyncClient, ids: list[str], until: float, think: float, rng: random.Random
) -> tuple[list[float], int]:
    """One clerk's window: a prefilled form, then a pause, until the time is up."""
    latencies: list[float] = []
    errors = 0
    await asyncio.sleep(rng.uniform(0, max(think, 0.05)))  # clerks do not start in step
    while time.monotonic() < until:
        started = time.perf_counter()
        r = await http.get(f"/api/forms/{FORM}/prefill", params={"id_number": rng.choice(ids)})
        elapsed = time.perf_counter() - started
        if r.status_code == 200 and r.json()["fields"]:
            latencies.append(elapsed)
        else:
            errors += 1
        if think:
            await asyncio.sleep(rng.uniform(0.5 * think, 1.5 * think))
    return latencies, errors


async def load(
    base: str, ids: list[str], clients: int, seconds: float, think: float
) -> tuple[list, int, float]:
    """Sign every client in first (argon2 is slow on purpose), then run them all for `seconds`."""
    https = [httpx.AsyncClient(base_url=base, timeout=30) for _ in range(clients)]
    try:
        for http in https:
            r = await http.post("/api/session", json={"username": "window1", "password": PASSWORD})
            r.raise_for_status()
        started = time.monotonic()
        runs = await asyncio.gather(
            *(client(http, ids, started + seconds, think, random.Random(i)) for i, http in enumerate(https))
        )
        wall = time.monotonic() - started
    finally:
        for http in https:
            await http.aclose()
    return [x for lat, _ in runs for x in lat], sum(e for _, e in runs), wall


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--think", type=float, default=1.0, help="seconds between a client's forms (0: none)")
    parser.add_argument("--pg", help="PostgreSQL URL: seed two fresh schemas there (dropped afterwards)")
    args = parser.parse_args()

    os.environ.setdefault("GOVDB_AUDIT_KEY", AUDIT_KEY)
    work = Path(tempfile.mkdtemp(prefix="govdb-bench-hall-"))
    schemas: list[str] = []
    if args.pg:
        schemas = [f"bh_{uuid.uuid4().hex[:8]}_{k}" for k in ("master", "events")]
        with create_engine(args.pg).begin() as conn:
            for name in schemas:
                conn.execute(text(f'CREATE SCHEMA "{name}"'))
        sep = "&" if "?" in args.pg else "?"
        master_url, events_url = (f"{args.pg}{sep}options=-csearch_path%3D{n}" for n in schemas)
        where = ["--master-url", master_url, "--events-url", events_url]
        opened = {"master_url": master_url, "events_url": events_url}
    else:
        where = ["--home", str(work / "home")]
        opened = {"home": work / "home"}
    server = None
    try:
        hall = open_hall(**opened)
        seed(hall, work, passwords={"window1": PASSWORD})
        hall.db.close()
        ids = make_people(PEOPLE, seed=SEED, today=dt.date.today()).get_column("id_number").to_list()
        port = free_port()
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "examples.hall",
                "serve",
                *where,
                "--port",
                str(port),
                "--promote-every",
                "0",
            ],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(f"{base}/openapi.json", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        # A fresh process builds govdb's national division index on its first personal read
        # (about 6-7 s here): warm the server once before measuring.
        with httpx.Client(base_url=base, timeout=120) as warm:
            warm.post("/api/session", json={"username": "window1", "password": PASSWORD}).raise_for_status()
            warm.get(f"/api/forms/{FORM}/prefill", params={"id_number": ids[0]}).raise_for_status()
        hall = open_hall(**opened)
        before = hall.db.counts()["auditlog"]
        hall.db.close()
        latencies, errors, wall = asyncio.run(load(base, ids, args.clients, args.seconds, args.think))
        server.terminate()
        server.wait(30)
        hall = open_hall(**opened)
        audited = hall.db.counts()["auditlog"] - before
        chain_ok = hall.db.verify_audit().ok
        hall.db.close()
        ms = np.array(latencies) * 1000
        result = {
            "backend": "postgresql" if args.pg else "sqlite",
            "clients": args.clients,
            "seconds": args.seconds,
            "think": args.think,
            "requests": len(latencies),
            "errors": errors,
            "per_second": round(len(latencies) / wall, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p90_ms": round(float(np.percentile(ms, 90)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "max_ms": round(float(ms.max()), 2),
            "audited": audited,
            "every_read_audited": audited == len(latencies) + errors,
            "audit_chain_ok": chain_ok,
            "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        print(json.dumps(result))
        with (HERE / "hall_results.jsonl").open("a", encoding="utf-8") as out:
            out.write(json.dumps(result) + "\n")
    finally:
        if server and server.poll() is None:
            server.kill()
        if schemas:
            with create_engine(args.pg).begin() as conn:
                for name in schemas:
                    conn.execute(text(f'DROP SCHEMA "{name}" CASCADE'))


if __name__ == "__main__":
    main()
