"""Hotline tickets and hall events as one frame of facts, read from the event store only.

Analytics never imports or reads the master store (invariant 7 and the layer test): what it knows
of a ticket is what the source sent, standardized by `process` (the header aliases of
rules/standards/columns.yaml; the place from the division code or the address). The read is one
set-based statement (filtered by service and time in SQL), decoded column-wise in polars.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import polars as pl
from sqlalchemy import Engine

from govdb.errors import ConfigError, InputFileError
from govdb.rulebook.analytics import AnalyticsRules
from govdb.standards.dates import parse_datetime
from govdb.store.engine import store_errors

LOCAL_ZONE = "Asia/Shanghai"
FactsT = TypeVar("FactsT", pl.DataFrame, pl.LazyFrame)
UNVERIFIED = "未核实的事件数据 unverified event data"
UNPLACED = "未定位"
TEXT_FIELDS = (
    "ticket_no",
    "called_at",
    "category",
    "content",
    "street",
    "handler",
    "first_response_at",
    "closed_at",
    "resolved",
    "satisfaction",
    "phone",
)
FACT_SCHEMA = {
    "event_id": pl.Int64,
    "service_code": pl.String,
    "division_code": pl.String,
    "category": pl.String,
    "department": pl.String,
    "content": pl.String,
    "received": pl.Datetime("us"),  # local time (Asia/Shanghai), naive
    "first_response": pl.Datetime("us"),
    "closed": pl.Datetime("us"),
    "resolved": pl.Boolean,
    "satisfaction": pl.String,
    "caller": pl.UInt64,  # a salted hash of the caller's phone, only for repeat counting; never output
}


def _local(text: pl.Expr) -> pl.Expr:
    """A time as people write it -> local naive datetime (periods are local days)."""
    return parse_datetime(text).dt.convert_time_zone(LOCAL_ZONE).dt.replace_time_zone(None)


def local_times(column: pl.Series) -> pl.Series:
    """Times as written -> local naive datetimes. Most systems write `YYYY-MM-DD HH:MM:SS` (local
    time): those are read directly; only the others go through the full parser of the standards
    (dates as people write them, explicit offsets), which costs far more per value."""
    fast = column.str.to_datetime("%Y-%m-%d %H:%M:%S", strict=False, time_unit="us")
    rest = fast.is_null() & column.is_not_null()
    if not rest.any():
        return fast
    frame = pl.DataFrame({"t": column.filter(rest)}).unique()
    parsed = frame.with_columns(_local(pl.col("t")).alias("p"))
    slow = pl.DataFrame({"t": column}).join(parsed, on="t", how="left", maintain_order="left").get_column("p")
    return fast.fill_null(slow)


def _caller_hash(phone: pl.Expr, salt: int) -> pl.Expr:
    return pl.when(phone.is_not_null() & (phone != "")).then(phone.hash(seed=salt)).otherwise(None)


def facts_from_rows(rows: pl.DataFrame, rules: AnalyticsRules, *, salt: int | None = None) -> pl.DataFrame:
    """(event_id, service_code, department, occurred_at text, division_code, standardized JSON text)
    -> the fact frame (FACT_SCHEMA)."""
    salt = salt if salt is not None else int.from_bytes(os.urandom(4), "little")
    struct = pl.Struct({name: pl.String for name in TEXT_FIELDS})
    decoded = rows.with_columns(
        pl.col("standardized").fill_null("{}").str.json_decode(struct).alias("_s")
    ).unnest("_s")
    stored_at = (
        pl.col("occurred_at")
        .str.slice(0, 19)
        .str.to_datetime("%Y-%m-%d %H:%M:%S", strict=False, time_unit="us")
        .dt.replace_time_zone("UTC")
        .dt.convert_time_zone(LOCAL_ZONE)
        .dt.replace_time_zone(None)
    )
    decoded = decoded.with_columns(
        local_times(decoded.get_column(name)).alias(name)
        for name in ("called_at", "first_response_at", "closed_at")
    )
    resolved = pl.col("resolved").str.strip_chars()
    out = decoded.select(
        pl.col("event_id").cast(pl.Int64),
        pl.col("service_code"),
        pl.col("division_code"),
        pl.coalesce(pl.col("category").str.strip_chars(), pl.col("service_code")).alias("category"),
        pl.coalesce(pl.col("handler").str.strip_chars(), pl.col("department")).alias("department"),
        pl.col("content"),
        pl.coalesce(pl.col("called_at"), stored_at).alias("received"),
        pl.col("first_response_at").alias("first_response"),
        pl.col("closed_at").alias("closed"),
        pl.when(resolved.is_in(rules.resolved_values))
        .then(True)
        .when(resolved.is_in(rules.unresolved_values))
        .then(False)
        .otherwise(None)
        .alias("resolved"),
        pl.col("satisfaction").str.strip_chars().alias("satisfaction"),
        _caller_hash(pl.col("phone"), salt).alias("caller"),
    )
    return out.cast(FACT_SCHEMA)  # type: ignore[arg-type]


def _bounds(start: dt.date | None, end: dt.date | None) -> tuple[dt.datetime | None, dt.datetime | None]:
    """Local dates -> UTC instants to filter the stored occurred_at, with a day's margin each side
    (the exact local filter runs after decoding)."""
    lo = dt.datetime.combine(start - dt.timedelta(days=1), dt.time()) if start else None
    hi = dt.datetime.combine(end + dt.timedelta(days=2), dt.time()) if end else None
    return lo, hi


def read_facts(
    engine: Engine,
    rules: AnalyticsRules,
    *,
    start: dt.date | None = None,
    end: dt.date | None = None,
    services: list[str] | None = None,
) -> pl.DataFrame:
    """The tickets of the hotline services (rules) received from `start` to `end` (local dates,
    inclusive), from events that `process` has standardized."""
    services = services or rules.hotline_services
    pg = engine.dialect.name == "postgresql"
    mark = "%s" if pg else "?"
    cast = "::text" if pg else ""
    where = [f"service_code IN ({', '.join([mark] * len(services))})", "standardized IS NOT NULL"]
    params: list[object] = list(services)
    lo, hi = _bounds(start, end)
    # Events ingested without an occurred-at column keep NULL there; they are filtered after decoding.
    if lo is not None:
        where.append(f"(occurred_at IS NULL OR occurred_at >= {mark})")
        params.append(lo)
    if hi is not None:
        where.append(f"(occurred_at IS NULL OR occurred_at < {mark})")
        params.append(hi)
    statement = (
        f"SELECT event_id, service_code, department, occurred_at{cast}, division_code, standardized{cast} "
        f"FROM event WHERE {' AND '.join(where)}"
    )
    schema = {
        "event_id": pl.Int64,
        "service_code": pl.String,
        "department": pl.String,
        "occurred_at": pl.String,
        "division_code": pl.String,
        "standardized": pl.String,
    }
    with store_errors(engine), engine.connect() as conn:
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            if pg:  # COPY streams CSV: no Python object per value, about half the read's cost
                data = io.BytesIO()
                with cursor.copy(f"COPY ({statement}) TO STDOUT WITH (FORMAT csv)", params) as copy:
                    for block in copy:
                        data.write(block)
                rows = pl.read_csv(data.getvalue(), has_header=False, new_columns=list(schema), schema=schema)
            else:
                cursor.execute(statement, tuple(str(p) if isinstance(p, dt.datetime) else p for p in params))
                rows = pl.DataFrame(cursor.fetchall(), schema=schema, orient="row")
        finally:
            cursor.close()
    return within(facts_from_rows(rows, rules), start, end)


def within(facts: FactsT, start: dt.date | None, end: dt.date | None) -> FactsT:
    """Tickets received from `start` to `end` (local dates, inclusive)."""
    day = pl.col("received").dt.date()
    if start is not None:
        facts = facts.filter(day >= start)
    if end is not None:
        facts = facts.filter(day <= end)
    return facts


OTHER = "其他"
LABELS = ("category", "department")  # the source's free text that tables group by
RECODED = "labels_recoded"  # an export's mark: its labels were recoded by month when it was written


def recode_rare_labels(
    facts: FactsT, min_cell: int, keep: Sequence[str] = (), labels: Sequence[str] = LABELS
) -> FactsT:
    """Facts with each category (诉求类型) and department (承办部门) label met in tickets of fewer
    than `min_cell` distinct callers recoded to 其他 (a ticket without a caller counts for no
    caller): a label is the source's free text, and one caller's ten tickets could publish a name
    or a phone typed into it. Labels the rules declare (`keep`: capacities' services, complaint
    categories) stay. Counted per calendar month of receipt (whole months must be given: the
    decision for a ticket then depends on its month alone, never on a query's window), column-wise
    (eager or lazy alike). Only `labels` are recoded (a table not grouped by a label need not pay
    for it)."""
    callers = pl.col("caller").drop_nulls().n_unique()
    month = pl.col("received").dt.truncate("1mo")
    return facts.with_columns(
        pl.when(pl.col(c).is_not_null() & ~pl.col(c).is_in(list(keep)) & (callers.over(c, month) < min_cell))
        .then(pl.lit(OTHER))
        .otherwise(pl.col(c))
        .alias(c)
        for c in labels
    )


def scan_facts_parquet(path: str | Path) -> pl.LazyFrame:
    """Facts exported with `export_facts`, scanned lazily (a query reads only the columns it needs)."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such Parquet file; export facts first with export_facts")
    names = pl.read_parquet_schema(path)
    missing = sorted(set(FACT_SCHEMA) - set(names))
    if missing:
        raise ConfigError(f"{path}: not a facts export, columns {missing} are missing; export it again")
    return pl.scan_parquet(path).select(*FACT_SCHEMA, *(c for c in ("repeat", RECODED) if c in names))


def read_facts_parquet(path: str | Path) -> pl.DataFrame:
    """Facts exported with `export_facts` (the way to aggregate a year of a large city quickly)."""
    return scan_facts_parquet(path).collect()


def export_facts(facts: pl.DataFrame, path: str | Path) -> Path:
    """Write facts to Parquet (zstd). The caller hash stays (salted, one-way) for repeat counts;
    the file is internal working data, not a publication."""
    path = Path(path)
    facts.write_parquet(path, compression="zstd")
    return path


def fingerprint(facts: pl.DataFrame) -> str:
    """A short digest of which events an output was computed from (for the output's footnote)."""
    ids = facts.get_column("event_id").sort()
    return hashlib.sha256(ids.to_numpy().tobytes()).hexdigest()[:12]
