"""Reading input files record by record, losing nothing: the bottom layer under ingest, standardize and link.

Every record a file holds ends in exactly one place: read (its line, its text exactly as received
and its payload, header name -> value), unreadable (its line, text, exact bytes and the reason),
or counted as blank (an empty line, which holds nothing). Rules that keep it lossless:

- the encoding is decided per file from evidence (UTF-8 with or without BOM, else GB18030, the
  superset of GBK), and only the lines that do not decode in it are unreadable;
- records break at LF (or CR where a file has no LF) only: U+2028, U+0085, VT, FF, FS/GS/RS and
  the like stay inside their cell;
- a quote that opens a cell and never closes swallows nothing: when a record spanning several
  lines does not parse strictly into the header's number of fields, its first line is unreadable
  and reading restarts on the next line;
- duplicate header names are kept, the second becoming `name_2` (CSV, TSV, XLSX and JSON alike);
- values a store cannot hold (NUL, lone surrogates) make the record unreadable, with its bytes;
  non-finite floats become the strings "NaN", "Infinity", "-Infinity".
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from govdb.errors import InputFileError

FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "tsv",
    ".xlsx": "xlsx",
    ".parquet": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}

csv.field_size_limit(2**31 - 1)  # a cell is as long as the file says; 128 KiB is only csv's default
_BAD_BYTES = re.compile("[\udc80-\udcff]")  # what surrogateescape makes of undecodable bytes
_NON_ASCII_LINE = re.compile(rb"[^\n]*[\x80-\xff][^\n]*")


@dataclass(frozen=True)
class Unreadable:
    """A record that could not be read: where, what was received (text and exact bytes), why."""

    line: int
    text: str
    data: bytes
    reason: str


@dataclass
class FileRecords:
    """What a file held: readable records in file order, unreadable ones, blank lines.

    Delimited files keep their readable records as `frame` (one text column per header name, so
    ingest and standardize work on whole columns); other formats as `payloads`, one dict each.
    """

    format: str
    encoding: str | None
    columns: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    texts: list[str | None] = field(default_factory=list)
    payloads: list[dict[str, Any]] = field(default_factory=list)
    exact: list[str] = field(default_factory=list)  # JSON Lines: each record's JSON with numbers as written
    frame: pl.DataFrame | None = None
    bad: list[Unreadable] = field(default_factory=list)
    blank: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def read(self) -> int:
        """Records the file held (blank lines are not records)."""
        return len(self.lines) + len(self.bad)

    def payload(self, i: int) -> dict[str, Any]:
        return self.frame.row(i, named=True) if self.frame is not None else self.payloads[i]

    def payload_list(self) -> list[dict[str, Any]]:
        return self.frame.to_dicts() if self.frame is not None else self.payloads

    @property
    def good(self) -> list[tuple[int, dict[str, Any]]]:
        return list(zip(self.lines, self.payload_list(), strict=True))

    def as_received(self, i: int) -> tuple[str, bytes]:
        """Readable record i as text and exact bytes (its JSON where the format has no text)."""
        text = self.texts[i]
        if text is None:
            text = json.dumps(self.payload(i), ensure_ascii=False, sort_keys=True)
            return text, text.encode()
        return text, _raw_bytes(text, self.encoding or "utf-8")

    def text_frame(self) -> pl.DataFrame:
        """Readable records as text columns (values as written; nested values as JSON)."""
        if self.frame is not None:
            return self.frame
        columns = self.columns or list(dict.fromkeys(k for p in self.payloads for k in p))
        return pl.DataFrame(
            {c: [_as_text(p.get(c)) for p in self.payloads] for c in columns},
            schema=dict.fromkeys(columns, pl.String),
        )


def detect_encoding(data: bytes) -> str:
    """utf-8-sig (BOM), utf-8, or gb18030, decided by which reads more of the file's non-ASCII lines.

    A UTF-8 file with a few GBK rows stays UTF-8 (those rows become unreadable); GBK text is
    almost never valid UTF-8, so a GBK file has next to no lines that read as UTF-8.
    """
    return _detect(data)[0]


def _detect(data: bytes) -> tuple[str, frozenset[int]]:
    """The encoding, and for a GB18030 file the LF-separated lines that are UTF-8 text instead.

    GB18030 decodes almost any bytes, so a UTF-8 row in a GBK file would be stored garbled
    (赵六 as 璧靛叚) without a word; such rows (valid UTF-8 holding CJK characters) are named here.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig", frozenset()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        return "utf-8", frozenset()
    # Weigh lines by their non-ASCII content, about two per CJK character either way: a valid
    # UTF-8 line by its extra bytes, an invalid one by its undecodable bytes. GBK text can form a
    # short valid UTF-8 sequence by chance (\xce\xb2 reads as β), but never whole lines of it.
    lines = pl.Series(data.decode("utf-8", errors="replace").split("\n"), dtype=pl.String)
    bad = lines.str.count_matches("\ufffd", literal=True)
    valid = int((lines.str.len_bytes() - lines.str.len_chars()).filter(bad == 0).sum())
    if valid >= int(bad.sum()):
        return "utf-8", frozenset()
    # GB18030 only where it reads more of the file: a stray byte in ASCII text is no evidence for it.
    if data.decode("gb18030", errors="replace").count("\ufffd") >= int(bad.sum()):
        return "utf-8", frozenset()
    utf8_cjk = (bad == 0) & lines.str.contains("[\u0800-\uffff]")
    return "gb18030", frozenset(utf8_cjk.arg_true().to_list())


