"""Files and frames -> event store: every record kept as received, versioned, counted, or quarantined.

A source record is (source system, source key): the value of a key column the caller names, else
the hash of the record's content. The same key with the same content is stored once (a second
ingest of a file stores nothing); the same key with other content is stored as the record's next
version and reported, never dropped. A record that cannot be read goes to quarantine with its line,
reason, text and exact bytes. For every ingest, read = stored + new_versions + duplicate +
quarantined.

Ingests of one source are serialized (an advisory lock on PostgreSQL, the write lock on SQLite),
so concurrent ingests of one file store it once and each report tells what it did.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import Connection, Engine, insert, text

from govdb.base.clock import utcnow
from govdb.base.jsontext import json_objects
from govdb.errors import ConfigError, InputFileError
from govdb.readers import FileRecords, Unreadable, plain_text, read_records, records_of_frame
from govdb.readers.columns import check_mapping, plan_columns
from govdb.standards import STANDARD_COLUMNS
from govdb.standards.dates import parse_datetime
from govdb.store.bulk import (
    Constant,
    driver_fetch,
    indexes_deferred,
    insert_frame,
    insert_ignoring_duplicates,
)
from govdb.store.engine import store_errors
from govdb.store.events import KEY_MAX, SOURCE_MAX, Event, IngestBatch, Quarantine
from govdb.store.locks import xact_lock

Progress = Callable[[int, int], None]  # (rows done, rows total)
INSERT_CHUNK = 20_000  # events per statement, so progress moves on a large file
OCCURRED_AT_UNREADABLE = "occurred_at_unreadable"
INGEST_FLAGS = frozenset({OCCURRED_AT_UNREADABLE})  # quality flags ingest sets; later stages keep them
_OPTION_LIMITS = {"source": SOURCE_MAX, "service_code": 64, "department": 64, "channel": 32}


@dataclass(frozen=True, order=True)
class QuarantinedRow:
    line: int
    reason: str


@dataclass(frozen=True, order=True)
class VersionedRow:
    """A record whose key was known with other content, stored as that key's `version`."""

    line: int
    key: str
    version: int


@dataclass
class IngestReport:
    """What one ingest did: read = stored + new_versions + duplicate + quarantined (blank lines aside)."""

    source_system: str
    source_file: str | None
    batch_id: str
    encoding: str | None
    read: int = 0
    stored: int = 0
    new_versions: int = 0
    duplicate: int = 0
    quarantined: int = 0
    blank: int = 0
    quarantine: list[QuarantinedRow] = field(default_factory=list)
    versions: list[VersionedRow] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def canonical_json(payload: dict[str, Any]) -> str:
    """The payload as stored and hashed: UTF-8 JSON with sorted keys, so column order does not matter."""
    return json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


# Unicode White_Space: what surrounds a key without being part of it (one set for Python and polars).
KEY_SPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680"
    + "".join(map(chr, range(0x2000, 0x200B)))
    + "\u2028\u2029\u202f\u205f\u3000"
)


def source_key(value: Any) -> str | None:
    """The key a record is known by: text without surrounding spaces; 1, "1" and 1.0 are one key."""
    if value is None or isinstance(value, dict | list):
        return None if value is None else canonical_json({"k": value})[5:-1]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    key = str(value).strip(KEY_SPACE)
    return key or None


def _canonical_json_column(frame: pl.DataFrame) -> pl.Series:
    """canonical_json of every row of a frame of text columns, computed on whole columns."""
    keys = {column: column for column in sorted(frame.columns)}
    return json_objects(frame, keys, separators=(",", ":"))


def _contents(records: FileRecords) -> pl.Series:
    """Every readable record's payload as canonical JSON, kept as one column (never a Python list)."""
    if records.frame is not None:
        return _canonical_json_column(records.frame)
    return pl.Series("json", [canonical_json(payload) for payload in records.payloads], dtype=pl.String)


