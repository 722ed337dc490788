"""Fuzzing the readers under ingest (issue 9): hypothesis writes CSV/TSV/JSONL bytes full of quotes,
delimiters, line breaks of every kind, mixed encodings and random bytes, and mutates valid XLSX and
Parquet files. Whatever comes in, ingest returns a report whose counts add up, or raises a GovdbError
and stores nothing; a second ingest of the same bytes stores nothing.

SQLite only, one store for the module. GOVDB_FUZZ_EXAMPLES scales the number of examples (default 100
per test).
"""

from __future__ import annotations

import io
import json
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from govdb import GovDB
from govdb.rulebook import Rulebook

sys.path.insert(0, str(Path(__file__).parent))
import ingest_corpus as corpus

EXAMPLES = int(os.environ.get("GOVDB_FUZZ_EXAMPLES", "100"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    print_blob=True,
)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, rules: Rulebook) -> Iterator[GovDB]:
    gov = GovDB.open(tmp_path_factory.mktemp("fuzz") / "home", rules=rules)
    try:
        yield gov
    finally:
        gov.close()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-files")


def ingest_and_check(
    store: GovDB, folder: Path, data: bytes, ext: str, key_column: str | None = None
) -> None:
    """Ingest twice into a fresh source; fail on a traceback or a broken promise."""
    source = f"fuzz-{uuid.uuid4().hex[:12]}"
    path = folder / f"{uuid.uuid4().hex[:8]}{ext}"
    path.write_bytes(data)
    ing = corpus.Ingest(path, ext.lstrip("."), key_column)
    before = corpus.table_counts(store.events, source)
    first = corpus.ingest_once(store, source, ing)
    assert first.crashed is None, f"traceback: {first.crashed}\nfile bytes: {data!r}"
    after = corpus.table_counts(store.events, source)
    if first.report is None:
        event("refused")
        assert after == before, f"refused ({first.refused}) but stored {after}"
        return
    report = first.report
    event(
        "read: "
        + ", ".join(k for k in ("stored", "new_versions", "duplicate", "quarantined") if getattr(report, k))
    )
    assert corpus.conservation_problems(report) == [], (corpus.counts_of(report), data)
    assert after == (report.stored + report.new_versions, report.quarantined), (
        after,
        corpus.counts_of(report),
    )
    second = corpus.ingest_once(store, source, ing)
    assert second.crashed is None, f"traceback on the second ingest: {second.crashed}"
    assert second.report is not None, f"read once, refused the second time: {second.refused}"
    again = second.report
    assert corpus.conservation_problems(again) == []
    assert (again.stored, again.new_versions) == (0, 0), corpus.counts_of(again)
    assert (again.read, again.quarantined) == (report.read, report.quarantined)
    assert corpus.table_counts(store.events, source) == after


# --- text: pieces that confuse readers ------------------------------------------------------------

PIECES = [
    "a",
    "Z",
    "1",
    "1.0",
    " ",
    "  ",
    "张",
    "伟",
    "姓名",
    "😀",
    "𠀀",
    "ｆ",
    "\u3000",
    ",",
    ",",
    "\t",
    '"',
    '"',
    '""',
    "'",
    "\\",
    ";",
    "|",
    "\n",
    "\r\n",
    "\r",
    *corpus.UNICODE_BREAKS,
    "\x00",
    "\ufeff",
    "\ufffd",
    "\ud800",
    "\udcff",
    "{",
    "}",
    "[",
    "]",
    ":",
    "NaN",
    "null",
    "\\u0000",
    "\\ud800",
]
ENCODINGS = ["utf-8", "utf-8", "gbk", "utf-16-le", "latin-1"]


def encode(text: str, encoding: str) -> bytes:
    """Text in an encoding; what it cannot hold goes out as UTF-8 with surrogates passed through."""
    try:
        return text.encode(encoding)
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


cells = st.lists(st.sampled_from(PIECES), max_size=6).map("".join)
# a small key space, spelled several ways, so that keys come back: duplicates and new versions
keys = st.sampled_from(["1", "2", "3", " 1 ", "1 ", "K1", "K2", "张", ""])
plain_header = st.lists(st.sampled_from(["姓名", "备注", "电话", "地址"]), max_size=3, unique=True).map(
    lambda rest: ["编号", *rest]
)