def _decode(data: bytes) -> tuple[str, str, frozenset[int]]:
    encoding, foreign = _detect(data)
    text = data.decode(encoding, errors="surrogateescape")
    return encoding, text.removeprefix("\ufeff") if encoding == "utf-8-sig" else text, foreign


_FOREIGN = "a line of UTF-8 text in a file read as GB18030 (it would be stored garbled)"


def plain_text(text: str) -> str:
    """Text any store or terminal can hold: undecodable bytes (a file name from another system, a
    lone surrogate) shown as \\xNN escapes, NUL as \\x00."""
    try:
        data = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that no undecodable byte made
        data = text.encode("utf-8", "surrogatepass")
    return data.decode("utf-8", "backslashreplace").replace("\x00", "\\x00")


def _raw_bytes(text: str, encoding: str) -> bytes:
    """The exact bytes a decoded text came from (surrogateescape round-trips undecodable bytes)."""
    return text.encode("utf-8" if encoding == "utf-8-sig" else encoding, errors="surrogateescape")


def _split_lines(text: str) -> tuple[list[str], str]:
    """Physical lines without their LF (a CRLF line keeps its CR), broken at LF only; CR-only files at CR."""
    newline = "\n" if "\n" in text or "\r" not in text else "\r"
    lines = text.split(newline)
    if lines and lines[-1] == "":
        lines.pop()  # the terminator of the last line ends it; it starts no record
    return lines, newline


def unique_names(names: Iterable[str], warnings: list[str]) -> list[str]:
    """Header names with repeats kept: the second `a` becomes `a_2`, the third `a_3` (never clashing)."""
    names = list(names)
    taken = set(names)
    seen: dict[str, int] = {}
    out: list[str] = []
    for name in names:
        count = seen.get(name, 0) + 1
        seen[name] = count
        if count == 1:
            out.append(name)
            continue
        suffix = count
        while f"{name}_{suffix}" in taken:
            suffix += 1
        renamed = f"{name}_{suffix}"
        taken.add(renamed)
        out.append(renamed)
        warnings.append(f"the header repeats the column {name!r}; copy {count} is kept as {renamed!r}")
    return out


def _unstorable(text: str) -> str | None:
    """Why a text cannot be stored as it is (bad bytes, NUL), or None."""
    if _BAD_BYTES.search(text):
        return "bytes"
    if "\x00" in text:
        return "nul"
    return None


