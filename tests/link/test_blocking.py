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


def test_pairs_of_two_different_id_numbers_are_not_made_when_asked() -> None:
    """`compatible`: the pairs of blocking without it, filtered, each keeping its first rule, and
    the same too-common keys reported."""
    rules = [["id_number"], ["birth_date"], ["phone"], ["surname", "birth_date"]]
    ids = {"E1": MASTER["id_number"][0], "E2": None, "E3": MASTER["id_number"][3]}
    held = dict(zip(MASTER["person_id"], MASTER["id_number"], strict=True))
    for max_block in (2, 10):
        everything = block(
            EVENTS, MASTER, rules, left_id="event_id", right_id="person_id", max_block=max_block
        )
        pruned = block(
            EVENTS,
            MASTER,
            rules,
            left_id="event_id",
            right_id="person_id",
            max_block=max_block,
            compatible="id_number",
        )
        expected = everything.pairs.filter(
            pl.struct("left_id", "right_id").map_elements(
                lambda p: ids[p["left_id"]] is None or held[p["right_id"]] in (None, ids[p["left_id"]]),
                return_dtype=pl.Boolean,
            )
        )
        assert pruned.pairs.equals(expected)
        assert pruned.skipped == everything.skipped
    assert everything.skipped == [] and 0 < pruned.pairs.height < everything.pairs.height
    # E3 (holding P4's number) is paired with P3 (no number) but never with P2 (another number).
    made = set(pruned.pairs.select("left_id", "right_id").iter_rows())
    assert ("E3", "P3") in made and ("E3", "P2") not in made
    assert ("E3", "P2") in set(everything.pairs.select("left_id", "right_id").iter_rows())