@st.composite
def delimited(draw: st.DrawFn) -> tuple[bytes, str, str | None]:
    ext = draw(st.sampled_from([".csv", ".tsv"]))
    delimiter = "," if ext == ".csv" else "\t"
    fuzzed_header = st.lists(
        st.one_of(st.sampled_from(["编号", "姓名", "a", "a", "b", ""]), cells), min_size=1, max_size=5
    )
    plain = draw(st.integers(0, 2)) > 0
    header = draw(plain_header if plain else fuzzed_header)
    out = bytearray()
    if draw(st.booleans()):
        out += b"\xef\xbb\xbf"
    base = draw(st.sampled_from(ENCODINGS))
    if plain:  # a header line that reads, so the rows get the attention
        out += encode(delimiter.join(header) + draw(st.sampled_from(["\n", "\r\n"])), base)
    row = st.one_of(
        st.lists(cells, max_size=7),  # anything
        st.tuples(
            keys,
            st.lists(
                st.sampled_from(["张伟", "李娜", "a", "b"]) | cells,
                min_size=len(header) - 1,
                max_size=len(header) - 1,
            ),
        ).map(lambda t: [t[0], *t[1]]),  # fits the header
    )
    rows = draw(st.lists(row, max_size=12))
    rows += [draw(st.sampled_from(rows)) for _ in range(draw(st.integers(0, 3)))] if rows else []
    for cells_ in rows if plain else [header, *rows]:
        quoted = [f'"{c}"' if draw(st.integers(0, 3)) == 0 else c for c in cells_]
        line = delimiter.join(quoted) + draw(st.sampled_from(["\n", "\n", "\n", "\r\n", "\r", ""]))
        out += encode(line, draw(st.sampled_from([base, base, base, *ENCODINGS])))
        if draw(st.integers(0, 9)) == 0:
            out += draw(st.binary(max_size=6))
    key = draw(st.one_of(st.none(), st.just("编号"), st.sampled_from(header)))
    return bytes(out), ext, key


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    cells,
    st.text(max_size=8),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(cells, inner, max_size=3)),
    max_leaves=8,
)


@st.composite
def json_lines(draw: st.DrawFn) -> tuple[bytes, str, str | None]:
    out = bytearray()
    base = draw(st.sampled_from(ENCODINGS))
    for _ in range(draw(st.integers(0, 10))):
        kind = draw(st.integers(0, 9))
        if kind < 6:
            value: Any = draw(st.dictionaries(cells, json_values, max_size=4))
            if draw(st.integers(0, 3)):
                key_value = draw(st.one_of(keys, st.sampled_from([1, 2, 1.0, 2.5, -1]), json_values))
                value = {"id": key_value, **value}
            line = json.dumps(value, ensure_ascii=draw(st.booleans()))
        elif kind < 8:
            line = json.dumps(draw(json_values), ensure_ascii=draw(st.booleans()))
        else:
            line = draw(cells)
        ending = draw(st.sampled_from(["\n", "\n", "\r\n", "\r", ""]))
        out += encode(line + ending, draw(st.sampled_from([base, base, *ENCODINGS])))
        if draw(st.integers(0, 4)) == 0:  # the same line again
            out += encode(line + "\n", base)
        if draw(st.integers(0, 9)) == 0:
            out += draw(st.binary(max_size=6))
    key = draw(st.sampled_from([None, "id", "id", "missing"]))
    return bytes(out), draw(st.sampled_from([".jsonl", ".ndjson"])), key


@FUZZ
@given(case=delimited())
def test_fuzzed_csv_and_tsv(store: GovDB, folder: Path, case: tuple[bytes, str, str | None]) -> None:
    data, ext, key = case
    ingest_and_check(store, folder, data, ext, key)


@FUZZ
@given(case=json_lines())
def test_fuzzed_json_lines(store: GovDB, folder: Path, case: tuple[bytes, str, str | None]) -> None:
    data, ext, key = case
    ingest_and_check(store, folder, data, ext, key)