def _bad_reason(kind: str, encoding: str) -> str:
    if kind == "bytes":
        return f"bytes that are not valid {encoding} text"
    return "a NUL character (U+0000), which the event store cannot hold as text"


def _unreadable_text(line: int, text: str, encoding: str, reason: str) -> Unreadable:
    shown = text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")
    return Unreadable(line, shown, _raw_bytes(text, encoding), reason)


def _read_delimited(data: bytes, delimiter: str, fmt: str) -> FileRecords:
    encoding, text, foreign = _decode(data)
    lines, newline = _split_lines(text)
    if newline != "\n":
        foreign = frozenset()  # line numbers count LFs; a CR-only file is not told apart this way
    records = FileRecords(fmt, encoding)
    first = 0
    while first < len(lines) and not lines[first].strip():  # nothing but blanks before the header
        text = lines[first].removesuffix("\r")
        if text:
            records.bad.append(
                _unreadable_text(first + 1, text, encoding, "a line of only blanks before the header")
            )
        else:
            records.blank += 1
        first += 1
    if first >= len(lines):
        raise InputFileError("the file is empty: no header line was found")
    if '"' in text:
        _read_quoted(lines, newline, first, delimiter, encoding, records, foreign)
    else:
        _read_unquoted(lines, first, delimiter, encoding, records, foreign)
    records.bad.sort(key=lambda u: u.line)
    return records


def _header(cells: list[str], line: int, encoding: str, records: FileRecords) -> None:
    kind = _unstorable("".join(cells))
    if kind:
        raise InputFileError(
            f"line {line}: the header has {_bad_reason(kind, encoding)}; save the file as UTF-8"
        )
    records.columns = unique_names((c.strip() for c in cells), records.warnings)


def _read_unquoted(
    lines: list[str], first: int, delimiter: str, encoding: str, records: FileRecords, foreign: frozenset[int]
) -> None:
    """A file without a single quote: each line is one record, split on whole columns at once."""
    _header(lines[first].removesuffix("\r").split(delimiter), first + 1, encoding, records)
    body = lines[first + 1 :]
    offset = first + 2  # line number of body[0]
    unstorable: list[int] = []  # rows a text column cannot hold (bad bytes, NUL): read here, one by one
    if foreign or _unstorable("".join(body)):
        for i, line in enumerate(body):
            kind = _unstorable(line)
            if kind or first + 1 + i in foreign:
                reason = _bad_reason(kind, encoding) if kind else _FOREIGN
                records.bad.append(_unreadable_text(offset + i, line.removesuffix("\r"), encoding, reason))
                unstorable.append(i)
                body[i] = ""
    width = len(records.columns)
    frame = (
        pl.DataFrame({"text": pl.Series(body, dtype=pl.String)})
        .with_row_index("line", offset)
        .filter(~pl.col("line").is_in([offset + i for i in unstorable]))
        .with_columns(pl.col("text").str.strip_suffix("\r"))
        .with_columns(pl.col("text").str.split(delimiter).alias("cells"))
    )
    n = pl.col("cells").list.len()
    reason = (
        pl.when(pl.col("text").str.strip_chars() == "")
        .then(pl.lit("the row holds no values (only blanks)"))
        .when(pl.col("text").str.contains("\r", literal=True))
        .then(pl.lit("a carriage return (CR) inside an unquoted cell"))
        .when(n != width)
        .then(pl.format(f"expected {width} fields as in the header, found {{}}", n))
        .when(~pl.col("cells").list.eval(pl.element().str.strip_chars() != "").list.any())
        .then(pl.lit("the row holds no values (only blanks)"))
    )
    lines_left = frame.height
    frame = frame.filter(pl.col("text") != "").with_columns(reason.alias("reason"))
    records.blank += lines_left - frame.height
    for line, text, why in (
        frame.filter(pl.col("reason").is_not_null()).select("line", "text", "reason").iter_rows()
    ):
        records.bad.append(_unreadable_text(line, text, encoding, why))
    good = frame.filter(pl.col("reason").is_null())
    records.lines = good.get_column("line").to_list()
    records.texts = good.get_column("text").to_list()
    cells = good.get_column("cells")
    records.frame = pl.DataFrame(
        [cells.list.get(i).alias(name) for i, name in enumerate(records.columns)],
        schema=dict.fromkeys(records.columns, pl.String),
    )


