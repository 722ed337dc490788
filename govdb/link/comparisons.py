"""Comparisons as ordered, labelled levels, computed on whole columns of candidate pairs.

Each function takes the left and right values of N candidate pairs and returns N level labels,
most similar first in each function's `LEVELS`. String similarity comes from rapidfuzz's
`process.cpdist` (pairwise, all cores); nothing loops over pairs in Python. These are the
building blocks of the Fellegi-Sunter model: every level gets its own m and u probabilities.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from rapidfuzz import process
from rapidfuzz.distance import OSA, Hamming, JaroWinkler

NAME_LEVELS = ("exact", "homophone", "similar", "surname_only", "different", "null")
ID_LEVELS = ("exact", "one_digit", "transposed", "different", "null")
DATE_LEVELS = ("exact", "day_month_swapped", "one_part", "different", "null")
PHONE_LEVELS = ("exact", "one_digit", "different", "null")


def _pairs(left: pl.Series, right: pl.Series) -> tuple[list[str], list[str], np.ndarray]:
    """Both sides as lists (nulls as ""), and where either side is missing."""
    missing = (left.is_null() | right.is_null() | (left == "") | (right == "")).fill_null(True).to_numpy()
    return left.fill_null("").to_list(), right.fill_null("").to_list(), missing


def _equal(left: pl.Series, right: pl.Series) -> np.ndarray:
    return (left == right).fill_null(False).to_numpy()


def _labels(choices: list[tuple[np.ndarray, str]], default: str) -> pl.Series:
    """The label of the first condition that holds for each pair (np.select), else `default`."""
    return pl.Series(
        np.select([c for c, _ in choices], [label for _, label in choices], default=default), dtype=pl.String
    )


def compare_names(
    left: pl.Series, right: pl.Series, left_pinyin: pl.Series, right_pinyin: pl.Series
) -> pl.Series:
    """Names by characters and by pinyin.

    exact: same characters; homophone: same pinyin (张伟/张玮, 王小明/王晓明, a name written in
    pinyin); similar: same surname reading and pinyin Jaro-Winkler >= 0.9 (王建国/王建军);
    surname_only: same surname reading, given names unlike; different; null.
    """
    _, _, missing = _pairs(left, right)
    pa, pb, _ = _pairs(left_pinyin, right_pinyin)
    exact = _equal(left, right)
    same_pinyin = _equal(left_pinyin, right_pinyin)
    jw = process.cpdist(pa, pb, scorer=JaroWinkler.normalized_similarity, workers=-1) if pa else np.zeros(0)
    surname = (
        left_pinyin.fill_null("").str.split(" ").list.first()
        == right_pinyin.fill_null("").str.split(" ").list.first()
    )
    same_surname = surname.fill_null(False).to_numpy()
    return _labels(
        [
            (missing, "null"),
            (exact, "exact"),
            (same_pinyin, "homophone"),
            (same_surname & (jw >= 0.9), "similar"),
            (same_surname, "surname_only"),
        ],
        "different",
    )


def compare_ids(left: pl.Series, right: pl.Series) -> pl.Series:
    """Resident ID numbers: exact, one digit wrong, two adjacent digits transposed, different."""
    a, b, missing = _pairs(left, right)
    hamming = process.cpdist(a, b, scorer=Hamming.distance, workers=-1) if a else np.zeros(0)
    osa = process.cpdist(a, b, scorer=OSA.distance, workers=-1) if a else np.zeros(0)
    same_length = _equal(left.str.len_chars(), right.str.len_chars())
    return _labels(
        [
            (missing, "null"),
            (hamming == 0, "exact"),
            (same_length & (hamming == 1), "one_digit"),
            (same_length & (osa == 1), "transposed"),
        ],
        "different",
    )


def compare_dates(left: pl.Series, right: pl.Series) -> pl.Series:
    """Birth dates: exact, day and month swapped, one of year/month/day wrong, different."""
    frame = pl.DataFrame({"l": left.cast(pl.Date), "r": right.cast(pl.Date)})
    parts = frame.select(
        (pl.col("l").dt.year() == pl.col("r").dt.year()).alias("y"),
        (pl.col("l").dt.month() == pl.col("r").dt.month()).alias("m"),
        (pl.col("l").dt.day() == pl.col("r").dt.day()).alias("d"),
        (
            (pl.col("l").dt.year() == pl.col("r").dt.year())
            & (pl.col("l").dt.month() == pl.col("r").dt.day())
            & (pl.col("l").dt.day() == pl.col("r").dt.month())
        ).alias("swap"),
        (pl.col("l").is_null() | pl.col("r").is_null()).alias("missing"),
    )
    y, m, d, swap, missing = (parts.get_column(c).fill_null(False).to_numpy() for c in parts.columns)
    matches = y.astype(int) + m.astype(int) + d.astype(int)
    return _labels(
        [(missing, "null"), (matches == 3, "exact"), (swap, "day_month_swapped"), (matches == 2, "one_part")],
        "different",
    )


def compare_phones(left: pl.Series, right: pl.Series) -> pl.Series:
    """Phones: exact, one digit wrong, different."""
    a, b, missing = _pairs(left, right)
    hamming = process.cpdist(a, b, scorer=Hamming.distance, workers=-1) if a else np.zeros(0)
    same_length = _equal(left.str.len_chars(), right.str.len_chars())
    return _labels(
        [(missing, "null"), (hamming == 0, "exact"), (same_length & (hamming == 1), "one_digit")],
        "different",
    )
