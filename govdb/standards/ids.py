"""Resident ID numbers (公民身份号码, GB 11643) as vectorised polars expressions.

Never gated on stdnum.cn.ric: it rejects real IDs whose county was created after the birth year
and crashes on region codes created after 2020 (see research/deps-scout.md).
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from govdb.standards.issues import issue, join_issues

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARS = "10X98765432"


def normalize(text: pl.Expr) -> pl.Expr:
    """NFKC (full-width digits), drop spaces and dashes, upper-case x."""
    return text.cast(pl.String).str.normalize("NFKC").str.replace_all(r"[\s\-_]", "").str.to_uppercase()


def check_char(number: pl.Expr) -> pl.Expr:
    """The GB 11643 check character of 17 digits given as one integer (null stays null).

    Pass a column, not an expression: the digits are taken apart with 17 integer operations, and
    an expression would be evaluated once for each.
    """
    total = pl.sum_horizontal([(number // 10 ** (16 - i)) % 10 * w for i, w in enumerate(WEIGHTS)])
    return (total % 11).replace_strict(dict(enumerate(CHECK_CHARS)), return_dtype=pl.String)


def digits17(text: pl.Expr) -> pl.Expr:
    """17 digits as an integer, null when the text is not exactly 17 digits."""
    return pl.when(text.str.contains(r"^\d{17}$")).then(text.str.to_integer(strict=False))


def standardize_id(
    frame: pl.LazyFrame, column: str, *, today: dt.date, known_regions: pl.Series | None = None
) -> pl.LazyFrame:
    """Add `<column>_std`, `<column>_issues`, `id_gender` and `id_birth_date`.

    Computed in stages over named helper columns: nesting the expressions instead repeats the
    17-term checksum inside every condition and makes polars' planner slow.
    """
    norm, old17, up, number, check, birth = (
        "_id_norm",
        "_id_old17",
        "_id_up",
        "_id_num",
        "_id_check",
        "_id_birth",
    )
    frame = frame.with_columns(normalize(pl.col(column)).alias(norm))
    # 15-digit IDs (issued before 1999) become 18 digits: the century 19 goes in, a check digit on.
    frame = frame.with_columns(
        pl.when(pl.col(norm).str.contains(r"^\d{15}$"))
        .then(pl.col(norm).str.slice(0, 6) + pl.lit("19") + pl.col(norm).str.slice(6, 9))
        .alias(old17)
    )
    frame = frame.with_columns(digits17(pl.col(old17)).alias(number))
    frame = frame.with_columns(
        pl.coalesce(pl.col(old17) + check_char(pl.col(number)), pl.col(norm)).alias(up)
    )
    frame = frame.with_columns(digits17(pl.col(up).str.slice(0, 17)).alias(number))
    frame = frame.with_columns(
        check_char(pl.col(number)).alias(check),
        pl.col(up).str.slice(6, 8).str.strptime(pl.Date, "%Y%m%d", strict=False).alias(birth),
    )
    shaped = pl.col(up).str.contains(r"^\d{17}[\dX]$").fill_null(False)
    checksum_ok = (pl.col(up).str.slice(17, 1) == pl.col(check)).fill_null(False)
    present = pl.col(norm).is_not_null() & (pl.col(norm) != "")
    issues = [
        issue(present & ~shaped, "id_format"),
        issue(shaped & ~checksum_ok, "id_checksum"),
        issue(shaped & pl.col(birth).is_null(), "id_birth_date"),
        issue(shaped & (pl.col(birth) > pl.lit(today)), "id_birth_future"),
        issue(pl.col(old17).is_not_null(), "id_upgraded_15"),
    ]
    if known_regions is not None:
        # A region code that never existed is a warning: the ID may still be genuine.
        issues.append(
            issue(shaped & ~pl.col(up).str.slice(0, 6).is_in(known_regions.implode()), "id_region_unknown")
        )
    valid = shaped & checksum_ok & pl.col(birth).is_not_null() & (pl.col(birth) <= pl.lit(today))
    odd = pl.col(up).str.slice(16, 1).cast(pl.Int32, strict=False) % 2 == 1
    return frame.with_columns(
        pl.when(valid).then(pl.col(up)).otherwise(None).alias(f"{column}_std"),
        join_issues(issues).alias(f"{column}_issues"),
        pl.when(valid).then(pl.when(odd).then(pl.lit("M")).otherwise(pl.lit("F"))).alias("id_gender"),
        pl.when(valid).then(pl.col(birth)).alias("id_birth_date"),
    ).drop(norm, old17, up, number, check, birth)


def age_at(birth_date: pl.Expr, at: dt.date) -> pl.Expr:
    """Completed years at `at` (a birthday on `at` counts)."""
    before_birthday = (birth_date.dt.month() > at.month) | (
        (birth_date.dt.month() == at.month) & (birth_date.dt.day() > at.day)
    )
    return pl.lit(at.year) - birth_date.dt.year() - before_birthday.cast(pl.Int32)


def make_id(region: str, birth: dt.date, sequence: int) -> str:
    """A valid 18-digit ID for a region, birth date and 3-digit sequence (odd = male)."""
    first17 = f"{region}{birth:%Y%m%d}{sequence:03d}"
    total = sum(int(c) * w for c, w in zip(first17, WEIGHTS, strict=True))
    return first17 + CHECK_CHARS[total % 11]