def _read_quoted(
    lines: list[str],
    newline: str,
    first: int,
    delimiter: str,
    encoding: str,
    records: FileRecords,
    foreign: frozenset[int],
) -> None:
    """A file with quotes: Python's csv reader, restarting after a quote that never closes."""
    ended = [line + newline for line in lines]
    header = _quoted_header(ended, first, delimiter)
    _header(header, first + 1, encoding, records)
    cells: list[list[str]] = []
    suspicious = _unstorable("".join(lines)) is not None
    index = first + 1
    while index < len(ended):
        index = _read_records(
            ended, index, delimiter, len(header), encoding, suspicious, records, cells, foreign
        )
    records.frame = pl.DataFrame(cells, schema=dict.fromkeys(records.columns, pl.String), orient="row")


def _quoted_header(lines: list[str], index: int, delimiter: str) -> list[str]:
    reader = csv.reader(iter(lines[index:]), delimiter=delimiter, strict=True)
    line = index + 1
    try:
        header = next(reader)
    except csv.Error as exc:
        raise InputFileError(
            f"line {line}: the header cannot be read ({exc}); an opening quote in it is probably "
            "never closed: fix the header line"
        ) from exc
    if reader.line_num > 1:
        raise InputFileError(
            f"line {line}: the header runs over {reader.line_num} lines, so a quote in it is never "
            "closed: fix the header line"
        )
    return header


def _strip_terminator(line: str) -> str:
    if line.endswith("\r\n"):
        return line[:-2]
    if line.endswith(("\n", "\r")):
        return line[:-1]
    return line


def _read_records(
    lines: list[str],
    index: int,
    delimiter: str,
    width: int,
    encoding: str,
    suspicious: bool,
    records: FileRecords,
    cells_out: list[list[str]],
    foreign: frozenset[int],
) -> int:
    """Read records from lines[index:] until done or a record must be re-read; the next index."""
    reader = csv.reader(iter(lines[index:]), delimiter=delimiter)
    consumed = 0

    def unreadable(start: int, end: int, reason: str) -> None:
        text = _strip_terminator("".join(lines[start:end]))
        records.bad.append(_unreadable_text(start + 1, text, encoding, reason))

    while True:
        start = index + consumed
        try:
            cells = next(reader)
        except StopIteration:
            return len(lines)
        except csv.Error as exc:  # the line is read alone and reading restarts after it
            unreadable(start, start + 1, f"unreadable {delimiter!r}-separated text: {exc}")
            return start + 1
        end = index + reader.line_num
        consumed = reader.line_num
        if (end - start > 1 or end == len(lines)) and not _one_strict_record(lines, start, end, delimiter):
            unreadable(
                start,
                start + 1,
                "a quote opens a cell and is not closed on this line; the line was read alone",
            )
            return start + 1
        if not cells:
            records.blank += 1
            continue
        text = _strip_terminator("".join(lines[start:end]) if end - start > 1 else lines[start])
        reason = None
        kind = _unstorable(text) if suspicious else None
        if not text.strip():
            reason = "the row holds no values (only blanks)"
        elif foreign and not foreign.isdisjoint(range(start, end)):
            reason = _FOREIGN
        elif kind:
            reason = _bad_reason(kind, encoding)
        elif len(cells) != width:
            reason = f"expected {width} fields as in the header, found {len(cells)}"
        elif not any(cell.strip() for cell in cells):
            reason = "the row holds no values (only blanks)"
        if reason:
            unreadable(start, end, reason)
            continue
        records.lines.append(start + 1)
        records.texts.append(text)
        cells_out.append(cells)


