"""CSV and TSV: whole columns for files without quotes, Python's csv reader (restarting after a
quote that never closes) for the rest."""

from __future__ import annotations

import csv

import polars as pl

from govdb.errors import InputFileError
from govdb.readers.records import (
    _FOREIGN,
    FileRecords,
    _bad_reason,
    _decode,
    _split_lines,
    _unreadable_text,
    _unstorable,
    unique_names,
)

csv.field_size_limit(2**31 - 1)  # a cell is as long as the file says; 128 KiB is only csv's default


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
