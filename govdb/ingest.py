"""Files and frames -> event store: raw payload kept as received, idempotent, quarantine for the rest.

Each row becomes an event keyed by (source system, source key): the value of a key column the
caller names, else a hash of the row's content, so ingesting the same file twice stores nothing
new. A row that cannot be read (bad bytes, wrong number of fields, broken JSON, empty key) goes
to quarantine with its line number and reason; the rest of the file is still ingested.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import Engine, Table, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from govdb.errors import InputFileError
from govdb.standards.dates import parse_date
from govdb.store.events import Event, IngestBatch, Quarantine
from govdb.store.master import utcnow

Progress = Callable[[int, int], None]  # (rows done, rows total)
CHUNK = 5000
FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "tsv",
    ".xlsx": "xlsx",
    ".parquet": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}


@dataclass(frozen=True, order=True)
class QuarantinedRow:
    line: int
    reason: str


@dataclass
class IngestReport:
    """What one ingest did: read = stored + duplicate + quarantined."""

    source_system: str
    source_file: str | None
    batch_id: str
    encoding: str | None
    read: int = 0
    stored: int = 0
    duplicate: int = 0
    quarantined: int = 0
    quarantine: list[QuarantinedRow] = field(default_factory=list)


@dataclass
class _Rows:
    """Rows read from a file: (line, payload) pairs plus unreadable (line, text, reason) triples."""

    encoding: str | None
    good: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    bad: list[tuple[int, str, str]] = field(default_factory=list)


def detect_encoding(data: bytes) -> str:
    """utf-8-sig (BOM), utf-8, or gb18030 (a superset of GBK and GB2312), whichever decodes cleanly.

    When none does, the one with fewer undecodable lines wins; those lines are quarantined.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig"
    for encoding in ("utf-8", "gb18030"):
        try:
            data.decode(encoding)
        except UnicodeDecodeError:
            continue
        return encoding
    utf8_bad = data.decode("utf-8", errors="replace").count("\ufffd")
    gb_bad = data.decode("gb18030", errors="replace").count("\ufffd")
    return "utf-8" if utf8_bad <= gb_bad else "gb18030"


_BAD_BYTES = re.compile("[\udc80-\udcff]")  # what surrogateescape makes of undecodable bytes


def _has_bad_bytes(text: str) -> bool:
    return _BAD_BYTES.search(text) is not None


def _read_delimited(data: bytes, delimiter: str) -> _Rows:
    encoding = detect_encoding(data)
    text = data.decode(encoding, errors="surrogateescape")
    rows = _Rows(encoding)
    any_bad = _has_bad_bytes(text)
    lines = text.splitlines(keepends=True)
    reader = csv.reader(lines, delimiter=delimiter)
    header: list[str] | None = None
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            line = reader.line_num
            rows.bad.append(
                (line, lines[line - 1].rstrip("\r\n") if line <= len(lines) else "", f"unreadable CSV: {exc}")
            )
            continue
        line = reader.line_num
        if not record or all(not cell.strip() for cell in record):
            continue
        if header is None:
            header = [h.strip() for h in record]
            if _has_bad_bytes("".join(header)):
                raise InputFileError(
                    f"the header line has bytes that are not valid {encoding}; save the file as UTF-8"
                )
            continue
        if len(record) != len(header):
            rows.bad.append(
                (
                    line,
                    delimiter.join(record),
                    f"expected {len(header)} fields as in the header, found {len(record)}",
                )
            )
            continue
        if any_bad and _has_bad_bytes("".join(record)):
            raw = delimiter.join(record).encode("utf-8", errors="surrogateescape").decode("latin-1")
            rows.bad.append((line, raw, f"bytes that are not valid {encoding} text"))
            continue
        rows.good.append((line, dict(zip(header, record, strict=True))))
    if header is None:
        raise InputFileError("the file is empty: no header line was found")
    return rows


