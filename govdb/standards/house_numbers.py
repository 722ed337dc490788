"""House numbers in addresses: the trailing number split off before parsing (12号, 3栋2单元501室), and
Chinese numerals made Arabic in the remainder (一百二十三号 -> 123号)."""

from __future__ import annotations

import functools
import re

import polars as pl

from govdb.standards.gazetteer import gazetteer

_CN_DIGITS = {
    "零": 0,
    "〇": 0,
    "一": 1,
    "二": 2,
    "两": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}
CN_NUMBER = re.compile(r"[零〇一二两三四五六七八九十百千]+(?=[号栋幢座楼层室单元弄巷])")


def _chinese_number(text: str) -> str:
    section = 0
    units = {"十": 10, "百": 100, "千": 1000}
    if all(ch in _CN_DIGITS for ch in text):  # 一二三 read digit by digit
        return "".join(str(_CN_DIGITS[ch]) for ch in text)
    digit = 0
    for ch in text:
        if ch in _CN_DIGITS:
            digit = _CN_DIGITS[ch]
        else:
            section += (digit or 1) * units[ch]
            digit = 0
    value = section + digit
    return str(value)


def arabic_numbers(text: str | None) -> str | None:
    if text is None:
        return None
    return CN_NUMBER.sub(lambda m: _chinese_number(m.group(0)), text)


HOUSE_NUMBER_CHARS = r"0-9A-Za-z\-#/号栋幢座楼层室单元弄巷户组"
HOUSE_NUMBER = f"[0-9][{HOUSE_NUMBER_CHARS}]*$"


def split_house_numbers(frame: pl.DataFrame) -> pl.DataFrame:
    """`address` -> `head` and `tail`, where tail is the trailing house number (12号, 3栋2单元501室).

    Parsing the head gives the same result as parsing the whole address, with the tail appended to
    the remaining text: no division name can occur in or reach into the tail (a name would have to
    end with a house-number character and contain a digit or consist of such characters; the few
    such names are checked for and their addresses are not split), township and village names are
    looked up where a parent name ends (inside the head), and Chinese house numbers (三号) are made
    of characters the tail does not have.
    """
    address = pl.col("address")
    tail = address.str.extract(f"({HOUSE_NUMBER})")
    reaching = names_into_house_numbers()
    unsafe = address.str.contains_any(reaching) if reaching else False
    keep_whole = tail.is_null() | (tail.str.len_bytes() == address.str.len_bytes()) | unsafe
    return frame.with_columns(
        pl.when(keep_whole)
        .then(address)
        .otherwise(address.cast(pl.Binary).bin.slice(0, address.str.len_bytes() - tail.str.len_bytes()))
        .cast(pl.String)
        .alias("head"),
        pl.when(keep_whole).then(pl.lit("")).otherwise(tail).alias("tail"),
    )


@functools.cache
def names_into_house_numbers() -> list[str]:
    """Division names that could reach into a house number: they end with a house-number character
    and contain a digit or are made only of such characters (七四0)."""
    chars = HOUSE_NUMBER_CHARS
    alias = pl.col("alias")
    return (
        gazetteer()
        .lazy()
        .select("alias")
        .filter(alias.str.contains(f"[{chars}]$"))  # a few hundred of 1.3M: filtered first
        .filter(alias.str.contains("[0-9]") | alias.str.contains(f"^[{chars}]+$"))
        .unique()
        .sort("alias")
        .collect()
        .get_column("alias")
        .to_list()
    )


def arabic_house_numbers(result: pl.DataFrame) -> pl.DataFrame:
    """一百二十三号 -> 123号 in the remainder; Python only for the few rows with Chinese numerals."""
    has = (
        pl.col("address_rest")
        .str.contains("[零〇一二两三四五六七八九十百千]+[号栋幢座楼层室单元弄巷]")
        .fill_null(False)
    )
    fixed = result.filter(has).with_columns(
        pl.col("address_rest").map_elements(arabic_numbers, return_dtype=pl.String)
    )
    if fixed.is_empty():
        return result
    return result.update(fixed.select("aid", "address_rest"), on="aid")
