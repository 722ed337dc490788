import datetime as dt

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from govdb.errors import ConfigError
from govdb.standards import standardize
from govdb.standards.divisions import ancestors, covers, find_by_name, lookup, significant_prefix
from govdb.standards.ids import make_id
from govdb.validate import validate_frame

TODAY = dt.date(2026, 11, 23)


def with_check(first17: str) -> str:
    """An ID number with its check character from python-stdnum: an oracle independent of govdb's tables."""
    from stdnum.cn import ric

    return first17 + ric.calc_check_digit(first17 + "?")  # stdnum reads the 17 digits before the last place


def std(column: str, values: list[object]) -> pl.DataFrame:
    return standardize(pl.DataFrame({column: pl.Series(values, dtype=pl.String)}), today=TODAY)


@pytest.mark.parametrize(
    ("raw", "expected", "issues"),
    [
        ("11010519491231002X", "11010519491231002X", ""),
        ("11010519491231002x", "11010519491231002X", ""),
        ("１１０１０５１９４９１２３１００２Ｘ", "11010519491231002X", ""),
        (" 110105-19491231-002X ", "11010519491231002X", ""),
        ("110105491231002", "11010519491231002X", "id_upgraded_15"),
        ("110105194912310021", None, "id_checksum"),
        (with_check("11010519491331002"), None, "id_birth_date"),
        (make_id("440605", dt.date(2030, 1, 1), 11), None, "id_birth_future"),
        (make_id("330114", dt.date(1990, 5, 6), 11), make_id("330114", dt.date(1990, 5, 6), 11), ""),
        ("12345", None, "id_format"),
    ],
)
def test_resident_id_known_answers(raw: str, expected: str | None, issues: str) -> None:
    out = std("id_number", [raw])
    assert out["id_number_std"][0] == expected
    assert out["id_number_issues"][0] == issues


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text("0123456789", min_size=17, max_size=17), min_size=1, max_size=40))
def test_check_characters_agree_with_stdnum(bodies: list[str]) -> None:
    from govdb.standards.ids import check_char, digits17

    frame = pl.DataFrame({"first17": bodies}).with_columns(digits17(pl.col("first17")).alias("n"))
    got = frame.select(check_char(pl.col("n"))).to_series().to_list()
    assert got == [with_check(b)[-1] for b in bodies]


def test_without_issues_the_standardized_values_are_the_same() -> None:
    frame = pl.DataFrame(
        {
            "name": ["张 伟", "Zhang Wei"],
            "gender": ["男", "x"],
            "id_number": ["110105491231002", "12345"],
            "birth_date": ["1949-12-31", "1990/1/2"],
            "phone": ["+86 138-0013-8000", "12345"],
            "address": ["广东省佛山市南海区桂城街道南海大道123号", "朝阳区"],
        }
    )
    full = standardize(frame, today=TODAY)
    lean = standardize(frame, today=TODAY, issues=False)
    assert not [c for c in lean.columns if c.endswith("_issues")]
    assert lean.equals(full.select(lean.columns))


def test_unplaced_addresses_keep_the_same_text_and_every_other_value() -> None:
    frame = pl.DataFrame(
        {
            "name": ["张 伟", "李四", "王五"],
            "phone": ["+86 138-0013-8000", "12345", None],
            "address": ["广东省佛山市南海区桂城街道　南海大道１２３号", "   ", None],
        }
    )
    full = standardize(frame, today=TODAY)
    unplaced = standardize(frame, today=TODAY, place_addresses=False)
    texts = unplaced.get_column("address_std").to_list()
    assert texts == ["广东省佛山市南海区桂城街道南海大道123号", None, None]
    assert unplaced.equals(full.select(unplaced.columns))
    # Nothing claims a place or a placing issue it did not look for.
    assert not {"division_code_std", "address_issues", "address_status"} & set(unplaced.columns)
    with pytest.raises(ConfigError, match="placing the addresses"):
        validate_frame(frame, required=["division_code"], place_addresses=False)


def test_id_gives_gender_and_birth_date() -> None:
    out = std("id_number", ["11010519491231002X", make_id("440605", dt.date(1960, 3, 4), 13)])
    assert out["gender_std"].to_list() == ["F", "M"]
    assert out["birth_date_std"].to_list() == [dt.date(1949, 12, 31), dt.date(1960, 3, 4)]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1990-01-02", dt.date(1990, 1, 2)),
        ("1990/1/2", dt.date(1990, 1, 2)),
        ("1990.1.2", dt.date(1990, 1, 2)),
        ("19900102", dt.date(1990, 1, 2)),
        ("1990年1月2日", dt.date(1990, 1, 2)),
        ("32875", dt.date(1990, 1, 2)),
        ("1990-01-02 08:30:00", dt.date(1990, 1, 2)),
    ],
)
def test_dates_as_people_write_them(raw: str, expected: dt.date) -> None:
    assert std("birth_date", [raw])["birth_date_std"][0] == expected


def test_impossible_and_future_dates_are_errors() -> None:
    out = std("birth_date", ["1990-02-30", "2099-01-01", "yesterday"])
    assert out["birth_date_std"].to_list() == [None, None, None]
    assert out["birth_date_issues"].to_list() == ["date_invalid", "date_future", "date_invalid"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+86 138-0013-8000", "13800138000"),
        ("008613800138000", "13800138000"),
        ("１３８００１３８０００", "13800138000"),
        ("0757-86281234", "0757-86281234"),
        ("(010)12345678", "010-12345678"),
        ("12345", None),
    ],
)
def test_phones(raw: str, expected: str | None) -> None:
    assert std("phone", [raw])["phone_std"][0] == expected


