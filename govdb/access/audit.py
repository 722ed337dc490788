"""The audit chain: every read of personal master data, append-only, keyed and anchored.

Each entry's hash is HMAC-SHA256, under the deployment's audit key, of the previous hash and the
entry's canonical body, so an insider with database access but without the key cannot rewrite
an entry and re-chain the rest. The head row (`audithead`, outside the audited table) holds the
last seq and hash sealed with the key: deleting the tail leaves a head that points past the end.
Checkpoints of the head in the event store show a head that was cut back too. Triggers refuse
UPDATE and DELETE on every audit table (govdb.store.append_only).

Appends lock the head row (FOR UPDATE on PostgreSQL, BEGIN IMMEDIATE on SQLite), so any number
of concurrent readers each get the next seq; a look-up on PostgreSQL first tries one statement
that moves the head only if no other append moved it since it was read. A caller releases
personal data only after its entry has committed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import polars as pl
from sqlalchemy import Connection, Engine, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from govdb.base.clock import utcnow
from govdb.errors import AuditChainError, ConfigError, StoreError
from govdb.store.bulk import driver_fetch, executemany, insert_frame, insert_rows
from govdb.store.events import AuditCheckpoint
from govdb.store.locks import writing
from govdb.store.master import AuditHead, AuditLog, AuditSubject

GENESIS = "0" * 64
KEY_FILE = "govdb.audit.key"
KEY_ENV = "GOVDB_AUDIT_KEY"
LOG = AuditLog.__table__  # type: ignore[attr-defined]
SUBJECTS = AuditSubject.__table__  # type: ignore[attr-defined]
HEAD = AuditHead.__table__  # type: ignore[attr-defined]
CHECKPOINTS = AuditCheckpoint.__table__  # type: ignore[attr-defined]
SUBJECT_MAX = 32
FEW_SUBJECTS = 64  # up to this many an entry's subjects go in one executemany, more as a frame


@dataclass(frozen=True)
class AuditKey:
    """The deployment's secret for the audit chain; the databases never hold it."""

    secret: bytes = field(repr=False)

    @property
    def key_id(self) -> str:
        """A public name of the key, so a store opened with another key says so."""
        return hmac.new(self.secret, b"govdb audit key id", hashlib.sha256).hexdigest()[:16]

    def mac(self, message: str) -> str:
        return hmac.new(self.secret, message.encode("utf-8"), hashlib.sha256).hexdigest()

    def digest(self, kind: str, value: str) -> str:
        """A keyed digest of a looked-up value: comparable, not reversible without the key."""
        return self.mac(f"query|{kind}|{value}")