def _one_strict_record(lines: list[str], start: int, end: int, delimiter: str) -> bool:
    """Whether lines[start:end] are exactly one well-formed record (every quote that opens, closes).

    Checked for records over several lines and for the last record of a file, where the lenient
    reader would otherwise close a never-closed quote at the end of the data.
    """
    if end - start == 1 and '"' not in lines[start]:
        return True
    try:
        parsed = list(csv.reader(iter(lines[start:end]), delimiter=delimiter, strict=True))
    except csv.Error:
        return False
    return len(parsed) == 1


def _pairs_keeping_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's members; a repeated member name is kept as `name_2` like a repeated column."""
    out = dict(pairs)
    if len(out) == len(pairs):
        return out
    names = unique_names((name for name, _ in pairs), [])
    return dict(zip(names, (value for _, value in pairs), strict=True))


def _read_jsonl(data: bytes) -> FileRecords:
    encoding, text, foreign = _decode(data)
    records = FileRecords("jsonl", encoding)
    lines, newline = _split_lines(text)
    if newline != "\n":
        foreign = frozenset()
    for number, raw in enumerate(lines, start=1):
        line = raw.removesuffix("\r")
        if line == "":
            records.blank += 1
            continue
        reason = _FOREIGN if number - 1 in foreign else _jsonl_problem(line, encoding)
        value: Any = None
        if reason is None:
            try:
                value = json.loads(
                    line,
                    object_pairs_hook=_pairs_keeping_repeats,
                    parse_float=decimal.Decimal,
                    parse_constant=_JsonConstant,
                )
            except json.JSONDecodeError as exc:
                reason = f"not valid JSON: {exc.msg} at column {exc.colno}"
            except RecursionError:
                reason = "not readable JSON: nested too deeply"
            except ValueError as exc:  # e.g. an integer longer than Python reads (4300 digits)
                reason = f"not readable JSON: {exc}"
        if reason is None and not isinstance(value, dict):
            reason = f"a JSON Lines row must be an object, got {type(value).__name__}"
        if reason is None:
            exact = json.dumps(
                value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=_tagged
            )
            value = jsonable(_as_floats(value))
            reason = _payload_problem(value)
        if reason is not None:
            records.bad.append(_unreadable_text(number, line, encoding, reason))
            continue
        records.lines.append(number)
        records.texts.append(line)
        records.payloads.append(value)
        records.exact.append(exact)
    return records


@dataclass(frozen=True)
class _JsonConstant:
    """NaN, Infinity or -Infinity as written in JSON (not the strings "NaN"...)."""

    name: str


def _tagged(value: Any) -> Any:
    """Numbers exactly as written, for telling records apart: 0.1000000000000000001 is not 0.1."""
    if isinstance(value, decimal.Decimal):
        return {"$number": str(value)}
    if isinstance(value, _JsonConstant):
        return {"$number": value.name}
    raise TypeError(f"{type(value).__name__} is not JSON")


def _as_floats(value: Any) -> Any:
    """The payload as JSON numbers: exact literals become floats (NaN and Infinity included)."""
    if isinstance(value, _JsonConstant):
        return float(value.name)
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dict):
        return {k: _as_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_floats(v) for v in value]
    return value


def _jsonl_problem(line: str, encoding: str) -> str | None:
    if not line.strip():
        return "the row holds no values (only blanks)"
    kind = _unstorable(line)
    return _bad_reason(kind, encoding) if kind else None


def _payload_problem(payload: dict[str, Any]) -> str | None:
    """Why a parsed payload cannot be stored (escaped NUL or lone surrogate inside), or None."""
    text = json.dumps(payload, ensure_ascii=False)
    if "\\u0000" in text:
        return "a NUL character (U+0000), which the event store cannot hold as text"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "a lone surrogate (an escaped \\ud800-\\udfff without its pair), which is not text"
    return None


