"""The one-record twins (govdb.link.record, govdb.standards.record) give exactly what the vectorised
steps give, on generated records written every way the generator writes them."""

from __future__ import annotations

import sys

import numpy as np
import polars as pl
import pytest

from govdb.link import link_frames
from govdb.link import record as one
from govdb.link.blocking import rule_name
from govdb.link.comparisons import compare
from govdb.link.features import prepare
from govdb.standards import record as std

from ..conftest import REPO, TODAY
from .pairwise import best_link_pairwise

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


def test_best_link_equals_scoring_pair_by_pair(generated, rules) -> None:
    """`best_link` (levels a column at a time, one explanation) chooses, weighs and explains as
    `best_link_pairwise` (`_weighs` for every pair) does: blocks of 1 to 400 candidates, records
    with, without and with someone else's ID number or with fields missing, and candidates tied
    on weight (twins under other ids), so the order of equals is held too."""
    import json

    master, events, truth = generated
    matching = rules.matching["person"]
    model = link_frames(events, master.rename({"event_id": "person_id"}), matching, today=TODAY).model
    right = prepare(master, id_column="event_id", today=TODAY).to_dicts()
    records = prepare(events, id_column="event_id", today=TODAY).to_dicts()
    person_of = dict(zip(truth.get_column("event_id"), truth.get_column("person_id"), strict=True))
    by_id = {c["rid"]: c for c in right}
    rng = np.random.default_rng(8)
    rules_of = [rule_name(r) for r in matching.blocking.rules]
    outcomes, checked = set(), 0
    for n, record in enumerate(records[:300]):
        size = [1, 2, 5, 40, 400][n % 5]
        block = [right[i] for i in rng.choice(len(right), size, replace=False)]
        if n % 2 == 0 and person_of.get(record["rid"]) in by_id:  # the person the record is about
            block.insert(int(rng.integers(len(block))), by_id[person_of[record["rid"]]])
        if n % 3 == 0:  # twins: the same features under another id, before and after the original
            twins = sorted(block, key=lambda c: c["name"] != record["name"])[:3]  # the same name first
            block += [{**c, "rid": c["rid"] + ("0" if k % 2 else "~")} for k, c in enumerate(twins)]
        variant = n % 6
        if variant == 1:
            record = {**record, "id_number": None, "id_text": None}
        elif variant == 2:
            other = block[-1]
            record = {**record, "id_number": other["id_number"], "id_text": other["id_text"]}
        elif variant == 3:
            record = {**record, "name": None, "gender": None, "birth_date": None}
        elif variant == 4:
            record = {**record, "phone": "", "address": None}
        candidates = [(c, rules_of[int(rng.integers(len(rules_of)))]) for c in block]
        for method in sorted(one.ONE_RECORD_METHODS):
            expected = [one.levels(method, record, c) for c in block]
            assert one.column_levels(method, record, block) == expected, method
        fast = one.best_link(record, candidates, model, matching)
        plain = best_link_pairwise(record, candidates, model, matching)
        assert json.dumps(fast, sort_keys=True) == json.dumps(plain, sort_keys=True), record["rid"]
        outcomes.add(fast["decision"])
        checked += bool(fast["explanation"].get("runner_up"))
    assert outcomes == {"match", "review", "new"} and checked > 100
