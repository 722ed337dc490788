"""Linkage features: person records as people wrote them -> the columns comparisons and blocking use.

Both sides of a linkage (events and master, or one file against itself) pass through `prepare`, so
they are compared in one form: the standardized values, the name split into surname and given name
(compound surnames kept whole), the name's pinyin without spaces (homophones and names written in
pinyin meet), the name with traditional and look-alike characters folded, the ID number both as a
checked value and as cleaned text (so a mistyped ID can still be compared digit by digit), and the
address as a division code plus the rest of the text.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import polars as pl

from govdb.errors import InputFileError
from govdb.standards import standardize
from govdb.standards.hanzi import fold_names
from govdb.standards.ids import normalize
from govdb.standards.names import LATIN_NAME, SURNAME_READINGS

PERSON_FIELDS = ("name", "gender", "birth_date", "id_number", "phone", "address")

# Blocking key -> the standard fields it is derived from. A training pass blocked on a key does not
# estimate m for comparisons of those fields (they agree by construction inside the block).
BLOCKING_KEYS: dict[str, tuple[str, ...]] = {
    "id_number": ("id_number",),
    "id_region": ("id_number",),
    "birth_date": ("birth_date",),
    "birth_year": ("birth_date",),
    "phone": ("phone",),
    "surname": ("name",),
    "surname_pinyin": ("name",),
    "given_name": ("name",),
    "name_pinyin": ("name",),
    "name_folded": ("name",),
    "village_code": ("address",),
    "township_code": ("address",),
}

# The columns `prepare` returns, with their types (stored features are read back to these).
FEATURE_SCHEMA: dict[str, pl.DataType] = {
    "rid": pl.String(),
    "name": pl.String(),
    "name_pinyin": pl.String(),
    "gender": pl.String(),
    "birth_date": pl.Date(),
    "id_number": pl.String(),
    "id_text": pl.String(),
    "phone": pl.String(),
    "address": pl.String(),
    "division_code": pl.String(),
    "address_rest": pl.String(),
    "surname": pl.String(),
    "given_name": pl.String(),
    "surname_pinyin": pl.String(),
    "name_folded": pl.String(),
    "birth_year": pl.Int32(),
    "id_region": pl.String(),
    "village_code": pl.String(),
    "township_code": pl.String(),
}

ENTERPRISE_FIELDS = ("name", "uscc", "legal_representative", "phone", "address")
ENTERPRISE_KEYS: dict[str, tuple[str, ...]] = {
    "uscc": ("uscc",),
    "name_core": ("name",),
    "rep_name_pinyin": ("legal_representative",),
    "county_code": ("address",),
    "phone": ("phone",),
}
# Legal forms and leading place names set aside to compare the distinctive part of a name.
LEGAL_FORMS = r"(股份有限公司|有限责任公司|有限公司|合伙企业\(有限合伙\)|合伙企业|个人独资企业)$"
PLACE_PREFIX = r"^(.{2,7}?(省|自治区))?(.{2,6}?(市|自治州|地区|盟))?(.{2,6}?(区|县|市|旗))?"

COMPOUND_SURNAMES = tuple(k for k in SURNAME_READINGS if len(k) == 2)


def prepare(
    frame: pl.DataFrame,
    *,
    id_column: str,
    today: dt.date | None = None,
    address_hint: str | None = None,
    mapping: Mapping[str, str] | None = None,
    source: str = "input",
) -> pl.DataFrame:
    """Records -> one row per record with `rid` and the linkage features.

    `mapping` renames columns first (column -> standard field). Standard fields that are absent are
    null features; other columns are ignored. A `division_code` column, when present (master data
    carries one), is preferred to the code parsed from the address.
    """
    frame = _renamed(frame, mapping, source)
    base = _ids_column(frame, id_column, source, (*PERSON_FIELDS, "division_code"))
    columns = {f: f in base.columns for f in (*PERSON_FIELDS, "division_code")}
    # Names, written dates and genders repeat a lot: standardized once per distinct value (first,
    # so a caller can build the address gazetteer meanwhile).
    distinct = []
    if columns["name"]:
        distinct.append(("name", _names(base.get_column("name"), today)))
    for written, out_col in (("birth_date", "birth_date_std"), ("gender", "gender_std")):
        if columns[written]:
            distinct.append((written, _distinct_standardized(base.get_column(written), out_col, today)))
    # Row-level: IDs (their birth date and gender win over the written ones, as in standardize),
    # phones and addresses (parsed once per distinct address inside).
    row_level = [f for f in ("id_number", "phone", "address", "division_code") if columns[f]]
    std = standardize(base.select("rid", *row_level), today=today, address_hint=address_hint, issues=False)
    for written, values in distinct:
        std = std.with_columns(base.get_column(written)).join(
            values, on=written, how="left", maintain_order="left"
        )
    std = _cross_check_written(std, columns)

    col = _column_or_null(std)
    division = _division(std)
    out = std.select(
        "rid",
        col("name_std").alias("name"),
        col("name_pinyin"),
        col("gender_std").alias("gender"),
        col("birth_date_std", pl.Date).alias("birth_date"),
        col("id_number_std").alias("id_number"),
        # The valid ID (15 digits upgraded), else the ID as written, cleaned: typos stay comparable.
        (
            pl.coalesce(col("id_number_std"), normalize(col("id_number")))
            if columns["id_number"]
            else pl.lit(None, pl.String)
        )
        .replace("", None)
        .alias("id_text"),
        col("phone_std").alias("phone"),
        col("address_std").alias("address"),
        division.alias("division_code"),
        col("address_rest").alias("address_rest"),
        col("surname"),
        col("given_name"),
        col("surname_pinyin"),
        col("name_folded"),
    )
    return out.with_columns(*_derived()).cast(FEATURE_SCHEMA)  # type: ignore[arg-type]


def prepare_enterprises(
    frame: pl.DataFrame,
    *,
    id_column: str,
    today: dt.date | None = None,
    address_hint: str | None = None,
    mapping: Mapping[str, str] | None = None,
    source: str = "input",
) -> pl.DataFrame:
    """Enterprise records -> `rid` and the features enterprise matching uses: the USCC (checked, and
    as written), the name and its distinctive core, the legal representative's name features,
    phone and address."""
    frame = _renamed(frame, mapping, source)
    base = _ids_column(frame, id_column, source, ENTERPRISE_FIELDS)
    present = [f for f in ("uscc", "phone", "address", "division_code") if f in base.columns]
    std = standardize(base.select("rid", *present), today=today, address_hint=address_hint, issues=False)

    col = _column_or_null(std)

    name = (
        base.get_column("name").cast(pl.String).str.normalize("NFKC").str.replace_all(r"[\s\"'“”]", "")
        if "name" in base.columns
        else pl.Series("name", [None] * base.height, dtype=pl.String)
    ).replace("", None)
    reps = (
        _names(base.get_column("legal_representative").rename("name"), today).select(
            pl.col("name").alias("legal_representative"),
            pl.col("name_std").alias("rep_name"),
            *(
                pl.col(c).alias(f"rep_{c}")
                for c in ("name_pinyin", "surname", "given_name", "surname_pinyin", "name_folded")
            ),
        )
        if "legal_representative" in base.columns
        else None
    )
    division = _division(std)
    out = std.select(
        "rid",
        col("uscc_std").alias("uscc"),
        (
            col("uscc").str.normalize("NFKC").str.replace_all(r"[\s\-]", "").str.to_uppercase()
            if "uscc" in std.columns
            else col("uscc")
        )
        .replace("", None)
        .alias("uscc_text"),
        col("phone_std").alias("phone"),
        col("address_std").alias("address"),
        division.alias("division_code"),
        col("address_rest"),
    ).with_columns(
        name.alias("name"),
        name.str.replace(LEGAL_FORMS, "").str.replace(PLACE_PREFIX, "").replace("", None).alias("name_core"),
    )
    if reps is not None:
        out = (
            out.with_columns(base.get_column("legal_representative").alias("legal_representative"))
            .join(reps, on="legal_representative", how="left", maintain_order="left")
            .drop("legal_representative")
        )
    else:
        out = out.with_columns(
            pl.lit(None, pl.String).alias(f"rep_{c}")
            for c in ("name", "name_pinyin", "surname", "given_name", "surname_pinyin", "name_folded")
        )
    return out.with_columns(pl.col("division_code").str.slice(0, 6).alias("county_code"), *_place_codes())


def preparer(entity: str) -> tuple[Any, str]:
    """The prepare function of an entity's records and its identifier feature (hard rules)."""
    return (prepare_enterprises, "uscc") if entity == "enterprise" else (prepare, "id_number")


