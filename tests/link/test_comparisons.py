import datetime as dt

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rapidfuzz.distance import OSA, Hamming

from govdb.link import comparisons
from govdb.link.comparisons import COMPARISONS, compare
from govdb.link.features import preparer

TODAY = dt.date(2026, 11, 23)


def pairs(field_values: list[tuple[dict, dict]], entity: str = "person") -> pl.DataFrame:
    """A pairs frame from (left record, right record) written as people write them."""
    prepare = preparer(entity)[0]
    left = prepare(
        pl.DataFrame([{"rid": str(i), **a} for i, (a, _) in enumerate(field_values)]),
        id_column="rid",
        today=TODAY,
    )
    right = prepare(
        pl.DataFrame([{"rid": str(i), **b} for i, (_, b) in enumerate(field_values)]),
        id_column="rid",
        today=TODAY,
    )
    return pl.concat(
        [
            left.rename({c: f"{c}_l" for c in left.columns}),
            right.rename({c: f"{c}_r" for c in right.columns}),
        ],
        how="horizontal",
    )


def levels(method: str, field: str, values: list[tuple[str | None, str | None]]) -> list[str]:
    return compare(pairs([({field: a}, {field: b}) for a, b in values]), method).to_list()


def test_name_levels_on_known_pairs() -> None:
    assert levels(
        "chinese_name",
        "name",
        [
            ("张伟", "张伟"),
            ("張偉", "张伟"),  # traditional characters
            ("王丽", "玉丽"),  # look-alike characters from a poor scan
            ("张伟", "张玮"),  # homophone typo
            ("王小明", "王晓明"),
            ("欧阳娜娜", "欧阳那那"),
            ("Zhang Wei", "张伟"),  # written in pinyin
            ("Ouyang Nana", "欧阳娜娜"),  # compound surname in pinyin
            ("王建国", "王建军"),
            ("张伟", "张三"),
            ("张伟", "李伟"),  # different people
            ("张伟", ""),
            (None, "张伟"),
        ],
    ) == [
        "exact",
        "variant",
        "variant",
        "homophone",
        "homophone",
        "homophone",
        "homophone",
        "homophone",
        "similar",
        "surname_only",
        "different",
        "null",
        "null",
    ]


def test_id_levels() -> None:
    base = "11010519491231002X"
    assert levels(
        "id_number",
        "id_number",
        [
            (base, base),
            (base, "110105491231002"),  # the same ID in its 15-digit form
            (base, "11010519491231003X"),
            (base, "11010519491213002X"),
            (base, "440605199001011234"),
            (None, base),
        ],
    ) == ["exact", "exact", "one_digit", "transposed", "different", "null"]


def test_date_levels_accept_every_written_form() -> None:
    assert levels(
        "date",
        "birth_date",
        [
            ("1990-03-04", "1990年3月4日"),
            ("1990/3/4", "19900403"),
            ("1990-03-04", "1991-03-04"),
            ("1990-03-04", "1985-07-09"),
            (None, "1990-03-04"),
        ],
    ) == ["exact", "day_month_swapped", "one_part", "different", "null"]


def test_phone_levels() -> None:
    assert levels(
        "phone",
        "phone",
        [
            ("13800138000", "+86 138 0013 8000"),
            ("13800138000", "13800138001"),
            ("13800138000", "13912345678"),
            (None, "13800138000"),
        ],
    ) == ["exact", "one_digit", "different", "null"]


def test_address_levels_go_down_the_division_tree() -> None:
    full = "广东省佛山市南海区桂城街道夏西社区居民委员会12号"
    assert levels(
        "address",
        "address",
        [
            (full, full),
            (full, "南海区桂城街道夏西社区居民委员会12号"),  # abbreviated: same place
            (full, "广东省佛山市南海区桂城街道夏西社区居民委员会88号"),  # same village, other house
            (full, "广东省佛山市南海区桂城街道东二社区居民委员会3号"),  # same street
            (full, "广东省佛山市南海区大沥镇盐步社区居民委员会3号"),  # same county
            (full, "北京市朝阳区望京街道花家地社区居民委员会1号"),
            (full, None),
        ],
    ) == ["exact", "same_place", "same_village", "same_township", "same_county", "different", "null"]


def test_gender_levels() -> None:
    assert levels("gender", "gender", [("男", "M"), ("女", "男"), (None, "女")]) == [
        "exact",
        "different",
        "null",
    ]


