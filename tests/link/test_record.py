"""The one-record twins (govdb.link.record, govdb.standards.record) give exactly what the vectorised
steps give, on generated records written every way the generator writes them."""

from __future__ import annotations

import sys

import numpy as np
import polars as pl
import pytest

from govdb.link import record as one
from govdb.link.comparisons import compare
from govdb.link.features import prepare
from govdb.standards import record as std

from ..conftest import REPO, TODAY

sys.path.insert(0, str(REPO / "benchmarks"))
import linkgen


@pytest.fixture(scope="module")
def generated() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    master, events, truth = linkgen.generate(2500, 2500, "hard", seed=21)
    return master.rename({"person_id": "event_id"}), events, truth


@pytest.mark.parametrize("hint", [None, "440605"])
def test_features_equal_the_vectorised_ones(generated, hint: str | None) -> None:
    for frame in generated[:2]:
        vectorised = prepare(frame, id_column="event_id", today=TODAY, address_hint=hint).to_dicts()
        for row, expected in zip(frame.iter_rows(named=True), vectorised, strict=True):
            assert one.features(row, today=TODAY, address_hint=hint) == expected, row


def test_odd_writings_standardize_alike() -> None:
    odd = pl.DataFrame(
        {
            "event_id": ["1", "2", "3", "4", "5", "6"],
            "name": ["  阿依古丽 · 买买提 ", "o'brien  mary-ann", "欧阳", "張　偉", "", None],
            "gender": ["male", "2", " 女 ", "x", None, "F"],
            "birth_date": ["1990.1.2", "1990年1月2日 10:30", "32874", "2099-01-01", "1990-02-30", None],
            "id_number": ["110105491231002", " 11010519491231002x ", "1101051949123100", "", None, "abc"],
            "phone": [
                "+86 138-0013-8000",
                "(0757)86123456",
                "010 12345678",
                "12345",
                None,
                "008613800138000",
            ],
            "address": ["  南海区 桂城街道 ", "朝阳区", "北京市朝阳区望京街道一百二十三号", "", None, "火星"],
        }
    )
    vectorised = prepare(odd, id_column="event_id", today=TODAY, address_hint="440605").to_dicts()
    for row, expected in zip(odd.iter_rows(named=True), vectorised, strict=True):
        assert one.features(row, today=TODAY, address_hint="440605") == expected, row


def test_levels_equal_the_vectorised_comparisons(generated) -> None:
    master, events, truth = generated
    left = prepare(events, id_column="event_id", today=TODAY)
    right = prepare(master, id_column="event_id", today=TODAY)
    rng = np.random.default_rng(3)
    # Each event with its true person (when known), with that person's household neighbour, and
    # with a random person: every level occurs.
    position = {pid: i for i, pid in enumerate(master.get_column("event_id"))}
    true = np.array([position.get(p, -1) for p in truth.get_column("person_id")])
    known = np.flatnonzero(true >= 0)
    li = np.concatenate([known, known, np.arange(left.height)])
    ri = np.concatenate(
        [true[known], (true[known] + 1).clip(0, right.height - 1), rng.integers(0, right.height, left.height)]
    )
    pairs = pl.concat(
        [
            left[li].rename({c: f"{c}_l" for c in left.columns}),
            right[ri].rename({c: f"{c}_r" for c in right.columns}),
        ],
        how="horizontal",
    )
    lrows, rrows = left[li].to_dicts(), right[ri].to_dicts()
    for method in sorted(one.ONE_RECORD_METHODS):
        expected = compare(pairs, method).to_list()
        got = [one.levels(method, a, b) for a, b in zip(lrows, rrows, strict=True)]
        assert got == expected, method
        assert len(set(expected)) >= 3, method


def test_address_twin_handles_every_status() -> None:
    assert std.parse_address("朝阳区").division_code is None  # ambiguous
    assert std.parse_address("朝阳区望京街道").division_code.startswith("110105")
    assert std.parse_address(None) == std.ParsedAddress(None, None)
    assert std.parse_address("火星").rest == "火星"
