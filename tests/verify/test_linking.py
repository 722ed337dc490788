"""A chunk's links as columns (verify.linking.ChunkLinks): the same links and master rows the
result objects of `link_results` carry."""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
import pytest

from govdb.link.online import LINK_COLUMNS, link_results
from govdb.link.reads import MASTER_COLUMNS
from govdb.verify.linking import COMPARED, MASTER_SCHEMA, ChunkLinks, event_records, master_frame


def _people(rows: list[tuple[str, str, str]]) -> pl.DataFrame:
    """(person_id, name, division_code) -> master rows as the linker reads them."""
    return pl.DataFrame(
        [
            {k: None for k in MASTER_COLUMNS}
            | {"person_id": p, "name": n, "division_code": d, "birth_date": dt.date(1990, 1, 2)}
            for p, n, d in rows
        ],
        schema={c: (pl.Date if c == "birth_date" else pl.String) for c in MASTER_COLUMNS},
    )


def _links(rows: list[tuple[str, str | None, str, dict]]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            (rid, person, decision, 0.5, 1.0, json.dumps(why, ensure_ascii=False))
            for rid, person, decision, why in rows
        ],
        schema=list(LINK_COLUMNS),
        orient="row",
    )


def test_frames_hold_what_the_results_hold() -> None:
    links = _links(
        [
            ("1", "p1", "match", {"candidates": 2}),
            ("2", None, "new", {"candidates": 0}),
            ("3", None, "review", {"candidate": "p2", "名": "张伟"}),
            ("4", "p9", "match", {}),  # a person the read no longer found (deleted meanwhile)
            ("5", "p1", "match", {}),  # two events about one person
            ("6", "p3", "match", {}),
        ]
    )
    # p3 read twice (a refreshed cache): the last reading counts, as in link_results' dict.
    people = _people(
        [("p1", "张伟", "440605001001"), ("p3", "李娜", "440605001002"), ("p3", "李娜", "440605002003")]
    )
    chunk = ChunkLinks.of_frames(links, people)
    results = link_results(links, people)
    assert chunk.links.rows() == [
        (r.record_id, r.person_id, r.decision, r.match_probability, r.match_weight, r.explanation_json)
        for r in results
    ]
    expected = master_frame([(r.record_id, r.master) for r in results if r.master is not None])
    assert chunk.masters.to_dicts() == expected.to_dicts()
    assert chunk.masters.get_column("event_id").to_list() == ["1", "5", "6"]
    assert chunk.masters.filter(pl.col("event_id") == "6").item(0, "division_code") == "440605002003"


def test_results_and_frames_concatenate_in_order() -> None:
    """A reviewer's answers (result objects, explanations as dicts) before the batch's links."""
    people = _people([("p1", "张伟", "440605001001")])
    reviewed = link_results(_links([("7", "p1", "match", {"reviewed": "approved"})]), people)
    reviewed = [
        type(r)(r.record_id, r.person_id, r.decision, 1.0, None, {"reviewed": "approved"}, r.master)
        for r in reviewed
    ]
    batch = ChunkLinks.of_frames(_links([("8", None, "new", {"candidates": 0})]), None)
    chunk = ChunkLinks.concat([ChunkLinks.of_results(reviewed), batch])
    assert chunk.links.get_column("rid").to_list() == ["7", "8"]
    assert json.loads(chunk.links.item(0, "explanation")) == {"reviewed": "approved"}
    assert chunk.masters.schema == pl.Schema(MASTER_SCHEMA)
    assert chunk.masters.get_column("event_id").to_list() == ["7"]
    empty = ChunkLinks.of_results([])
    assert empty.links.height == 0 and empty.masters.height == 0


def test_an_explanation_that_is_no_json_object_is_refused() -> None:
    for text in ("not json", "[1]", None):
        links = _links([("1", None, "new", {})]).with_columns(pl.lit(text, pl.String).alias("explanation"))
        with pytest.raises(TypeError, match="a linker's explanation is a JSON object's text"):
            ChunkLinks.of_frames(links, None)


def test_event_records_are_the_fields_as_text_whatever_a_record_holds() -> None:
    """Built a column at a time; a record edited in the store to hold numbers, booleans, objects or
    empty text gives what reading each value as text gives (empty text and absent fields null)."""
    pending = [
        {"event_id": 7, "standardized": {"name": "张伟", "id_number": "440605199001011234", "phone": ""}},
        {"event_id": 8, "standardized": None},
        {"event_id": 9, "standardized": {"phone": 13800000000, "gender": True, "address": 1.5}},
        {"event_id": 10, "standardized": {"division_code": {"code": 1}, "birth_date": ["1990-01-01"]}},
    ]
    expected = pl.DataFrame(
        [
            {"event_id": "7", "name": "张伟", "id_number": "440605199001011234"},
            {"event_id": "8"},
            {"event_id": "9", "phone": "13800000000", "gender": "True", "address": "1.5"},
            {"event_id": "10", "division_code": "{'code': 1}", "birth_date": "['1990-01-01']"},
        ],
        schema={"event_id": pl.String, **dict.fromkeys(COMPARED, pl.String)},
    )
    assert event_records(pending).equals(expected)
    assert event_records(pending[:2]).equals(expected.head(2))  # every column plain text
    assert event_records([]).schema == expected.schema