def _read_jsonl(data: bytes) -> _Rows:
    encoding = detect_encoding(data)
    rows = _Rows(encoding)
    for line_no, line in enumerate(data.decode(encoding, errors="surrogateescape").splitlines(), start=1):
        if not line.strip():
            continue
        if _has_bad_bytes(line):
            rows.bad.append(
                (
                    line_no,
                    line.encode("utf-8", "surrogateescape").decode("latin-1"),
                    f"bytes that are not valid {encoding} text",
                )
            )
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            rows.bad.append((line_no, line, f"not valid JSON: {exc.msg} at column {exc.colno}"))
            continue
        if not isinstance(value, dict):
            rows.bad.append(
                (line_no, line, f"a JSON Lines row must be an object, got {type(value).__name__}")
            )
            continue
        rows.good.append((line_no, value))
    return rows


def _frame_rows(frame: pl.DataFrame, first_line: int) -> _Rows:
    rows = _Rows(None)
    for offset, record in enumerate(frame.iter_rows(named=True)):
        rows.good.append((first_line + offset, {k: _jsonable(v) for k, v in record.items()}))
    return rows


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.date | dt.datetime | dt.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return value


def read_file(path: Path) -> tuple[_Rows, bytes]:
    """Rows of a file of any supported format, and its bytes (for the file digest)."""
    if not path.is_file():
        raise InputFileError(f"input file {str(path)!r} does not exist")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputFileError(
            f"cannot read {str(path)!r}: unknown extension {path.suffix!r}; use one of {sorted(FORMATS)}"
        )
    data = path.read_bytes()
    try:
        if fmt in ("csv", "tsv"):
            return _read_delimited(data, "," if fmt == "csv" else "\t"), data
        if fmt == "jsonl":
            return _read_jsonl(data), data
        if fmt == "xlsx":
            frame = pl.read_excel(io.BytesIO(data), infer_schema_length=0)
            return _frame_rows(frame, first_line=2), data
        return _frame_rows(pl.read_parquet(io.BytesIO(data)), first_line=1), data
    except InputFileError as exc:
        raise InputFileError(f"{path}: {exc}") from exc
    except Exception as exc:  # the format library could not open the file at all
        raise InputFileError(f"cannot read {str(path)!r} as {fmt}: {exc}") from exc


def content_key(payload: dict[str, Any]) -> str:
    """A stable key for a row without one: the SHA-256 of its canonical JSON."""
    return hashlib.sha256(
        json.dumps(payload, ensure_ascii=False, sort_keys=True, default=str).encode()
    ).hexdigest()


def insert_ignoring_duplicates(engine: Engine, table: Table) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING for the engine's dialect."""
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


def _occurred_at(values: Sequence[Any]) -> list[dt.datetime | None]:
    """Local (Asia/Shanghai) times as people write them -> aware UTC datetimes."""
    s = pl.Series("t", [None if v is None else str(v) for v in values], dtype=pl.String)
    frame = pl.DataFrame({"t": s}).select(
        pl.coalesce(
            pl.col("t").str.to_datetime("%Y-%m-%d %H:%M:%S", strict=False),
            pl.col("t").str.to_datetime("%Y-%m-%dT%H:%M:%S", strict=False),
            pl.col("t").str.to_datetime("%Y-%m-%d %H:%M", strict=False),
            parse_date(pl.col("t")).cast(pl.Datetime("us")),
        )
        .dt.replace_time_zone("Asia/Shanghai", ambiguous="earliest", non_existent="null")
        .dt.convert_time_zone("UTC")
    )
    return frame.get_column("t").to_list()


