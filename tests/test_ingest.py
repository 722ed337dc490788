import json
from pathlib import Path

import polars as pl
import pytest
from sqlmodel import Session, select

from govdb import GovDB, InputFileError
from govdb.readers import read_records
from govdb.store.events import Event, IngestBatch, Quarantine

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


def test_vectorised_canonical_json_equals_json_dumps() -> None:
    """The whole-column JSON of delimited files is byte for byte what canonical_json writes."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from govdb.base.jsontext import json_objects
    from govdb.ingest import _canonical_json_column, canonical_json

    names = st.text(min_size=0, max_size=6)
    cells = st.one_of(st.none(), st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=12))

    @settings(max_examples=200, deadline=None)
    @given(st.lists(names, min_size=1, max_size=5, unique=True), st.data())
    def check(columns: list[str], data: st.DataObject) -> None:
        rows = data.draw(st.lists(st.tuples(*[cells] * len(columns)), min_size=1, max_size=5))
        frame = pl.DataFrame(rows, schema=dict.fromkeys(columns, pl.String), orient="row")
        assert _canonical_json_column(frame).to_list() == [canonical_json(r) for r in frame.to_dicts()]
        # validate's form: the header's order, nulls left out, json.dumps' default separators
        keys = {c: f"{i}:{c}" for i, c in enumerate(columns)}
        present = [{keys[c]: v for c, v in r.items() if v is not None} for r in frame.to_dicts()]
        shown = json_objects(frame, keys, omit_nulls=True).to_list()
        assert shown == [json.dumps(r, ensure_ascii=False) for r in present]

    check()


def test_events_of_the_first_schema_migrate_and_stay_duplicates(tmp_path: Path) -> None:
    """An event store at revision events_0001 upgrades: keys get their content hash, nothing is re-stored."""
    import hashlib

    from sqlalchemy import text

    from govdb.ingest import canonical_json, ingest_file
    from govdb.store.engine import make_engine, migrate

    engine = make_engine(f"sqlite:///{tmp_path / 'events.sqlite'}")
    migrate(engine, "events", "events_0001")
    payload = {"受理编号": "SL1", "姓名": "张伟", "身份证号": "11010519491231002X", "联系电话": "13800138000"}
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO event (source_system, source_key, batch_id, raw, quality_flags, status,"
                " received_at) VALUES ('hall', 'SL1', 'b', :raw, '[]', 'received',"
                " '2026-11-01 00:00:00.000000')"
            ),
            {"raw": json.dumps(payload)},
        )
    migrate(engine, "events")
    with engine.connect() as conn:
        version, digest = conn.execute(text("SELECT version, content_sha256 FROM event")).one()
    assert (version, digest) == (1, hashlib.sha256(canonical_json(payload).encode()).hexdigest())
    path = tmp_path / "hall.csv"
    path.write_text(HEADER + "".join(ROWS), encoding="utf-8")
    report = ingest_file(engine, path, source="hall", key_column="受理编号")
    assert (report.duplicate, report.stored, report.new_versions) == (1, 1, 0)
    engine.dispose()


def test_a_store_that_cannot_be_written_is_one_clear_error(tmp_path: Path) -> None:
    """A read-only event store: a StoreError naming the store and what to do, nothing half-written."""
    from govdb.errors import StoreError
    from govdb.ingest import ingest_file
    from govdb.store.engine import make_engine, migrate

    engine = make_engine(f"sqlite:///{tmp_path / 'events.sqlite'}")
    migrate(engine, "events")
    engine.dispose()
    path = tmp_path / "hall.csv"
    path.write_text(HEADER + "".join(ROWS), encoding="utf-8")
    # SQLite's own read-only mode (file modes do not stop root, who runs CI)
    readonly = make_engine(f"sqlite:///file:{tmp_path / 'events.sqlite'}?mode=ro&uri=true")
    with pytest.raises(StoreError, match=r"events\.sqlite.*read-?only"):
        ingest_file(readonly, path, source="hall", key_column="受理编号")
    readonly.dispose()


def test_an_unreachable_server_is_one_clear_error() -> None:
    from govdb.errors import StoreError
    from govdb.store.engine import make_engine, migrate

    engine = make_engine("postgresql+psycopg://govdb:secret@127.0.0.1:9/nowhere?connect_timeout=2")
    with pytest.raises(StoreError) as caught:
        migrate(engine, "events")
    message = str(caught.value)
    assert "secret" not in message and "127.0.0.1:9" in message and "\n" not in message


def test_cli_ingest_reports_versions_and_never_a_traceback(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from govdb.cli import app

    home = tmp_path / "home"
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text(HEADER + ROWS[0], encoding="utf-8")
    second.write_text(HEADER + ROWS[0].replace("13800138000", "13900139000"), encoding="utf-8")
    runner = CliRunner()
    for path in (first, second):
        result = runner.invoke(
            app, ["--home", str(home), "ingest", str(path), "--source", "hall", "--key", "受理编号"]
        )
        assert result.exit_code == 0, result.output
    assert "new versions of known records" in result.output and "SL1" in result.output
    out = tmp_path / "missing-folder" / "out.csv"
    result = runner.invoke(app, ["standardize", str(first), "--out", str(out)])
    assert result.exit_code == 1 and "cannot write" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("body", "stored", "bad_line", "reason"),
    [
        # a quote that never closes on the last line: not closed by the end of the data
        ('1,2\n3,"abc\n', 1, 3, "not closed"),
        ('1,2\n3,"', 1, 3, "not closed"),
        # a quote that does close, in a record with one field too many: the whole record
        ('1,"note: see\nnext",extra\n3,4\n', 1, 2, "expected 2 fields"),
        # the swallowed text passes csv's 128 KiB field limit: still only the bad line
        ('1,"unclosed\n' + "".join(f"{i},{'x' * 100}\n" for i in range(2, 2000)), 1998, 2, "not closed"),
    ],
)
def test_quotes_never_swallow_or_invent(
    tmp_path: Path, body: str, stored: int, bad_line: int, reason: str
) -> None:
    from govdb.readers import read_records

    path = tmp_path / "q.csv"
    path.write_text("a,b\n" + body, encoding="utf-8")
    records, _ = read_records(path)
    assert (len(records.lines), [u.line for u in records.bad]) == (stored, [bad_line])
    assert reason in records.bad[0].reason
    assert all(not v.endswith("\n") for p in records.payload_list() for v in p.values())


def test_a_field_over_128_kib_is_stored_in_a_quoted_file(tmp_path: Path) -> None:
    from govdb.readers import read_records

    path = tmp_path / "big.csv"
    path.write_text(f'a,b\n1,"{"x" * 200_000}"\n', encoding="utf-8")
    records, _ = read_records(path)
    assert records.bad == [] and len(records.payload(0)["b"]) == 200_000


def test_a_utf8_row_in_a_gbk_file_is_quarantined_not_garbled(tmp_path: Path) -> None:
    from govdb.readers import read_records

    path = tmp_path / "mixed.csv"
    gbk = "编号,姓名\n1,张三\n2,李四\n3,王五\n".encode("gbk")
    path.write_bytes(gbk + "4,赵六\n".encode())
    records, _ = read_records(path)
    assert records.encoding == "gb18030" and [p["姓名"] for p in records.payload_list()] == [
        "张三",
        "李四",
        "王五",
    ]
    assert [(u.line, u.data) for u in records.bad] == [(5, "4,赵六".encode())]


def test_a_workbook_with_two_filled_sheets_is_refused(tmp_path: Path) -> None:
    import xlsxwriter

    from govdb.readers import read_records

    path = tmp_path / "two.xlsx"
    book = xlsxwriter.Workbook(str(path))
    book.add_worksheet("一").write_row(0, 0, ["编号", "姓名"])
    book.add_worksheet("二").write_row(0, 0, ["编号", "姓名"])
    book.add_worksheet("空")
    book.close()
    with pytest.raises(InputFileError, match="2 sheets with data"):
        read_records(path)


def test_an_impossible_time_is_null_and_flagged_and_the_store_stays_readable(
    db: GovDB, tmp_path: Path
) -> None:
    path = tmp_path / "t.csv"
    path.write_text("id,t\n1,0001-01-01 00:00\n2,2026/11/15 16:59\n3,\n", encoding="utf-8")
    report = db.ingest(path, source="hall", key_column="id", occurred_at_column="t")
    assert report.stored == 3
    stored = {e.source_key: (e.occurred_at, e.quality_flags) for e in events(db)}
    assert stored["1"] == (None, ["occurred_at_unreadable"])
    assert stored["2"][0] is not None and stored["2"][0].hour == 8 and stored["2"][1] == []
    assert stored["3"] == (None, [])
    db.process()
    assert "occurred_at_unreadable" in next(e for e in events(db) if e.source_key == "1").quality_flags


def test_going_back_to_an_old_version_is_reported(db: GovDB, tmp_path: Path) -> None:
    for n, value in enumerate(["A", "B", "A"]):
        path = tmp_path / f"v{n}.csv"
        path.write_text(f"id,v\n1,{value}\n", encoding="utf-8")
        report = db.ingest(path, source="hall", key_column="id")
    assert (report.duplicate, report.stored, report.new_versions) == (1, 0, 0)
    assert [w for w in report.warnings if "goes back to its version 1" in w]


def test_a_column_map_given_at_ingest_is_how_process_reads_that_batch(db: GovDB, tmp_path: Path) -> None:
    """The payload stays as received; the mapping lives with the batch, and only with it."""
    path = tmp_path / "odd.csv"
    path.write_text("编号,申请者,证号\nA1,李娜,11010519491231002X\n", encoding="utf-8")
    options = {"source": "hall", "key_column": "编号", "service_code": "hall.resident_registration"}
    mapped = db.ingest(path, **options, mapping={"申请者": "name", "证号": "id_number"})
    assert mapped.stored == 1 and not [w for w in mapped.warnings if "no standard column" in w]
    path.write_text("编号,申请者,证号\nA2,王芳,11010519491231002X\n", encoding="utf-8")
    plain = db.ingest(path, **options)
    assert [w for w in plain.warnings if "no standard column found" in w and "申请者" in w]
    with pytest.raises(InputFileError, match="not in the header"):
        db.ingest(path, **options, mapping={"姓名": "name"})
    with pytest.raises(InputFileError, match="not a column govdb reads"):
        db.ingest(path, **options, mapping={"申请者": "nickname"})
    db.process()
    by_key = {e.source_key: e for e in events(db)}
    assert by_key["A1"].raw == {"编号": "A1", "申请者": "李娜", "证号": "11010519491231002X"}
    assert by_key["A1"].standardized is not None
    assert (by_key["A1"].standardized["name"], by_key["A1"].standardized["id_number"]) == (
        "李娜",
        "11010519491231002X",
    )
    assert "name" not in (by_key["A2"].standardized or {})


_OPEN_AND_INGEST = """
import sys
from govdb import open_db
db = open_db(sys.argv[1])
print(db.ingest(sys.argv[2], source="hall", key_column="受理编号").stored)
db.close()
"""


def test_processes_opening_a_new_home_at_once_all_succeed(tmp_path: Path) -> None:
    """Migrations queue behind each other: four processes create one new store, one stores the file."""
    import subprocess
    import sys

    path = tmp_path / "hall.csv"
    path.write_text(HEADER + "".join(ROWS), encoding="utf-8")
    command = [sys.executable, "-c", _OPEN_AND_INGEST, str(tmp_path / "home"), str(path)]
    processes = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
        for _ in range(4)
    ]
    outcomes = [process.communicate(timeout=300) for process in processes]
    assert [process.returncode for process in processes] == [0] * 4, [err for _, err in outcomes]
    assert sorted(int(out) for out, _ in outcomes) == [0, 0, 0, 2]


def test_json_numbers_are_told_apart_as_written(db: GovDB, tmp_path: Path) -> None:
    """0.1000000000000000001 is a change from 0.1, and NaN is not the text "NaN", though both read alike."""
    path = tmp_path / "calls.jsonl"
    path.write_text(
        '{"id":1,"x":0.1}\n{"id":1,"x":0.1000000000000000001}\n{"id":2,"x":NaN}\n{"id":2,"x":"NaN"}\n'
        '{"id":3,"x":1.50}\n{"id":3,"x":1.50}\n',
        encoding="utf-8",
    )
    report = db.ingest(path, source="hotline", key_column="id")
    assert (report.stored, report.new_versions, report.duplicate) == (3, 2, 1)
    assert {e.raw_text for e in events(db)} >= {'{"id":1,"x":0.1000000000000000001}', '{"id":2,"x":"NaN"}'}


def test_bulk_written_values_read_back_as_per_row_ones(db: GovDB, tmp_path: Path) -> None:
    """Text bound as UTF-8 bytes is stored as text, and columns written once for a whole file
    (version 1, no flag, the time received) read back as if written per row."""
    from sqlalchemy import text

    path = tmp_path / "hall.csv"
    path.write_text("id,t,note\n1,2026-11-02 09:00,张伟\n2,2026-11-02 09:30,\n", encoding="utf-8")
    first = db.ingest(path, source="hall", key_column="id", occurred_at_column="t")
    path.write_text("id,t,note\n1,2026-11-02 09:00,张伟 改\n3,not a time,\n", encoding="utf-8")
    again = db.ingest(path, source="hall", key_column="id", occurred_at_column="t")
    assert (first.stored, again.stored, again.new_versions) == (2, 1, 1)
    stored = {(e.source_key, e.version): e for e in events(db)}
    assert {k: (e.quality_flags, e.raw_text) for k, e in stored.items()} == {
        ("1", 1): ([], "1,2026-11-02 09:00,张伟"),
        ("2", 1): ([], "2,2026-11-02 09:30,"),
        ("1", 2): ([], "1,2026-11-02 09:00,张伟 改"),
        ("3", 1): (["occurred_at_unreadable"], "3,not a time,"),
    }
    assert stored[("1", 2)].raw == {"id": "1", "t": "2026-11-02 09:00", "note": "张伟 改"}
    with Session(db.events) as es:
        batches = {b.batch_id: b.received_at for b in es.exec(select(IngestBatch))}
    with db.events.connect() as conn:
        if db.events.dialect.name == "sqlite":
            kinds = conn.execute(
                text(
                    "SELECT DISTINCT typeof(source_key), typeof(content_sha256), typeof(raw_text), "
                    "typeof(raw), typeof(quality_flags), typeof(version), typeof(received_at) FROM event"
                )
            ).all()
            assert kinds == [("text", "text", "text", "text", "text", "integer", "text")]
    assert len(batches) == 2 and all(e.received_at == batches[e.batch_id] for e in stored.values())
    assert stored[("1", 1)].occurred_at is not None and stored[("1", 1)].occurred_at.hour == 1  # 09:00 +08:00


def test_a_quoted_file_after_a_blank_first_line_is_read_as_quoted(tmp_path: Path) -> None:
    """A blank line before the header does not hide the file's quotes from the reader."""
    from govdb.readers import read_records

    path = tmp_path / "hall.csv"
    path.write_bytes('\r\n受理编号,姓名\r\n"SL1","张,伟"\r\n'.encode())
    records, _ = read_records(path)
    assert (records.blank, records.bad) == (1, [])
    assert records.payload_list() == [{"受理编号": "SL1", "姓名": "张,伟"}]


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=[pytest.mark.pg])])
def test_ingest_indexes_migrate_and_keep_the_data(backend: str, tmp_path: Path) -> None:
    """events_0003 drops the batch index and keeps only known division codes in theirs; nothing
    stored changes, lookups by a code still use the index, and a later ingest sees its duplicates."""
    import hashlib

    from sqlalchemy import inspect, text

    from govdb.ingest import canonical_json, ingest_file
    from govdb.store.engine import make_engine, migrate

    from .conftest import PG_URL, _pg_schemas

    schemas = None
    if backend == "postgresql":
        if not PG_URL:
            pytest.skip("GOVDB_TEST_PG_URL is not set")
        schemas = _pg_schemas()
        url = next(schemas)[1]
    else:
        url = f"sqlite:///{tmp_path / 'events.sqlite'}"
    engine = make_engine(url)
    try:
        migrate(engine, "events", "events_0002")
        kept = (
            "event_id, source_system, source_key, version, content_sha256, batch_id, source_line, "
            "raw_text, raw, quality_flags, status, received_at, division_code"
        )
        names = HEADER.strip().split(",")
        with engine.begin() as conn:
            for n, row in enumerate(ROWS):
                raw = canonical_json(dict(zip(names, row.strip().split(","), strict=True)))
                conn.execute(
                    text(
                        "INSERT INTO event (source_system, source_key, version, content_sha256, batch_id,"
                        " source_line, raw_text, raw, quality_flags, status, received_at, division_code)"
                        " VALUES ('hall', :key, 1, :sha, 'b', :line, :line_text, :raw, '[]', 'received',"
                        " '2026-11-01 00:00:00+00:00', :code)"
                    ),
                    {
                        "key": f"SL{n + 1}",
                        "sha": hashlib.sha256(raw.encode()).hexdigest(),
                        "line": n + 2,
                        "line_text": row.strip(),
                        "raw": raw,
                        "code": "440605011001" if n == 0 else None,
                    },
                )
            before = conn.execute(text(f"SELECT {kept} FROM event ORDER BY event_id")).all()
        migrate(engine, "events", "events_0003")
        indexes = {i["name"]: i for i in inspect(engine).get_indexes("event")}
        assert "ix_event_batch_id" not in indexes
        where = indexes["ix_event_division_code"]["dialect_options"][f"{engine.dialect.name}_where"]
        assert "division_code IS NOT NULL" in str(where)
        with engine.begin() as conn:  # a processed store: links refer to its events
            conn.execute(
                text(
                    "INSERT INTO link (event_id, entity_kind, score, decision, explanation, created_at)"
                    " SELECT event_id, 'person', 1.0, 'match', '{}', '2026-11-01 00:00:00+00:00' FROM event"
                )
            )
        migrate(engine, "events")  # later revisions rebuild the event table on SQLite
        with engine.connect() as conn:
            assert conn.execute(text(f"SELECT {kept} FROM event ORDER BY event_id")).all() == before
            linked = conn.execute(text("SELECT event_id FROM link ORDER BY event_id")).scalars().all()
            assert linked == [row[0] for row in before]
            if engine.dialect.name == "sqlite":
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
                assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
            found = conn.execute(text("SELECT source_key FROM event WHERE division_code = '440605011001'"))
            assert found.scalars().all() == ["SL1"]
            if engine.dialect.name == "sqlite":
                plan = conn.exec_driver_sql(
                    "EXPLAIN QUERY PLAN SELECT event_id FROM event WHERE division_code = '440605011001'"
                ).all()
                assert "ix_event_division_code" in str(plan)
        path = tmp_path / "hall.csv"
        path.write_text(HEADER + "".join(ROWS), encoding="utf-8")
        report = ingest_file(engine, path, source="hall", key_column="受理编号")
        assert (report.stored, report.duplicate) == (0, 2)
    finally:
        engine.dispose()
        if schemas is not None:
            next(schemas, None)


