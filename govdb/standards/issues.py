"""Reason codes that standards attach to values, with their severity.

An error means the value cannot be trusted for linkage or promotion; a warning means it was
repaired or is unusual but usable; info records a repair worth knowing about.
"""

from __future__ import annotations

from typing import Literal

import polars as pl

Severity = Literal["error", "warning", "info"]

REASONS: dict[str, tuple[Severity, str]] = {
    "id_format": ("error", "not 15 or 18 digits (the last may be X)"),
    "id_checksum": ("error", "the GB 11643 check digit does not match"),
    "id_birth_date": ("error", "the birth date inside the ID number is not a real date"),
    "id_birth_future": ("error", "the birth date inside the ID number is in the future"),
    "id_upgraded_15": ("info", "a 15-digit ID number was upgraded to 18 digits"),
    "id_region_unknown": ("warning", "the region code is not in the division table"),
    "uscc_format": ("error", "not 18 characters of the GB 32100 alphabet"),
    "uscc_checksum": ("error", "the GB 32100 check character does not match"),
    "uscc_org_code": ("warning", "the organisation code inside (GB 11714) has a wrong check character"),
    "date_invalid": ("error", "not a date in any format people write"),
    "date_future": ("error", "the date is in the future"),
    "phone_invalid": ("error", "not a mobile (11 digits from 1) or a landline with area code"),
    "name_empty": ("error", "the name is empty"),
    "name_has_digits": ("error", "the name contains digits"),
    "name_pinyin": ("warning", "the name is written in latin letters (pinyin)"),
    "gender_invalid": ("error", "gender is not 男/女/M/F/1/2"),
    "gender_mismatch": ("warning", "gender disagrees with digit 17 of the ID number"),
    "birth_date_mismatch": ("warning", "birth date disagrees with the ID number"),
    "division_unknown": ("error", "the division code is not in the division table"),
    "address_ambiguous": ("warning", "the address fits several places; give the district or a hint"),
    "address_unresolved": ("warning", "no division name was found in the address"),
    "required_missing": ("error", "a field the service requires is empty"),
    "address_unplaced": (
        "error",
        "the service requires the record's division: no division code was given and the address "
        "could not be placed (its own issue says why)",
    ),
    "division_not_village": (
        "error",
        "the record's division is above village level, and the service's checks start at the village",
    ),
    "division_not_street": (
        "error",
        "the record's division is above street/township level, and the service's checks start there",
    ),
    # `process` refuses a standardized record (edited in the store) holding what master cannot store
    "nul_character": ("error", "a NUL character (U+0000), which PostgreSQL cannot hold in text"),
    "lone_surrogate": ("error", "a lone surrogate (U+D800-U+DFFF without its pair), which is not text"),
    "too_long": ("error", "longer than master's column for it"),
    "not_a_stored_date": ("error", "a standardized date not written YYYY-MM-DD"),
    "record_unreadable": ("error", "the standardized record is not a JSON object"),
}


def severity(reason: str) -> Severity:
    """Severity of a reason code; unknown codes are errors so they are never ignored."""
    return REASONS.get(reason, ("error", ""))[0]


def issue(condition: pl.Expr | pl.Series, reason: str) -> pl.Expr:
    """The reason code where `condition` holds, else null (a null condition is not an issue)."""
    return pl.when(condition.fill_null(False)).then(pl.lit(reason))


def join_issues(parts: list[pl.Expr]) -> pl.Expr:
    """Reason codes of one value joined by ';' (empty string when clean)."""
    return pl.concat_str(parts, separator=";", ignore_nulls=True).fill_null("")
