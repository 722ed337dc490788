"""`process` writes each chunk's plan in a writer thread while it links the next (verify.chunk_writes):
the same outcome as one chunk, and a failed write stops the run with nothing after it written, on
both backends."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

import govdb.verify.chunk_writes as chunk_writes
import govdb.verify.pipeline as pipeline
from govdb import GovDB
from govdb.demo import make_disability_records, make_enterprises, make_hall_events, make_people
from govdb.errors import GovdbError

from .conftest import BACKENDS, REPO, TODAY, open_backend

OUTCOME = {
    "event": "SELECT e.event_id, e.source_key, e.status, CAST(e.quality_flags AS TEXT) FROM event e",
    "link": "SELECT e.source_key, l.entity_kind, l.entity_id, l.decision, l.score FROM link l"
    " JOIN event e USING (event_id)",
    "proposal": "SELECT e.source_key, p.change, p.entity_kind, p.entity_id, CAST(p.payload AS TEXT),"
    " p.division_code, p.state FROM proposal p JOIN event e USING (event_id)",
    "task": "SELECT e.source_key, t.step, t.level, t.unit_id, t.state FROM task t"
    " JOIN proposal p USING (proposal_id) JOIN event e USING (event_id)",
    "decision": "SELECT e.source_key, t.step, d.outcome, d.actor_id FROM decision d"
    " JOIN task t USING (task_id) JOIN proposal p USING (proposal_id) JOIN event e USING (event_id)",
}


def _ingested(db: GovDB, folder: Path) -> None:
    """A register loaded; hall registrations, proven certificates and enterprises ingested."""
    register = make_people(80, seed=11, today=TODAY)
    db.load_people(register, source="public_security")
    folder.mkdir(parents=True, exist_ok=True)
    hall, cdpf, amr = folder / "hall.csv", folder / "cdpf.csv", folder / "amr.csv"
    make_hall_events(register, hall, seed=11, today=TODAY)
    make_disability_records(register, cdpf, seed=11, today=TODAY)
    make_enterprises(register, amr, seed=11, today=TODAY)
    db.ingest(hall, source="hall", service_code="hall.resident_registration", key_column="受理编号")
    token = db.register_source("cdpf_system")
    db.ingest(
        cdpf,
        source="cdpf_system",
        source_token=token,
        service_code="cdpf.disability_certificate",
        key_column="记录编号",
    )
    db.ingest(amr, source="amr", service_code="hall.enterprise_registration", key_column="登记编号")


def _outcome(db: GovDB) -> dict[str, list[tuple[Any, ...]]]:
    """What processing stored, master ids written as the ID numbers they belong to."""
    with db.master.connect() as conn:
        ids = dict(conn.execute(text("SELECT person_id, id_number FROM person")).all())
    with db.events.connect() as conn:
        return {
            name: sorted(
                (
                    tuple(ids.get(v, v) if isinstance(v, str) else v for v in row)
                    for row in conn.execute(text(q))
                ),
                key=repr,
            )
            for name, q in OUTCOME.items()
        }


def _processed_outcome(backend: str, home: Path, rules: Any) -> dict[str, list[tuple[Any, ...]]]:
    """What one uninterrupted run stores, in a store of its own."""
    with open_backend(backend, home, rules) as db:
        db.serve_district("440605")
        _ingested(db, home / "files")
        db.process(today=TODAY)
        return _outcome(db)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_run_in_many_chunks_stores_what_one_chunk_stores(
    backend: str, tmp_path: Path, rules: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    writers: set[str] = set()
    write_chunk = chunk_writes.write_chunk

    def spy(events: Any, work: Any) -> None:
        writers.add(threading.current_thread().name)
        write_chunk(events, work)

    monkeypatch.setattr(chunk_writes, "write_chunk", spy)
    seen = {}
    for name, size in (("one", 100_000), ("many", 7)):
        monkeypatch.setattr(pipeline, "CHUNK", size)
        with open_backend(backend, tmp_path / name, rules) as db:
            db.serve_district("440605")
            _ingested(db, tmp_path / name / "files")
            report = db.process(today=TODAY)
            seen[name] = (report.proposals.proposals, report.proposals.auto_passed, _outcome(db))
    proposed, passed, stored = seen["one"]
    assert proposed > 7 * 3 and passed > 0 and stored["decision"]  # several chunks, auto-passes
    assert {status for _, _, status, _ in stored["event"]} >= {"proposed", "invalid"}
    assert {decision for _, kind, _, decision, _ in stored["link"] if kind == "person"} >= {"match", "new"}
    assert seen["many"] == seen["one"]
    assert any(w.startswith("govdb-propose-write") for w in writers), writers


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_failed_write_stops_the_run_and_a_second_run_finishes_it(
    backend: str, tmp_path: Path, rules: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_chunk = chunk_writes.write_chunk
    calls: list[int] = []

    def third_fails(events: Any, work: Any) -> None:
        calls.append(len(work.links))
        if len(calls) == 3:
            raise GovdbError("the disk is full")
        write_chunk(events, work)

    monkeypatch.setattr(pipeline, "CHUNK", 5)
    expected = _processed_outcome(backend, tmp_path / "clean", rules)
    with open_backend(backend, tmp_path / "failing", rules) as db:
        db.serve_district("440605")
        _ingested(db, tmp_path / "failing" / "files")
        monkeypatch.setattr(chunk_writes, "write_chunk", third_fails)
        with pytest.raises(GovdbError, match="disk is full"):
            db.process(today=TODAY)
        assert len(calls) == 3  # the chunk planned meanwhile was never written
        stopped = _outcome(db)
        assert len(stopped["link"]) == sum(calls[:2])  # the first two chunks, and nothing of the third
        # The rest stay as received: a chunk's standardized records are written with its proposals.
        states = [status for _, _, status, _ in stopped["event"]]
        assert states.count("received") > 5 and "standardized" not in states
        monkeypatch.setattr(chunk_writes, "write_chunk", write_chunk)
        db.process(today=TODAY)
        assert _outcome(db) == expected


KILLED = r"""
import datetime, json, os, signal, sys
import govdb.verify.chunk_writes as chunk_writes
import govdb.verify.pipeline as pipeline
from govdb import GovDB

