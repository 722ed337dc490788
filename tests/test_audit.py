"""The audit chain against an insider with database access (issue 11), on SQLite and PostgreSQL.

Each attack is made as such an insider would make it: raw SQL on the stores, with the code of
govdb at hand but without the deployment's audit key. The database refuses what it can refuse
(triggers; on PostgreSQL also the application role's privileges); what needs DDL to get past
the triggers is then found by `verify_audit` (keyed chain, sealed head, checkpoints).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sqlalchemy import Engine, create_engine, func, insert, select, text, update
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from govdb import AccessDeniedError, Actor, GovDB, JurisdictionError, NotFoundError
from govdb.access.audit import (
    CHECKPOINTS,
    GENESIS,
    HEAD,
    LOG,
    SUBJECTS,
    AuditKey,
    checkpoint_mac,
    entry_hash,
    head_mac,
)
from govdb.cli import app
from govdb.demo import DemoReport, make_people, run_demo_on
from govdb.errors import AuditChainError, StateError
from govdb.rulebook import Rulebook
from govdb.store.append_only import audit_role_sql
from govdb.store.master import Issuance

from .conftest import PG_URL, REPO, TODAY, neighbour_transport

COUNTY = "440605"
TRANSPORT = Actor("wang.fang", f"department:transport:{COUNTY}")
WRONG_KEY = AuditKey(b"an-insider-guess-0123456789abcdef")
AUDIT_TABLES = ("auditlog", "auditsubject", "audithead")


# --- helpers -----------------------------------------------------------------------------------


def _register(db: GovDB, n: int = 30, seed: int = 21) -> pl.DataFrame:
    register = make_people(n, seed=seed, today=TODAY)
    db.load_people(register, source="public_security")
    return register


def _prefill(db: GovDB, id_number: str, actor: Actor = TRANSPORT) -> int:
    return db.prefill("senior_transit_card", id_number=id_number, actor=actor, today=TODAY).audit_seq


@pytest.fixture
def reads(db: GovDB) -> pl.DataFrame:
    """A register of 30 people, 6 of them read by transport (7 entries with the founding rules)."""
    register = _register(db)
    for id_number in register["id_number"][:6]:
        _prefill(db, id_number)
    assert _count(db) == 7
    return register


def _count(db: GovDB) -> int:
    with db.master.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(LOG)).scalar_one())


def _head(db: GovDB) -> dict[str, Any]:
    with db.master.connect() as conn:
        return dict(conn.execute(select(HEAD)).mappings().one())


def _entries(db: GovDB) -> list[dict[str, Any]]:
    with db.master.connect() as conn:
        return [dict(r) for r in conn.execute(select(LOG).order_by(LOG.c.seq)).mappings()]


def _subjects(db: GovDB, seq: int) -> list[str]:
    with db.master.connect() as conn:
        return sorted(conn.execute(select(SUBJECTS.c.subject_id).where(SUBJECTS.c.seq == seq)).scalars())


def _is_pg(db: GovDB) -> bool:
    return db.master.dialect.name == "postgresql"


def _attempt(engine: Engine, statement: str) -> str | None:
    """Run one statement in its own transaction; the database's refusal, or None if it went through."""
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(statement)
    except DBAPIError as exc:
        return str(exc.orig)
    return None


