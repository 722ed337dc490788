import json
from pathlib import Path

import polars as pl
import pytest
from sqlmodel import Session, select

from govdb import GovDB, InputFileError
from govdb.store.events import Event, Quarantine

HEADER = "受理编号,姓名,身份证号,联系电话\r\n"
ROWS = ["SL1,张伟,11010519491231002X,13800138000\r\n", "SL2,李娜,110105491231002,0757-86281234\r\n"]


def events(db: GovDB) -> list[Event]:
    with Session(db.events) as es:
        return list(es.exec(select(Event).order_by(Event.event_id)))  # type: ignore[arg-type]


def test_gbk_file_is_detected_and_raw_kept(db: GovDB, tmp_path: Path) -> None:
    path = tmp_path / "hall.csv"
    path.write_bytes((HEADER + "".join(ROWS)).encode("gbk"))
    report = db.ingest(path, source="hall", key_column="受理编号")
    assert (report.encoding, report.read, report.stored, report.quarantined) == ("gb18030", 2, 2, 0)
    stored = events(db)
    assert stored[0].raw == {
        "受理编号": "SL1",
        "姓名": "张伟",
        "身份证号": "11010519491231002X",
        "联系电话": "13800138000",
    }
    assert [e.source_line for e in stored] == [2, 3]


def test_unreadable_rows_are_quarantined_and_the_rest_ingested(db: GovDB, tmp_path: Path) -> None:
    path = tmp_path / "hall.csv"
    bad_bytes = "SL3,王".encode() + b"\xff\xfe" + b",1,2\r\n"
    path.write_bytes(
        HEADER.encode() + ROWS[0].encode() + "SL9,只有,三列\r\n".encode() + bad_bytes + ROWS[1].encode()
    )
    report = db.ingest(path, source="hall", key_column="受理编号")
    assert (report.read, report.stored, report.quarantined) == (4, 2, 2)
    assert [(q.line, q.reason.split(" ")[0]) for q in report.quarantine] == [(3, "expected"), (4, "bytes")]
    with Session(db.events) as es:
        rows = es.exec(select(Quarantine).order_by(Quarantine.line)).all()  # type: ignore[arg-type]
    assert [r.line for r in rows] == [3, 4] and "只有" in rows[0].raw_text


def test_same_file_twice_stores_nothing_new(db: GovDB, tmp_path: Path) -> None:
    path = tmp_path / "hall.csv"
    path.write_text(HEADER + "".join(ROWS) + ROWS[0], encoding="utf-8-sig")
    first = db.ingest(path, source="hall")  # keyed by content: the repeated row is a duplicate
    second = db.ingest(path, source="hall")
    assert (first.stored, first.duplicate) == (2, 1)
    assert (second.stored, second.duplicate) == (0, 3)
    assert len(events(db)) == 2


def test_jsonl_xlsx_parquet(db: GovDB, tmp_path: Path) -> None:
    jsonl = tmp_path / "calls.jsonl"
    jsonl.write_text(
        json.dumps({"id": 1, "姓名": "张伟"}, ensure_ascii=False) + "\n{broken\n[1,2]\n", encoding="utf-8"
    )
    report = db.ingest(jsonl, source="hotline", key_column="id")
    assert (report.stored, report.quarantined) == (1, 2)
    assert [q.line for q in report.quarantine] == [2, 3]
    frame = pl.DataFrame({"编号": ["A1", "A2"], "姓名": ["赵六", "钱七"]})
    frame.write_excel(tmp_path / "sheet.xlsx")
    frame.write_parquet(tmp_path / "sheet.parquet")
    xlsx = db.ingest(tmp_path / "sheet.xlsx", source="excel", key_column="编号")
    parquet = db.ingest(tmp_path / "sheet.parquet", source="parquet", key_column="编号")
    assert (xlsx.stored, parquet.stored) == (2, 2)
    assert {e.source_line for e in events(db) if e.source_system == "excel"} == {2, 3}


def test_clear_errors_for_unusable_files(db: GovDB, tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="does not exist"):
        db.ingest(tmp_path / "missing.csv", source="x")
    odd = tmp_path / "data.doc"
    odd.write_text("x")
    with pytest.raises(InputFileError, match=r"unknown extension '\.doc'"):
        db.ingest(odd, source="x")
    path = tmp_path / "hall.csv"
    path.write_text(HEADER + ROWS[0], encoding="utf-8")
    with pytest.raises(InputFileError, match="key column '编号' is not in the header"):
        db.ingest(path, source="x", key_column="编号")