args = json.loads(sys.argv[1])
pipeline.CHUNK = 5
calls = []


def killing(module, name):
    real = getattr(module, name)

    def at_third(*a, **k):
        calls.append(name)
        if len(calls) == 3 and args["when"] == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        out = real(*a, **k)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        return out

    setattr(module, name, at_third)


module, name, _ = args["at"]
killing({"chunk_writes": chunk_writes, "pipeline": pipeline}[module], name)
db = GovDB.open(master_url=args["master"], events_url=args["events"], rules=args["rules"])
db.process(today=datetime.date(2026, 11, 23))
print("not killed")
"""
KILL_POINTS = [
    # in the third chunk's transaction, its events' rows rewritten, nothing else of it yet
    ("chunk_writes", "write_standardized", "after"),
    # two chunks committed; the third planned, the fourth standardized, neither written
    ("chunk_writes", "write_chunk", "before"),
    # the third chunk planned while the second is written
    ("pipeline", "_finish_chunk", "after"),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("at", KILL_POINTS, ids=["-".join(p[1:]) for p in KILL_POINTS])
def test_a_run_killed_midway_leaves_each_event_received_or_proposed_and_the_next_finishes_it(
    backend: str, at: tuple[str, str, str], tmp_path: Path, rules: Any
) -> None:
    """A chunk's standardized records are written with its proposals: a killed run leaves no event
    standardized and unproposed, none with a link but still received, and the next run stores what
    an uninterrupted one does."""
    expected = _processed_outcome(backend, tmp_path / "clean", rules)
    with open_backend(backend, tmp_path / "killed", rules) as db:
        db.serve_district("440605")
        _ingested(db, tmp_path / "killed" / "files")
        urls = {
            "master": db.master.url.render_as_string(hide_password=False),
            "events": db.events.url.render_as_string(hide_password=False),
            "rules": str(REPO / "rules"),
            "at": at,
            "when": at[2],
        }
        run = subprocess.run(
            [sys.executable, "-c", KILLED, json.dumps(urls)],
            capture_output=True,
            text=True,
            timeout=600,
            cwd="/",
        )
        assert run.returncode == -signal.SIGKILL, run.stderr[-3000:]
        stopped = _outcome(db)
        states = {key: status for _, key, status, _ in stopped["event"]}
        linked = {key for key, *_ in stopped["link"]}
        assert "standardized" not in states.values()
        waiting = {key for key, status in states.items() if status == "received"}
        assert len(waiting) > 5 and not waiting & linked
        assert linked and 0 < len(states) - len(waiting) < len(states)
        db.process(today=TODAY)
        assert _outcome(db) == expected