@pytest.mark.parametrize("method", sorted(COMPARISONS))
def test_every_comparison_handles_an_all_null_batch_and_an_empty_one(method: str) -> None:
    comparison = COMPARISONS[method]
    entity = "enterprise" if method in ("uscc", "enterprise_name", "representative_name") else "person"
    frame = pairs([({"name": None}, {"name": None})], entity)
    assert compare(frame, method).to_list() == ["null"]
    assert compare(frame.head(0), method).to_list() == []
    assert abs(sum(comparison.m_start) - 1) < 1e-9


def test_enterprise_levels() -> None:
    names = [
        ("佛山市南海区华强五金有限公司", "佛山市南海区华强五金有限公司"),
        ("佛山市南海区华强五金有限公司", "华强五金有限责任公司"),
        ("华强五金交电有限公司", "华强五金交店有限公司"),
        ("华强五金有限公司", "宏达建材有限公司"),
    ]
    frame = pairs([({"name": a}, {"name": b}) for a, b in names], "enterprise")
    assert compare(frame, "enterprise_name").to_list() == ["exact", "same_core", "similar", "different"]
    code = "91440605MA4UH8XW3B"
    frame = pairs(
        [({"uscc": code}, {"uscc": b}) for b in (code.lower(), code[:-1] + "C", None)], "enterprise"
    )
    assert compare(frame, "uscc").to_list() == ["exact", "one_digit", "null"]


_ID_TEXT = st.text(alphabet="0123456789X", min_size=0, max_size=6)
_ANY_TEXT = st.text(alphabet="0123X號号é身", min_size=0, max_size=4)


def _near(text: str, draw: st.DrawFn) -> str:
    """The text, or it with one character changed, two adjacent swapped (and maybe one more
    changed), or one added."""
    how = draw(st.sampled_from(["same", "change", "swap", "swap_change", "add", "other"]))
    if not text or how == "same":
        return text
    i = draw(st.integers(0, len(text) - 1))
    if how == "change":
        return text[:i] + draw(st.sampled_from("0X号")) + text[i + 1 :]
    if how in ("swap", "swap_change") and i + 1 < len(text):
        swapped = text[:i] + text[i + 1] + text[i] + text[i + 2 :]
        if how == "swap":
            return swapped
        j = draw(st.sampled_from([k for k in range(len(text)) if k not in (i, i + 1)] or [i]))
        return swapped[:j] + "9" + swapped[j + 1 :]
    if how == "add":
        return text[:i] + "7" + text[i:]
    return draw(st.one_of(_ID_TEXT, _ANY_TEXT))


@st.composite
def _id_pairs(draw: st.DrawFn) -> list[tuple[str | None, str | None]]:
    out = []
    for _ in range(draw(st.integers(0, 40))):
        left = draw(st.one_of(st.none(), _ID_TEXT, _ANY_TEXT))
        right = draw(st.one_of(st.none(), st.just(_near(left or "", draw))))
        out.append((left, right) if draw(st.booleans()) else (right, left))
    return out


@settings(max_examples=300, deadline=None)
@given(_id_pairs())
def test_id_levels_on_byte_matrices_are_rapidfuzz_levels(values: list[tuple[str | None, str | None]]) -> None:
    """Codes of one length are compared as byte matrices: the levels rapidfuzz's Hamming and OSA
    distances give, for ASCII and other text, nulls, blanks and every length."""
    left = pl.Series([a for a, _ in values], dtype=pl.String)
    right = pl.Series([b for _, b in values], dtype=pl.String)
    frame = pl.DataFrame({"id_text_l": left, "id_text_r": right})
    got = compare(frame, "id_number").to_list()
    matrix_from = comparisons.MATRIX_FROM
    try:
        comparisons.MATRIX_FROM = 1  # every length as a byte matrix, however few its pairs
        assert compare(frame, "id_number").to_list() == got
    finally:
        comparisons.MATRIX_FROM = matrix_from
    expected = []
    for a, b in values:
        if not a or not b:
            expected.append("null")
        elif a == b:
            expected.append("exact")
        elif len(a) == len(b) and Hamming.distance(a, b) == 1:
            expected.append("one_digit")
        elif len(a) == len(b) and OSA.distance(a, b) == 1:
            expected.append("transposed")
        else:
            expected.append("different")
    assert got == expected
