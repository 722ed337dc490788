"""Data elements (数据元): identifiers, names, dates, phones and divisions, as polars expressions.

`standardize(frame)` adds, for each standard column present, `<column>_std` and `<column>_issues`
(reason codes joined by ';', empty when clean). It never drops a row and never raises on text.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from govdb.standards.addresses import parse_addresses
from govdb.standards.dates import standardize_date
from govdb.standards.divisions import region_codes
from govdb.standards.ids import age_at, standardize_id
from govdb.standards.issues import REASONS, issue, join_issues, severity
from govdb.standards.names import name_pinyin, standardize_gender, standardize_name
from govdb.standards.phones import standardize_phone
from govdb.standards.uscc import standardize_uscc

STANDARD_COLUMNS = ("name", "gender", "id_number", "birth_date", "phone", "address", "division_code", "uscc")

__all__ = ["REASONS", "STANDARD_COLUMNS", "age_at", "severity", "standardize"]


def standardize(
    frame: pl.DataFrame, *, today: dt.date | None = None, address_hint: str | None = None
) -> pl.DataFrame:
    """The frame with `<column>_std` / `<column>_issues` for every standard column it has."""
    today = today or dt.date.today()
    present = set(frame.columns)
    exprs: list[pl.Expr] = []
    if "name" in present:
        exprs += standardize_name("name")
    if "gender" in present:
        exprs += standardize_gender("gender")
    if "birth_date" in present:
        exprs += standardize_date("birth_date", today=today)
    if "phone" in present:
        exprs += standardize_phone("phone")
    if "address" in present:
        text = pl.col("address").cast(pl.String).str.normalize("NFKC").str.replace_all(r"\s+", "")
        exprs += [
            pl.when(text == "").then(None).otherwise(text).alias("address_std"),
            pl.lit("").alias("address_issues"),
        ]
    if "division_code" in present:
        code = pl.col("division_code").cast(pl.String).str.normalize("NFKC").str.strip_chars()
        known = code.is_in(_known_codes().implode())
        exprs += [
            pl.when(known).then(code).otherwise(None).alias("division_code_std"),
            join_issues([issue(code.is_not_null() & (code != "") & ~known, "division_unknown")]).alias(
                "division_code_issues"
            ),
        ]
    lazy = frame.lazy().with_columns(exprs)
    if "id_number" in present:
        lazy = standardize_id(lazy, "id_number", today=today, known_regions=region_codes())
    if "uscc" in present:
        lazy = standardize_uscc(lazy, "uscc")
    if "name" in present:
        lazy = name_pinyin(lazy)
    out = lazy.collect()
    if "address" in present:
        out = _addresses(out, address_hint)
    return _cross_checks(out)


def _addresses(frame: pl.DataFrame, hint: str | None) -> pl.DataFrame:
    """address_std, address_issues and the parsed division columns (address_division_code when the
    frame already has a division_code column of its own)."""
    text = pl.col("address").cast(pl.String).str.normalize("NFKC").str.replace_all(r"\s+", "")
    parsed = parse_addresses(frame.get_column("address"), hint=hint)
    code_name = "address_division_code" if "division_code" in frame.columns else "division_code"
    placed = (
        []
        if code_name != "division_code"
        else [
            # No division code column: the address is where the record is.
            parsed.get_column("division_code").alias("division_code_std"),
            pl.lit("").alias("division_code_issues"),
        ]
    )
    return frame.with_columns(
        *placed,
        pl.when(text == "").then(None).otherwise(text).alias("address_std"),
        join_issues(
            [
                issue(parsed.get_column("address_status") == "ambiguous", "address_ambiguous"),
                issue(
                    (parsed.get_column("address_status") == "unresolved") & (text.fill_null("") != ""),
                    "address_unresolved",
                ),
            ]
        ).alias("address_issues"),
        parsed.get_column("division_code").alias(code_name),
        parsed.get_column("division_level"),
        parsed.get_column("address_rest"),
        parsed.get_column("address_status"),
        parsed.get_column("address_confidence"),
    )


def _known_codes() -> pl.Series:
    from govdb.standards.divisions import division_table

    return division_table().get_column("code")


def _cross_checks(frame: pl.DataFrame) -> pl.DataFrame:
    """Fill gender and birth date from a valid ID; flag disagreements with the written values."""
    if "id_number_std" not in frame.columns:
        return frame
    updates: list[pl.Expr] = []
    if "gender_std" in frame.columns:
        mismatch = issue(
            pl.col("gender_std").is_not_null() & (pl.col("gender_std") != pl.col("id_gender")),
            "gender_mismatch",
        )
        updates += [
            join_issues(
                [pl.when(pl.col("gender_issues") != "").then(pl.col("gender_issues")), mismatch]
            ).alias("gender_issues"),
            pl.coalesce("id_gender", "gender_std").alias("gender_std"),
        ]
    else:
        updates.append(pl.col("id_gender").alias("gender_std"))
    if "birth_date_std" in frame.columns:
        mismatch = issue(
            pl.col("birth_date_std").is_not_null() & (pl.col("birth_date_std") != pl.col("id_birth_date")),
            "birth_date_mismatch",
        )
        updates += [
            join_issues(
                [pl.when(pl.col("birth_date_issues") != "").then(pl.col("birth_date_issues")), mismatch]
            ).alias("birth_date_issues"),
            pl.coalesce("id_birth_date", "birth_date_std").alias("birth_date_std"),
        ]
    else:
        updates.append(pl.col("id_birth_date").alias("birth_date_std"))
    return frame.with_columns(updates).drop("id_gender", "id_birth_date")
