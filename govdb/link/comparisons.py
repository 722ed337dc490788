"""Comparisons as ordered, labelled levels, computed on whole columns of candidate pairs.

A comparison reads feature columns of both records of N candidate pairs (`<column>_l` and
`<column>_r` in one pairs frame) and gives each pair one level, most similar first; `null` (either
side missing) is always last and carries no evidence. Every level gets its own m and u probability
in the Fellegi-Sunter model. String similarity comes from rapidfuzz's `process.cpdist` (pairwise,
all cores) and the rest from polars and numpy expressions: nothing loops over pairs in Python.

Comparisons are registered by method name; rules/matching files name them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl
from rapidfuzz import process
from rapidfuzz.distance import OSA, Hamming, Indel, JaroWinkler

NULL = "null"
PARALLEL_FROM = 10_000
MATRIX_FROM = 64  # pairs of one text length from which ID numbers are compared as byte matrices


@dataclass(frozen=True)
class Comparison:
    """A comparison method: its levels, the feature columns it reads, and default m per level."""

    method: str
    levels: tuple[str, ...]  # most similar first; the last is always "null"
    columns: tuple[str, ...]
    compute: Callable[[pl.DataFrame], np.ndarray]  # pairs frame -> level index per pair (int8)
    m_start: tuple[float, ...]  # starting m of each non-null level (sums to 1)
    tf_column: str | None = None  # exact-level weights adjusted by this column's value frequency

    def labels(self, codes: np.ndarray) -> pl.Series:
        return pl.Series(codes).replace_strict(dict(enumerate(self.levels)), return_dtype=pl.String)


COMPARISONS: dict[str, Comparison] = {}


def _register(comparison: Comparison) -> Comparison:
    assert comparison.levels[-1] == NULL and len(comparison.m_start) == len(comparison.levels) - 1
    COMPARISONS[comparison.method] = comparison
    return comparison


def compare(pairs: pl.DataFrame, method: str) -> pl.Series:
    """Level labels of every pair under `method` (for tests and explanations)."""
    comparison = COMPARISONS[method]
    return comparison.labels(comparison.compute(pairs))


def _sides(pairs: pl.DataFrame, column: str) -> tuple[pl.Series, pl.Series]:
    return pairs.get_column(f"{column}_l"), pairs.get_column(f"{column}_r")


def _missing(left: pl.Series, right: pl.Series) -> np.ndarray:
    if left.dtype == pl.String:
        return (left.is_null() | right.is_null() | (left == "") | (right == "")).fill_null(True).to_numpy()
    return (left.is_null() | right.is_null()).to_numpy()


def _equal(left: pl.Series, right: pl.Series) -> np.ndarray:
    return (left == right).fill_null(False).to_numpy()


def _distance(
    left: pl.Series, right: pl.Series, scorer: Callable[..., float], where: np.ndarray, fill: float
) -> np.ndarray:
    """A rapidfuzz scorer over the aligned pairs `where` says need it (nulls as ""); `fill` elsewhere.

    Most candidate pairs are settled by equality or a missing value before any distance matters, and
    handing strings to rapidfuzz costs more than scoring them: only the undecided pairs go.
    """
    # float32, as rapidfuzz returns them: a threshold of 0.9 then means what it does for rapidfuzz.
    out = np.full(len(left), fill, dtype=np.float32)
    chosen = np.flatnonzero(where)
    if len(chosen) == 0:
        return out
    positions = pl.Series(chosen)
    a = left.gather(positions).fill_null("").to_list()
    b = right.gather(positions).fill_null("").to_list()
    # Threads pay off on whole columns; for an online lookup's handful of pairs they only cost.
    workers = -1 if len(a) > PARALLEL_FROM else 1
    out[chosen] = process.cpdist(a, b, scorer=scorer, workers=workers)
    return out


def _select(levels: tuple[str, ...], choices: list[tuple[np.ndarray, str]], default: str) -> np.ndarray:
    """Index of the first level whose condition holds for each pair, else `default` (np.select)."""
    index = {label: i for i, label in enumerate(levels)}
    return np.select(
        [c for c, _ in choices], [index[label] for _, label in choices], default=index[default]
    ).astype(np.int8)


NAME_LEVELS = ("exact", "variant", "homophone", "similar", "surname_only", "different", NULL)


def _names_on(prefix: str) -> Callable[[pl.DataFrame], np.ndarray]:
    """Personal names in columns `<prefix>name`, `<prefix>name_folded`, ...

    exact: same characters; variant: same after folding traditional and look-alike characters
    (張偉/张伟, 王丽/玉丽); homophone: same pinyin (张伟/张玮, 王小明/王晓明, a name written in
    pinyin); similar: same surname reading and pinyin Jaro-Winkler >= 0.9 (王建国/王建军);
    surname_only: same surname reading, given names unlike; different."""

    def names(pairs: pl.DataFrame) -> np.ndarray:
        name_l, name_r = _sides(pairs, f"{prefix}name")
        pinyin_l, pinyin_r = _sides(pairs, f"{prefix}name_pinyin")
        missing, exact = _missing(name_l, name_r), _equal(name_l, name_r)
        variant = _equal(*_sides(pairs, f"{prefix}name_folded"))
        homophone = _equal(pinyin_l, pinyin_r)
        same_surname = _equal(*_sides(pairs, f"{prefix}surname_pinyin"))
        undecided = same_surname & ~(missing | exact | variant | homophone)
        jw = _distance(pinyin_l, pinyin_r, JaroWinkler.normalized_similarity, undecided, 0.0)
        return _select(
            NAME_LEVELS,
            [
                (missing, NULL),
                (exact, "exact"),
                (variant, "variant"),
                (homophone, "homophone"),
                (same_surname & (jw >= 0.9), "similar"),
                (same_surname, "surname_only"),
            ],
            "different",
        )

    return names


NAME_COLUMNS = ("name", "name_folded", "name_pinyin", "surname_pinyin")
_register(
    Comparison(
        "chinese_name", NAME_LEVELS, NAME_COLUMNS, _names_on(""), (0.85, 0.02, 0.05, 0.03, 0.03, 0.02), "name"
    )
)
_register(
    Comparison(
        "representative_name",
        NAME_LEVELS,
        tuple(f"rep_{c}" for c in NAME_COLUMNS),
        _names_on("rep_"),
        (0.8, 0.02, 0.05, 0.03, 0.03, 0.07),
    )
)

ID_LEVELS = ("exact", "one_digit", "transposed", "different", NULL)


def _codes_on(column: str) -> Callable[[pl.DataFrame], np.ndarray]:
    """Identifiers as written (resident IDs cleaned with 15 digits upgraded; USCCs cleaned): exact,
    one character wrong, two adjacent characters transposed, different."""

    def codes(pairs: pl.DataFrame) -> np.ndarray:
        return _identifiers(*_sides(pairs, column))

    return codes


def _identifiers(left: pl.Series, right: pl.Series, levels: tuple[str, ...] = ID_LEVELS) -> np.ndarray:
    """Codes as text: exact, one character wrong, two adjacent ones transposed (when `levels` has
    that level), different."""
    missing, exact = _missing(left, right), _equal(left, right)
    undecided = _equal(left.str.len_chars(), right.str.len_chars()) & ~(missing | exact)
    hamming, swapped = _one_edit(left, right, undecided)
    choices = [(missing, NULL), (exact, "exact"), (hamming == 1, "one_digit")]
    if "transposed" in levels:
        choices.append((swapped, "transposed"))
    return _select(levels, choices, "different")


def _one_edit(left: pl.Series, right: pl.Series, where: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For the pairs `where` says (non-empty, of one length): the Hamming distance, and whether one
    swap of two adjacent characters makes them equal (OSA distance 1 at Hamming distance 2); -1
    and False elsewhere.

    Most candidate pairs of a county hold two different 18-character ID numbers: ASCII codes of
    one length are compared as byte matrices in numpy, where handing a million pairs to rapidfuzz
    as Python strings took a tenth of `process`. Any other text goes to rapidfuzz as before."""
    hamming = np.full(len(left), -1, dtype=np.float32)
    swapped = np.zeros(len(left), dtype=bool)
    chosen = np.flatnonzero(where)
    if len(chosen) == 0:
        return hamming, swapped
    positions = pl.Series(chosen)
    a, b = left.gather(positions), right.gather(positions)
    size = a.str.len_bytes()
    plain = ((size == a.str.len_chars()) & (size == b.str.len_bytes())).fill_null(False).to_numpy()
    lengths = size.fill_null(0).to_numpy()
    kinds, counts = np.unique(lengths[plain], return_counts=True)
    if len(kinds) > 1:  # a matrix per length pays only for lengths many pairs share
        kinds = kinds[counts >= MATRIX_FROM]
        plain &= np.isin(lengths, kinds)
    for length in kinds:
        if len(kinds) == 1 and plain.all():  # the usual chunk: every pair two codes of one length
            rows, a_rows, b_rows = np.arange(len(chosen)), a, b
        else:
            rows = np.flatnonzero(plain & (lengths == length))
            a_rows, b_rows = a.gather(pl.Series(rows)), b.gather(pl.Series(rows))
        a_bytes, b_bytes = _byte_matrix(a_rows, int(length)), _byte_matrix(b_rows, int(length))
        differ = a_bytes != b_bytes
        distance = np.count_nonzero(differ, axis=1)
        hamming[chosen[rows]] = distance
        two = np.flatnonzero(distance == 2)  # only these can be one swap apart
        x, y = a_bytes[two], b_bytes[two]
        crossed = differ[two, :-1] & (x[:, :-1] == y[:, 1:]) & (x[:, 1:] == y[:, :-1])
        swapped[chosen[rows[two]]] = crossed.any(axis=1)
    rest = np.zeros(len(left), dtype=bool)
    rest[chosen[~plain]] = True
    if rest.any():
        hamming[rest] = _distance(left, right, Hamming.distance, rest, -1)[rest]
        osa = _distance(left, right, OSA.distance, rest & (hamming != 1), -1)
        swapped |= rest & (osa == 1)
    return hamming, swapped


