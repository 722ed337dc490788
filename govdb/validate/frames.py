"""Validate frames of records against the rules' data elements: pandera schemas built from the
rules, failures as data (a ValidationReport), a record's place from its division code or address.

Validation never drops a row: an invalid record keeps its quality flags (reason codes), and the
report lists every failure as a polars frame. The event store's pass over received events is
`govdb.validate.events`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandera.polars as pa
import polars as pl
from pandera.errors import SchemaErrors

from govdb.errors import ConfigError
from govdb.rulebook.loader import Rulebook
from govdb.rulebook.models import Service
from govdb.standards import REASONS, STANDARD_COLUMNS, standardize

FAILURE_SCHEMA = {
    "row_id": pl.Int64,
    "column": pl.String,
    "check": pl.String,
    "reason": pl.String,
    "severity": pl.String,
    "value": pl.String,
}
# Columns kept in `standardized` as written (hotline tickets and hall events; govdb.analytics reads them).
AS_WRITTEN = (
    "ticket_no", "called_at", "category", "content", "street", "handler",
    "first_response_at", "closed_at", "resolved", "satisfaction",
)  # fmt: skip


@dataclass(frozen=True)
class ValidationReport:
    """Failures of one validation run: one row per (row, column, reason)."""

    rows: int
    failures: pl.DataFrame

    @property
    def error_rows(self) -> int:
        return self.failures.filter(pl.col("severity") == "error").get_column("row_id").n_unique()

    def by_reason(self) -> pl.DataFrame:
        return self.failures.group_by("column", "reason", "severity").len().sort("len", descending=True)


def _issue_failures(frame: pl.DataFrame, row_id: str) -> pl.DataFrame:
    parts = []
    for column in STANDARD_COLUMNS:
        if f"{column}_issues" not in frame.columns:
            continue
        parts.append(
            frame.filter(pl.col(f"{column}_issues") != "")
            .select(
                pl.col(row_id).cast(pl.Int64).alias("row_id"),
                pl.lit(column).alias("column"),
                pl.lit("standard").alias("check"),
                pl.col(f"{column}_issues").str.split(";").alias("reason"),
                pl.col(column).cast(pl.String).alias("value"),
            )
            .explode("reason")
            .filter(pl.col("reason") != "")
        )
    if not parts:
        return pl.DataFrame(schema=FAILURE_SCHEMA)
    failures = pl.concat(parts)
    severity = reason_severity(pl.col("reason")).alias("severity")
    return failures.with_columns(severity).select(list(FAILURE_SCHEMA))


def reason_severity(reason: pl.Expr) -> pl.Expr:
    """Severity of reason codes, vectorised; unknown codes are errors."""
    return reason.replace_strict(
        {code: level for code, (level, _) in REASONS.items()}, default="error", return_dtype=pl.String
    )


def _checked_column(name: str) -> str:
    """Standard columns are checked after standardizing; other columns as received."""
    return f"{name}_std" if name in STANDARD_COLUMNS else name


def required_schema(required: list[str]) -> pa.DataFrameSchema:
    """A pandera schema: each required column is present and not null (standard ones once standardized)."""
    return pa.DataFrameSchema(
        {_checked_column(name): pa.Column(nullable=False, required=True) for name in required},
        name="required fields",
    )


PLACE_LEVELS = {"village": 5, "street": 4}


def record_place(frame: pl.DataFrame) -> pl.Expr:
    """The record's place: the division code it gives (when known), else its address's division.

    After `standardize`, `division_code_std` is the written code, or the address's division
    when the frame has no division code column at all; `address_division_code` is the address's
    division beside a division code column (whose cells may be empty in some rows).
    """
    places: list[str] = [c for c in ("division_code_std", "address_division_code") if c in frame.columns]
    if "division_code_std" not in frame.columns and "division_code" in frame.columns:
        places.append("division_code")
    return pl.coalesce(places) if places else pl.lit(None, pl.String)


def service_place_level(rules: Rulebook, service: Service | None) -> int | None:
    """The division level a service's record must be placed at: 5 (a village) when the service
    requires `division_code` and a route of it has a village step (the village checks it), 4 when
    a street step is its lowest; None when any known division will do."""
    if service is None or "division_code" not in service.required:
        return None
    routes = [rules.verification.routes.get(name) for name in (service.route, service.update_route) if name]
    levels = [PLACE_LEVELS[s.level] for r in routes if r for s in r.steps if s.level in PLACE_LEVELS]
    return max(levels, default=None)


def _code_level(code: pl.Expr) -> pl.Expr:
    """The level a code is significant to (5 village, 4 township, 3 for county codes and above);
    padded codes (440605011000) count at the level of their significant digits."""
    length = code.str.len_chars()
    return (
        pl.when((length == 12) & ~code.str.ends_with("000"))
        .then(5)
        .when(((length == 12) & ~code.str.ends_with("000000")) | ((length == 9) & ~code.str.ends_with("000")))
        .then(4)
        .otherwise(3)
    )


def _place_failures(
    frame: pl.DataFrame, failures: pl.DataFrame, level: int | None, row_id: str
) -> pl.DataFrame:
    """The required division's failures: `failures` (the place is missing) with the reason
    `address_unplaced` where an address was given but could not be placed, and the places above
    the level the service's checks need."""
    written = pl.col("address_std") if "address_std" in frame.columns else pl.lit(None, pl.String)
    address = frame.select(pl.col(row_id).cast(pl.Int64).alias("row_id"), written.alias("address"))
    missing = (
        failures.filter(pl.col("column") == "division_code")
        .join(address, on="row_id", how="left")
        .select(
            "row_id",
            "column",
            "check",
            pl.when(pl.col("address").is_not_null())
            .then(pl.lit("address_unplaced"))
            .otherwise(pl.col("reason"))
            .alias("reason"),
            "severity",
            pl.coalesce("address", "value").alias("value"),
        )
    )
    parts = [failures.filter(pl.col("column") != "division_code"), missing]
    if level is not None:
        place = pl.col("_place")
        parts.append(
            frame.with_columns(record_place(frame).alias("_place"))
            .filter(place.is_not_null() & (_code_level(place) < level))
            .select(
                pl.col(row_id).cast(pl.Int64).alias("row_id"),
                pl.lit("division_code").alias("column"),
                pl.lit("place_level").alias("check"),
                pl.lit("division_not_village" if level == 5 else "division_not_street").alias("reason"),
                pl.lit("error").alias("severity"),
                place.alias("value"),
            )
        )
    return pl.concat(parts)