def _sha256_hex(contents: pl.Series, exact: list[str]) -> pl.Series:
    """SHA-256 of each record's content as hex: of `exact` where given (JSON Lines numbers as
    written), else of the canonical JSON, whose UTF-8 bytes come straight from the column."""
    data = [text.encode() for text in exact] if exact else contents.cast(pl.Binary).to_list()
    sha256 = hashlib.sha256
    # Raw digests, hex-encoded on the whole column: a third less than hexdigest() per row.
    return pl.Series([sha256(b).digest() for b in data], dtype=pl.Binary).bin.encode("hex")


def _keys(records: FileRecords, key_column: str | None, digests: pl.Series) -> pl.Series:
    if key_column is None:
        return digests
    if records.frame is not None:
        keys = records.frame.get_column(key_column).str.strip_chars(KEY_SPACE)
        return keys.set(keys == "", None)
    return pl.Series([source_key(p.get(key_column)) for p in records.payloads], dtype=pl.String)


def _key_records(records: FileRecords, key_column: str | None) -> tuple[pl.DataFrame, list[Unreadable]]:
    """Readable records as (i, source_key, raw, content_sha256) in file order; those refused for their key."""
    contents = _contents(records)
    # The hash tells contents apart exactly: JSON numbers as written, where the payload has floats.
    digests = _sha256_hex(contents, records.exact)
    keyed = pl.DataFrame(
        {
            "i": pl.int_range(len(contents), eager=True, dtype=pl.Int64),
            "source_key": _keys(records, key_column, digests),
            "raw": contents,
            "content_sha256": digests,
        }
    )
    refused = keyed.filter(pl.col("source_key").is_null() | (pl.col("source_key").str.len_chars() > KEY_MAX))
    bad = []
    for i, key in refused.select("i", "source_key").iter_rows():
        problem = (
            f"key column {key_column!r} is empty"
            if key is None
            else f"the key in column {key_column!r} is {len(key)} characters long; at most {KEY_MAX} fit"
        )
        bad.append(Unreadable(records.lines[i], *records.as_received(i), problem))
    if bad:
        keyed = keyed.join(refused.select("i"), on="i", how="anti", maintain_order="left")
    return keyed, bad


def _check_options(options: dict[str, str | None]) -> None:
    for name, value in options.items():
        if value is None:
            continue
        limit = _OPTION_LIMITS[name]
        if name == "source" and not value.strip():
            raise ConfigError("the source name is empty; name the source system the data came from")
        if len(value) > limit:
            raise ConfigError(
                f"the {name} {value[:40]!r}... is {len(value)} characters long; at most {limit} fit"
            )
        if "\x00" in value or any("\ud800" <= c <= "\udfff" for c in value):
            raise ConfigError(
                f"the {name} {plain_text(value)!r} holds a NUL or undecodable bytes; name it in plain text"
            )


def _check_key_column(
    records: FileRecords, column: str | None, source_file: str | None, role: str = "key"
) -> None:
    if column is not None and not column.strip():
        raise InputFileError(
            f"{source_file or 'input'}: the {role} column's name is empty; name a column of the header "
            f"{records.columns} or leave the option out"
        )
    if not column or not (records.columns or records.payloads):
        return
    known = records.columns or list(records.payloads[0])
    if column in known or (not records.columns and any(column in p for p in records.payloads)):
        return
    fix = "leave --key out to key rows by content" if role == "key" else "leave --occurred-at out"
    raise InputFileError(
        f"{source_file or 'input'}: {role} column {column!r} is not in the header {known}; "
        f"name an existing column or {fix}"
    )


def _standard_columns(
    records: FileRecords, source_file: str | None, mapping: dict[str, str], aliases: dict[str, str]
) -> list[str]:
    """Warnings about the header's standard columns (none found, two meaning one); a mapping that
    names a column the header lacks, or a column govdb does not read, is refused."""
    standard = tuple(dict.fromkeys([*STANDARD_COLUMNS, *aliases.values()]))
    check_mapping(mapping, standard)
    if not records.read:
        return []
    header = records.columns or list(dict.fromkeys(k for p in records.payloads for k in p))
    plan = plan_columns(header, aliases, mapping, where=source_file or "input", standard=standard)
    return plan.warnings