def jsonable(value: Any) -> Any:
    """A value as plain JSON data: dates as ISO text, decimals and durations as text, NaN as "NaN"."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dt.date | dt.datetime | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return _iso_duration(value)
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def _iso_duration(value: dt.timedelta) -> str:
    sign = "-" if value < dt.timedelta(0) else ""
    value = abs(value)
    seconds = value.seconds + value.microseconds / 1_000_000
    return f"{sign}P{value.days}DT{f'{seconds:.6f}'.rstrip('0').rstrip('.')}S"


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else str(value)


def _frame_records(
    frame: pl.DataFrame, fmt: str, first_line: int, columns: list[str] | None = None
) -> FileRecords:
    """Records of a polars frame (typed values made plain JSON); rows with no value at all are blank."""
    records = FileRecords(fmt, None)
    records.columns = columns or list(frame.columns)
    for offset, row in enumerate(frame.iter_rows()):
        if all(v is None for v in row):
            records.blank += 1
            continue
        payload = {name: jsonable(v) for name, v in zip(records.columns, row, strict=True)}
        problem = _payload_problem(payload)
        if problem is None and all(v is None or (isinstance(v, str) and not v.strip()) for v in row):
            problem = "the row holds no values (only blanks)"
        if problem:
            text = json.dumps(payload, ensure_ascii=False).encode("utf-8", "replace").decode("utf-8")
            records.bad.append(Unreadable(first_line + offset, text, text.encode(), problem))
            continue
        records.lines.append(first_line + offset)
        records.texts.append(None)
        records.payloads.append(payload)
    return records


def records_of_frame(frame: pl.DataFrame) -> FileRecords:
    """Records of an in-memory polars frame (a service-hall backend's batch), lines from 1."""
    return _frame_records(frame, "frame", first_line=1)


def _read_xlsx(data: bytes) -> FileRecords:
    sheets = pl.read_excel(
        io.BytesIO(data),
        sheet_id=0,
        has_header=False,
        infer_schema_length=0,
        drop_empty_rows=False,
        drop_empty_cols=False,
        raise_if_empty=False,
    )
    filled = [name for name, frame in sheets.items() if not frame.is_empty()]
    if len(filled) > 1:
        raise InputFileError(
            f"the workbook has {len(filled)} sheets with data ({', '.join(filled)}); govdb reads one "
            "sheet per file, so save each sheet as its own file"
        )
    sheet = sheets[filled[0]] if filled else next(iter(sheets.values()), pl.DataFrame())
    if sheet.height == 0:
        raise InputFileError("the sheet is empty: no header row was found")
    warnings: list[str] = []
    header = ["" if v is None else str(v).strip() for v in sheet.row(0)]
    columns = unique_names(header, warnings)
    records = _frame_records(sheet.slice(1), "xlsx", first_line=2, columns=columns)
    records.warnings = warnings
    return records


def _read_parquet(data: bytes) -> FileRecords:
    return _frame_records(pl.read_parquet(io.BytesIO(data)), "parquet", first_line=1)


def read_records(path: Path) -> tuple[FileRecords, bytes]:
    """Every record of a CSV/TSV, XLSX, Parquet or JSON Lines file, and the file's bytes."""
    if path.is_dir():
        raise InputFileError(f"{str(path)!r} is a folder; name one file in it")
    if not path.is_file():
        raise InputFileError(f"input file {str(path)!r} does not exist")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputFileError(
            f"cannot read {str(path)!r}: unknown extension {path.suffix!r}; use one of {sorted(FORMATS)}"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputFileError(f"cannot read {str(path)!r}: {exc.strerror}") from exc
    try:
        if fmt in ("csv", "tsv"):
            return _read_delimited(data, "," if fmt == "csv" else "\t", fmt), data
        if fmt == "jsonl":
            return _read_jsonl(data), data
        if fmt == "xlsx":
            return _read_xlsx(data), data
        return _read_parquet(data), data
    except InputFileError as exc:
        raise InputFileError(f"{path}: {exc}") from exc
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # the format library could not open the file (a Rust panic included)
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputFileError(f"cannot read {str(path)!r} as {fmt}: {detail}") from exc
