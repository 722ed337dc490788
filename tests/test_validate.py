import datetime as dt
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from govdb import GovDB
from govdb.rulebook import Rulebook
from govdb.validate import validate_frame

from .conftest import TODAY


def test_failures_are_a_frame_and_no_row_is_dropped() -> None:
    frame = pl.DataFrame(
        {
            "name": ["张伟", "", "李娜"],
            "id_number": ["11010519491231002X", "110105194912310021", None],
            "birth_date": ["1949-12-31", "1990-02-30", "1990-01-01"],
        }
    )
    std, report = validate_frame(frame, required=["name", "id_number"], today=dt.date(2026, 11, 23))
    assert std.height == 3 and report.rows == 3
    assert report.failures.columns == ["row_id", "column", "check", "reason", "severity", "value"]
    rows = {
        (r["row_id"], r["column"], r["reason"], r["severity"], r["value"]) for r in report.failures.to_dicts()
    }
    assert (2, "birth_date", "date_invalid", "error", "1990-02-30") in rows  # the bad value is shown
    assert (2, "id_number", "id_checksum", "error", "110105194912310021") in rows
    assert (2, "name", "name_empty", "error", "") in rows
    assert (3, "id_number", "required_missing", "error", None) in rows
    assert report.error_rows == 2


def test_a_required_division_is_met_by_the_address_placed_at_a_village() -> None:
    frame = pl.DataFrame(
        {
            "name": ["甲", "乙", "丙", "丁", "戊"],
            "division_code": ["440605011005", None, None, None, "440605"],
            "address": [None, "桂城街道桂一社区南海大道218号", "火星基地1号", None, None],
        }
    )
    required = ["name", "division_code"]
    std, report = validate_frame(frame, required=required, address_hint="440605", today=dt.date(2026, 11, 23))
    rows = {(r["row_id"], r["column"], r["reason"], r["value"]) for r in report.failures.to_dicts()}
    assert std.get_column("address_division_code")[1] == "440605011001"
    assert not any(r[0] in (1, 2) for r in rows)  # a code, or an address placed to a village
    assert (3, "division_code", "address_unplaced", "火星基地1号") in rows  # placed nowhere: says so
    assert (3, "address", "address_unresolved", "火星基地1号") in rows
    assert (4, "division_code", "required_missing", None) in rows  # neither a code nor an address
    assert not any(r[0] == 5 for r in rows)  # a county code is a division when no level is needed
    _, village = validate_frame(
        frame, required=required, address_hint="440605", today=dt.date(2026, 11, 23), place_level=5
    )
    assert {(r["row_id"], r["reason"]) for r in village.failures.to_dicts() if r["row_id"] in (1, 2, 5)} == {
        (5, "division_not_village")
    }


def test_the_place_level_comes_from_the_service_route(rules: Rulebook) -> None:
    from govdb.validate import service_place_level

    services = rules.verification.services
    assert service_place_level(rules, services["hall.resident_registration"]) == 5  # a village step
    assert service_place_level(rules, services["hall.contact_update"]) is None  # no division required
    assert service_place_level(rules, None) is None


def test_a_township_address_is_not_a_village() -> None:
    frame = pl.DataFrame({"name": ["甲"], "address": ["桂城街道"]})
    _, report = validate_frame(
        frame, required=["division_code"], address_hint="440605", today=dt.date(2026, 11, 23), place_level=5
    )
    assert report.failures.select("column", "check", "reason", "value").rows() == [
        ("division_code", "place_level", "division_not_village", "440605011")
    ]
    _, street = validate_frame(
        frame, required=["division_code"], address_hint="440605", today=dt.date(2026, 11, 23), place_level=4
    )
    assert street.failures.is_empty()