def test_names() -> None:
    out = std("name", [" 张 伟 ", "阿依古丽•买买提", "zhang  wei", ""])
    assert out["name_std"].to_list() == ["张伟", "阿依古丽·买买提", "Zhang Wei", None]
    assert out["name_issues"].to_list() == ["", "", "name_pinyin", "name_empty"]


def test_divisions_lookups_and_schemes() -> None:
    assert lookup("440605").name == "南海区"
    assert (
        lookup("440605011").scheme == "nbs" and lookup("440605001").scheme == "mca"
    )  # 桂城街道 in both schemes
    chain = [d.name for d in ancestors("440605011001")]
    assert chain[1:] == ["桂城街道", "南海区", "佛山市", "广东省"]
    assert {d.parent_code for d in find_by_name("朝阳区")} == {"110000", "220100"}  # Beijing, Changchun
    assert significant_prefix("440600") == "4406" and significant_prefix("440605011000") == "440605011"
    assert covers("440605011", "440605011001") and not covers("440605121", "440605011001")


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text(max_size=24), min_size=1, max_size=8))
def test_standardize_never_raises_and_is_idempotent(values: list[str]) -> None:
    frame = pl.DataFrame({c: values for c in ("name", "id_number", "phone", "birth_date", "address", "uscc")})
    first = standardize(frame, today=TODAY)
    again = standardize(
        first.select(
            pl.col("name_std").alias("name"),
            pl.col("id_number_std").alias("id_number"),
            pl.col("phone_std").alias("phone"),
        ),
        today=TODAY,
    )
    assert again["name_std"].to_list() == first["name_std"].to_list()
    assert again["id_number_std"].to_list() == first["id_number_std"].to_list()
    assert again["phone_std"].to_list() == first["phone_std"].to_list()


def test_region_code_that_never_existed_is_a_warning_not_an_error() -> None:
    out = std(
        "id_number",
        [
            make_id("990101", dt.date(1980, 1, 1), 12),
            make_id("440605", dt.date(1990, 1, 1), 12),
            make_id("440682", dt.date(1990, 1, 1), 12),
        ],
    )  # 440682: abolished 南海市
    assert out["id_number_std"].to_list()[0] is not None
    assert out["id_number_issues"].to_list() == ["id_region_unknown", "", ""]


@pytest.mark.parametrize(
    ("raw", "expected", "issues"),
    [
        ("91110000600037341L", "91110000600037341L", ""),
        ("914403001922038216", "914403001922038216", ""),
        ("9133 0100 7161 0585 2f", "91330100716105852F", ""),
        ("９１１１００００６０００３７３４１Ｌ", "91110000600037341L", ""),
        ("91440605123456780L", "91440605123456780L", "uscc_org_code"),
        ("91110000600037341M", None, "uscc_checksum"),
        ("9111000060003734IL", None, "uscc_format"),
    ],
)
def test_uscc_known_answers(raw: str, expected: str | None, issues: str) -> None:
    out = std("uscc", [raw])
    assert (out["uscc_std"][0], out["uscc_issues"][0]) == (expected, issues)


@settings(max_examples=100, deadline=None)
@given(
    st.text(alphabet="0123456789", min_size=8, max_size=8),
    st.text(alphabet="0123456789ABCDEFGHJKLMNPQRTUWXY", min_size=9, max_size=9),
)
def test_uscc_check_digit_agrees_with_stdnum(head: str, tail: str) -> None:
    """stdnum wants 8 leading digits (stricter than GB 32100, which allows Y, N... first)."""
    from stdnum.cn import uscc

    body = head + tail
    code = body + uscc.calc_check_digit(body)
    assert std("uscc", [code])["uscc_std"][0] == (code if uscc.is_valid(code) else None)


def test_name_pinyin_uses_the_surname_table() -> None:
    out = std(
        "name",
        ["单田芳", "曾国藩", "解缙", "区志华", "欧阳娜娜", "尉迟恭", "张玮", "Zhang Wei", "阿依古丽·买买提"],
    )
    assert out["name_pinyin"].to_list() == [
        "shan tian fang",
        "zeng guo fan",
        "xie jin",
        "ou zhi hua",
        "ou yang na na",
        "yu chi gong",
        "zhang wei",
        "zhang wei",
        "a yi gu li mai mai ti",
    ]


def test_division_children_and_crosswalk() -> None:
    from govdb.standards.divisions import DATA, children

    towns = {d.name for d in children("440605", scheme="nbs")}
    assert {"桂城街道", "狮山镇", "大沥镇"} <= towns
    assert all(d.level == 5 for d in children("440605011"))
    crosswalk = pl.read_parquet(DATA / "township_crosswalk.parquet")
    guicheng = crosswalk.filter((pl.col("county_code") == "440605") & (pl.col("name") == "桂城街道")).row(
        0, named=True
    )
    assert (guicheng["mca_code"], guicheng["nbs_code"], guicheng["status"]) == (
        "440605001",
        "440605011",
        "differs",
    )


def test_age_at_a_date_counts_the_birthday() -> None:
    from govdb.standards.ids import age_at

    births = pl.DataFrame({"b": [dt.date(1966, 11, 23), dt.date(1966, 11, 24), dt.date(2000, 2, 29)]})
    ages = births.select(age_at(pl.col("b"), dt.date(2026, 11, 23))).to_series().to_list()
    assert ages == [60, 59, 26]