def ingest_rows(
    engine: Engine,
    rows: _Rows,
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
) -> IngestReport:
    """Store rows as events in one batch; the core of every ingest."""
    batch_id = str(uuid.uuid4())
    report = IngestReport(source, source_file, batch_id, rows.encoding)
    report.read = len(rows.good) + len(rows.bad)
    if key_column and rows.good and key_column not in rows.good[0][1]:
        raise InputFileError(
            f"{source_file or 'input'}: key column {key_column!r} is not in the header "
            f"{list(rows.good[0][1])}; name an existing column or leave --key out to key rows by content"
        )
    bad = list(rows.bad)
    keyed: dict[str, tuple[int, dict[str, Any]]] = {}
    for line, payload in rows.good:
        if key_column:
            value = payload.get(key_column)
            if value is None or str(value).strip() == "":
                bad.append(
                    (
                        line,
                        json.dumps(payload, ensure_ascii=False, default=str),
                        f"key column {key_column!r} is empty",
                    )
                )
                continue
            key = str(value).strip()
        else:
            key = content_key(payload)
        if key in keyed:
            report.duplicate += 1
            continue
        keyed[key] = (line, payload)
    existing: set[str] = set()
    keys = list(keyed)
    table = Event.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start : start + CHUNK]
            existing.update(
                conn.execute(
                    select(table.c.source_key).where(
                        table.c.source_system == source, table.c.source_key.in_(chunk)
                    )
                ).scalars()
            )
    new = [k for k in keys if k not in existing]
    report.duplicate += len(existing)
    occurred: list[dt.datetime | None] = [None] * len(new)
    if occurred_at_column and new:
        occurred = _occurred_at([keyed[k][1].get(occurred_at_column) for k in new])
    received = utcnow()
    with engine.begin() as conn:
        conn.execute(
            insert(IngestBatch.__table__),  # type: ignore[attr-defined]
            [
                {
                    "batch_id": batch_id,
                    "source_system": source,
                    "source_file": source_file,
                    "file_sha256": file_digest,
                    "encoding": rows.encoding,
                    "read": report.read,
                    "stored": 0,
                    "duplicate": 0,
                    "quarantined": 0,
                    "received_at": received,
                }
            ],
        )
        statement = insert_ignoring_duplicates(engine, table)
        for start in range(0, len(new), CHUNK):
            batch = [
                {
                    "source_system": source,
                    "source_key": key,
                    "batch_id": batch_id,
                    "source_file": source_file,
                    "source_line": keyed[key][0],
                    "service_code": service_code,
                    "department": department,
                    "channel": channel,
                    "occurred_at": occurred[start + i],
                    "received_at": received,
                    "raw": keyed[key][1],
                    "standardized": None,
                    "quality_flags": [],
                    "status": "received",
                    "division_code": None,
                }
                for i, key in enumerate(new[start : start + CHUNK])
            ]
            conn.execute(statement, batch)
            if progress:
                progress(min(start + CHUNK, len(new)), len(new))
        if bad:
            conn.execute(
                insert_ignoring_duplicates(engine, Quarantine.__table__),  # type: ignore[attr-defined]
                [
                    {
                        "batch_id": batch_id,
                        "source_system": source,
                        "source_file": source_file,
                        "file_sha256": file_digest,
                        "line": line,
                        "raw_text": text,
                        "reason": reason,
                        "received_at": received,
                    }
                    for line, text, reason in bad
                ],
            )
        report.stored = len(new)
        report.quarantined = len(bad)
        report.quarantine = sorted(QuarantinedRow(line, reason) for line, _, reason in bad) if bad else []
        conn.execute(
            IngestBatch.__table__.update()  # type: ignore[attr-defined]
            .where(IngestBatch.__table__.c.batch_id == batch_id)  # type: ignore[attr-defined]
            .values(stored=report.stored, duplicate=report.duplicate, quarantined=report.quarantined)
        )
    return report


def ingest_file(engine: Engine, path: str | Path, *, source: str, **options: Any) -> IngestReport:
    """Ingest one CSV/TSV, XLSX, Parquet or JSON Lines file (see `ingest_rows` for options)."""
    path = Path(path)
    rows, data = read_file(path)
    return ingest_rows(
        engine,
        rows,
        source=source,
        source_file=str(path),
        file_digest=hashlib.sha256(data).hexdigest(),
        **options,
    )


def ingest_frame(engine: Engine, frame: pl.DataFrame, *, source: str, **options: Any) -> IngestReport:
    """Ingest an in-memory frame (a service-hall backend's batch); lines are row numbers from 1."""
    rows = _frame_rows(frame, first_line=1)
    digest = hashlib.sha256(frame.write_json().encode()).hexdigest()
    return ingest_rows(engine, rows, source=source, source_file=None, file_digest=digest, **options)