def _required_failures(
    frame: pl.DataFrame, required: list[str], row_id: str, level: int | None = None
) -> pl.DataFrame:
    """Failures of the required fields. A required `division_code` is the record's place: the
    division code given, else the division its address was placed at (see `record_place`), at
    `level` or below when the service's checks start there."""
    source = frame
    if "division_code" in required:
        frame = frame.with_columns(record_place(frame).alias("division_code_std"))
    for name in required:
        column = _checked_column(name)
        if column not in frame.columns:
            frame = frame.with_columns(pl.lit(None, pl.String).alias(column))
        elif name not in STANDARD_COLUMNS:
            frame = frame.with_columns(
                pl.when(pl.col(column).str.strip_chars() != "").then(pl.col(column)).alias(column)
            )
    if not required or frame.is_empty():
        return pl.DataFrame(schema=FAILURE_SCHEMA)
    failures = pl.DataFrame(schema=FAILURE_SCHEMA)
    try:
        required_schema(required).validate(frame, lazy=True)
    except SchemaErrors as exc:
        cases = exc.failure_cases.filter(pl.col("index").is_not_null())
        ids = frame.get_column(row_id)
        failures = cases.select(
            pl.col("index").map_elements(lambda i: ids[int(i)], return_dtype=pl.Int64).alias("row_id"),
            pl.col("column").str.replace(r"_std$", ""),
            pl.col("check").cast(pl.String),
            pl.lit("required_missing").alias("reason"),
            pl.lit("error").alias("severity"),
            pl.col("failure_case").cast(pl.String).alias("value"),
        )
    if "division_code" in required:
        failures = _place_failures(source, failures, level, row_id)
    return failures.select(list(FAILURE_SCHEMA))


def validate_frame(
    frame: pl.DataFrame,
    *,
    required: list[str] | None = None,
    row_id: str = "row_id",
    today: dt.date | None = None,
    address_hint: str | None = None,
    place_level: int | None = None,
    place_addresses: bool = True,
) -> tuple[pl.DataFrame, ValidationReport]:
    """Standardize a frame of standard columns and report every failure; no row is dropped.

    A required `division_code` is met by the record's place (the code given, else its address's
    division), at `place_level` (5 village, 4 township) or below when given. See `standardize`
    for `place_addresses`.
    """
    if not place_addresses and "division_code" in (required or []):
        raise ConfigError(
            "a required division_code is met by placing the addresses; leave place_addresses at True"
        )
    if row_id not in frame.columns:
        frame = frame.with_row_index(row_id, offset=1)
    std = standardize(frame, today=today, address_hint=address_hint, place_addresses=place_addresses)
    failures = pl.concat(
        [_issue_failures(std, row_id), _required_failures(std, required or [], row_id, place_level)]
    )
    return std, ValidationReport(rows=frame.height, failures=failures.sort("row_id", "column"))