@pytest.mark.parametrize("header", ["受理编号,姓名,*", "受理编号,^a$,a", "受理编号,^.*$,x"])
def test_headers_that_read_as_patterns_are_stored_by_name(db: GovDB, tmp_path: Path, header: str) -> None:
    """`*` and `^a$` are column names here, never polars' all-columns or regular expressions."""
    path = tmp_path / "odd.csv"
    path.write_text(f"{header}\nA1,v1,v2\n", encoding="utf-8")
    report = db.ingest(path, source="odd", key_column="受理编号")
    assert (report.stored, report.quarantined) == (1, 0)
    with Session(db.events) as s:
        raw = s.exec(select(Event.raw)).one()
    assert raw == dict(zip(header.split(","), ["A1", "v1", "v2"], strict=True))


@pytest.mark.parametrize(
    "text",
    [
        # CRLF, a blank line, a line of blanks, too few fields
        "编号,姓名\r\nA1,张伟\r\n\r\nA2,李娜\r\n,\r\nA3\r\n",
        "\n\n编号,姓名\nA1,张伟\nA2,\u2028李\x0b娜\nA3,王芳",  # blanks before the header, no final newline
        "编号,姓名\rA1,张伟\rA2,李娜\r",  # CR only
        "编号\t姓名\nA1\t張偉\n",
    ],
)
def test_a_clean_file_reads_the_same_whichever_way_its_lines_are_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    """Clean text without quotes is split on one polars column; text too long for one polars
    string (4 GiB) is split into Python lines instead. Both give the same records and refusals."""
    import govdb.readers.delimited as delimited

    path = tmp_path / ("f.tsv" if "\t" in text else "f.csv")
    path.write_bytes(text.encode("gb18030"))
    read = []
    for bound in (delimited.LINE_COLUMN_MAX_CHARS, 0):
        monkeypatch.setattr(delimited, "LINE_COLUMN_MAX_CHARS", bound)
        records, _ = read_records(path)
        frame = records.frame
        read.append(
            (
                records.columns,
                None if frame is None else frame.rows(),
                records.lines,
                None if records.text_column is None else records.text_column.to_list(),
                [(u.line, u.text, u.reason) for u in records.bad],
                records.blank,
            )
        )
    assert read[0] == read[1]
    assert read[0][1]  # some records were read


