import datetime as dt

import polars as pl

from govdb.rulebook import Rulebook
from govdb.validate import validate_frame


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