def _renamed(frame: pl.DataFrame, mapping: Mapping[str, str] | None, source: str) -> pl.DataFrame:
    if not mapping:
        return frame
    unknown = [col for col in mapping if col not in frame.columns]
    if unknown:
        raise InputFileError(
            f"{source}: --map names columns {unknown} that the file does not have; "
            f"its columns are {frame.columns}"
        )
    return frame.rename(dict(mapping))


def _ids_column(frame: pl.DataFrame, id_column: str, source: str, fields: tuple[str, ...]) -> pl.DataFrame:
    """`rid` (the record id as text, required on every row) and the standard fields present."""
    if id_column not in frame.columns:
        raise InputFileError(
            f"{source}: no {id_column!r} column; its columns are {frame.columns}. "
            f"Name the record id column (or map one with --map COLUMN={id_column})"
        )
    present = [f for f in fields if f in frame.columns]
    base = frame.select(
        pl.col(id_column).cast(pl.String).alias("rid"),
        *(pl.col(f).cast(pl.String) if f != "birth_date" else pl.col(f) for f in present),
    )
    if base.get_column("rid").null_count():
        row = base.get_column("rid").is_null().arg_true()[0]
        raise InputFileError(f"{source}: row {row + 1} has an empty {id_column!r}; every record needs an id")
    return base