def test_standardizing_in_chunks_stores_what_one_pass_stores(
    db: GovDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events are standardized a chunk at a time; every event gets what one pass over all of them
    gives (fields, key order, flags, place, state), whatever the chunk holds."""
    from sqlalchemy import text

    from govdb.demo import COUNTY, make_disability_records, make_enterprises, make_hall_events, make_people
    from govdb.validate import events as validate
    from govdb.validate import standardize_events

    register = make_people(60, seed=5, today=TODAY)
    db.load_people(register, source="public_security")
    hall, cdpf, amr = tmp_path / "hall.csv", tmp_path / "cdpf.csv", tmp_path / "amr.csv"
    make_hall_events(register, hall, seed=5, today=TODAY)
    make_disability_records(register, cdpf, seed=5, today=TODAY)
    make_enterprises(register, amr, seed=5, today=TODAY)
    hall_options = {"key_column": "受理编号", "occurred_at_column": "办理时间"}
    db.ingest(hall, source="hall", service_code="hall.resident_registration", **hall_options)
    db.ingest(cdpf, source="cdpf", service_code="cdpf.disability_certificate", key_column="记录编号")
    db.ingest(amr, source="amr", service_code="hall.enterprise_registration", key_column="登记编号")
    unreadable = pl.DataFrame({"受理编号": ["X1"], "姓名": ["张伟"], "办理时间": ["not a time"]})
    db.ingest_frame(unreadable, source="window", occurred_at_column="办理时间", key_column="受理编号")
    query = text(
        "SELECT event_id, status, division_code, CAST(standardized AS TEXT), CAST(quality_flags AS TEXT) "
        "FROM event ORDER BY event_id"
    )
    reset = text("UPDATE event SET status = 'received', standardized = NULL, division_code = NULL")

    def stored() -> list[tuple[object, ...]]:
        with db.events.connect() as conn:
            rows = [tuple(r) for r in conn.execute(query)]
        with db.events.begin() as conn:
            conn.execute(reset)
        return rows

    sizes: list[int] = []
    received = validate._received

    def read(conn: Any, after: int, size: int) -> Any:
        sizes.append(size)
        return received(conn, after, size)

    monkeypatch.setattr(validate, "_received", read)
    monkeypatch.setattr(validate, "CHUNK", 100_000)
    whole = standardize_events(db.events, db.rules, today=TODAY, address_hint=COUNTY)
    one_pass = stored()
    monkeypatch.setattr(validate, "CHUNK", 7)
    chunked = standardize_events(db.events, db.rules, today=TODAY, address_hint=COUNTY)
    assert chunked.rows == whole.rows == len(one_pass) > 7 * 3
    assert sizes == [100_000] * 2 + [7] * (-(-chunked.rows // 7) + 1)  # a chunk at a time, then none left
    assert chunked.failures.equals(whole.failures) and whole.failures.height > 0
    by_chunks = stored()
    assert by_chunks == one_pass
    # the JSON as stored, key order included
    assert any(status == "invalid" for _, status, *_ in one_pass)
    assert any(s and "division_code" in s for *_, s, _ in one_pass)
    assert any(f and "occurred_at_unreadable" in f for *_, f in one_pass)


def test_a_file_ingested_with_a_map_during_a_run_is_read_through_its_map(
    db: GovDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Maps are read with each chunk: a batch ingested (with --map) while `process` runs is
    standardized through its map in a later chunk of the same run."""
    from sqlalchemy import text

    from govdb.standards.ids import make_id
    from govdb.validate import events as validate
    from govdb.validate import standardize_events

    id_number = make_id("440605", dt.date(1949, 12, 31), 1)

    def mapped(key: str) -> pl.DataFrame:
        return pl.DataFrame({"编号": [key], "申请人": ["李娜"], "证件": [id_number]})

    mapping = {"申请人": "name", "证件": "id_number"}
    db.ingest_frame(mapped("A1"), source="early", key_column="编号", mapping=mapping)
    monkeypatch.setattr(validate, "CHUNK", 1)
    first_chunk = validate._standardize_chunk

    def then_ingest(*args: object, **kwargs: object) -> tuple[pl.DataFrame, pl.DataFrame]:
        standardized = first_chunk(*args, **kwargs)  # type: ignore[arg-type]
        monkeypatch.setattr(validate, "_standardize_chunk", first_chunk)
        db.ingest_frame(mapped("LATE1"), source="late", key_column="编号", mapping=mapping)
        return standardized

    monkeypatch.setattr(validate, "_standardize_chunk", then_ingest)
    standardize_events(db.events, db.rules, today=TODAY)
    with db.events.connect() as conn:
        rows = conn.execute(text("SELECT source_key, standardized FROM event ORDER BY event_id")).all()
    assert [key for key, _ in rows] == ["A1", "LATE1"]
    for _, fields in rows:
        fields = json.loads(fields) if isinstance(fields, str) else fields
        assert fields["name"] == "李娜" and fields["id_number"] == id_number
