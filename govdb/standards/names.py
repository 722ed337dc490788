"""Personal names: NFKC, stray spaces, the middle dot of minority names, names written in pinyin."""

from __future__ import annotations

import functools
import unicodedata

import polars as pl

from govdb.standards.issues import issue, join_issues

MIDDLE_DOTS = r"[·•．・‧∙⋅]"
LATIN_NAME = r"^[A-Za-z][A-Za-z\s'\-]*$"  # a name written in pinyin or another latin script


def standardize_name(column: str) -> list[pl.Expr]:
    """`<column>_std` and `<column>_issues`; Han names lose inner spaces, latin names keep one."""
    raw = pl.col(column).cast(pl.String)
    text = raw.str.normalize("NFKC").str.strip_chars().str.replace_all(MIDDLE_DOTS, "·")
    text = text.str.replace_all(r"\s*·\s*", "·").str.replace_all(r"^·+|·+$", "")
    latin = text.str.contains(LATIN_NAME)
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


# Surnames whose reading differs from the character's most common one (pypinyin has no surname
# mode). Compound surnames are read as a whole.
SURNAME_READINGS: dict[str, str] = {
    "单": "shan",
    "曾": "zeng",
    "解": "xie",
    "仇": "qiu",
    "区": "ou",
    "查": "zha",
    "朴": "piao",
    "缪": "miao",
    "种": "chong",
    "员": "yun",
    "秘": "bi",
    "覃": "qin",
    "盖": "ge",
    "乐": "yue",
    "翟": "zhai",
    "折": "she",
    "召": "shao",
    "句": "gou",
    "能": "nai",
    "隗": "wei",
    "郇": "huan",
    "眭": "sui",
    "繁": "po",
    "宿": "su",
    "万": "wan",
    "重": "chong",
    "薄": "bo",
    "卜": "bu",
    "贾": "jia",
    "石": "shi",
    "沈": "shen",
    "任": "ren",
    "尉迟": "yu chi",
    "万俟": "mo qi",
    "单于": "chan yu",
    "澹台": "tan tai",
    "长孙": "zhang sun",
    "令狐": "ling hu",
    "欧阳": "ou yang",
    "司马": "si ma",
    "诸葛": "zhu ge",
    "上官": "shang guan",
}


@functools.cache
def char_readings() -> dict[str, str]:
    """Han character -> its most common toneless reading (ü written v), from pypinyin's table."""
    from pypinyin.pinyin_dict import pinyin_dict

    readings = {}
    for codepoint, values in pinyin_dict.items():
        first = values.split(",")[0].replace("ü", "v")
        readings[chr(codepoint)] = "".join(
            c for c in unicodedata.normalize("NFD", first) if not unicodedata.combining(c)
        )
    return readings


@functools.cache
def reading_table() -> pl.DataFrame:
    """char_readings as two columns (_c, _reading), built once and handed to `replace_strict` as
    Series, so no call rebuilds a 40,000-entry mapping from Python."""
    readings = char_readings()
    return pl.DataFrame({"_c": list(readings), "_reading": list(readings.values())})


def name_pinyin(frame: pl.LazyFrame, column: str = "name_std", out: str = "name_pinyin") -> pl.LazyFrame:
    """Add `out`: the name's toneless pinyin, syllables separated by spaces (latin names lower-cased).

    Computed once per distinct name, character by character through a lookup table (inside each
    name's list of characters: no explode and regroup), with the surname table applied to the first
    one or two characters.
    """
    compound = {k: v for k, v in SURNAME_READINGS.items() if len(k) == 2}
    single = {k: v for k, v in SURNAME_READINGS.items() if len(k) == 1}
    names = frame.select(pl.col(column).unique().alias("_n")).drop_nulls()
    latin = pl.col("_n").str.contains(LATIN_NAME)
    head2 = pl.col("_n").str.slice(0, 2).replace_strict(compound, default=None, return_dtype=pl.String)
    head1 = pl.col("_n").str.slice(0, 1).replace_strict(single, default=None, return_dtype=pl.String)
    names = names.with_columns(
        pl.coalesce(head2, head1).alias("_head"),
        pl.when(head2.is_not_null()).then(2).when(head1.is_not_null()).then(1).otherwise(0).alias("_skip"),
    )
    readings = reading_table()
    char = pl.element()
    rest = names.filter(~latin).select(
        "_n",
        pl.col("_n")
        .str.slice(pl.col("_skip"))
        .str.split("")
        .list.eval(char.filter((char != "") & (char != "·")))
        .list.eval(
            char.replace_strict(
                readings.get_column("_c"), readings.get_column("_reading"), default=char.str.to_lowercase()
            )
        )
        .list.join(" ")
        .replace("", None)
        .alias("_rest"),
    )
    table = names.join(rest, on="_n", how="left").select(
        "_n",
        pl.when(latin)
        .then(pl.col("_n").str.to_lowercase())
        .otherwise(pl.concat_str([pl.col("_head"), pl.col("_rest")], separator=" ", ignore_nulls=True))
        .alias(out),
    )
    return frame.join(table, left_on=column, right_on="_n", how="left", maintain_order="left")
