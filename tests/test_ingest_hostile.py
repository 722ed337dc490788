"""Ingest as a hostile user would try it (issue 9): every record ends stored, as a new version, as a
duplicate, or quarantined with its line, reason and exact bytes; nothing else may escape but a
GovdbError for a file refused whole.

One explicit test per class of hostile input, with exact expectations; then the generated corpus
(tests/ingest_corpus.py, ~500 files in ~36 families) with its oracle; then concurrent ingests of one
file. Every test runs on SQLite and, with GOVDB_TEST_PG_URL set, on PostgreSQL, against one store
per module (each test uses its own source system).
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import multiprocessing
import os
import random
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import polars as pl
import pytest
from sqlalchemy import text

from govdb import GovDB, GovdbError, InputFileError
from govdb.rulebook import Rulebook

from .conftest import BACKENDS, open_backend

sys.path.insert(0, str(Path(__file__).parent))  # spawned processes import the worker by this name
import ingest_corpus as corpus

# PostgreSQL runs every GOVDB_TEST_CORPUS_PG_EVERY-th case of each family (1: the whole corpus).
PG_EVERY = int(os.environ.get("GOVDB_TEST_CORPUS_PG_EVERY", "1"))


@pytest.fixture(scope="module", params=BACKENDS)
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, rules: Rulebook
) -> Iterator[GovDB]:
    """One empty GovDB per backend for the whole module; tests keep apart by source system."""
    with open_backend(request.param, tmp_path_factory.mktemp("hostile") / "home", rules) as gov:
        yield gov


@pytest.fixture
def source() -> str:
    return f"hostile-{uuid.uuid4().hex[:12]}"


def is_pg(db: GovDB) -> bool:
    return db.events.dialect.name == "postgresql"


def write(folder: Path, name: str, data: bytes | str, encoding: str = "utf-8") -> Path:
    path = folder / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode(encoding))
    return path


def stored(db: GovDB, source: str) -> list[Any]:
    with db.events.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT source_key, version, source_line, raw_text, raw, occurred_at, content_sha256 "
                "FROM event WHERE source_system = :s ORDER BY source_key, version"
            ),
            {"s": source},
        ).all()
    return [SimpleNamespace(**{**row._mapping, "raw": corpus.as_json(row.raw)}) for row in rows]


def quarantined(db: GovDB, source: str) -> list[Any]:
    with db.events.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT line, reason, raw_text, raw_bytes FROM quarantine WHERE source_system = :s "
                "ORDER BY line"
            ),
            {"s": source},
        ).all()
    return [
        SimpleNamespace(
            **{**row._mapping, "raw_bytes": None if row.raw_bytes is None else bytes(row.raw_bytes)}
        )
        for row in rows
    ]


def totals(db: GovDB) -> tuple[int, int]:
    with db.events.connect() as conn:
        return (
            conn.execute(text("SELECT count(*) FROM event")).scalar_one(),
            conn.execute(text("SELECT count(*) FROM quarantine")).scalar_one(),
        )


def counts(report: Any) -> tuple[int, ...]:
    """(read, stored, new_versions, duplicate, quarantined, blank), after checking they add up."""
    assert corpus.conservation_problems(report) == []
    return tuple(getattr(report, name) for name in corpus.COUNTS)


def ingest_twice(db: GovDB, path: Path, source: str, **options: Any) -> Any:
    """Ingest, then ingest again: the second time stores nothing and changes no table."""
    report = db.ingest(path, source=source, **options)
    before = totals(db)
    again = db.ingest(path, source=source, **options)
    assert (again.stored, again.new_versions) == (0, 0)
    assert again.read == report.read and again.quarantined == report.quarantined
    assert totals(db) == before
    return report


# --- CSV: quotes ----------------------------------------------------------------------------------


def test_unclosed_quote_in_a_row_quarantines_that_row_only(store: GovDB, source: str, tmp_path: Path) -> None:
    bad = 'K2,"李娜,未闭合'
    path = write(tmp_path, "q.csv", f"编号,姓名,备注\nK1,张伟,好\n{bad}\nK3,王芳,好\nK4,赵敏,好\n")
    report = ingest_twice(store, path, source, key_column="编号")
    assert counts(report) == (4, 3, 0, 0, 1, 0)
    assert [q.line for q in report.quarantine] == [3]
    assert "quote" in report.quarantine[0].reason.lower()
    assert [e.source_key for e in stored(store, source)] == ["K1", "K3", "K4"]
    (row,) = quarantined(store, source)
    assert (row.line, row.raw_text, row.raw_bytes) == (3, bad, bad.encode())


def test_unclosed_quote_in_the_header_refuses_the_file(store: GovDB, source: str, tmp_path: Path) -> None:
    path = write(tmp_path, "h.csv", '编号,"姓名,备注\nK1,张伟,好\nK2,李娜,好\n')
    before = totals(store)
    with pytest.raises(InputFileError):
        store.ingest(path, source=source)
    assert totals(store) == before


def test_quarantine_keeps_the_line_exactly_as_received(store: GovDB, source: str, tmp_path: Path) -> None:
    bad = '"K9","有,逗号","多","余"'
    for encoding in ("utf-8", "gbk"):
        path = write(tmp_path, f"fields-{encoding}.csv", f"编号,姓名,备注\nK1,张伟,好\n{bad}\r\n", encoding)
        report = store.ingest(path, source=f"{source}-{encoding}")
        assert counts(report) == (2, 1, 0, 0, 1, 0)
        (row,) = quarantined(store, f"{source}-{encoding}")
        assert (row.line, row.raw_text) == (3, bad)
        assert row.raw_bytes in (bad.encode(encoding), (bad + "\r\n").encode(encoding))


# --- header names ---------------------------------------------------------------------------------


def test_duplicate_header_names_are_all_kept(store: GovDB, source: str, tmp_path: Path) -> None:
    path = write(tmp_path, "dup.csv", "a,a,b,a\n1,2,3,4\n")
    report = ingest_twice(store, path, source)
    assert counts(report) == (1, 1, 0, 0, 0, 0)
    assert any("the header repeats the column 'a'" in w for w in report.warnings)
    assert stored(store, source)[0].raw == {"a": "1", "a_2": "2", "b": "3", "a_3": "4"}


def test_duplicate_header_names_in_xlsx_are_named_the_same_way(
    store: GovDB, source: str, tmp_path: Path
) -> None:
    path = tmp_path / "dup.xlsx"
    corpus.write_xlsx(path, [["a", "a", "b", "a"], ["1", "2", "3", "4"]])
    report = ingest_twice(store, path, source)
    assert (report.read, report.stored) == (1, 1)
    assert any("the header repeats the column 'a'" in w for w in report.warnings)
    (event,) = stored(store, source)
    assert event.raw == {"a": "1", "a_2": "2", "b": "3", "a_3": "4"}
    assert event.raw_text is None


# --- keys and versions ----------------------------------------------------------------------------


def test_changed_content_under_a_known_key_is_a_new_version(
    store: GovDB, source: str, tmp_path: Path
) -> None:
    path = write(tmp_path, "v1.csv", "编号,姓名\nK1,张伟\nK2,李娜\nK1,张伟伟\nK1,张伟\n K1 ,王五\nK2,李娜\n")
    report = ingest_twice(store, path, source, key_column="编号")
    assert counts(report) == (6, 2, 2, 2, 0, 0)
    assert {(v.line, v.key, v.version) for v in report.versions if v.version > 1} == {
        (4, "K1", 2),
        (6, "K1", 3),
    }
    events = stored(store, source)
    assert [(e.source_key, e.version, e.raw["姓名"], e.source_line) for e in events] == [
        ("K1", 1, "张伟", 2),
        ("K1", 2, "张伟伟", 4),
        ("K1", 3, "王五", 6),
        ("K2", 1, "李娜", 3),
    ]
    assert events[2].raw_text == " K1 ,王五"
    # the next export: K2 changed, K1 back to its first content (a duplicate), K3 new
    path = write(tmp_path, "v2.csv", "编号,姓名\nK2,李四\nK1,张伟\nK3,钱七\n")
    report = store.ingest(path, source=source, key_column="编号")
    assert counts(report) == (3, 1, 1, 1, 0, 0)
    assert [(v.key, v.version) for v in report.versions if v.version > 1] == [("K2", 2)]
    assert len(stored(store, source)) == 6


def test_json_keys_1_and_text_1_and_1_point_0_are_one_key(store: GovDB, source: str, tmp_path: Path) -> None:
    lines = [
        '{"id": 1, "v": "a"}',
        '{"id": "1", "v": "b"}',
        '{"id": 1.0, "v": "c"}',
        '{"id": " 1 ", "v": "d"}',
        '{"id": 1, "v": "a"}',
    ]
    path = write(tmp_path, "keys.jsonl", "\n".join(lines) + "\n")
    report = ingest_twice(store, path, source, key_column="id")
    assert counts(report) == (5, 1, 3, 1, 0, 0)
    events = stored(store, source)
    assert [(e.source_key, e.version, e.raw["v"]) for e in events] == [
        ("1", 1, "a"),
        ("1", 2, "b"),
        ("1", 3, "c"),
        ("1", 4, "d"),
    ]
    assert [e.raw_text for e in events] == lines[:4]


def test_identical_rows_without_a_key_are_duplicates(store: GovDB, source: str, tmp_path: Path) -> None:
    path = write(tmp_path, "nokey.csv", "姓名,电话\n张伟,1\n李娜,2\n张伟,1\n张伟,3\n")
    report = ingest_twice(store, path, source)
    assert counts(report) == (4, 3, 0, 1, 0, 0)
    again = store.ingest(path, source=source)
    assert counts(again) == (4, 0, 0, 4, 0, 0)


def test_key_length_limit(store: GovDB, source: str, tmp_path: Path) -> None:
    keys = ["k" * 256, "键" * 256, "k" * 257, "键" * 300]
    path = write(tmp_path, "long.csv", "编号,姓名\n" + "".join(f"{k},张伟\n" for k in keys))
    report = ingest_twice(store, path, source, key_column="编号")
    assert counts(report) == (4, 2, 0, 0, 2, 0)
    assert [q.line for q in report.quarantine] == [4, 5]
    assert sorted(e.source_key for e in stored(store, source)) == sorted(keys[:2])


def test_a_source_name_longer_than_its_column_is_refused_before_storing(
    store: GovDB, source: str, tmp_path: Path
) -> None:
    path = write(tmp_path, "a.csv", "编号,姓名\nK1,张伟\nK2,\x00\n")
    before = totals(store)
    with pytest.raises(GovdbError):
        store.ingest(path, source="s" * 129)
    assert totals(store) == before
    report = store.ingest(path, source=source[:8] + "s" * 120)  # 128 characters fit
    assert (report.stored, report.quarantined) == (1, 1)


# --- rows that hold nothing -----------------------------------------------------------------------


def test_whitespace_rows_are_quarantined_and_empty_lines_counted_blank(
    store: GovDB, source: str, tmp_path: Path
) -> None:
    path = write(tmp_path, "ws.csv", "编号,姓名,备注\nK1,张伟,好\n   \n \t \n,,\n\nK2,李娜,好\n\n")
    report = ingest_twice(store, path, source, key_column="编号")
    assert counts(report) == (5, 2, 0, 0, 3, 2)
    assert [q.line for q in report.quarantine] == [3, 4, 5]
    assert [q.raw_text for q in quarantined(store, source)] == ["   ", " \t ", ",,"]
    tsv = write(tmp_path, "ws.tsv", "编号\t姓名\nK1\t张伟\n \t \n\t\n\r\n")
    report = store.ingest(tsv, source=f"{source}-tsv", key_column="编号")
    assert counts(report) == (3, 1, 0, 0, 2, 1)


# --- line breaks that are not record breaks -------------------------------------------------------


@pytest.mark.parametrize("delimiter", [",", "\t"])
def test_unicode_line_breaks_stay_inside_unquoted_cells(
    store: GovDB, source: str, tmp_path: Path, delimiter: str
) -> None:
    lines = [f"K{i}{delimiter}前{c}后" for i, c in enumerate(corpus.UNICODE_BREAKS)]
    path = write(
        tmp_path,
        "breaks.csv" if delimiter == "," else "breaks.tsv",
        f"编号{delimiter}备注\n" + "\n".join(lines) + "\n",
    )
    report = ingest_twice(store, path, source, key_column="编号")
    assert counts(report) == (8, 8, 0, 0, 0, 0)
    events = sorted(stored(store, source), key=lambda e: e.source_line)
    assert [e.raw["备注"] for e in events] == [f"前{c}后" for c in corpus.UNICODE_BREAKS]
    assert [e.raw_text for e in events] == lines
    assert [e.source_line for e in events] == list(range(2, 10))


def test_json_lines_with_unicode_breaks_are_stored(store: GovDB, source: str, tmp_path: Path) -> None:
    values = [{"id": i, "备注": f"前{c}后"} for i, c in enumerate(corpus.UNICODE_BREAKS)]
    lines = [json.dumps(v, ensure_ascii=False) for v in values]
    path = write(tmp_path, "breaks.jsonl", "\n".join(lines) + "\n")
    report = ingest_twice(store, path, source, key_column="id")
    assert counts(report) == (8, 8, 0, 0, 0, 0)
    events = sorted(stored(store, source), key=lambda e: e.source_line)
    assert [e.raw for e in events] == values
    assert [e.raw_text for e in events] == lines


# --- encodings ------------------------------------------------------------------------------------


def test_a_utf8_file_with_a_few_gbk_rows_keeps_every_good_row(
    store: GovDB, source: str, tmp_path: Path
) -> None:
    good = [f"K{i},{name},南海区桂城街道" for i, name in enumerate(["张伟", "李娜", "王芳", "赵敏", "钱七"])]
    gbk = ["G1,黄勇,大沥镇".encode("gbk"), "G2,周杰,狮山镇".encode("gbk")]
    data = (
        "编号,姓名,地址\n".encode()
        + b"\n".join(
            [
                good[0].encode(),
                good[1].encode(),
                gbk[0],
                good[2].encode(),
                good[3].encode(),
                gbk[1],
                good[4].encode(),
            ]
        )
        + b"\n"
    )
    path = write(tmp_path, "mixed.csv", data)
    report = ingest_twice(store, path, source, key_column="编号")
    assert report.encoding == "utf-8"
    assert counts(report) == (7, 5, 0, 0, 2, 0)
    assert [q.line for q in report.quarantine] == [4, 7]
    events = stored(store, source)
    assert {e.source_key for e in events} == {"K0", "K1", "K2", "K3", "K4"}
    assert all(set(e.raw) == {"编号", "姓名", "地址"} for e in events)
    assert sorted(e.raw_text for e in events) == sorted(good)
    assert [q.raw_bytes for q in quarantined(store, source)] == gbk


@pytest.mark.parametrize(
    ("encoding", "detected"), [("gbk", "gb18030"), ("utf-8-sig", "utf-8-sig"), ("utf-8", "utf-8")]
)
def test_encoding_is_detected(
    store: GovDB, source: str, tmp_path: Path, encoding: str, detected: str
) -> None:
    rows = ["K1,张伟,桂城街道", "K2,李娜,大沥镇"]
    path = write(tmp_path, "enc.csv", "编号,姓名,地址\r\n" + "\r\n".join(rows) + "\r\n", encoding)
    report = ingest_twice(store, path, source, key_column="编号")
    assert report.encoding == detected
    assert counts(report) == (2, 2, 0, 0, 0, 0)
    events = stored(store, source)
    assert [e.raw for e in events] == [
        dict(zip(["编号", "姓名", "地址"], r.split(","), strict=True)) for r in rows
    ]
    assert [e.raw_text for e in events] == rows


def test_undecodable_bytes_in_a_row_with_the_wrong_field_count(
    store: GovDB, source: str, tmp_path: Path
) -> None:
    bad = "K2,王".encode() + b"\xff\xfe" + b",1,2,3"
    path = write(
        tmp_path, "bad.csv", "编号,姓名,备注\nK1,张伟,好\n".encode() + bad + "\nK3,李娜,好\n".encode()
    )
    report = ingest_twice(store, path, source, key_column="编号")
    assert counts(report) == (3, 2, 0, 0, 1, 0)
    (row,) = quarantined(store, source)
    assert (row.line, row.raw_bytes) == (3, bad)


# --- JSON values a store cannot hold as they are --------------------------------------------------


def test_a_lone_surrogate_in_json_is_quarantined(store: GovDB, source: str, tmp_path: Path) -> None:
    path = write(tmp_path, "s.jsonl", '{"a": "\\ud800"}\n{"a": "ok"}\n{"a": "\\ud83d\\ude00"}\n')
    report = ingest_twice(store, path, source)
    assert counts(report) == (3, 2, 0, 0, 1, 0)
    assert [q.line for q in report.quarantine] == [1]
    assert quarantined(store, source)[0].raw_bytes == b'{"a": "\\ud800"}'
    assert sorted(e.raw["a"] for e in stored(store, source)) == sorted(["ok", "😀"])


def test_nan_and_infinity_are_stored_as_strings(store: GovDB, source: str, tmp_path: Path) -> None:
    frame = pl.DataFrame({"id": [1, 2, 3, 4], "x": [math.nan, math.inf, -math.inf, 0.5]})
    frame.write_parquet(tmp_path / "nan.parquet")
    report = ingest_twice(store, tmp_path / "nan.parquet", source, key_column="id")
    assert counts(report)[:5] == (4, 4, 0, 0, 0)
    assert {e.source_key: e.raw["x"] for e in stored(store, source)} == {
        "1": "NaN",
        "2": "Infinity",
        "3": "-Infinity",
        "4": 0.5,
    }
    path = write(
        tmp_path, "nan.jsonl", '{"id": 1, "x": NaN}\n{"id": 2, "x": Infinity}\n{"id": 3, "x": -Infinity}\n'
    )
    report = ingest_twice(store, path, f"{source}-json", key_column="id")
    assert counts(report) == (3, 3, 0, 0, 0, 0)
    assert [e.raw["x"] for e in stored(store, f"{source}-json")] == ["NaN", "Infinity", "-Infinity"]


def test_a_nul_in_a_cell_is_quarantined_with_its_bytes(store: GovDB, source: str, tmp_path: Path) -> None:
    csv_bad = "K2,a\x00b"
    path = write(tmp_path, "nul.csv", f"编号,姓名\nK1,张伟\n{csv_bad}\nK3,李娜\n")
    report = ingest_twice(store, path, source, key_column="编号")
    assert counts(report) == (3, 2, 0, 0, 1, 0)
    assert quarantined(store, source)[0].raw_bytes == csv_bad.encode()
    json_bad = '{"id": 2, "v": "a\\u0000b"}'
    path = write(tmp_path, "nul.jsonl", f'{{"id": 1, "v": "a"}}\n{json_bad}\n')
    report = ingest_twice(store, path, f"{source}-json", key_column="id")
    assert counts(report) == (2, 1, 0, 0, 1, 0)
    assert quarantined(store, f"{source}-json")[0].raw_bytes == json_bad.encode()
    pl.DataFrame({"id": ["1", "2"], "v": ["a\x00b", "ok"]}).write_parquet(tmp_path / "nul.parquet")
    report = ingest_twice(store, tmp_path / "nul.parquet", f"{source}-parquet", key_column="id")
    assert counts(report)[:5] == (2, 1, 0, 0, 1)
    assert [e.source_key for e in stored(store, f"{source}-parquet")] == ["2"]


def test_parquet_with_decimal_duration_and_nested_dates_is_stored(
    store: GovDB, source: str, tmp_path: Path
) -> None:
    frame = pl.DataFrame(
        [
            pl.Series("id", [1, 2]),
            pl.Series("amount", [decimal.Decimal("12.50"), None], dtype=pl.Decimal(10, 2)),
            pl.Series("took", [dt.timedelta(minutes=90), dt.timedelta(0)], dtype=pl.Duration("us")),
            pl.Series("dates", [[dt.date(2026, 11, 15)], []], dtype=pl.List(pl.Date)),
            pl.Series("nested", [{"d": dt.date(2026, 11, 15), "n": "张伟"}, {"d": None, "n": None}]),
            pl.Series("deep", [[{"t": dt.datetime(2026, 11, 15, 16, 59)}], None]),
        ]
    )
    frame.write_parquet(tmp_path / "odd.parquet")
    report = ingest_twice(store, tmp_path / "odd.parquet", source, key_column="id")
    assert counts(report)[:5] == (2, 2, 0, 0, 0)
    first = stored(store, source)[0].raw
    assert set(first) == {"id", "amount", "took", "dates", "nested", "deep"}
    assert "12.5" in json.dumps(first["amount"])
    assert first["took"] not in (None, "", 0)
    for name in ("dates", "nested", "deep"):
        assert "2026-11-15" in json.dumps(first[name], ensure_ascii=False), (name, first[name])
    assert "张伟" in json.dumps(first["nested"], ensure_ascii=False)


# --- occurred_at ----------------------------------------------------------------------------------


def test_occurred_at_keeps_the_time_of_day(store: GovDB, source: str, tmp_path: Path) -> None:
    written = {
        "K1": ("2026/11/15 16:59", dt.datetime(2026, 11, 15, 8, 59)),
        "K2": ("2026-11-15 16:59:30", dt.datetime(2026, 11, 15, 8, 59, 30)),
        "K3": ("2026-11-15T16:59:30", dt.datetime(2026, 11, 15, 8, 59, 30)),
        "K4": ("2026-11-15", dt.datetime(2026, 11, 14, 16, 0)),
        "K5": ("2026/01/01 00:30", dt.datetime(2025, 12, 31, 16, 30)),
    }
    path = write(
        tmp_path, "t.csv", "编号,办理时间\n" + "".join(f"{k},{v}\n" for k, (v, _) in written.items())
    )
    report = ingest_twice(store, path, source, key_column="编号", occurred_at_column="办理时间")
    assert (report.stored, report.quarantined) == (5, 0)
    got = {e.source_key: corpus.as_utc(e.occurred_at) for e in stored(store, source)}
    assert got == {k: want for k, (_, want) in written.items()}


def test_occurred_at_in_chinese_notation_is_never_a_wrong_midnight(
    store: GovDB, source: str, tmp_path: Path
) -> None:
    path = write(tmp_path, "t.csv", "编号,办理时间\nK1,2026年11月15日 16时59分\n")
    report = store.ingest(path, source=source, key_column="编号", occurred_at_column="办理时间")
    assert report.stored == 1
    (event,) = stored(store, source)
    assert corpus.as_utc(event.occurred_at) in (None, dt.datetime(2026, 11, 15, 8, 59))


# --- the stored payload ---------------------------------------------------------------------------


def test_the_raw_payload_is_readable_utf8_json(store: GovDB, source: str, tmp_path: Path) -> None:
    path = write(tmp_path, "p.csv", "编号,姓名\nK1,张伟\n")
    store.ingest(path, source=source, key_column="编号")
    with store.events.connect() as conn:
        if is_pg(store):
            kind = conn.execute(
                text(
                    "SELECT data_type FROM information_schema.columns WHERE table_schema = current_schema() "
                    "AND table_name = 'event' AND column_name = 'raw'"
                )
            ).scalar_one()
            assert kind == "jsonb"
            name = conn.execute(
                text("SELECT raw->>'姓名' FROM event WHERE source_system = :s"), {"s": source}
            )
            assert name.scalar_one() == "张伟"
        else:
            raw = conn.execute(
                text("SELECT raw FROM event WHERE source_system = :s"), {"s": source}
            ).scalar_one()
            assert isinstance(raw, str) and "张伟" in raw and "\\u" not in raw
            name = conn.execute(
                text("SELECT json_extract(raw, '$.\"姓名\"') FROM event WHERE source_system = :s"),
                {"s": source},
            )
            assert name.scalar_one() == "张伟"


# --- junk -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", [".csv", ".tsv", ".jsonl", ".xlsx", ".parquet"])
def test_random_bytes_are_refused_or_reported(store: GovDB, source: str, tmp_path: Path, ext: str) -> None:
    rng = random.Random(ext)
    for size in (1, 64, 3000):
        path = write(tmp_path, f"junk{size}{ext}", bytes(rng.randrange(256) for _ in range(size)))
        outcome = corpus.ingest_once(store, source, corpus.Ingest(path, ext[1:]))
        assert outcome.crashed is None, outcome.crashed
        if outcome.report is not None:
            assert corpus.conservation_problems(outcome.report) == []


# --- the corpus -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> list[corpus.Case]:
    return corpus.generate(tmp_path_factory.mktemp("corpus"))


@pytest.mark.parametrize("family", list(corpus.FAMILIES))
def test_corpus(store: GovDB, cases: list[corpus.Case], family: str) -> None:
    """Each generated file: a report that adds up (or the file refused whole), what the generator
    knows to be true, and nothing new on the second ingest."""
    selected = [case for case in cases if case.family == family]
    if is_pg(store):
        selected = selected[::PG_EVERY]
    failures: list[str] = []
    for case in selected:
        failures += corpus.check_case(store, case)
    files = sum(len(case.ingests) for case in selected)
    assert not failures, f"{len(failures)} broken promises over {files} files of {family}:\n" + "\n".join(
        failures[:30]
    )


def test_the_corpus_is_several_hundred_files_and_the_same_every_time(
    tmp_path: Path, cases: list[corpus.Case]
) -> None:
    paths = {ing.path for case in cases for ing in case.ingests}
    assert len(paths) >= 400
    again = corpus.generate(tmp_path / "again", families=["combo", "xlsx_clean", "parquet_dtypes"])
    for case in again:
        for ing in case.ingests:
            original = next(p for p in paths if p.name == ing.path.name)
            assert original.read_bytes() == ing.path.read_bytes(), ing.path.name


# --- concurrent ingests ---------------------------------------------------------------------------


WORKERS = 4  # spawned processes each import polars: more than this is start-up time on two cores


def _concurrent_files(folder: Path) -> tuple[Path, int, Path, int, int]:
    """A file keyed by content (some rows repeated) and a keyed file whose keys come back with the same
    or changed content. Returns the paths and the distinct rows, keys and (key, content) pairs."""
    rng = random.Random(7)
    rows = [f"{rng.choice(corpus.NAMES)},{i},{rng.choice(corpus.ADDRESSES)}" for i in range(1200)]
    content_rows = rows + rng.sample(rows, 150)
    rng.shuffle(content_rows)
    by_content = write(folder, "content.csv", "姓名,序号,地址\n" + "\n".join(content_rows) + "\n")
    keyed_rows: list[str] = []
    pairs: set[tuple[str, str]] = set()
    for n in range(500):
        key = f"SL{n:04d}"
        for version in range(rng.randint(1, 3)):
            line = f"{key},{rng.choice(corpus.NAMES)}-{version}"
            keyed_rows.append(line)
            pairs.add((key, line))
        if rng.random() < 0.2:
            keyed_rows.append(keyed_rows[-1])
    keyed = write(folder, "keyed.csv", "编号,姓名\n" + "\n".join(keyed_rows) + "\n")
    return by_content, len(rows), keyed, 500, len(pairs)


def test_concurrent_ingests_of_one_file_store_it_once(store: GovDB, tmp_path: Path) -> None:
    by_content, distinct_rows, keyed, distinct_keys, distinct_pairs = _concurrent_files(tmp_path)
    suffix = uuid.uuid4().hex[:8]
    jobs = [
        (str(by_content), f"concurrent-content-{suffix}", None),
        (str(keyed), f"concurrent-keyed-{suffix}", "编号"),
    ]
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WORKERS)
    queue = ctx.Queue()
    processes = [
        ctx.Process(
            target=corpus.concurrent_worker,
            args=(barrier, queue, store.config.master_url, store.config.events_url, jobs),
        )
        for _ in range(WORKERS)
    ]
    for process in processes:
        process.start()
    try:
        results = [queue.get(timeout=600) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
    errors = [r for result in results for r in result if "error" in r or r["problems"]]
    assert not errors, errors
    for j, (distinct, new_versions) in enumerate(
        [(distinct_rows, 0), (distinct_keys, distinct_pairs - distinct_keys)]
    ):
        reports = [result[j] for result in results]
        assert all(r["read"] == reports[0]["read"] for r in reports)
        assert sum(r["stored"] for r in reports) == distinct, reports
        assert sum(r["new_versions"] for r in reports) == new_versions, reports
        source = jobs[j][1]
        events = stored(store, source)
        assert len(events) == distinct + new_versions
        assert len({(e.source_key, e.content_sha256) for e in events}) == len(events)
        by_key: dict[str, list[int]] = {}
        for e in events:
            by_key.setdefault(e.source_key, []).append(e.version)
        assert all(sorted(v) == list(range(1, len(v) + 1)) for v in by_key.values())
    keyed_events = stored(store, jobs[1][1])
    assert {(e.source_key, e.raw_text) for e in keyed_events} == {
        (line.split(",")[0], line) for line in keyed.read_text(encoding="utf-8").splitlines()[1:]
    }