def load_key(explicit: str | None, home: Path | None) -> AuditKey:
    """The audit key: the argument, else GOVDB_AUDIT_KEY, else the key file in the home folder
    (made on first use, readable by its owner only). A server deployment sets GOVDB_AUDIT_KEY
    from its secret store, so a database administrator never sees it."""
    text = explicit or os.environ.get(KEY_ENV)
    if text:
        if len(text) < 16:
            raise ConfigError(
                f"the audit key is {len(text)} characters; use at least 16 (e.g. 64 hex digits)"
            )
        return AuditKey(text.encode("utf-8"))
    if home is None:
        raise ConfigError(
            f"no audit key: set {KEY_ENV} to a secret of 16 or more characters (e.g. the output of "
            "`python -c 'import secrets; print(secrets.token_hex(32))'`); it seals the audit log"
        )
    path = home / KEY_FILE
    if not path.exists():
        # Written whole to a private temporary file, then linked into place: a process opening the
        # same new home at the same moment reads either no file or the whole key, never half.
        temporary = home / f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(32) + "\n")
            try:
                os.link(temporary, path)
            except FileExistsError:
                pass  # another process made it first: use theirs
            finally:
                temporary.unlink(missing_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the audit key file {str(path)!r}: {exc.strerror}") from exc
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the audit key file {str(path)!r}: {exc.strerror}") from exc
    if len(secret) < 16:
        raise ConfigError(f"the audit key file {str(path)!r} holds no key; restore it from your backup")
    return AuditKey(secret.encode("utf-8"))


class Reader(Protocol):
    """Who read: a resolved actor, or what an unresolvable caller claimed (for refusals)."""

    @property
    def actor_id(self) -> str: ...
    @property
    def unit_id(self) -> str: ...
    @property
    def department(self) -> str | None: ...


@dataclass(frozen=True)
class Claimed:
    """A caller whose unit could not be resolved: recorded as claimed, department unknown."""

    actor_id: str
    unit_id: str
    department: str | None = None


@dataclass(frozen=True)
class Read:
    """What one audit entry records: one read (or refused or failed look-up) of personal data."""

    action: str
    purpose: str
    subject_kind: str = "person"
    subjects: Sequence[str] = ()
    fields: Sequence[str] = ()
    masked: Sequence[str] = ()
    outcome: str = "read"  # read / refused / not_found / changed
    reason: str | None = None
    query: tuple[str, str] | None = None  # (kind, value) looked up; stored only as a keyed digest


def _clip(value: Any, size: int) -> str:
    """Text the log can hold: a NUL (which PostgreSQL's text refuses) written as \\x00, so a
    refusal of a caller who sent one is on record too; at most `size` characters."""
    text = "" if value is None else str(value).replace("\x00", "\\x00")
    return text if len(text) <= size else text[: size - 1] + "…"


def _subjects_digest(kind: str, subjects: Iterable[str]) -> str:
    payload = "\n".join(f"{kind}:{s}" for s in sorted(subjects))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _body(row: dict[str, Any]) -> dict[str, Any]:
    """The hashed content of an entry; legacy (sha256) entries hash the fields they had."""
    at = row["at"]
    body = {
        "seq": row["seq"],
        "at": (at.replace(tzinfo=dt.UTC) if at.tzinfo is None else at).isoformat(),
        "actor_id": row["actor_id"],
        "unit_id": row["unit_id"],
        "department": row["department"],
        "purpose": row["purpose"],
        "action": row["action"],
        "subject_kind": row["subject_kind"],
        "subject_id": row["subject_id"],
        "fields": row["fields"],
        "masked": row["masked"],
    }
    if row["scheme"] == "hmac":
        body |= {
            "outcome": row["outcome"],
            "reason": row["reason"],
            "query_digest": row["query_digest"],
            "subject_count": row["subject_count"],
            "subjects_digest": row["subjects_digest"],
            "rules_fingerprint": row["rules_fingerprint"],
        }
    return body


def entry_hash(key: AuditKey, prev_hash: str, row: dict[str, Any]) -> str:
    payload = json.dumps(_body(row), ensure_ascii=False, sort_keys=True, default=str)
    if row["scheme"] == "hmac":
        return key.mac(prev_hash + payload)
    return hashlib.sha256((prev_hash + payload).encode("utf-8")).hexdigest()


def head_mac(key: AuditKey, seq: int, hash_: str, legacy_until: int) -> str:
    return key.mac(f"head|{seq}|{hash_}|{legacy_until}")


def checkpoint_mac(key: AuditKey, seq: int, hash_: str) -> str:
    return key.mac(f"checkpoint|{seq}|{hash_}")


_HEAD_COLUMNS = tuple(c.name for c in HEAD.columns)  # integers and text: nothing to convert


def _head(conn: Connection, *, lock: bool) -> dict[str, Any]:
    """The head row; with `lock`, locked for this transaction (FOR UPDATE on PostgreSQL; SQLite's
    writer holds the one write lock). Read through the driver: every audited read appends, and
    SQLAlchemy's statement cost several times SQLite's reading of one row."""
    statement = f"SELECT {', '.join(_HEAD_COLUMNS)} FROM {HEAD.name} WHERE id = 1"
    if lock and conn.dialect.name == "postgresql":
        statement += " FOR UPDATE"
    rows = driver_fetch(conn, statement, ())
    if not rows:  # a store whose migration found no head row cannot exist; be explicit anyway
        raise AuditChainError("the audit head is missing: the audit log's anchor was removed")
    return dict(zip(_HEAD_COLUMNS, rows[0], strict=True))


def append(
    master: Engine,
    key: AuditKey,
    reader: Reader,
    read: Read,
    *,
    rules_fingerprint: str,
    conn: Connection | None = None,
) -> int:
    """Append one entry (and its subjects) and move the head, atomically; return its seq.

    `conn`: the caller's PostgreSQL connection in autocommit (a look-up's reads), on which the
    entry is appended by one statement that moves the head only if it is still the one read
    (`_append_if_head`): two round trips where a locked transaction takes five (BEGIN, the head
    FOR UPDATE, the entry, COMMIT and a second connection's ping). After a few lost races it
    queues for the head's lock like any other append. Raises AuditChainError when the head was
    written with another key (the entry is not added)."""
    subjects = sorted(set(read.subjects))
    if conn is not None and _autocommit_postgres(conn) and len(subjects) <= FEW_SUBJECTS:
        driver = conn.connection.driver_connection
        for tries in range(1, OPTIMISTIC_TRIES + 2):
            # Lost every race: queue for the head's lock on this same connection (a second one from
            # the pool could wait forever when every connection is a look-up waiting for its second).
            locked = tries > OPTIMISTIC_TRIES
            with driver.transaction() if locked else nullcontext():  # type: ignore[union-attr]
                head = _head(conn, lock=locked)
                row, moved = _entry(key, reader, read, head, subjects, rules_fingerprint)
                if _append_if_head(conn, head, row, moved, subjects):
                    return int(row["seq"])
        raise AuditChainError("the audit head moved while this append held its lock")
    with writing(master) as conn:
        head = _head(conn, lock=True)
        row, moved = _entry(key, reader, read, head, subjects, rules_fingerprint)
        server = conn.dialect.name == "postgresql"
        if server:  # the entry and the head in one statement
            head_moved = update(HEAD).where(HEAD.c.id == 1).values(**moved)
            conn.execute(head_moved.add_cte(insert(LOG).values(row).cte("entry")))
        else:  # through the driver: SQLAlchemy's statements cost more than SQLite's writing them
            insert_rows(conn, LOG, [row])
        if len(subjects) > FEW_SUBJECTS:  # a programme run reads a county's eligible people: one bulk insert
            insert_frame(
                conn,
                SUBJECTS,
                pl.DataFrame({"subject_id": subjects}, schema={"subject_id": pl.String}),
                {"seq": row["seq"], "subject_kind": read.subject_kind},
            )
        elif len(subjects) > 1:  # a look-up's person and runner-up: a frame cost twice the rows
            insert_rows(
                conn,
                SUBJECTS,
                [{"seq": row["seq"], "subject_kind": read.subject_kind, "subject_id": s} for s in subjects],
            )
        if not server:
            sets = ", ".join(f"{c} = ?" for c in moved)
            moved_rows = executemany(
                conn,
                HEAD,
                f"UPDATE {HEAD.name} SET {sets} WHERE id = 1",
                list(moved),
                [tuple(moved.values())],
            )
            if moved_rows != 1:  # the transaction holds the write lock: only a removed head row
                raise AuditChainError("the audit head is missing: the audit log's anchor was removed")
    return int(row["seq"])


OPTIMISTIC_TRIES = 3  # then wait for the head's lock: a busy hall's readers queue, never starve


def _autocommit_postgres(conn: Connection) -> bool:
    """Whether each statement on `conn` commits by itself: asked of the driver, not of what
    SQLAlchemy was told (a BEGIN sent by hand would leave an entry a ROLLBACK could take back)."""
    if conn.dialect.name != "postgresql":
        return False
    driver = conn.connection.driver_connection
    return bool(driver.autocommit) and driver.info.transaction_status.name == "IDLE"  # type: ignore[union-attr]


def _entry(
    key: AuditKey,
    reader: Reader,
    read: Read,
    head: dict[str, Any],
    subjects: list[str],
    rules_fingerprint: str,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The entry after `head` (checked: sealed with this key, unchanged since) and the head's new
    values."""
    if head["key_id"] not in (None, key.key_id):
        raise AuditChainError(
            f"the audit log was sealed with audit key {head['key_id']}, not this one ({key.key_id}); "
            f"open the stores with the deployment's key ({KEY_ENV})"
        )
    sealed = head_mac(key, head["seq"], head["hash"], head["legacy_until"])
    if head["key_id"] is not None and head["mac"] is None:
        raise AuditChainError(
            "the audit head is keyed but unsealed (its mac was removed); run `govdb audit verify`"
        )
    if head["mac"] is not None and head["mac"] != sealed:
        raise AuditChainError(
            "the audit head was changed by someone without the audit key; run `govdb audit verify`"
        )
    row: dict[str, Any] = {
        "seq": head["seq"] + 1,
        "at": utcnow().replace(microsecond=0),
        "actor_id": _clip(reader.actor_id, 64),
        "unit_id": _clip(reader.unit_id, 64),
        "department": reader.department,
        "purpose": _clip(read.purpose, 256),
        "action": _clip(read.action, 32),
        "subject_kind": read.subject_kind,
        "subject_id": subjects[0] if len(subjects) == 1 else "",
        "fields": list(read.fields),
        "masked": list(read.masked),
        "outcome": read.outcome,
        "reason": _clip(read.reason, 512) if read.reason else None,
        "query_digest": key.digest(*read.query) if read.query else None,
        "subject_count": len(subjects),
        "subjects_digest": _subjects_digest(read.subject_kind, subjects) if len(subjects) > 1 else None,
        "rules_fingerprint": rules_fingerprint,
        "scheme": "hmac",
        "prev_hash": head["hash"],
    }
    row["hash"] = entry_hash(key, head["hash"], row)
    mac = head_mac(key, row["seq"], row["hash"], head["legacy_until"])
    return row, {"seq": row["seq"], "hash": row["hash"], "key_id": key.key_id, "mac": mac}


_ENTRY_COLUMNS = tuple(c.name for c in LOG.columns)
_JSON_COLUMNS = {"fields", "masked"}
# Moves the head only if it is still the one the entry was chained to (every column compared, as
# it was read), and adds the entry and its subjects only if it moved: one statement, one implicit
# transaction; a concurrent append makes it change nothing (PostgreSQL re-checks the WHERE against
# the row the other committed), and the caller reads the new head and tries again.
_APPEND_IF_HEAD = (
    f"WITH moved AS (UPDATE {HEAD.name} SET seq = %(new_seq)s, hash = %(new_hash)s, key_id = %(new_key_id)s, "
    "mac = %(new_mac)s WHERE id = 1"
    + "".join(f" AND {c} IS NOT DISTINCT FROM %(old_{c})s" for c in _HEAD_COLUMNS if c != "id")
    + " RETURNING seq), "
    f"subjects AS (INSERT INTO {SUBJECTS.name} (seq, subject_kind, subject_id) "
    "SELECT moved.seq, %(subject_kind)s, s FROM moved, unnest(%(subjects)s::text[]) AS s) "
    f"INSERT INTO {LOG.name} ({', '.join(_ENTRY_COLUMNS)}) SELECT "
    + ", ".join(f"%({c})s::json" if c in _JSON_COLUMNS else f"%({c})s" for c in _ENTRY_COLUMNS)
    + " FROM moved RETURNING seq"
)


def _append_if_head(
    conn: Connection, head: dict[str, Any], row: dict[str, Any], moved: dict[str, Any], subjects: list[str]
) -> bool:
    """Whether the entry was appended after `head` (False: another append moved it first)."""
    params = {f"old_{c}": v for c, v in head.items()} | {f"new_{c}": v for c, v in moved.items()}
    params |= {c: row[c] for c in _ENTRY_COLUMNS}
    params |= {c: json.dumps(row[c], ensure_ascii=False) for c in _JSON_COLUMNS}
    params["subjects"] = subjects if len(subjects) > 1 else []
    return bool(driver_fetch(conn, _APPEND_IF_HEAD, params))


@dataclass(frozen=True)
class AuditVerification:
    """The outcome of checking the chain: `ok`, or the first broken entry and why."""

    ok: bool
    entries: int
    head_seq: int
    head_hash: str
    checkpoints: int
    first_broken: int | None = None
    problem: str | None = None
    checkpoint_written: bool = False


def verify(master: Engine, events: Engine, key: AuditKey, *, checkpoint: bool = True) -> AuditVerification:
    """Walk the whole chain against its head and the event store's checkpoints.

    On success, and when the head moved since the last checkpoint, a new checkpoint is written
    (run `govdb audit verify` on a schedule: each run anchors the head in the other store)."""
    # Checkpoints first, then the head, then the log up to that head: readers appending meanwhile
    # add entries past it (each commits with its head move), which are not mistaken for forgeries.
    with events.connect() as conn:
        marks = [dict(r) for r in conn.execute(select(CHECKPOINTS).order_by(CHECKPOINTS.c.seq)).mappings()]
    with master.connect() as conn:
        head = conn.execute(select(HEAD).where(HEAD.c.id == 1)).mappings().first()
    if head is None:
        return AuditVerification(False, 0, 0, GENESIS, len(marks), 1, "the audit head row was removed")

    def broken(at: int | None, problem: str, entries: int) -> AuditVerification:
        return AuditVerification(False, entries, head["seq"], head["hash"], len(marks), at, problem)

    if head["key_id"] not in (None, key.key_id):
        return broken(None, f"the log was sealed with audit key {head['key_id']}, not {key.key_id}", 0)
    if head["seq"] > 0 and head["mac"] is None:
        return broken(
            head["seq"],
            "the audit head is not sealed with the audit key (a downgraded log, or a legacy store "
            "never opened since its migration: open it once to seal it)",
            0,
        )
    if head["seq"] > 0 and head["mac"] != head_mac(key, head["seq"], head["hash"], head["legacy_until"]):
        return broken(head["seq"], "the audit head was changed by someone without the audit key", 0)
    marked = {m["seq"]: m for m in marks}
    for m in marks:
        if m["key_id"] != key.key_id or m["mac"] != checkpoint_mac(key, m["seq"], m["hash"]):
            return broken(m["seq"], f"checkpoint {m['seq']} in the event store was forged or changed", 0)
    prev, count, many = GENESIS, 0, set()
    with master.connect() as conn:
        multi = {seq: _subjects_digest(kind, ids) for seq, kind, ids in _grouped_subjects(conn)}
        walk = select(LOG).where(LOG.c.seq <= head["seq"]).order_by(LOG.c.seq)
        rows = conn.execution_options(yield_per=5000).execute(walk).mappings()
        for row in rows:
            count += 1
            seq = row["seq"]
            if seq != count:
                return broken(count, f"entry {count} is missing (the next entry is {seq})", count - 1)
            if row["scheme"] == "sha256" and seq > head["legacy_until"]:
                return broken(seq, f"entry {seq} was rewritten without the audit key (plain sha256)", count)
            if row["prev_hash"] != prev or row["hash"] != entry_hash(key, prev, dict(row)):
                return broken(seq, f"entry {seq} was changed after it was written", count)
            if row["subject_count"] > 1:
                many.add(seq)
            if row["subject_count"] > 1 and multi.get(seq) != row["subjects_digest"]:
                return broken(seq, f"the subjects of entry {seq} were changed after it was written", count)
            if seq in marked and marked[seq]["hash"] != row["hash"]:
                return broken(seq, f"entry {seq} differs from checkpoint {seq} in the event store", count)
            prev = row["hash"]
        past = conn.execute(select(func.max(LOG.c.seq)).where(LOG.c.seq > head["seq"])).scalar_one_or_none()
        now_at = conn.execute(select(HEAD.c.seq).where(HEAD.c.id == 1)).scalar_one_or_none() or 0
    if past is not None and past > now_at:  # an entry no append's head move accounts for
        return broken(head["seq"] + 1, "entries were added past the head without the audit key", count)
    stray = sorted(seq for seq in set(multi) - many if seq <= head["seq"] or seq > now_at)
    if stray:
        return broken(stray[0], f"subject rows were added to entry {stray[0]}, which read no list", count)
    if count < head["seq"]:
        return broken(count + 1, f"entries {count + 1}..{head['seq']} were removed from the end", count)
    if count > head["seq"] or prev != head["hash"]:
        return broken(head["seq"] + 1, "entries were added past the head without the audit key", count)
    if marks and marks[-1]["seq"] > count:
        last = marks[-1]["seq"]
        return broken(count + 1, f"the log was cut back: checkpoint {last} is past its end ({count})", count)
    written = False
    if checkpoint and count and (not marks or marks[-1]["seq"] < count):
        written = _checkpoint(events, key, count, prev)
    return AuditVerification(
        True, count, head["seq"], head["hash"], len(marks) + int(written), checkpoint_written=written
    )


def _checkpoint(events: Engine, key: AuditKey, seq: int, hash_: str) -> bool:
    """Anchor the verified head in the event store; a verifier that got there first is fine."""
    row = {
        "seq": seq,
        "hash": hash_,
        "at": utcnow(),
        "key_id": key.key_id,
        "mac": checkpoint_mac(key, seq, hash_),
    }
    try:
        with writing(events) as conn:
            conn.execute(insert(CHECKPOINTS), [row])
    except (IntegrityError, StoreError):
        with events.connect() as conn:
            there = conn.execute(
                select(CHECKPOINTS.c.hash).where(CHECKPOINTS.c.seq == seq)
            ).scalar_one_or_none()
        if there != hash_:
            raise
        return False
    return True


def _grouped_subjects(conn: Connection) -> Iterable[tuple[int, str, list[str]]]:
    current: tuple[int, str] | None = None
    ids: list[str] = []
    query = select(SUBJECTS).order_by(SUBJECTS.c.seq, SUBJECTS.c.subject_kind, SUBJECTS.c.subject_id)
    for row in conn.execution_options(yield_per=20000).execute(query).mappings():
        marker = (row["seq"], row["subject_kind"])
        if marker != current:
            if current is not None:
                yield current[0], current[1], ids
            current, ids = marker, []
        ids.append(row["subject_id"])
    if current is not None:
        yield current[0], current[1], ids


@dataclass(frozen=True)
class ReadRecord:
    """One read of one person's data, as `who_read` reports it."""

    seq: int
    at: dt.datetime
    actor_id: str
    unit_id: str
    department: str | None
    purpose: str
    action: str
    outcome: str
    fields: list[str]
    masked: list[str]


def reads_of(
    master: Engine,
    key: AuditKey,
    subject_kind: str,
    subject_id: str | None,
    queries: Sequence[tuple[str, str]],
) -> list[ReadRecord]:
    """Every audit entry about one subject: named reads, batch reads listing it, and look-ups of
    its identifiers (also those that found nothing, before or after it existed)."""
    digests = [key.digest(*q) for q in queries]
    conditions = []
    if subject_id:
        conditions.append((LOG.c.subject_kind == subject_kind) & (LOG.c.subject_id == subject_id))
        conditions.append(  # subject rows count only for entries that read a list (verify checks them)
            (LOG.c.subject_count > 1)
            & LOG.c.seq.in_(
                select(SUBJECTS.c.seq).where(
                    SUBJECTS.c.subject_kind == subject_kind, SUBJECTS.c.subject_id == subject_id
                )
            )
        )
    if digests:
        conditions.append(LOG.c.query_digest.in_(digests))
    if not conditions:
        return []
    with master.connect() as conn:
        rows = conn.execute(select(LOG).where(or_(*conditions)).order_by(LOG.c.seq)).mappings().all()
    return [
        ReadRecord(
            r["seq"],
            r["at"],
            r["actor_id"],
            r["unit_id"],
            r["department"],
            r["purpose"],
            r["action"],
            r["outcome"],
            list(r["fields"]),
            list(r["masked"]),
        )
        for r in rows
    ]
