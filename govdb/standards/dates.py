"""Dates as people write them: 1990-01-02, 1990/1/2, 1990.1.2, 19900102, 1990年1月2日, Excel serials."""

from __future__ import annotations

import datetime as dt

import polars as pl

from govdb.standards.issues import issue, join_issues

EXCEL_EPOCH = dt.date(1899, 12, 30)


def parse_date(text: pl.Expr) -> pl.Expr:
    """The date a text means, or null; time parts after the date are ignored.

    Every written form is first rewritten to Y-M-D (年月日, slashes and dots become dashes; eight
    digits get dashes), so one strptime parses them all; five-digit Excel serials are counted
    from 1899-12-30.
    """
    s = (
        text.cast(pl.String)
        .str.normalize("NFKC")
        .str.strip_chars()
        .str.replace(r"[ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?$", "")
        .str.replace_all(r"[年月/.]", "-")
        .str.replace(r"日$", "")
        .str.replace(r"^(\d{4})(\d{2})(\d{2})$", "${1}-${2}-${3}")
    )
    serial = s.cast(pl.Int64, strict=False)
    from_serial = pl.lit(EXCEL_EPOCH) + pl.duration(days=serial)
    return (
        pl.when(s.str.contains(r"^\d{4}-\d{1,2}-\d{1,2}$"))
        .then(s.str.strptime(pl.Date, "%Y-%m-%d", strict=False))
        .when(s.str.contains(r"^\d{5}$") & serial.is_between(1, 80000))
        .then(from_serial)
    )


def standardize_date(column: str, *, today: dt.date) -> list[pl.Expr]:
    """`<column>_std` (a Date) and `<column>_issues`."""
    raw = pl.col(column).cast(pl.String)
    parsed = parse_date(raw)
    present = raw.is_not_null() & (raw.str.strip_chars() != "")
    return [
        pl.when(parsed <= pl.lit(today)).then(parsed).otherwise(None).alias(f"{column}_std"),
        join_issues(
            [issue(present & parsed.is_null(), "date_invalid"), issue(parsed > pl.lit(today), "date_future")]
        ).alias(f"{column}_issues"),
    ]
