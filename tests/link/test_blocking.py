import polars as pl
import pytest

from govdb.errors import ConfigError
from govdb.link.blocking import block

MASTER = pl.DataFrame(
    {
        "person_id": ["P1", "P2", "P3", "P4"],
        "id_number": ["11010519491231002X", "440605199001011234", None, "440605199001011235"],
        "birth_date": ["1949-12-31", "1990-01-01", "1990-01-01", "1990-01-01"],
        "surname": ["zhang", "wang", "wang", "li"],
        "phone": ["13800138000", "0757-0000000", "0757-0000000", "0757-0000000"],
    }
)
EVENTS = pl.DataFrame(
    {
        "event_id": ["E1", "E2", "E3"],
        "id_number": ["11010519491231002X", None, "440605199001011235"],
        "birth_date": ["1949-12-31", "1990-01-01", "1990-01-01"],
        "surname": ["zhang", "wang", "li"],
        "phone": [None, "0757-0000000", "0757-0000000"],
    }
)


def test_union_of_rules_deduplicated_with_the_first_rule() -> None:
    result = block(
        EVENTS, MASTER, [["id_number"], ["surname", "birth_date"]], left_id="event_id", right_id="person_id"
    )
    pairs = {(r["left_id"], r["right_id"]): r["rule"] for r in result.pairs.to_dicts()}
    assert pairs == {
        ("E1", "P1"): "id_number",
        ("E3", "P4"): "id_number",  # also found by surname+birth_date, kept once with the first rule
        ("E2", "P2"): "surname+birth_date",
        ("E2", "P3"): "surname+birth_date",
    }
    assert result.skipped == []
    # Sorted, whatever order the joins returned: the same input gives the same pairs in the same order.
    assert result.pairs.select("left_id", "right_id").rows() == sorted(pairs)


def test_a_key_value_too_common_to_block_on_is_skipped_and_reported() -> None:
    result = block(EVENTS, MASTER, [["phone"]], left_id="event_id", right_id="person_id", max_block=2)
    assert result.pairs.height == 0
    assert [(s.rule, s.value, s.left_rows, s.right_rows) for s in result.skipped] == [
        ("phone", "0757-0000000", 2, 3)
    ]


def test_a_rule_on_a_missing_column_is_an_error() -> None:
    with pytest.raises(ConfigError, match="needs columns"):
        block(EVENTS, MASTER, [["village"]], left_id="event_id", right_id="person_id")


def test_only_heavy_values_found_on_both_sides_are_skipped() -> None:
    left = pl.DataFrame(
        {
            "id": [f"L{i}" for i in range(8)],
            "surname": ["wang"] * 4 + ["li"] * 3 + ["zhao"],
            "birth_date": ["1990-01-01"] * 7 + ["1990-01-01"],
        }
    )
    right = pl.DataFrame(
        {"id": ["R1", "R2", "R3"], "surname": ["wang", "zhao", "zhao"], "birth_date": ["1990-01-01"] * 3}
    )
    result = block(left, right, [["surname", "birth_date"]], left_id="id", right_id="id", max_block=2)
    # wang is heavy on the left and present on the right: skipped. li is heavy but has no partner.
    assert [(s.value, s.left_rows, s.right_rows) for s in result.skipped] == [("wang|1990-01-01", 4, 1)]
    assert sorted(result.pairs.get_column("right_id")) == ["R2", "R3"]