def _byte_matrix(texts: pl.Series, length: int) -> np.ndarray:
    """ASCII texts of `length` characters as a texts x length matrix of their bytes."""
    array = texts.cast(pl.Binary).bin.reinterpret(dtype=pl.Array(pl.UInt8, length))
    return array.to_numpy().reshape(len(texts), length)


_register(Comparison("id_number", ID_LEVELS, ("id_text",), _codes_on("id_text"), (0.95, 0.02, 0.01, 0.02)))
_register(Comparison("uscc", ID_LEVELS, ("uscc_text",), _codes_on("uscc_text"), (0.95, 0.02, 0.01, 0.02)))

ENTERPRISE_NAME_LEVELS = ("exact", "same_core", "similar", "different", NULL)


def _enterprise_names(pairs: pl.DataFrame) -> np.ndarray:
    """Enterprise names: exact; the same once the legal form and the leading place names are set
    aside (佛山市南海区华强五金有限公司 / 华强五金有限责任公司); similar cores (Indel >= 0.8); different."""
    name_l, name_r = _sides(pairs, "name")
    core_l, core_r = _sides(pairs, "name_core")
    missing, exact, same_core = _missing(name_l, name_r), _equal(name_l, name_r), _equal(core_l, core_r)
    undecided = ~(missing | exact | same_core)
    similarity = _distance(core_l, core_r, Indel.normalized_similarity, undecided, 0.0)
    return _select(
        ENTERPRISE_NAME_LEVELS,
        [
            (missing, NULL),
            (exact, "exact"),
            (same_core, "same_core"),
            (similarity >= 0.8, "similar"),
        ],
        "different",
    )