def _lock_source(conn: Connection, source: str) -> None:
    """Serialize ingests of one source until the transaction ends."""
    if conn.dialect.name == "postgresql":
        xact_lock(conn, f"ingest:{source}")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _known_versions(conn: Connection, source: str, keys: pl.Series) -> pl.DataFrame:
    """(source_key, content_sha256, version) of every stored version of these keys; one statement."""
    schema = {"source_key": pl.String, "content_sha256": pl.String, "version": pl.Int64}
    if keys.is_empty() or not _has_events(conn, source):
        return pl.DataFrame(schema=schema)  # a source's first ingest: nothing to look up
    distinct = keys.unique().to_list()
    select = "SELECT source_key, content_sha256, version FROM event WHERE source_system = "
    if conn.dialect.name == "postgresql":
        statement = select + "%s AND source_key = ANY(%s)"
        values: Any = distinct
    else:
        statement = select + "? AND source_key IN (SELECT value FROM json_each(?))"
        values = json.dumps(distinct, ensure_ascii=False)
    # The driver's own cursor: a re-ingest of a large file fetches a row per key, and SQLAlchemy's
    # result rows would cost more than the query.
    rows = driver_fetch(conn, statement, (source, values))
    return pl.DataFrame(rows, schema=schema, orient="row")


def _has_events(conn: Connection, source: str) -> bool:
    """Whether the source has stored anything yet (one probe of the unique index on its keys)."""
    probe = text("SELECT 1 FROM event WHERE source_system = :source LIMIT 1")
    return conn.execute(probe, {"source": source}).first() is not None


def _occurred_at(records: FileRecords, column: str | None, rows: pl.Series) -> pl.DataFrame:
    """occurred_at (Asia/Shanghai local time as people write it -> aware UTC, time of day kept) and
    quality_flags, which name a time that was given but cannot be read (the event keeps it in raw)."""
    if column is None:
        return pl.DataFrame(
            {
                "occurred_at": pl.Series([None] * len(rows), dtype=pl.Datetime("us", "UTC")),
                "quality_flags": "[]",
            }
        )
    frame = pl.DataFrame({"t": records.text_frame().get_column(column).gather(rows)})
    distinct = frame.unique("t").with_columns(
        parse_datetime(pl.col("t")).alias("occurred_at")
    )  # times repeat
    at = frame.join(distinct, on="t", how="left", nulls_equal=True, maintain_order="left")
    unreadable = pl.col("occurred_at").is_null() & (pl.col("t").str.strip_chars() != "")
    return at.select(
        "occurred_at",
        pl.when(unreadable)
        .then(pl.lit('["occurred_at_unreadable"]'))
        .otherwise(pl.lit("[]"))
        .alias("quality_flags"),
    )


def _plan(keyed: pl.DataFrame, known: pl.DataFrame) -> pl.DataFrame:
    """The records to store, each with its version: content not seen before under its key, in file order.

    Content already stored, or met earlier in the file, under the same key is a duplicate; new
    content under a known key is the key's next version (versions of one key count up without gaps).
    """
    columns = ["i", "source_key", "raw", "content_sha256"]
    # Keys that occur once in the file (an ID column: the usual case) skip the per-key work.
    once = keyed.get_column("source_key").n_unique() == keyed.height
    fresh = keyed if once else keyed.filter(pl.struct("source_key", "content_sha256").is_first_distinct())
    if known.is_empty():
        if once:
            return fresh.select(*columns, pl.lit(1, pl.Int64).alias("version"))
        return fresh.select(*columns, pl.int_range(1, pl.len() + 1).over("source_key").alias("version"))
    fresh = fresh.join(known, on=["source_key", "content_sha256"], how="anti", maintain_order="left")
    last = known.group_by("source_key").agg(pl.col("version").max().alias("last"))
    return fresh.join(last, on="source_key", how="left", maintain_order="left").select(
        *columns,
        (pl.col("last").fill_null(0) + pl.int_range(1, pl.len() + 1).over("source_key")).alias("version"),
    )


