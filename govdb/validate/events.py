"""The event store's pass over received events: read a chunk at a time, standardized and
validated (`govdb.validate.frames`), their records, flags, place and state written back.

An invalid event stays in the event store with its quality flags; `process` proposes each
chunk in the transaction that writes it (`Standardizing`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import polars as pl
from sqlalchemy import Connection, Engine, select, update

from govdb.base.collector import bulk_collection
from govdb.base.jsontext import json_objects
from govdb.errors import ConfigError, StateError
from govdb.ingest import INGEST_FLAGS
from govdb.rulebook.loader import Rulebook
from govdb.standards import STANDARD_COLUMNS
from govdb.store.bulk import among, driver_rows, id_chunks, json_value
from govdb.store.events import Event, IngestBatch
from govdb.store.locks import writing
from govdb.store.states import EventStatus, check_transition
from govdb.store.updates import update_rows
from govdb.store.writer import BackgroundWriter
from govdb.validate.frames import (
    AS_WRITTEN,
    FAILURE_SCHEMA,
    ValidationReport,
    reason_severity,
    record_place,
    service_place_level,
    validate_frame,
)


def events_frame(
    rows: list[tuple[int, str | None, dict[str, Any]]],
    aliases: dict[str, str],
    maps: list[dict[str, str] | None] | None = None,
) -> pl.DataFrame:
    """Raw payloads -> one frame of standard columns (as strings), through the header aliases and,
    row by row, the column map its ingest was given (`maps`, which wins over the aliases)."""
    records = []
    for n, (event_id, service, raw) in enumerate(rows):
        record: dict[str, Any] = {"event_id": event_id, "service_code": service}
        mapped = maps[n] if maps else None
        for key, value in raw.items():
            std = aliases.get(str(key).strip())
            if mapped and key in mapped:
                if value is not None:
                    record[mapped[key]] = str(value)
                continue
            if mapped and std in mapped.values():
                continue  # the mapping names another header for this column
            if std and value is not None and record.get(std) in (None, ""):
                record[std] = str(value)
        records.append(record)
    columns = sorted({k for r in records for k in r} - {"event_id", "service_code"})
    schema = {"event_id": pl.Int64, "service_code": pl.String, **dict.fromkeys(columns, pl.String)}
    return pl.DataFrame(records, schema=schema)


CHUNK = 50_000  # events read, standardized and written per transaction


@bulk_collection()
def standardize_events(
    engine: Engine, rules: Rulebook, *, today: dt.date | None = None, address_hint: str | None = None
) -> ValidationReport:
    """Standardize and validate every received event; write standardized fields and quality flags.

    `address_hint` (the served county) places addresses that name only a street or a community.
    Events go a chunk at a time in event order, each chunk in a transaction of its own, so a county's
    million payloads are never held at once; standardizing is per record, so chunks do not change
    what any event gets, and a run stopped midway leaves the rest `received` for the next.
    (`process` proposes each chunk in the transaction that writes it: `Standardizing`.)
    """
    run = Standardizing(engine, rules, today=today, address_hint=address_hint)
    # Each chunk is written in a thread while the next is read and standardized (its events are
    # all after the chunk being written).
    with BackgroundWriter(engine, "govdb-standardize-write") as writer:
        for chunk in run.chunks():
            writer.submit(_write_chunk, engine, chunk.updates)
    return run.report()


@dataclass(slots=True)
class _Received:
    """A received event as standardizing reads it, with what proposing it needs besides."""

    event_id: int
    service_code: str | None
    raw: Any
    flags: list[str]
    batch_id: str | None
    source_system: str | None
    department: str | None
    link_round: int


@dataclass(frozen=True)
class StandardizedChunk:
    """One chunk of received events standardized, not yet written: `updates` are the rows
    `write_standardized` sets (one per event: its record, flags, place and `standardized` or
    `invalid`)."""

    updates: pl.DataFrame
    received: dict[int, _Received]  # by event id, without their payloads
    sources: dict[str, str]  # batch -> the source it proved to be

    def standardized_events(self) -> list[dict[str, Any]]:
        """The events this chunk makes `standardized`, in event order, as `process` reads waiting
        events from the store: the record and flags as the JSON text written, so a chunk proposed
        in the transaction that writes it sees what a later read would."""
        rows = []
        for event_id, record, flags, status in self.updates.select(
            "event_id", "standardized", "quality_flags", "status"
        ).iter_rows():
            if status != EventStatus.standardized.value:
                continue
            event = self.received[event_id]
            rows.append(
                {
                    "event_id": event_id,
                    "status": status,
                    "service_code": event.service_code,
                    "source_system": event.source_system,
                    "department": event.department,
                    "standardized": record,
                    "quality_flags": [] if flags == "[]" else json_value(flags),
                    "link_round": event.link_round,
                    "authenticated_source": self.sources.get(event.batch_id or ""),
                }
            )
        rows.sort(key=lambda r: r["event_id"])
        return rows


class Standardizing:
    """A pass over the received events, a chunk at a time in event order, each standardized and
    validated in memory for its caller to write; what it read is counted for the report."""

    def __init__(
        self,
        engine: Engine,
        rules: Rulebook,
        *,
        today: dt.date | None = None,
        address_hint: str | None = None,
    ) -> None:
        self.engine, self.rules, self.today, self.address_hint = engine, rules, today, address_hint
        self.read = 0
        self._failures = [pl.DataFrame(schema=FAILURE_SCHEMA)]

    def chunks(self, size: int | None = None) -> Iterator[StandardizedChunk]:
        """Each chunk (`size` events, else CHUNK) once its events are standardized; the next is
        read when asked for, after the last event of this one (whose write the caller may still
        have under way)."""
        size, after = size or CHUNK, 0
        while True:
            with self.engine.connect() as conn:
                chunk = _received(conn, after, size)
                # Read with each chunk: a file ingested with a map during the run is in a later chunk.
                column_maps, sources = _batches(conn, {e.batch_id for e in chunk if e.batch_id})
            if not chunk:
                return
            after, self.read = chunk[-1].event_id, self.read + len(chunk)
            updates, failures = _standardize_chunk(
                self.rules, chunk, column_maps, self.today, self.address_hint
            )
            self._failures.append(failures)
            for event in chunk:
                event.raw = None  # not kept while the caller links and plans
            yield StandardizedChunk(updates, {e.event_id: e for e in chunk}, sources)

    def report(self) -> ValidationReport:
        return ValidationReport(self.read, pl.concat(self._failures).sort("row_id", "column"))


def _batches(conn: Connection, ids: set[str]) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """Of the batches `ids` (a chunk's): batch -> its column map (only ingests given a --map have
    one; a JSON null is no map), and batch -> the source it proved to be. Only the chunk's: a hall
    backend ingesting each submission with its source's token makes a batch of each."""
    batches = IngestBatch.__table__  # type: ignore[attr-defined]
    found: list[Any] = []
    for chunk in id_chunks(conn, sorted(ids)):
        found += conn.execute(
            select(batches.c.batch_id, batches.c.column_map, batches.c.authenticated_source).where(
                among(conn, batches.c.batch_id, chunk),
                batches.c.column_map.is_not(None) | batches.c.authenticated_source.is_not(None),
            )
        ).all()
    maps = {batch: mapping for batch, mapping, _ in found if mapping}
    return maps, {batch: source for batch, _, source in found if source}


