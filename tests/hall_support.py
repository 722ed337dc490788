"""Shared by the hall tests and the hall benchmark: a seeded hall on SQLite or PostgreSQL, and a
uvicorn server on a free loopback port in a thread."""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))  # after site-packages: govdb stays the installed one

from examples.hall import create_app, open_hall  # noqa: E402
from examples.hall.seed import SeedReport, seed  # noqa: E402
from examples.hall.service import Hall  # noqa: E402

PG_AUDIT_KEY = "test-audit-key-0123456789abcdef"
PASSWORDS = {
    "window1": "window-pass-1",
    "village1": "village-pass-1",
    "village2": "village-pass-2",
    "street1": "street-pass-1",
    "police1": "police-pass-1",
    "civil1": "civil-pass-1",
    "bureau1": "bureau-pass-1",
}


@contextmanager
def seeded_hall(backend: str, folder: Path, pg_url: str | None = None) -> Iterator[tuple[Hall, SeedReport]]:
    """The demo hall in `folder` (SQLite) or in fresh PostgreSQL schemas dropped afterwards."""
    names: list[str] = []
    engine = None
    if backend == "postgresql":
        assert pg_url, "GOVDB_TEST_PG_URL is not set"
        engine = create_engine(pg_url)
        names = [f"h_{uuid.uuid4().hex[:10]}_{kind}" for kind in ("master", "events")]
        with engine.begin() as conn:
            for name in names:
                conn.execute(text(f'CREATE SCHEMA "{name}"'))
        sep = "&" if "?" in pg_url else "?"
        master_url, events_url = (f"{pg_url}{sep}options=-csearch_path%3D{n}" for n in names)
        hall = open_hall(master_url=master_url, events_url=events_url, audit_key=PG_AUDIT_KEY)
    else:
        home = folder / "home"
        home.mkdir(parents=True, exist_ok=True)
        hall = open_hall(home, audit_key=os.environ.get("GOVDB_AUDIT_KEY"))
    try:
        report = seed(hall, folder, passwords=PASSWORDS)
        yield hall, report
    finally:
        hall.db.close()
        hall.users.dispose()
        if engine is not None:
            with engine.begin() as conn:
                for name in names:
                    conn.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
            engine.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(hall: Hall, **options: Any) -> Iterator[str]:
    """The hall's app under uvicorn on a free loopback port; yields its base URL."""
    import uvicorn

    port = free_port()
    config = uvicorn.Config(
        create_app(hall, "test-session-secret"), host="127.0.0.1", port=port, log_level="warning", **options
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