def _reversions(keyed: pl.DataFrame, known: pl.DataFrame, lines: list[int]) -> list[str]:
    """Records that return to an older stored version of their key: duplicates, but worth a word.

    Versions hold each distinct content once, so A, B, A stores A and B; the steward learns that
    the source went back to A, which `process` would otherwise not see.
    """
    if known.is_empty() or known.get_column("version").max() == 1:
        return []  # no key has an older version to go back to
    latest = known.group_by("source_key").agg(pl.col("version").max().alias("latest"))
    back = (
        keyed.join(known, on=["source_key", "content_sha256"], how="inner", maintain_order="left")
        .join(latest, on="source_key", maintain_order="left")
        .filter(pl.col("version") < pl.col("latest"))
    )
    return [
        f"line {lines[i]}: the record {key!r} goes back to its version {version} (version {last} is "
        "the latest stored); nothing new was stored for it"
        for i, key, version, last in back.select("i", "source_key", "version", "latest").iter_rows()
    ]


def ingest_records(
    engine: Engine,
    records: FileRecords,
    *,
    source: str,
    source_file: str | None,
    file_digest: str,
    key_column: str | None = None,
    occurred_at_column: str | None = None,
    service_code: str | None = None,
    department: str | None = None,
    channel: str | None = None,
    progress: Progress | None = None,
    authenticated_source: str | None = None,
    mapping: dict[str, str] | None = None,
    aliases: dict[str, str] | None = None,
) -> IngestReport:
    """Store what a file held as events in one transaction; the core of every ingest.

    `authenticated_source` is the registered source the caller proved to be (see
    govdb.verify.sources); `department` is only what the caller says, and earns nothing.
    `mapping` (header -> standard column, e.g. 统一社会信用代码 -> uscc) is kept with the batch for
    `process`, which otherwise reads headers through the rules' `aliases`; with neither naming a
    standard column of the header, the report warns (the events are stored all the same)."""
    _check_options(
        {"source": source, "service_code": service_code, "department": department, "channel": channel}
    )
    _check_key_column(records, key_column, source_file)
    if occurred_at_column:
        _check_key_column(records, occurred_at_column, source_file, role="occurred-at")
    columns = _standard_columns(records, source_file, mapping or {}, aliases or {})
    report = IngestReport(
        source, source_file, str(uuid.uuid4()), records.encoding, read=records.read, blank=records.blank
    )
    report.warnings = list(records.warnings) + columns
    keyed, refused = _key_records(records, key_column)
    bad = sorted([*records.bad, *refused], key=lambda u: u.line)
    batch: dict[str, Any] = {
        "batch_id": report.batch_id,
        "source_system": source,
        "source_file": source_file,
        "received_at": utcnow(),
    }
    with store_errors(engine), engine.begin() as conn:
        _lock_source(conn, source)
        known = _known_versions(conn, source, keyed.get_column("source_key"))
        plan = _plan(keyed, known)
        report.warnings += _reversions(keyed, known, records.lines)
        events = _event_rows(records, plan, occurred_at_column)
        conn.execute(
            insert(IngestBatch.__table__),  # type: ignore[attr-defined]
            [
                batch
                | {"file_sha256": file_digest, "encoding": records.encoding, "read": report.read}
                | {"authenticated_source": authenticated_source}
                | ({"column_map": dict(mapping)} if mapping else {})
            ],
        )
        constants = batch | {"service_code": service_code, "department": department, "channel": channel}
        _insert_events(conn, events, constants, progress)
        _quarantine(conn, bad, batch | {"file_sha256": file_digest})
        _count(report, events, keyed.height, bad)
        conn.execute(
            IngestBatch.__table__.update()  # type: ignore[attr-defined]
            .where(IngestBatch.__table__.c.batch_id == report.batch_id)  # type: ignore[attr-defined]
            .values(
                stored=report.stored,
                new_versions=report.new_versions,
                duplicate=report.duplicate,
                quarantined=report.quarantined,
                blank=report.blank,
            )
        )
    return report