_register(
    Comparison(
        "enterprise_name",
        ENTERPRISE_NAME_LEVELS,
        ("name", "name_core"),
        _enterprise_names,
        (0.7, 0.2, 0.07, 0.03),
        tf_column="name",
    )
)

DATE_LEVELS = ("exact", "day_month_swapped", "one_part", "different", NULL)


def _dates(pairs: pl.DataFrame) -> np.ndarray:
    """Birth dates: exact, day and month swapped, one of year/month/day wrong, different."""
    left, right = (s.cast(pl.Date) for s in _sides(pairs, "birth_date"))
    y = _equal(left.dt.year(), right.dt.year())
    m = _equal(left.dt.month(), right.dt.month())
    d = _equal(left.dt.day(), right.dt.day())
    swap = y & _equal(left.dt.month(), right.dt.day()) & _equal(left.dt.day(), right.dt.month())
    matches = y.astype(np.int8) + m.astype(np.int8) + d.astype(np.int8)
    return _select(
        DATE_LEVELS,
        [
            (_missing(left, right), NULL),
            (matches == 3, "exact"),
            (swap, "day_month_swapped"),
            (matches == 2, "one_part"),
        ],
        "different",
    )


_register(Comparison("date", DATE_LEVELS, ("birth_date",), _dates, (0.93, 0.01, 0.04, 0.02)))

