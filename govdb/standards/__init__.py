"""Data elements (数据元): identifiers, names, dates, phones and divisions, as polars expressions.

`standardize(frame)` adds, for each standard column present, `<column>_std` and `<column>_issues`
(reason codes joined by ';', empty when clean). It never drops a row and never raises on text.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from govdb.standards.addresses import normalize_addresses, parse_normalized
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
    frame: pl.DataFrame,
    *,
    today: dt.date | None = None,
    address_hint: str | None = None,
    issues: bool = True,
    place_addresses: bool = True,
    pinyin: bool = True,
) -> pl.DataFrame:
    """The frame with `<column>_std` / `<column>_issues` for every standard column it has.

    `issues=False` leaves out the issue columns (linkage reads only the standardized values).
    `place_addresses=False` only normalizes addresses (`address_std`): no division columns and no
    placing issues, for callers that compare or store the text (a decision's amended address,
    master's values beside an event's). Placing costs tens of milliseconds however few the rows.
    `pinyin=False` leaves out `name_pinyin` (only linkage's blocking reads it).
    """
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
    if "name" in present and pinyin:
        lazy = name_pinyin(lazy)
    if not issues:
        lazy = lazy.select(pl.exclude("^.*_issues$"))  # the planner then never computes them
    out = lazy.collect()
    if "address" in present and place_addresses:
        out = _addresses(out, address_hint, issues)
    elif "address" in present:
        out = out.with_columns(_address_std(normalize_addresses(out.get_column("address"))))
    return _cross_checks(out)


def _address_std(normalized: pl.Series) -> pl.Series:
    """The address as stored and compared: normalized, nothing written (or only blanks) is None."""
    return normalized.set(normalized == "", None).alias("address_std")


def _addresses(frame: pl.DataFrame, hint: str | None, issues: bool) -> pl.DataFrame:
    """address_std, address_issues and the parsed division columns (address_division_code when the
    frame already has a division_code column of its own)."""
    normalized = normalize_addresses(frame.get_column("address"))
    parsed = parse_normalized(normalized, hint=hint)
    text = pl.lit(normalized)
    code_name = "address_division_code" if "division_code" in frame.columns else "division_code"
    placed: list[pl.Expr | pl.Series] = (
        []
        if code_name != "division_code"
        else [
            # No division code column: the address is where the record is.
            parsed.get_column("division_code").alias("division_code_std"),
            *([pl.lit("").alias("division_code_issues")] if issues else []),
        ]
    )
    found = [
        issue(parsed.get_column("address_status") == "ambiguous", "address_ambiguous"),
        issue(
            (parsed.get_column("address_status") == "unresolved") & (text.fill_null("") != ""),
            "address_unresolved",
        ),
    ]
    return frame.with_columns(
        *placed,
        _address_std(normalized),
        *([join_issues(found).alias("address_issues")] if issues else []),
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
    for field, from_id in (("gender", "id_gender"), ("birth_date", "id_birth_date")):
        written = f"{field}_std"
        if written not in frame.columns:
            updates.append(pl.col(from_id).alias(written))
            continue
        if f"{field}_issues" in frame.columns:
            mismatch = issue(
                pl.col(written).is_not_null() & (pl.col(written) != pl.col(from_id)), f"{field}_mismatch"
            )
            earlier = pl.col(f"{field}_issues")
            updates.append(
                join_issues([pl.when(earlier != "").then(earlier), mismatch]).alias(f"{field}_issues")
            )
        updates.append(pl.coalesce(from_id, written).alias(written))
    return frame.with_columns(updates).drop("id_gender", "id_birth_date")
