"""What a person event changes in master (verify.proposals._changed_fields), worked out on whole
columns: the same fields a field-by-field comparison of each event with its master row finds."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from govdb import Actor
from govdb.demo import make_hall_events, make_people
from govdb.standards import standardize
from govdb.verify.linking import master_frame
from govdb.verify.proposals import COMPARED, FOLDED, _as_text, _changed_fields, _fold, _within

from .conftest import BACKENDS, TODAY, open_backend

VALUES: dict[str, list[Any]] = {
    "name": ["张伟", "張偉", "张 伟", "李娜", "", None],
    "gender": ["男", "女", "1", "M", "", None],
    "birth_date": [dt.date(1990, 1, 2), dt.date(1964, 12, 1), None],
    "id_number": ["440605199001020011", "44060519900102001X", "440605199001020012", "", None],
    "phone": ["13800138000", "138 0013 8000", "+86 13800138000", "13900139000", "", None],
    "address": ["南海区桂城街道南一路1号", "南海區桂城街道南一路1號", "南海区桂城街道南一路１号", "", None],
    "division_code": ["440605", "440605001", "440605001001", "440605002003", "440606", "", None],
}
EVENT_TEXT = {**VALUES, "birth_date": ["1990-01-02", "1964-12-01", "1990/01/02", "", None]}


def _reference(rec: dict[str, Any], master: dict[str, Any], std: dict[str, Any]) -> list[str]:
    """The field-by-field comparison `process` made before it compared whole columns."""
    changed = []
    for k in COMPARED:
        v = rec.get(k)
        if v in (None, ""):
            continue
        text = _as_text(v)
        if text == _as_text(master.get(k)) or text == std.get(k):
            continue
        if k in FOLDED and _fold(v) == _fold(std.get(k) or master.get(k)):
            continue
        if k == "division_code" and _within(master.get(k), v):
            continue
        changed.append(k)
    return changed


def _standardized(people: pl.DataFrame) -> dict[str, dict[str, str | None]]:
    std = standardize(people.with_columns(pl.col("birth_date").cast(pl.String)), place_addresses=False)
    std = std.with_columns(pl.col(pl.Date).dt.to_string("%Y-%m-%d"))
    columns = [
        pl.col(f"{k}_std" if f"{k}_std" in std.columns else k).cast(pl.String).alias(k) for k in COMPARED
    ]
    return {
        row["person_id"]: {k: _as_text(row[k]) for k in COMPARED}
        for row in std.select("person_id", *columns).iter_rows(named=True)
    }


person = st.fixed_dictionaries({k: st.sampled_from(v) for k, v in VALUES.items()})
event = st.fixed_dictionaries({k: st.sampled_from(v) for k, v in EVENT_TEXT.items()})


@settings(max_examples=30, deadline=None)
@given(events=st.lists(st.tuples(event, person, st.integers(0, 2)), min_size=1, max_size=20))
def test_changed_fields_are_the_field_by_field_ones(events: list[Any]) -> None:
    # A few person ids, each event with its own reading of its person's row: two events about
    # one person may have been linked against two readings of it (a promote in between).
    linked = [(str(n), rec, {**row, "person_id": f"p{i}"}) for n, (rec, row, i) in enumerate(events)]
    records = pl.DataFrame(
        {
            "event_id": [n for n, _, _ in linked],
            **{k: [_as_text(rec.get(k)) for _, rec, _ in linked] for k in COMPARED},
        },
        schema={"event_id": pl.String, **{k: pl.String for k in COMPARED}},
    )
    rows = [{**m, "person_id": n} for n, _, m in linked]  # standardized per reading
    std = _standardized(pl.DataFrame(rows, schema=master_frame([]).drop("event_id").schema))
    expected = {n: f for n, rec, m in linked if (f := _reference(rec, m, std[n]))}
    assert _changed_fields(records, master_frame([(n, m) for n, _, m in linked])) == expected


@pytest.mark.parametrize("backend", BACKENDS)
def test_division_codes_stored_as_numbers_route_as_their_text(
    backend: str, tmp_path: Path, rules: Any
) -> None:
    """A standardized record whose division code an edit of the store made a JSON number (an
    insider, a faulty tool) is proposed and routed as the same record with the code as text, and
    its proposals promote."""
    from sqlalchemy import text

    from govdb import validate

    outcomes = {}
    for case in ("text", "number"):
        with open_backend(backend, tmp_path / case, rules) as db:
            db.serve_district("440605")
            register = make_people(40, seed=3, today=TODAY)
            db.load_people(register.slice(10), source="public_security")  # the first ten are new
            make_hall_events(register, tmp_path / "hall.csv", seed=3, today=TODAY)
            db.ingest(
                tmp_path / "hall.csv",
                source="hall",
                service_code="hall.resident_registration",
                key_column="受理编号",
            )
            validate.standardize_events(db.events, db.rules, today=TODAY, address_hint=db.served_county())
            if case == "number":
                with db.events.begin() as conn:
                    if backend == "sqlite":
                        edit = (
                            "UPDATE event SET standardized = json_set(standardized, '$.division_code',"
                            " CAST(json_extract(standardized, '$.division_code') AS INTEGER))"
                            " WHERE json_extract(standardized, '$.division_code') GLOB '[0-9]*'"
                        )
                    else:
                        edit = (
                            "UPDATE event SET standardized = jsonb_set(standardized::jsonb,"
                            " '{division_code}', to_jsonb((standardized->>'division_code')::bigint))::json"
                            " WHERE standardized->>'division_code' ~ '^[0-9]+$'"
                        )
                    assert conn.execute(text(edit)).rowcount > 0
            report = db.process(today=TODAY)
            with db.events.connect() as conn:
                rows = conn.execute(
                    text(
                        "SELECT e.source_key, p.change, p.division_code, p.state, t.unit_id,"
                        " CAST(p.payload AS TEXT) FROM proposal p"
                        " JOIN event e USING (event_id) LEFT JOIN task t USING (proposal_id) ORDER BY 1, 2, 5"
                    )
                ).all()
            proposed = (report.proposals.proposals, report.proposals.new_people, [tuple(r) for r in rows])
            while tasks := db.tasks(limit=10_000):  # every check approved, a unit's batch at a time
                for unit in {t.unit_id for t in tasks}:
                    batch = [{"task_id": t.task_id, "outcome": "approve"} for t in tasks if t.unit_id == unit]
                    db.decide_many(Actor("clerk", unit), batch)
            promoted = db.promote()
            with db.master.connect() as conn:
                held = conn.execute(text("SELECT id_number, division_code FROM person ORDER BY 1")).all()
            outcomes[case] = (*proposed, promoted.promoted, [tuple(r) for r in held])
    assert outcomes["text"][1] > 0 and outcomes["text"][2] and outcomes["text"][3] > 0
    assert outcomes["number"] == outcomes["text"]