def test_a_large_ingest_builds_the_unique_indexes_after_its_rows(
    db: GovDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first ingest of keys in no order into an empty table drops event's unique indexes,
    inserts and builds them again (on PostgreSQL too, the table taken exclusively): afterwards
    every index is there and still refuses a second (key, version)."""
    from sqlalchemy import insert, inspect
    from sqlalchemy.exc import IntegrityError

    import govdb.store.bulk as bulk

    dropped: list[str] = []
    drop = bulk.DropIndex
    spy = lambda index, **kw: dropped.append(index.name) or drop(index, **kw)  # noqa: E731
    monkeypatch.setattr(bulk, "DropIndex", spy)
    path = tmp_path / "hall.csv"
    path.write_bytes((HEADER + "".join(reversed(ROWS))).encode("gbk"))  # SL2, then SL1
    db.ingest(path, source="hall", key_column="受理编号")
    assert sorted(dropped) == ["uq_event_source_content", "uq_event_source_version"]
    indexes = {ix["name"]: ix["unique"] for ix in inspect(db.events).get_indexes("event")}
    assert {k: bool(v) for k, v in indexes.items()} == {
        "uq_event_source_version": True,
        "uq_event_source_content": True,
        "ix_event_status": False,
        "ix_event_division_code": False,
    }
    first = events(db)[0]
    copy = first.model_dump(exclude={"event_id"}) | {"content_sha256": "f" * 64}
    with pytest.raises(IntegrityError), db.events.begin() as conn:
        conn.execute(insert(Event.__table__), [copy])  # type: ignore[attr-defined]


def test_an_index_build_that_finds_a_clash_stores_nothing(
    db: GovDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Were the plan ever to give two rows one (key, version), the build after the insert refuses
    it, and the whole ingest rolls back."""
    import govdb.ingest as ingest
    from govdb.errors import StoreError

    plan = ingest._plan
    one_version = pl.lit(1, pl.Int64).alias("version")
    monkeypatch.setattr(ingest, "_plan", lambda keyed, known: plan(keyed, known).with_columns(one_version))
    path = tmp_path / "hall.csv"
    rows = [ROWS[1], ROWS[0], ROWS[1].replace("李娜", "李那")]  # SL2, SL1, SL2 again: no order
    path.write_bytes((HEADER + "".join(rows)).encode())
    with pytest.raises(StoreError, match=r"(?i)unique constraint failed|could not create unique index"):
        db.ingest(path, source="hall", key_column="受理编号")
    assert events(db) == []
    with Session(db.events) as es:
        assert list(es.exec(select(IngestBatch))) == []
