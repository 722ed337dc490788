import datetime as dt

import polars as pl

from govdb.link.comparisons import compare_dates, compare_ids, compare_names, compare_phones
from govdb.standards import standardize


def names(pairs: list[tuple[str, str]]) -> list[str]:
    left = standardize(pl.DataFrame({"name": [a for a, _ in pairs]}))
    right = standardize(pl.DataFrame({"name": [b for _, b in pairs]}))
    return compare_names(
        left["name_std"], right["name_std"], left["name_pinyin"], right["name_pinyin"]
    ).to_list()


def test_name_levels_on_known_pairs() -> None:
    assert names(
        [
            ("张伟", "张伟"),
            ("张伟", "张玮"),  # homophone typo
            ("王小明", "王晓明"),
            ("欧阳娜娜", "欧阳那那"),
            ("Zhang Wei", "张伟"),  # written in pinyin
            ("王建国", "王建军"),
            ("张伟", "张三"),
            ("张伟", "李伟"),  # different people
            ("张伟", ""),
        ]
    ) == [
        "exact",
        "homophone",
        "homophone",
        "homophone",
        "homophone",
        "similar",
        "surname_only",
        "different",
        "null",
    ]


def test_id_levels() -> None:
    base = "11010519491231002X"
    left = pl.Series([base, base, base, base, None])
    right = pl.Series([base, "11010519491231003X", "11010519491213002X", "440605199001011234", base])
    assert compare_ids(left, right).to_list() == ["exact", "one_digit", "transposed", "different", "null"]


def test_date_levels() -> None:
    d = dt.date
    left = pl.Series([d(1990, 3, 4), d(1990, 3, 4), d(1990, 3, 4), d(1990, 3, 4), None])
    right = pl.Series([d(1990, 3, 4), d(1990, 4, 3), d(1991, 3, 4), d(1985, 7, 9), d(1990, 3, 4)])
    assert compare_dates(left, right).to_list() == [
        "exact",
        "day_month_swapped",
        "one_part",
        "different",
        "null",
    ]


def test_phone_levels() -> None:
    left = pl.Series(["13800138000", "13800138000", "13800138000", None])
    right = pl.Series(["13800138000", "13800138001", "13912345678", "13800138000"])
    assert compare_phones(left, right).to_list() == ["exact", "one_digit", "different", "null"]