@st.composite
def _cells_as_quoted(draw: st.DrawFn, delimiter: str) -> str:
    """A line of cells, mostly quoted whole (the form some hall systems export), with the odd
    quote, delimiter, blank, CR or FS inside, so both readers of quoted files are exercised."""
    text = st.text(alphabet='ab中 ,"\t\r\x1c\u3000\u2028', max_size=4)
    cells = draw(st.lists(st.one_of(text, text.map(lambda t: f'"{t}"')), min_size=1, max_size=4))
    return delimiter.join(cells)


def _read_both_ways(raw: bytes, delimiter: str) -> list[Any]:
    """What the reader makes of a file, and what it makes of it when only csv may read quotes."""
    from govdb.errors import InputFileError
    from govdb.readers import delimited

    def outcome() -> Any:
        try:
            records = delimited._read_delimited(raw, delimiter, "csv")
        except InputFileError as exc:
            return str(exc)
        assert records.frame is not None
        texts = records.text_series().to_list()
        return records.columns, records.lines, records.blank, records.bad, texts, records.frame.rows()

    original = delimited._simply_quoted
    by_columns = outcome()
    try:
        delimited._simply_quoted = lambda body, delimiter: False
        by_csv = outcome()
    finally:
        delimited._simply_quoted = original
    return [by_columns, by_csv]


@FUZZ
@given(data=st.data(), delimiter=st.sampled_from([",", "\t"]))
def test_simply_quoted_files_read_as_the_csv_reader_reads_them(data: st.DataObject, delimiter: str) -> None:
    """Whole columns read quoted files whose quotes wrap whole cells; what they make of a file
    (records, texts, lines, reasons, blanks, errors) is exactly what Python's csv reader makes of it."""
    from govdb.readers.delimited import _simply_quoted

    lines = data.draw(st.lists(_cells_as_quoted(delimiter), min_size=1, max_size=6))
    ending = data.draw(st.sampled_from(["\n", "\r\n"]))
    header = data.draw(st.sampled_from([f'"k"{delimiter}名', f'k{delimiter}"名"', "k"]))
    raw = (ending.join([header, *lines]) + data.draw(st.sampled_from(["", ending]))).encode()
    by_columns, by_csv = _read_both_ways(raw, delimiter)
    assert by_columns == by_csv
    simple = _simply_quoted(pl.Series(raw.decode().split("\n")), delimiter)
    event("read on columns" if simple else "read by csv")


@FUZZ
@given(
    data=st.binary(max_size=3000),
    ext=st.sampled_from([".csv", ".tsv", ".txt", ".jsonl", ".xlsx", ".parquet"]),
)
def test_random_bytes(store: GovDB, folder: Path, data: bytes, ext: str) -> None:
    ingest_and_check(store, folder, data, ext)


def _valid_files() -> dict[str, bytes]:
    frame = pl.DataFrame(
        {"编号": ["K1", "K2", "K3"], "姓名": ["张伟", "李娜", "王\u2028芳"], "n": [1.5, None, float("nan")]}
    )
    xlsx = io.BytesIO()
    frame.write_excel(xlsx)
    parquet = io.BytesIO()
    frame.write_parquet(parquet)
    csv = '编号,姓名,备注\nK1,张伟,"多,行\n文本"\nK2,李娜,好\n'.encode()
    jsonl = '{"编号": "K1", "姓名": "张伟"}\n{"编号": "K2", "姓名": "李\u2028娜"}\n'.encode()
    return {".xlsx": xlsx.getvalue(), ".parquet": parquet.getvalue(), ".csv": csv, ".jsonl": jsonl}


VALID = _valid_files()


@FUZZ
@given(
    ext=st.sampled_from(sorted(VALID)),
    edits=st.lists(
        st.tuples(st.floats(0, 1), st.integers(0, 2), st.binary(min_size=1, max_size=4)),
        min_size=1,
        max_size=8,
    ),
    key=st.sampled_from([None, "编号"]),
)
def test_mutated_valid_files(
    store: GovDB, folder: Path, ext: str, edits: list[tuple[float, int, bytes]], key: str | None
) -> None:
    data = bytearray(VALID[ext])
    for where, op, piece in edits:
        at = min(int(where * len(data)), len(data))
        if op == 0:
            data[at:at] = piece
        elif op == 1:
            data[at : at + len(piece)] = piece
        else:
            del data[at : at + len(piece)]
    ingest_and_check(store, folder, bytes(data), ext, key)