PHONE_LEVELS = ("exact", "one_digit", "different", NULL)


def _phones(pairs: pl.DataFrame) -> np.ndarray:
    """Phones: exact, one digit wrong, different (people change numbers: weak evidence against)."""
    return _identifiers(*_sides(pairs, "phone"), PHONE_LEVELS)


_register(Comparison("phone", PHONE_LEVELS, ("phone",), _phones, (0.7, 0.02, 0.28)))

ADDRESS_LEVELS = ("exact", "same_place", "same_village", "same_township", "same_county", "different", NULL)


def _addresses(pairs: pl.DataFrame) -> np.ndarray:
    """Addresses: the same text; the same place (division codes agree as deep as both go, at least to
    the county, and the rest of the text is similar: 夏西村12号 / 夏西村委会12号); the same village,
    township or county; different."""
    text_l, text_r = _sides(pairs, "address")
    code_l, code_r = _sides(pairs, "division_code")
    rest_l, rest_r = _sides(pairs, "address_rest")
    len_l, len_r = code_l.str.len_chars().fill_null(0), code_r.str.len_chars().fill_null(0)

    def same_prefix(n: int) -> np.ndarray:
        return (
            _equal(code_l.str.slice(0, n), code_r.str.slice(0, n))
            & (len_l >= n).to_numpy()
            & (len_r >= n).to_numpy()
        )

    shallow = np.minimum(len_l.to_numpy(), len_r.to_numpy())
    agree_as_deep_as_both = (
        pl.DataFrame({"l": code_l, "r": code_r, "n": shallow})
        .select(
            (pl.col("l").str.slice(0, pl.col("n")) == pl.col("r").str.slice(0, pl.col("n")))
            & (pl.col("n") >= 6)
        )
        .to_series()
        .fill_null(False)
        .to_numpy()
    )
    missing, exact = _missing(text_l, text_r), _equal(text_l, text_r)
    undecided = agree_as_deep_as_both & ~_missing(rest_l, rest_r) & ~(missing | exact)
    rest_similarity = _distance(rest_l, rest_r, Indel.normalized_similarity, undecided, 0.0)
    return _select(
        ADDRESS_LEVELS,
        [
            (missing, NULL),
            (exact, "exact"),
            (undecided & (rest_similarity >= 0.8), "same_place"),
            (same_prefix(12), "same_village"),
            (same_prefix(9), "same_township"),
            (same_prefix(6), "same_county"),
        ],
        "different",
    )


_register(
    Comparison(
        "address",
        ADDRESS_LEVELS,
        ("address", "division_code", "address_rest"),
        _addresses,
        (0.45, 0.15, 0.1, 0.1, 0.1, 0.1),
    )
)

GENDER_LEVELS = ("exact", "different", NULL)


def _genders(pairs: pl.DataFrame) -> np.ndarray:
    left, right = _sides(pairs, "gender")
    return _select(
        GENDER_LEVELS, [(_missing(left, right), NULL), (_equal(left, right), "exact")], "different"
    )


_register(Comparison("gender", GENDER_LEVELS, ("gender",), _genders, (0.98, 0.02)))