def _distinct_standardized(values: pl.Series, out_col: str, today: dt.date | None) -> pl.DataFrame:
    distinct = values.unique().drop_nulls().to_frame()
    return standardize(distinct, today=today, issues=False).select(values.name, out_col)


def _names(names: pl.Series, today: dt.date | None) -> pl.DataFrame:
    """Per distinct written name: name_std, pinyin (no spaces), surname, given name, folded form."""
    distinct = standardize(names.unique().drop_nulls().to_frame(), today=today, issues=False)
    distinct = distinct.with_columns(fold_names(distinct.get_column("name_std")).alias("_folded"))
    return (
        distinct.select("name", "name_std", "_folded", pl.col("name_pinyin").alias("_syllables"))
        .with_columns(*_name_parts(pl.col("name_std")))
        .select(
            "name",
            "name_std",
            pl.col("_syllables").str.replace_all(" ", "").alias("name_pinyin"),
            "surname",
            "given_name",
            "surname_pinyin",
            "name_folded",
        )
    )


def _cross_check_written(std: pl.DataFrame, columns: dict[str, bool]) -> pl.DataFrame:
    """A valid ID's birth date and gender win over the written ones (standardize's rule): after
    standardize on the ID alone, birth_date_std / gender_std hold the ID's values."""
    for written, out_col in (("birth_date", "birth_date_std"), ("gender", "gender_std")):
        if not columns[written]:
            continue
        right = f"{out_col}_right"
        if right in std.columns:  # the ID's value is `out_col`, the written one `out_col`_right
            std = std.with_columns(pl.coalesce(out_col, right).alias(out_col)).drop(right)
    return std


def _name_parts(name: pl.Expr) -> list[pl.Expr]:
    latin = name.str.contains(LATIN_NAME)
    compound = name.str.slice(0, 2).is_in(list(COMPOUND_SURNAMES)) & (name.str.len_chars() > 2)
    surname_len = pl.when(compound).then(2).otherwise(1)
    syllables = pl.col("_syllables").str.split(" ")
    folded = pl.col("_folded")
    return [
        pl.when(latin)
        .then(name.str.split(" ").list.first().str.to_lowercase())
        .otherwise(folded.str.slice(0, surname_len))
        .alias("surname"),
        pl.when(latin)
        .then(name.str.split(" ").list.slice(1).list.join("").str.to_lowercase())
        .otherwise(folded.str.slice(surname_len))
        .replace("", None)
        .alias("given_name"),
        pl.when(latin)
        .then(syllables.list.first())
        .otherwise(syllables.list.slice(0, surname_len).list.join(""))
        .alias("surname_pinyin"),
        folded.alias("name_folded"),
    ]


def _derived() -> list[pl.Expr]:
    return [
        pl.col("birth_date").dt.year().alias("birth_year"),
        pl.col("id_number").str.slice(0, 6).alias("id_region"),
        *_place_codes(),
    ]


def _place_codes() -> list[pl.Expr]:
    """village_code and township_code (blocking keys) from the record's division code."""
    code = pl.col("division_code")
    return [
        pl.when(code.str.len_chars() == 12).then(code).alias("village_code"),
        pl.when(code.str.len_chars() >= 9).then(code.str.slice(0, 9)).alias("township_code"),
    ]


def _column_or_null(std: pl.DataFrame) -> Any:
    """col(name, dtype): a column of `std`, or a null column of that name when it is absent."""

    def col(name: str, dtype: pl.DataType = pl.String()) -> pl.Expr:
        return pl.col(name) if name in std.columns else pl.lit(None, dtype).alias(name)

    return col


def _division(std: pl.DataFrame) -> pl.Expr:
    """The record's own division code, else the one parsed from its address."""
    if "address_division_code" in std.columns:
        return pl.coalesce(_column_or_null(std)("division_code_std"), pl.col("address_division_code"))
    return _column_or_null(std)("division_code_std")