def _drop_guards(engine: Engine, *tables: str) -> None:
    """What an insider with DDL rights does first: remove the append-only triggers."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            for table in tables:
                conn.exec_driver_sql(f"DROP TRIGGER {table}_append_only ON {table}")
                conn.exec_driver_sql(f"DROP TRIGGER {table}_no_truncate ON {table}")
            left = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                "WHERE NOT t.tgisinternal AND c.relname = ANY(%(t)s) "
                "AND c.relnamespace = current_schema()::regnamespace",
                {"t": list(tables)},
            ).scalar_one()
        else:
            names = ",".join(f"'{t}'" for t in tables)
            query = f"SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name IN ({names})"
            for (name,) in conn.exec_driver_sql(query).all():
                conn.exec_driver_sql(f"DROP TRIGGER {name}")
            left = len(conn.exec_driver_sql(query).all())
    assert left == 0


def _rechain(
    db: GovDB,
    from_seq: int,
    *,
    key: AuditKey,
    scheme: str,
    change: dict[str, Any],
    head: str = "keep",
) -> None:
    """Rewrite entry `from_seq` and re-chain every later entry as govdb's own code would, with
    `key` (not the deployment's) or plain sha256; `head`: keep it, move its hash (keeping the mac),
    re-seal it with `key`, or unseal it as a legacy log."""
    rows = _entries(db)
    prev = rows[from_seq - 2]["hash"] if from_seq > 1 else GENESIS
    with db.master.begin() as conn:
        for row in rows[from_seq - 1 :]:
            if row["seq"] == from_seq:
                row.update(change)
            row["scheme"] = scheme
            row["prev_hash"] = prev
            row["hash"] = entry_hash(key, prev, row)
            conn.execute(
                update(LOG)
                .where(LOG.c.seq == row["seq"])
                .values(
                    scheme=scheme,
                    prev_hash=prev,
                    hash=row["hash"],
                    **change if row["seq"] == from_seq else {},
                )
            )
            prev = row["hash"]
        last = rows[-1]["seq"]
        if head == "move":
            conn.execute(update(HEAD).values(hash=prev))
        elif head in ("reseal", "rekey"):  # a mac under `key`; key_id copied, or `key`'s own
            old = conn.execute(select(HEAD)).mappings().one()
            key_id = old["key_id"] if head == "reseal" else key.key_id
            mac = head_mac(key, last, prev, old["legacy_until"])
            conn.execute(update(HEAD).values(hash=prev, key_id=key_id, mac=mac))
        elif head == "legacy":
            conn.execute(update(HEAD).values(hash=prev, legacy_until=last, key_id=None, mac=None))


# --- (a) the database refuses changes and removals ------------------------------------------------


def test_the_database_refuses_to_change_or_remove_audit_entries(db: GovDB, reads: pl.DataFrame) -> None:
    db.run_programme("senior_transit_card", as_of=TODAY, actor=TRANSPORT, dry_run=True)  # subject rows
    assert db.verify_audit().ok  # and a checkpoint in the event store
    before, head, entries = _count(db), _head(db), _entries(db)
    attacks = [
        "UPDATE auditlog SET purpose = 'curiosity' WHERE seq = 2",
        "UPDATE auditlog SET actor_id = 'someone.else'",
        "DELETE FROM auditlog WHERE seq = (SELECT MAX(seq) FROM auditlog)",
        "DELETE FROM auditlog",
        "UPDATE auditsubject SET subject_id = 'P-nobody'",
        "DELETE FROM auditsubject",
        "DELETE FROM audithead",
        "UPDATE audithead SET seq = seq - 1",
        "UPDATE audithead SET seq = 0, hash = '" + GENESIS + "'",
        "UPDATE audithead SET hash = '" + GENESIS + "'",  # same seq: not forward
        "UPDATE audithead SET id = 2, seq = seq + 1",
        "INSERT INTO audithead (id, seq, hash, legacy_until) VALUES (1, 0, 'x', 0) "
        "ON CONFLICT (id) DO UPDATE SET seq = 0, hash = EXCLUDED.hash",
    ]
    checkpoint_attacks = ["UPDATE auditcheckpoint SET seq = 1", "DELETE FROM auditcheckpoint"]
    if _is_pg(db):
        attacks += [
            "TRUNCATE auditlog",
            "TRUNCATE auditlog CASCADE",
            "TRUNCATE auditsubject",
            "TRUNCATE audithead",
        ]
        checkpoint_attacks += ["TRUNCATE auditcheckpoint"]
    went_through = [a for a in attacks if _attempt(db.master, a) is None]
    went_through += [a for a in checkpoint_attacks if _attempt(db.events, a) is None]
    assert went_through == []
    refusal = _attempt(db.master, "UPDATE auditlog SET purpose = 'curiosity' WHERE seq = 2")
    assert refusal and "append-only" in refusal
    assert "only moves forward" in (_attempt(db.master, "UPDATE audithead SET seq = 0") or "") or _is_pg(db)
    assert _count(db) == before and _head(db) == head and _entries(db) == entries
    assert db.verify_audit().ok


def test_replacing_a_row_is_refused_too(db: GovDB, reads: pl.DataFrame) -> None:
    """SQLite's REPLACE deletes the conflicting row without firing DELETE triggers (unless
    recursive_triggers is on); PostgreSQL has no REPLACE and its upsert fires the UPDATE trigger."""
    if _is_pg(db):
        attacks = [
            "INSERT INTO auditlog SELECT * FROM auditlog WHERE seq = 2 "
            "ON CONFLICT (seq) DO UPDATE SET purpose = 'curiosity'",
        ]
    else:
        attacks = [
            "INSERT OR REPLACE INTO audithead (id, seq, hash, legacy_until, key_id, mac) "
            f"SELECT 1, 3, '{GENESIS}', 0, key_id, mac FROM audithead",
            "REPLACE INTO auditlog SELECT seq, at, actor_id, unit_id, department, 'curiosity', action, "
            "subject_kind, subject_id, fields, masked, prev_hash, hash, outcome, reason, query_digest, "
            "subject_count, subjects_digest, rules_fingerprint, scheme FROM auditlog WHERE seq = 2",
        ]
    head, entries = _head(db), _entries(db)
    went_through = [a for a in attacks if _attempt(db.master, a) is None]
    assert went_through == [] and _head(db) == head and _entries(db) == entries


# --- (b) with the triggers dropped, verification finds every change -----------------------------


@pytest.mark.parametrize(
    ("where", "first_broken"),
    [
        ("seq = 7", 7),  # the last entry
        ("seq >= 6", 6),  # the last two
        ("seq >= 1", 1),  # all of them
        ("seq = 4", 4),  # one in the middle
    ],
)
def test_removed_entries_are_found(db: GovDB, reads: pl.DataFrame, where: str, first_broken: int) -> None:
    _drop_guards(db.master, *AUDIT_TABLES)
    with db.master.begin() as conn:
        conn.exec_driver_sql(f"DELETE FROM auditlog WHERE {where}")
    result = db.verify_audit()
    assert not result.ok and result.first_broken == first_broken, result
    assert not result.checkpoint_written
    assert "removed" in (result.problem or "") or "missing" in (result.problem or "")


@pytest.mark.parametrize(
    ("key", "scheme"),
    [(WRONG_KEY, "sha256"), (WRONG_KEY, "hmac")],
    ids=["plain-sha256", "hmac-wrong-key"],
)
def test_a_rewritten_and_rechained_entry_is_found(
    db: GovDB, reads: pl.DataFrame, key: AuditKey, scheme: str
) -> None:
    _drop_guards(db.master, *AUDIT_TABLES)
    _rechain(db, 3, key=key, scheme=scheme, change={"purpose": "curiosity"})
    result = db.verify_audit()
    assert not result.ok and result.first_broken == 3, result
    assert "entry 3" in (result.problem or "")


@pytest.mark.parametrize("head", ["move", "reseal", "rekey"])
def test_a_head_moved_along_without_the_key_is_found(db: GovDB, reads: pl.DataFrame, head: str) -> None:
    _drop_guards(db.master, *AUDIT_TABLES)
    _rechain(db, 3, key=WRONG_KEY, scheme="hmac", change={"purpose": "curiosity"}, head=head)
    assert _head(db)["hash"] == _entries(db)[-1]["hash"]  # consistent with the re-chained log
    result = db.verify_audit()
    assert not result.ok and not result.checkpoint_written, result
    expected = {
        "move": "audit head was changed",
        "reseal": "audit head was changed",
        "rekey": "sealed with audit key",
    }
    assert expected[head] in (result.problem or ""), result


def test_a_log_downgraded_to_legacy_sha256_is_found(db: GovDB, reads: pl.DataFrame) -> None:
    """The best an insider without the key can do: re-chain everything from the rewritten entry
    as 'legacy' plain sha256 and unseal the head to cover it. No checkpoint covers entry 3 here."""
    _drop_guards(db.master, *AUDIT_TABLES)
    _rechain(db, 3, key=WRONG_KEY, scheme="sha256", change={"purpose": "curiosity"}, head="legacy")
    result = db.verify_audit(checkpoint=False)
    assert not result.ok


def test_a_downgrade_behind_a_checkpoint_is_found(db: GovDB, reads: pl.DataFrame) -> None:
    assert db.verify_audit().checkpoint_written  # checkpoint at 7
    _drop_guards(db.master, *AUDIT_TABLES)
    _rechain(db, 3, key=WRONG_KEY, scheme="sha256", change={"purpose": "curiosity"}, head="legacy")
    result = db.verify_audit()
    assert not result.ok and result.first_broken is not None and result.first_broken <= 7, result


def test_cutting_back_log_and_head_together_is_found_by_the_checkpoint(
    db: GovDB, reads: pl.DataFrame
) -> None:
    old_head = _head(db)  # at 7, sealed with the key: an insider can copy it
    for id_number in reads["id_number"][6:9]:
        _prefill(db, id_number)
    checked = db.verify_audit()
    assert checked.ok and checked.entries == 10 and checked.checkpoint_written
    _drop_guards(db.master, *AUDIT_TABLES)
    with db.master.begin() as conn:  # a consistent earlier state: log and (replayed) head at 7
        conn.exec_driver_sql("DELETE FROM auditlog WHERE seq > 7")
        conn.execute(update(HEAD).values({k: v for k, v in old_head.items() if k != "id"}))
    assert _head(db) == old_head
    result = db.verify_audit()
    assert not result.ok and result.first_broken == 8 and "cut back" in (result.problem or ""), result


@pytest.mark.parametrize("forger", ["nonsense", "wrong-key"])
def test_a_forged_checkpoint_is_found(db: GovDB, reads: pl.DataFrame, forger: str) -> None:
    assert db.verify_audit().ok
    head = _head(db)
    seq, hash_ = 9, hashlib.sha256(b"made up").hexdigest()
    mac = "f" * 64 if forger == "nonsense" else checkpoint_mac(WRONG_KEY, seq, hash_)
    with db.events.begin() as conn:  # no DDL needed: checkpoints accept INSERT
        conn.execute(
            insert(CHECKPOINTS),
            [
                {
                    "seq": seq,
                    "hash": hash_,
                    "at": dt.datetime.now(dt.UTC),
                    "key_id": head["key_id"],
                    "mac": mac,
                }
            ],
        )
    result = db.verify_audit()
    assert not result.ok and result.first_broken == seq and "forged" in (result.problem or ""), result


def test_removing_a_subject_of_a_batch_read_is_found(db: GovDB, reads: pl.DataFrame) -> None:
    run = db.run_programme("senior_transit_card", as_of=TODAY, actor=TRANSPORT, dry_run=True)
    assert len(run.selected) >= 2
    seq = _count(db)
    _drop_guards(db.master, *AUDIT_TABLES)
    with db.master.begin() as conn:
        conn.execute(
            SUBJECTS.delete().where(
                SUBJECTS.c.seq == seq, SUBJECTS.c.subject_id == run.selected[0]["person_id"]
            )
        )
    result = db.verify_audit()
    assert not result.ok and result.first_broken == seq, result


def test_a_subject_added_to_a_single_read_is_found(db: GovDB, reads: pl.DataFrame) -> None:
    person = _entries(db)[-1]["subject_id"]
    other = next(p for p in _person_ids(db) if p != person)
    with db.master.begin() as conn:  # INSERT is all the application role needs
        conn.execute(insert(SUBJECTS), [{"seq": 7, "subject_kind": "person", "subject_id": other}])
    result = db.verify_audit()
    assert not result.ok and result.first_broken == 7, result


def test_a_forged_entry_laundered_by_the_next_append_is_found(db: GovDB, reads: pl.DataFrame) -> None:
    """Without DDL: move the head forward onto a made-up entry (the trigger lets seq grow), and
    let the next real read chain onto it and re-seal the head with the key."""
    fake = _entries(db)[-1] | {"seq": 8, "purpose": "curiosity", "prev_hash": _head(db)["hash"]}
    fake["hash"] = entry_hash(WRONG_KEY, fake["prev_hash"], fake)
    with db.master.begin() as conn:
        conn.execute(insert(LOG), [fake])
        conn.execute(update(HEAD).values(seq=8, hash=fake["hash"]))
    try:
        seq = _prefill(db, reads["id_number"][7])
    except AuditChainError:  # better still: the append refuses to chain onto a head changed without the key
        assert _head(db)["seq"] == 8
    else:
        head = _head(db)
        assert seq == 9 and head["mac"] == head_mac(db.audit.key, 9, head["hash"], head["legacy_until"])
    result = db.verify_audit()
    assert not result.ok and result.first_broken == 8, result


def _person_ids(db: GovDB) -> list[str]:
    with db.master.connect() as conn:
        return list(conn.exec_driver_sql("SELECT person_id FROM person ORDER BY person_id").scalars())


# --- (c) concurrent readers: one entry each, the chain intact -----------------------------------


def _urls(db: GovDB) -> tuple[str, str]:
    return (
        db.master.url.render_as_string(hide_password=False),
        db.events.url.render_as_string(hide_password=False),
    )


@pytest.mark.parametrize("db", [pytest.param("postgresql", marks=pytest.mark.pg)], indirect=True)
@pytest.mark.parametrize("shared", [False, True], ids=["own-govdb", "shared-govdb"])
def test_fifty_concurrent_readers_on_postgresql(db: GovDB, rules: Rulebook, shared: bool) -> None:
    register = _register(db, n=50, seed=22)
    ids = list(register["id_number"])
    before = _count(db)
    master_url, events_url = _urls(db)
    key = db.audit.key.secret.decode()
    barrier = threading.Barrier(50)
    seqs: list[int] = []
    failures: list[str] = []
    lock = threading.Lock()

    def reader(i: int) -> None:
        gov = None
        try:
            gov = (
                db
                if shared
                else GovDB.open(
                    master_url=master_url, events_url=events_url, rules=rules, audit_key=key, create=False
                )
            )
            barrier.wait(timeout=120)
            for id_number in (ids[i], ids[(i + 1) % 50]):
                seq = _prefill(gov, id_number)
                with lock:
                    seqs.append(seq)
        except BaseException as exc:
            with lock:
                failures.append(f"{type(exc).__name__}: {exc}")
            barrier.abort()
        finally:
            if gov is not None and not shared:
                gov.close()

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert failures == [] and not any(t.is_alive() for t in threads)
    assert len(seqs) == 100 and sorted(seqs) == list(range(before + 1, before + 101))
    assert _count(db) == before + 100
    result = db.verify_audit()
    assert result.ok and result.entries == before + 100, result


@pytest.mark.parametrize("db", [pytest.param("postgresql", marks=pytest.mark.pg)], indirect=True)
def test_an_entry_chained_to_a_head_that_moved_is_not_appended(db: GovDB, reads: pl.DataFrame) -> None:
    """A look-up appends without locking the head (one statement on its own connection): when
    another reader appended between its reading the head and its write, the write changes
    nothing at all (no entry, no subjects, the head as the other left it)."""
    from govdb.access import audit
    from govdb.store.locks import reading

    who, read = audit.Claimed("li.ming", "x"), audit.Read(action="t", purpose="p", subjects=["p1", "p2"])
    with reading(db.master) as conn:
        stale = audit._head(conn, lock=False)
    row, moved = audit._entry(db.audit.key, who, read, stale, ["p1", "p2"], "fingerprint")
    other = _prefill(db, reads["id_number"][3])  # another reader takes the next seq first
    assert other == row["seq"]
    count, head = _count(db), _head(db)
    with reading(db.master) as conn:
        assert audit._append_if_head(conn, stale, row, moved, ["p1", "p2"]) is False
    assert _count(db) == count and _head(db) == head and _subjects(db, other) == []
    with reading(db.master) as conn:  # read again, it goes in after the other
        seq = audit.append(db.master, db.audit.key, who, read, rules_fingerprint="f", conn=conn)
    assert seq == other + 1 and _subjects(db, seq) == ["p1", "p2"]
    assert db.verify_audit().ok


@pytest.mark.parametrize("db", [pytest.param("postgresql", marks=pytest.mark.pg)], indirect=True)
@pytest.mark.parametrize("losses", [1, 3], ids=["won-on-retry", "queued-for-the-lock"])
def test_a_look_up_that_loses_the_race_retries_then_waits_for_the_lock(
    db: GovDB, reads: pl.DataFrame, monkeypatch: pytest.MonkeyPatch, losses: int
) -> None:
    """Each time a look-up reads the head, another reader appends before its write; after
    OPTIMISTIC_TRIES losses it queues for the head's lock. One entry either way, chained after
    the others', and the person's read is on record."""
    from govdb.access import audit

    assert losses <= audit.OPTIMISTIC_TRIES
    real_head, raced, racing, locked = audit._head, [], [], []

    def head_then_race(conn: Any, *, lock: bool) -> dict[str, Any]:
        head = real_head(conn, lock=lock)
        if lock and not racing:
            locked.append(conn)
        if not lock and not racing and len(raced) < losses:
            racing.append(True)  # the other reader's own append is not raced
            raced.append(_prefill(db, reads["id_number"][len(raced) + 1]))
            racing.pop()
        return head

    monkeypatch.setattr(audit, "_head", head_then_race)
    before = _count(db)
    seq = _prefill(db, reads["id_number"][0])
    assert raced == list(range(before + 1, before + 1 + losses)) and seq == before + losses + 1
    assert _count(db) == before + losses + 1 and _head(db)["seq"] == seq
    assert len(locked) == (1 if losses == audit.OPTIMISTIC_TRIES else 0)
    assert db.verify_audit().ok


@pytest.mark.parametrize("db", [pytest.param("postgresql", marks=pytest.mark.pg)], indirect=True)
def test_a_connection_inside_a_transaction_never_appends_without_the_lock(db: GovDB) -> None:
    """Only a connection the driver says commits each statement takes the one-statement append:
    one with a BEGIN sent by hand (whatever SQLAlchemy was told) gets the locked append on a
    connection of its own, so its ROLLBACK takes nothing back from the log."""
    from govdb.access import audit
    from govdb.store.locks import reading

    before = _count(db)
    with reading(db.master) as conn:
        conn.exec_driver_sql("BEGIN")
        assert not audit._autocommit_postgres(conn)
        seq = audit.append(
            db.master, db.audit.key, audit.Claimed("li", "x"), audit.Read(action="t", purpose="p"),
            rules_fingerprint="f", conn=conn,
        )  # fmt: skip
        conn.exec_driver_sql("ROLLBACK")
    assert seq == before + 1 and _count(db) == before + 1 and db.verify_audit().ok


def test_a_keyed_head_whose_seal_was_removed_is_refused(db: GovDB, reads: pl.DataFrame) -> None:
    """An insider moves the head forward and drops its mac (the trigger lets seq grow): appends
    refuse to chain after it, and the read is not given out."""
    with db.master.begin() as conn:
        conn.execute(update(HEAD).values(seq=HEAD.c.seq + 5, mac=None))
    with pytest.raises(AuditChainError, match="unsealed"):
        _prefill(db, reads["id_number"][0])


SQLITE_READER = r"""
import json, pathlib, sys, time
from govdb import Actor, GovDB
args = json.loads(sys.argv[1])
gov = GovDB.open(args["home"], rules=args["rules"], audit_key=args["key"], create=False)
go = pathlib.Path(args["go"])
while not go.exists():
    time.sleep(0.01)