def _event_rows(records: FileRecords, plan: pl.DataFrame, occurred_at_column: str | None) -> pl.DataFrame:
    """The planned records as event columns: where each was in the file, as received, and when."""
    chosen = plan.get_column("i")
    occurred = _occurred_at(records, occurred_at_column, chosen)
    lines = pl.Series(records.lines, dtype=pl.Int64)
    return plan.select(
        "source_key",
        "version",
        "content_sha256",
        lines.gather(chosen).alias("source_line"),
        records.text_series().gather(chosen).alias("raw_text"),
        "raw",
        occurred.get_column("occurred_at"),
        occurred.get_column("quality_flags"),
    )


def _insert_events(
    conn: Connection, events: pl.DataFrame, batch: dict[str, Any], progress: Progress | None
) -> None:
    """Bulk inserts of INSERT_CHUNK events, reporting progress after each."""
    constants: dict[str, Constant] = batch | {"status": "received"}
    # A column with one value for the whole file (version 1, no quality flag) is written once
    # in the statement instead of once per row.
    written = events
    for name in ("version", "quality_flags"):
        column = events.get_column(name)
        if column.len() and column.null_count() == 0 and column.n_unique() == 1:
            constants[name] = column[0]
            written = written.drop(name)
    table = Event.__table__  # type: ignore[attr-defined]
    # The plan holds each (key, version) and (key, content) once, so a large ingest whose keys
    # come in no order may build the unique indexes after its rows instead of placing every row
    # in them at random. Keys in order (receipt numbers, as halls export them) grow the indexes
    # at their ends, as the other indexes grow: those stay.
    in_order = events.get_column("source_key").is_sorted()
    with indexes_deferred(conn, table, 0 if in_order else events.height, unique=True):
        for start in range(0, events.height, INSERT_CHUNK):
            insert_frame(conn, table, written.slice(start, INSERT_CHUNK), constants)
            if progress:
                progress(min(start + INSERT_CHUNK, events.height), events.height)


def _quarantine(conn: Connection, bad: list[Unreadable], batch: dict[str, Any]) -> None:
    """Every record that could not be read or keyed, with its line, text, exact bytes and reason."""
    if not bad:
        return
    conn.execute(
        insert_ignoring_duplicates(conn, Quarantine.__table__),  # type: ignore[attr-defined]
        [batch | {"line": u.line, "raw_text": u.text, "raw_bytes": u.data, "reason": u.reason} for u in bad],
    )


def _count(report: IngestReport, events: pl.DataFrame, keyed: int, bad: list[Unreadable]) -> None:
    """Where every record went: stored, new version, duplicate or quarantined."""
    report.versions = [
        VersionedRow(line, key, version)
        for line, key, version in events.filter(pl.col("version") > 1)
        .select("source_line", "source_key", "version")
        .iter_rows()
    ]
    report.new_versions = len(report.versions)
    report.stored = events.height - report.new_versions
    report.duplicate = keyed - events.height
    report.quarantined = len(bad)
    report.quarantine = [QuarantinedRow(u.line, u.reason) for u in bad]


def ingest_file(engine: Engine, path: str | Path, *, source: str, **options: Any) -> IngestReport:
    """Ingest one CSV/TSV, XLSX, Parquet or JSON Lines file (see `ingest_records` for options)."""
    path = Path(path)
    records, data = read_records(path)
    return ingest_records(
        engine,
        records,
        source=source,
        source_file=plain_text(str(path)),
        file_digest=hashlib.sha256(data).hexdigest(),
        **options,
    )


def ingest_frame(engine: Engine, frame: pl.DataFrame, *, source: str, **options: Any) -> IngestReport:
    """Ingest an in-memory frame (a service-hall backend's batch); lines are row numbers from 1."""
    records = records_of_frame(frame)
    held = [*map(canonical_json, records.payloads), *(f"{u.line}:{u.text}" for u in records.bad)]
    digest = hashlib.sha256("\n".join(held).encode()).hexdigest()  # what the frame held, for quarantine
    return ingest_records(engine, records, source=source, source_file=None, file_digest=digest, **options)