def _received(conn: Connection, after: int, size: int) -> list[_Received]:
    """The next chunk of received events after `after`, JSON decoded once here (the driver's
    rows: no per-row result processing)."""
    table = Event.__table__  # type: ignore[attr-defined]
    query = (
        select(
            table.c.event_id,
            table.c.service_code,
            table.c.raw,
            table.c.quality_flags,
            table.c.batch_id,
            table.c.source_system,
            table.c.department,
            table.c.link_round,
        )
        .where(table.c.status == EventStatus.received.value, table.c.event_id > after)
        .order_by(table.c.event_id)
        .limit(size)
    )
    return [
        _Received(
            event_id,
            service,
            json_value(raw),
            [] if flags == "[]" else json_value(flags) or [],
            batch,
            source,
            department,
            link_round,
        )
        for event_id, service, raw, flags, batch, source, department, link_round in driver_rows(conn, query)
    ]


def _standardize_chunk(
    rules: Rulebook,
    chunk: list[_Received],
    column_maps: dict[str, dict[str, str]],
    today: dt.date | None,
    address_hint: str | None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Standardize and validate one chunk of received events: (the rows to write, its failures)."""
    maps = [column_maps.get(e.batch_id or "") for e in chunk] if column_maps else None
    # what ingest noticed (an unreadable occurred-at) stays; validation's own flags are redone
    ingest_flags = {
        e.event_id: kept for e in chunk if e.flags and (kept := [f for f in e.flags if f in INGEST_FLAGS])
    }
    frame = events_frame([(e.event_id, e.service_code, e.raw) for e in chunk], rules.column_aliases(), maps)
    std_parts, failure_parts = [], []
    for (service,), group in frame.group_by("service_code", maintain_order=True):
        svc = rules.verification.services.get(str(service)) if service else None
        std, report = validate_frame(
            group,
            address_hint=address_hint,
            required=svc.required if svc else [],
            row_id="event_id",
            today=today,
            place_level=service_place_level(rules, svc),
        )
        std_parts.append(std)
        failure_parts.append(report.failures)
    std = pl.concat(std_parts, how="diagonal_relaxed")
    failures = pl.concat(failure_parts)
    flags = failures.group_by("row_id").agg(
        pl.concat_str("column", pl.lit(":"), "reason").unique().sort().alias("flags")
    )
    flag_map = dict(flags.iter_rows())
    errors = failures.filter(pl.col("severity") == "error").get_column("row_id").unique()
    # The record's place: the division code column, else the code parsed from the address.
    std = std.with_columns(record_place(std).alias("_division"))
    # In one order whatever the chunk's services: the standard columns, then any other.
    order = {f"{c}_std": n for n, c in enumerate(STANDARD_COLUMNS)}
    keep = sorted(
        (c for c in std.columns if c.endswith("_std") and c != "division_code_std"),
        key=lambda c: (order.get(c, len(order)), c),
    )
    # Columns the aliases name beyond the standard ones (certificate numbers, enterprise and place
    # fields, hotline tickets) are kept as written.
    extra = [c for c in rules.columns.aliases if c not in STANDARD_COLUMNS]
    keep += [
        c
        for c in dict.fromkeys(
            (
                "name_pinyin",
                "certificate_number",
                "disability_category",
                "disability_grade",
                *AS_WRITTEN,
                *extra,
            )
        )
        if c in std.columns
    ]
    out = std.select("event_id", "_division", *keep).with_columns(pl.col(pl.Date).dt.to_string("%Y-%m-%d"))
    out = out.with_columns(
        pl.when(pl.col("_division") != "").then(pl.col("_division")).alias("division_code")
    )
    updates = out.select(
        "event_id",
        _standardized_json(out, keep).alias("standardized"),
        pl.col("event_id")
        .replace_strict(_flags_json(ingest_flags, flag_map), default="[]", return_dtype=pl.String)
        .alias("quality_flags"),
        pl.col("_division").alias("division_code"),
        pl.when(pl.col("event_id").is_in(errors.implode()))
        .then(pl.lit(EventStatus.invalid.value))
        .otherwise(pl.lit(EventStatus.standardized.value))
        .alias("status"),
    )
    return updates, failures


def _write_chunk(engine: Engine, updates: pl.DataFrame) -> None:
    with writing(engine) as conn:
        write_standardized(conn, updates)


def write_standardized(conn: Connection, updates: pl.DataFrame) -> None:
    """A chunk's standardized records, in the caller's transaction. A checked transition: only
    events still `received` move, and all of them must."""
    table = Event.__table__  # type: ignore[attr-defined]
    for target in (EventStatus.standardized, EventStatus.invalid):
        check_transition(EventStatus, EventStatus.received, target)
    moved = update_rows(conn, table, updates, key="event_id", where={"status": EventStatus.received.value})
    if moved != updates.height:
        raise StateError(
            f"{updates.height - moved} of {updates.height} events left `received` while they were "
            "being standardized; none of them was written (earlier chunks were), "
            "run `govdb process` again"
        )


def _flags_json(ingest_flags: dict[int, list[str]], flag_map: dict[int, list[str]]) -> dict[int, str]:
    """The quality flags of the events that have any, as stored (JSON lists); the rest hold []."""
    return {
        event_id: json.dumps(
            [*ingest_flags.get(event_id, []), *flag_map.get(event_id, [])], ensure_ascii=False
        )
        for event_id in ingest_flags.keys() | flag_map.keys()
    }


def _standardized_json(out: pl.DataFrame, keep: list[str]) -> pl.Series:
    """Each event's standardized fields as the JSON object stored: the kept columns without their
    `_std` suffix, then its place as `division_code`; absent values left out."""
    keys = {c: c.removesuffix("_std") for c in [*keep, "division_code"]}
    if len(set(keys.values())) == len(keys) and all(out.schema[c] == pl.String for c in keys):
        return json_objects(out, keys, omit_nulls=True)
    # A column that is not text, or two meaning one field: the same objects, one row at a time.
    return pl.Series(
        [
            json.dumps({keys[c]: v for c, v in row.items() if v is not None}, ensure_ascii=False)
            for row in pl.DataFrame([out.get_column(c) for c in keys]).iter_rows(named=True)
        ],
        dtype=pl.String,
    )


class Retry(StrEnum):
    """Events that `process` may take again once their data or the rules are fixed."""

    invalid = "invalid"


def retry_events(engine: Engine, status: Retry | str) -> int:
    """Move every event in `status` (only `invalid` for now) back to `received`, so the next
    standardization validates it again under the current rules; returns how many moved.

    A checked transition: one conditional UPDATE in one transaction, so under concurrent runs each
    event moves once, and an event that left that state meanwhile is not touched.
    """
    try:
        state = Retry(status)
    except ValueError:
        allowed = ", ".join(r.value for r in Retry)
        raise ConfigError(f"cannot retry {status!r} events; allowed: {allowed}") from None
    table = Event.__table__  # type: ignore[attr-defined]
    with engine.begin() as conn:
        moved = conn.execute(
            update(table).where(table.c.status == state.value).values(status="received")
        ).rowcount
    return int(moved)


def quality(engine: Engine) -> pl.DataFrame:
    """Per source system and field: events, events with an error on that field, and the rate.

    Read from the event store's quality flags (`field:reason`), so it covers every event ever
    processed, including invalid ones.
    """
    table = Event.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        rows = conn.execute(select(table.c.source_system, table.c.quality_flags, table.c.status)).all()
    events = pl.DataFrame(
        [(r[0], r[1] or [], r[2]) for r in rows],
        schema={"source": pl.String, "flags": pl.List(pl.String), "status": pl.String},
        orient="row",
    )
    totals = events.group_by("source").agg(
        pl.len().alias("events"), (pl.col("status") == "invalid").sum().alias("invalid")
    )
    flagged = (
        events.with_row_index("event")
        .explode("flags")
        .drop_nulls("flags")
        .filter(pl.col("flags").str.contains(":"))
        .with_columns(
            pl.col("flags").str.split_exact(":", 1).struct.rename_fields(["field", "reason"]).alias("f")
        )
        .unnest("f")
        .with_columns(reason_severity(pl.col("reason")).alias("severity"))
    )
    per_field = flagged.group_by("source", "field").agg(
        pl.col("event").filter(pl.col("severity") == "error").n_unique().alias("errors"),
        pl.col("event").filter(pl.col("severity") == "warning").n_unique().alias("warnings"),
        pl.col("reason").filter(pl.col("severity") == "error").unique().sort().str.join(";").alias("reasons"),
    )
    return (
        per_field.join(totals, on="source")
        .with_columns((pl.col("errors") / pl.col("events")).round(4).alias("error_rate"))
        .select("source", "field", "events", "errors", "warnings", "error_rate", "reasons")
        .sort("source", "error_rate", descending=[False, True])
    )
