"""Mobile and landline numbers: +86 / 0086, spaces, dashes, brackets and full-width digits removed."""

from __future__ import annotations

import polars as pl

from govdb.standards.issues import issue, join_issues


def standardize_phone(column: str) -> list[pl.Expr]:
    """`<column>_std` (mobile: 11 digits; landline: 0AREA-NUMBER) and `<column>_issues`."""
    raw = pl.col(column).cast(pl.String)
    digits = raw.str.normalize("NFKC").str.replace_all(r"[\s\-()（）]", "").str.replace(r"^(\+86|0086)", "")
    digits = pl.when(digits.str.contains(r"^86 ?1\d{10}$")).then(digits.str.slice(2)).otherwise(digits)
    mobile = digits.str.contains(r"^1[3-9]\d{9}$")
    # Area codes: 010 and 02X have three digits, every other has four (0757, 0371, ...).
    landline = digits.str.contains(r"^(010|02\d)\d{8}$") | digits.str.contains(r"^0[3-9]\d{2}\d{7,8}$")
    area_len = pl.when(digits.str.contains(r"^(010|02\d)")).then(3).otherwise(4)
    formatted_landline = digits.str.slice(0, area_len) + pl.lit("-") + digits.str.slice(area_len)
    present = raw.is_not_null() & (raw.str.strip_chars() != "")
    return [
        pl.when(mobile)
        .then(digits)
        .when(landline)
        .then(formatted_landline)
        .otherwise(None)
        .alias(f"{column}_std"),
        join_issues([issue(present & ~(mobile | landline).fill_null(False), "phone_invalid")]).alias(
            f"{column}_issues"
        ),
    ]
