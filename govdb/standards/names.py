"""Personal names: NFKC, stray spaces, the middle dot of minority names, names written in pinyin."""

from __future__ import annotations

import polars as pl

from govdb.standards.issues import issue, join_issues

MIDDLE_DOTS = r"[·•．・‧∙⋅]"


def standardize_name(column: str) -> list[pl.Expr]:
    """`<column>_std` and `<column>_issues`; Han names lose inner spaces, latin names keep one."""
    raw = pl.col(column).cast(pl.String)
    text = raw.str.normalize("NFKC").str.strip_chars().str.replace_all(MIDDLE_DOTS, "·")
    text = text.str.replace_all(r"\s*·\s*", "·").str.replace_all(r"^·+|·+$", "")
    latin = text.str.contains(r"^[A-Za-z][A-Za-z\s'\-]*$")
    cleaned = (
        pl.when(latin)
        .then(text.str.replace_all(r"\s+", " ").str.to_titlecase())
        .otherwise(text.str.replace_all(r"\s+", ""))
        .str.normalize("NFKC")  # removing spaces can join a base letter and a combining mark
    )
    empty = raw.is_not_null() & (cleaned == "")
    return [
        pl.when(cleaned == "").then(None).otherwise(cleaned).alias(f"{column}_std"),
        join_issues(
            [
                issue(empty, "name_empty"),
                issue(text.str.contains(r"\d"), "name_has_digits"),
                issue(latin, "name_pinyin"),
            ]
        ).alias(f"{column}_issues"),
    ]


GENDER_WORDS = {"男": "M", "女": "F", "M": "M", "F": "F", "1": "M", "2": "F", "MALE": "M", "FEMALE": "F"}


def standardize_gender(column: str) -> list[pl.Expr]:
    """`<column>_std` as M/F and `<column>_issues`."""
    raw = pl.col(column).cast(pl.String).str.normalize("NFKC").str.strip_chars().str.to_uppercase()
    mapped = raw.replace_strict(GENDER_WORDS, default=None, return_dtype=pl.String)
    present = raw.is_not_null() & (raw != "")
    return [
        mapped.alias(f"{column}_std"),
        join_issues([issue(present & mapped.is_null(), "gender_invalid")]).alias(f"{column}_issues"),
    ]
