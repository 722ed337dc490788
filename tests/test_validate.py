import datetime as dt

import polars as pl

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