clerk = Actor("clerk.wang", "department:transport:440605")
seqs = [gov.prefill("senior_transit_card", id_number=i, actor=clerk).audit_seq for i in args["ids"]]
gov.close()
print(json.dumps(seqs))
"""


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_concurrent_processes_on_sqlite(db: GovDB, tmp_path: Path) -> None:
    """Three processes (run as scripts: they import the installed govdb, nothing of the tests)
    prefill at the same moment; every read gets its own entry and the chain verifies."""
    register = _register(db, n=30, seed=23)
    ids = list(register["id_number"])
    before = _count(db)
    go = tmp_path / "go"
    args = {"home": str(db.config.home), "rules": str(REPO / "rules"), "key": db.audit.key.secret.decode(),
            "go": str(go)}  # fmt: skip
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SQLITE_READER, json.dumps({**args, "ids": ids[i * 10 : (i + 1) * 10]})],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd="/",
        )
        for i in range(3)
    ]
    go.touch()
    seqs = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        seqs += json.loads(out.strip().splitlines()[-1])
    assert sorted(seqs) == list(range(before + 1, before + 31))
    assert _count(db) == before + 30
    result = db.verify_audit()
    assert result.ok and result.entries == before + 30, result


# --- (d) the PostgreSQL application role -----------------------------------------------------------


@pytest.fixture
def app_role(db: GovDB) -> Iterator[str]:
    """A role with exactly the grants of `audit_role_sql` on the master schema (the event store
    schema gets usage, SELECT and INSERT: audit_role_sql revokes on master tables only)."""
    assert PG_URL
    role = f"govdb_t_{uuid.uuid4().hex[:10]}"
    with db.master.connect() as conn:
        master_schema = conn.exec_driver_sql("SELECT current_schema()").scalar_one()
    with db.events.connect() as conn:
        events_schema = conn.exec_driver_sql("SELECT current_schema()").scalar_one()
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {role} NOLOGIN")
        for statement in audit_role_sql(role, master_schema, "master") + audit_role_sql(
            role, events_schema, "events"
        ):
            conn.exec_driver_sql(statement)
    try:
        yield role
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP OWNED BY {role}")  # its grants and default privileges
            conn.exec_driver_sql(f"DROP ROLE {role}")
        admin.dispose()


def _as_role(url: str, role: str) -> str:
    return url.replace("options=-csearch_path%3D", f"options=-crole%3D{role}%20-csearch_path%3D")


@pytest.mark.parametrize("db", [pytest.param("postgresql", marks=pytest.mark.pg)], indirect=True)
def test_the_application_role_appends_but_cannot_change_or_unguard(
    db: GovDB, reads: pl.DataFrame, app_role: str, rules: Rulebook
) -> None:
    master_url, events_url = _urls(db)
    role_engine = create_engine(_as_role(master_url, app_role))
    try:
        with role_engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT current_user").scalar_one() == app_role
        before, head = _count(db), _head(db)
        attacks = [
            "UPDATE auditlog SET purpose = 'curiosity' WHERE seq = 2",
            "DELETE FROM auditlog WHERE seq = 7",
            "TRUNCATE auditlog",
            "UPDATE auditsubject SET subject_id = 'x'",
            "DELETE FROM auditsubject",
            "TRUNCATE auditsubject",
            "DELETE FROM audithead",
            "TRUNCATE audithead",
            "UPDATE audithead SET seq = seq - 1",
            "DROP TRIGGER auditlog_append_only ON auditlog",
            "DROP TRIGGER audithead_append_only ON audithead",
            "ALTER TABLE auditlog DISABLE TRIGGER ALL",
            "ALTER TABLE auditlog DISABLE TRIGGER auditlog_append_only",
            "DROP FUNCTION govdb_auditlog_append_only() CASCADE",
            "CREATE OR REPLACE FUNCTION govdb_auditlog_append_only() RETURNS trigger LANGUAGE plpgsql "
            "AS $$ BEGIN RETURN NEW; END $$",
            "DROP TABLE auditlog CASCADE",
            "ALTER TABLE auditlog RENAME TO auditlog_old",
            "SET session_replication_role = replica",
        ]
        refusals = {a: _attempt(role_engine, a) for a in attacks}
        assert [a for a, why in refusals.items() if why is None] == []
        reasons = re.compile(r"permission denied|must be owner|append-only|only moves forward")
        assert {a: why for a, why in refusals.items() if not reasons.search(why or "")} == {}
        assert _count(db) == before and _head(db) == head
        # ...but it appends: a prefill through a GovDB connected as the role
        gov = GovDB.open(
            master_url=_as_role(master_url, app_role),
            events_url=_as_role(events_url, app_role),
            rules=rules,
            audit_key=db.audit.key.secret.decode(),
            create=False,
        )
        try:
            seq = _prefill(gov, reads["id_number"][10])
            result = gov.verify_audit()  # writes a checkpoint as the role
        finally:
            gov.close()
        assert seq == before + 1 and _count(db) == before + 1 and _head(db)["seq"] == seq
        assert result.ok and result.checkpoint_written
    finally:
        role_engine.dispose()


# --- (e) no unaudited reads ---------------------------------------------------------------------


def _last(db: GovDB) -> dict[str, Any]:
    return _entries(db)[-1]


def test_link_one_is_audited_found_or_not(db: GovDB, reads: pl.DataFrame) -> None:
    window = Actor("chen", f"department:service_hall:{COUNTY}")
    person = reads.row(12, named=True)
    before = _count(db)
    found = db.link_one(
        {"name": person["name"], "id_number": person["id_number"]}, actor=window, purpose="identity_lookup"
    )
    assert found.person_id is not None and _count(db) == before + 1
    entry = _last(db)
    assert (entry["outcome"], entry["action"], entry["purpose"]) == ("read", "link_one", "identity_lookup")
    assert (entry["actor_id"], entry["unit_id"], entry["department"]) == (
        "chen",
        window.unit_id,
        "service_hall",
    )
    assert entry["subject_id"] == found.person_id and entry["subject_count"] == 1
    assert entry["query_digest"] == db.audit.key.digest("id_number", person["id_number"])

    nobody = "110101199003074258"  # a valid ID number nobody in the register has
    assert nobody not in set(reads["id_number"])
    missed = db.link_one({"name": "查无此人", "id_number": nobody}, actor=window, purpose="identity_lookup")
    assert missed.person_id is None and _count(db) == before + 2
    entry = _last(db)
    assert (entry["outcome"], entry["actor_id"], entry["purpose"]) == ("not_found", "chen", "identity_lookup")
    assert entry["subject_count"] == 0 and entry["subject_id"] == ""
    assert entry["query_digest"] == db.audit.key.digest("id_number", nobody)
    assert nobody not in str(entry)  # only the keyed digest of what was asked
    assert db.verify_audit().ok


def test_a_dry_run_is_audited_with_everyone_it_selected(db: GovDB, reads: pl.DataFrame) -> None:
    before = _count(db)
    run = db.run_programme("senior_transit_card", as_of=TODAY, actor=TRANSPORT, dry_run=True)
    selected = sorted(s["person_id"] for s in run.selected)
    assert len(selected) >= 2 and _count(db) == before + 1
    entry = _last(db)
    assert entry["action"] == "dry_run:senior_transit_card" and entry["outcome"] == "read"
    assert (entry["actor_id"], entry["purpose"]) == (TRANSPORT.actor_id, "senior_transit_card")
    assert entry["subject_count"] == len(selected) and _subjects(db, entry["seq"]) == selected
    with db.master.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Issuance)).scalar_one() == 0
    assert db.verify_audit().ok


def test_refused_reads_are_audited(db: GovDB, reads: pl.DataFrame) -> None:

    neighbour_transport(db)
    person = reads.row(3, named=True)
    with db.master.connect() as conn:
        person_id = conn.execute(
            text("SELECT person_id FROM person WHERE id_number = :i"), {"i": person["id_number"]}
        ).scalar_one()
    cases = [
        # purpose not granted: transport may not read for public rental housing
        ("public_rental_housing", TRANSPORT, AccessDeniedError, "transport", ""),
        # a unit nobody registered
        ("senior_transit_card", Actor("ghost", "department:transport:999999"), NotFoundError, None, ""),
        # the right department of another county
        (
            "senior_transit_card",
            Actor("liu", "department:transport:440604"),
            JurisdictionError,
            "transport",
            person_id,
        ),
    ]
    for form, actor, error, department, subject in cases:
        before = _count(db)
        with pytest.raises(error):
            db.prefill(form, id_number=person["id_number"], actor=actor, today=TODAY)
        assert _count(db) == before + 1, (form, actor)
        entry = _last(db)
        purpose = "public_rental_housing" if form == "public_rental_housing" else "senior_transit_card"
        assert entry["outcome"] == "refused" and entry["reason"], entry
        assert (entry["actor_id"], entry["unit_id"], entry["department"]) == (
            actor.actor_id,
            actor.unit_id,
            department,
        )
        assert entry["purpose"] == purpose and entry["action"] == f"prefill:{form}"
        assert entry["subject_id"] == subject
        assert entry["query_digest"] == db.audit.key.digest("id_number", person["id_number"])
    assert db.verify_audit().ok


def test_a_nul_in_who_reads_or_why_is_refused_and_on_record(db: GovDB, reads: pl.DataFrame) -> None:
    """A NUL in the actor, the unit or the purpose: refused with a clear error (never the store's
    failure), and the refusal is in the log with the NUL written out."""
    id_number = reads["id_number"][2]
    cases = [
        (lambda: _prefill(db, id_number, Actor("li\x00ming", TRANSPORT.unit_id)), StateError, "li\\x00ming"),
        (lambda: _prefill(db, id_number, Actor("li", "department:transport\x00")), NotFoundError, "li"),
        (
            lambda: db.link_one(
                dict(reads.row(2, named=True)), actor=TRANSPORT, purpose="identity\x00lookup"
            ),
            AccessDeniedError,
            TRANSPORT.actor_id,
        ),
    ]
    for call, error, actor_id in cases:
        before = _count(db)
        with pytest.raises(error, match=r"NUL|not a unit id"):
            call()
        entry = _last(db)
        assert _count(db) == before + 1 and entry["outcome"] == "refused" and entry["actor_id"] == actor_id
        assert not any("\x00" in str(value) for value in entry.values())
    assert _last(db)["purpose"] == "identity\\x00lookup"
    assert db.verify_audit().ok


# --- (f) another key ------------------------------------------------------------------------------


def test_a_store_opened_with_another_key_refuses_to_append(
    db: GovDB, reads: pl.DataFrame, rules: Rulebook
) -> None:
    master_url, events_url = _urls(db)
    before, head = _count(db), _head(db)
    wrong = "another-key-0123456789abcdef"
    with pytest.raises(AuditChainError, match="sealed with audit key"):  # refused at open
        GovDB.open(master_url=master_url, events_url=events_url, rules=rules, audit_key=wrong)
    other = GovDB.open(
        master_url=master_url, events_url=events_url, rules=rules, audit_key=wrong, check_rules=False
    )
    try:
        with pytest.raises(AuditChainError, match="sealed with audit key"):  # not even a refusal
            _prefill(other, reads["id_number"][0])
        result = other.verify_audit()
    finally:
        other.close()
    assert (
        not result.ok and "sealed with audit key" in (result.problem or "") and not result.checkpoint_written
    )
    assert _count(db) == before and _head(db) == head
    assert db.verify_audit().ok


# --- invariant 6 end to end (moved from test_pipeline) -------------------------------------------


@pytest.fixture
def demo(db: GovDB, tmp_path: Path) -> DemoReport:
    return run_demo_on(db, tmp_path, people=150, seed=3, today=TODAY)


def test_reads_are_audited_masked_and_chained(db: GovDB, demo: DemoReport) -> None:
    """Invariant 6."""
    senior = next(f.value for f in demo.prefill.fields if f.name == "id_number")
    civil = Actor("ca", f"department:civil_affairs:{COUNTY}")
    housing = db.prefill("public_rental_housing", id_number=senior, actor=civil, today=TODAY)
    id_field = next(f for f in housing.fields if f.name == "id_number")
    assert id_field.masked and id_field.value.startswith("440605") and "*" in id_field.value
    assert not id_field.locked
    assert next(f for f in housing.fields if f.name == "disability_number").value
    with pytest.raises(AccessDeniedError, match="may not read personal data for purpose"):
        db.prefill("public_rental_housing", id_number=senior, actor=TRANSPORT)
    assert db.verify_audit().ok
    read, refused = _entries(db)[-2:]
    assert read["seq"] == housing.audit_seq and refused["seq"] == housing.audit_seq + 1
    assert (read["purpose"], read["outcome"]) == ("public_rental_housing", "read")
    assert {"id_number", "phone"} <= set(read["masked"]) and "id_number" not in read["fields"]
    assert (refused["actor_id"], refused["outcome"]) == (TRANSPORT.actor_id, "refused")
    _drop_guards(db.master, *AUDIT_TABLES)
    with db.master.begin() as conn:
        conn.execute(update(LOG).where(LOG.c.seq == read["seq"]).values(purpose="curiosity"))
    result = db.verify_audit()
    assert not result.ok and result.first_broken == read["seq"], result


# --- (g) the command line -------------------------------------------------------------------------

runner = CliRunner()


def test_audit_verify_on_the_command_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert runner.invoke(app, ["--home", str(home), "init", "--district", COUNTY]).exit_code == 0
    with GovDB.open(home) as gov:
        register = _register(gov, n=10, seed=24)
        for id_number in register["id_number"][:3]:
            _prefill(gov, id_number)
    good = runner.invoke(app, ["--home", str(home), "audit", "verify"])
    assert good.exit_code == 0, good.output
    assert "ok" in good.stdout and "4" in good.stdout
    as_json = runner.invoke(app, ["--home", str(home), "audit", "verify", "--json"])
    assert as_json.exit_code == 0
    data = json.loads(as_json.stdout)
    assert data["ok"] is True and data["entries"] == 4 and data["head_seq"] == 4 and data["checkpoints"] == 1

    raw = sqlite3.connect(home / "govdb.master.sqlite")
    try:
        assert _raw_refused(raw, "UPDATE auditlog SET purpose = 'curiosity' WHERE seq = 3")
        for (name,) in raw.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            if name.startswith("audit"):
                raw.execute(f"DROP TRIGGER {name}")
        raw.execute("UPDATE auditlog SET purpose = 'curiosity' WHERE seq = 3")
        raw.commit()
    finally:
        raw.close()
    bad = runner.invoke(app, ["--home", str(home), "audit", "verify"])
    assert bad.exit_code == 1
    errors = [line for line in bad.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "entry 3" in errors[0] and "changed" in errors[0], bad.stderr
    assert "Traceback" not in bad.output and isinstance(bad.exception, SystemExit | None)
    bad_json = runner.invoke(app, ["--home", str(home), "audit", "verify", "--json"])
    assert bad_json.exit_code == 1 and json.loads(bad_json.stdout)["first_broken"] == 3


def _raw_refused(conn: sqlite3.Connection, statement: str) -> bool:
    try:
        conn.execute(statement)
    except sqlite3.DatabaseError:
        conn.rollback()
        return True
    conn.rollback()
    return False


def test_audit_who_read_on_the_command_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with GovDB.open(home) as gov:
        gov.serve_district(COUNTY)
        register = _register(gov, n=10, seed=25)
        person = register["id_number"][2]
        _prefill(gov, person)
        with pytest.raises(AccessDeniedError):
            gov.prefill("public_rental_housing", id_number=person, actor=TRANSPORT)
    window = f"chen@department:service_hall:{COUNTY}"
    result = runner.invoke(app, ["--home", str(home), "audit", "who-read", person, "--actor", window])
    assert result.exit_code == 0, result.output
    assert f"reads of {person}" in result.stdout and "audit entries" in result.stdout
    as_json = runner.invoke(
        app, ["--home", str(home), "audit", "who-read", person, "--actor", window, "--json"]
    )
    assert as_json.exit_code == 0, as_json.output
    records = [json.loads(line) for line in as_json.stdout.splitlines()]  # JSON Lines
    seen = {(r["actor_id"], r["department"], r["action"], r["purpose"], r["outcome"]) for r in records}
    assert ("wang.fang", "transport", "prefill:senior_transit_card", "senior_transit_card", "read") in seen
    assert (
        "wang.fang",
        "transport",
        "prefill:public_rental_housing",
        "public_rental_housing",
        "refused",
    ) in seen
    missing = runner.invoke(app, ["--home", str(home), "audit", "who-read", person])
    assert missing.exit_code != 0 and "--actor" in missing.output and "Traceback" not in missing.output


def test_audit_role_sql_on_the_command_line() -> None:
    result = runner.invoke(app, ["audit", "role-sql", "govdb_app", "--schema", "stores"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines == [s + ";" for s in audit_role_sql("govdb_app", "stores")]
    assert (
        "REVOKE UPDATE, DELETE, TRUNCATE ON stores.auditlog, stores.auditsubject, stores.rulesapplied, "
        "stores.auditcheckpoint FROM govdb_app;" in lines
    )
    master_only = runner.invoke(app, ["audit", "role-sql", "govdb_app", "--schema", "m", "--store", "master"])
    assert (
        "REVOKE UPDATE, DELETE, TRUNCATE ON m.auditlog, m.auditsubject, m.rulesapplied FROM govdb_app;"
        in master_only.stdout
    )
    refused = runner.invoke(app, ["audit", "role-sql", "app; DROP TABLE auditlog"])
    assert refused.exit_code == 2 and "Traceback" not in refused.output


def test_verifying_while_readers_append_raises_no_false_alarm(db: GovDB, reads: pl.DataFrame) -> None:
    """A scheduled verify on a busy service: entries appended while it walks the log are past the
    head it read, not forgeries, and concurrent verifiers share checkpoints."""
    ids = list(reads["id_number"])
    results: list[Any] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def reader() -> None:
        try:
            for id_number in ids * 2:
                _prefill(db, id_number)
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    def verifier() -> None:
        try:
            while not done.is_set():
                results.append(db.verify_audit())
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=reader),
        threading.Thread(target=verifier),
        threading.Thread(target=verifier),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    assert len(results) >= 2 and all(r.ok for r in results), [r.problem for r in results if not r.ok]
    final = db.verify_audit()
    assert final.ok and final.entries == 7 + 2 * len(ids)


def test_an_entrys_subjects_are_stored_however_many(db: GovDB) -> None:
    """A few subjects (a look-up's person and runner-up) go in as rows, many (a programme run) as
    a frame: either way every subject once, with its entry's seq and kind, and the chain holds."""
    from govdb.access.audit import FEW_SUBJECTS, Claimed, Read, append

    reader = Claimed("wang", TRANSPORT.unit_id, "transport")
    for count in (1, 2, FEW_SUBJECTS, FEW_SUBJECTS + 1, 300):
        subjects = [f"P{i:05d}" for i in range(count)]
        read = Read("link_one", "identity_lookup", subjects=[*subjects, subjects[-1]], query=("phone", "1"))
        seq = append(db.master, db.audit.key, reader, read, rules_fingerprint=db.audit.fingerprint)
        entry = _last(db)
        assert entry["seq"] == seq and entry["subject_count"] == count
        assert _subjects(db, seq) == ([] if count == 1 else subjects)
        assert entry["subject_id"] == (subjects[0] if count == 1 else "")
        with db.master.connect() as conn:
            kinds = set(conn.execute(select(SUBJECTS.c.subject_kind).where(SUBJECTS.c.seq == seq)).scalars())
        assert kinds == (set() if count == 1 else {"person"})
    assert db.verify_audit().ok
