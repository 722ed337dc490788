"""CSV and TSV: whole columns for files without quotes or whose quotes only wrap whole cells,
Python's csv reader (restarting after a quote that never closes) for the rest."""

from __future__ import annotations

import csv
import re

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

# Text split as one polars value must fit one polars string (under 4 GiB of UTF-8: at most four
# bytes a character); a longer file is split into Python lines.
LINE_COLUMN_MAX_CHARS = (2**32 - 1) // 4

csv.field_size_limit(2**31 - 1)  # a cell is as long as the file says; 128 KiB is only csv's default


def _read_delimited(data: bytes, delimiter: str, fmt: str) -> FileRecords:
    decoded = _decode(data)
    encoding, foreign, suspicious = decoded.encoding, decoded.foreign, decoded.suspicious
    quoted = '"' in decoded.text
    split, newline = _split_lines(decoded.text)
    lines: list[str] | pl.Series = split
    if not (suspicious or foreign or len(decoded.text) > LINE_COLUMN_MAX_CHARS):
        # Clean text (what hall systems export) is read on one column of its lines: a fifth of
        # the time of reading such a file line by line.
        lines = pl.Series("text", split, dtype=pl.String)
    del decoded  # the file's text is held once from here on, as its lines
    if newline != "\n":
        foreign = frozenset()  # line numbers count LFs; a CR-only file is not told apart this way
    records = FileRecords(fmt, encoding)
    first = 0
    while first < len(lines) and not lines[first].strip():  # nothing but blanks before the header
        blanks = lines[first].removesuffix("\r")
        if blanks:
            records.bad.append(
                _unreadable_text(first + 1, blanks, encoding, "a line of only blanks before the header")
            )
        else:
            records.blank += 1
        first += 1
    if first >= len(lines):
        raise InputFileError("the file is empty: no header line was found")
    if quoted and isinstance(lines, pl.Series) and _simply_quoted(lines.slice(first), delimiter):
        header = _quoted_header([lines[first] + newline], 0, delimiter, first_line=first + 1)
        _header(header, first + 1, encoding, records)
        body = lines.slice(first + 1).rename("text")
        del lines, split
        _split_body(body, first, delimiter, encoding, records, [], quoted=True)
    elif quoted:  # the csv reader, on the lines as Python strings
        del lines
        _read_quoted(split, newline, first, delimiter, encoding, records, foreign, suspicious)
    else:
        del split  # held once: as the column, or as the list `lines` is
        _read_unquoted(lines, first, delimiter, encoding, records, foreign, suspicious)
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
    lines: list[str] | pl.Series,
    first: int,
    delimiter: str,
    encoding: str,
    records: FileRecords,
    foreign: frozenset[int],
    suspicious: bool,
) -> None:
    """A file without a single quote: each line is one record, split on whole columns at once.

    Lines are looked at one by one only where the file may hold undecodable bytes or NUL
    (`suspicious`), which a text column cannot hold. Empties `lines` past the header once they
    are a column, so a large file's lines are not held twice.
    """
    _header(lines[first].removesuffix("\r").split(delimiter), first + 1, encoding, records)
    unstorable: list[int] = []  # rows a text column cannot hold (bad bytes, NUL): read here, one by one
    if isinstance(lines, pl.Series):  # clean text: nothing to look for line by line
        body = lines.slice(first + 1).rename("text")
        del lines
        return _split_body(body, first, delimiter, encoding, records, [])
    if foreign or (suspicious and _unstorable("".join(lines[first + 1 :]))):
        for i in range(first + 1, len(lines)):
            kind = _unstorable(lines[i])
            if kind or i in foreign:
                reason = _bad_reason(kind, encoding) if kind else _FOREIGN
                records.bad.append(_unreadable_text(i + 1, lines[i].removesuffix("\r"), encoding, reason))
                unstorable.append(i + 1)
                lines[i] = ""
    body = pl.Series("text", lines[first + 1 :], dtype=pl.String)
    del lines[first + 1 :]
    _split_body(body, first, delimiter, encoding, records, unstorable)


def _in_pattern(delimiter: str) -> str:
    """The delimiter as a regular expression (polars' engine takes `\\t`, not an escaped tab)."""
    return "\\t" if delimiter == "\t" else re.escape(delimiter)


def _simply_quoted(body: pl.Series, delimiter: str) -> bool:
    """Whether every line is a record on its own whose quotes only wrap whole cells (`"a","",b`):
    no quote inside a cell, no delimiter or line break inside quotes, no FS/GS/RS/US (which
    Python's strip takes for blanks and polars' does not). Then the csv reader reads each line as
    its cells without the quotes, and whole columns can do it; any other file goes to csv."""
    d = _in_pattern(delimiter)
    cell = f'(?:"[^"{d}\\r\\x1c-\\x1f]*"|[^"{d}\\r\\x1c-\\x1f]*)'
    return bool(body.str.contains(f"^{cell}(?:{d}{cell})*\\r?$").all())


def _split_body(
    body: pl.Series,
    first: int,
    delimiter: str,
    encoding: str,
    records: FileRecords,
    unstorable: list[int],
    *,
    quoted: bool = False,
) -> None:
    """The lines after the header, split on whole columns into the records' frame; lines that are
    not a record (wrong field count, blanks, a CR) go to `records.bad` with their reason.

    `quoted`: the lines are `_simply_quoted`; each cell loses the quotes around it."""
    offset = first + 2  # line number of the first body line
    body_lines = body.len()
    width = len(records.columns)
    n = pl.col("text").str.count_matches(delimiter, literal=True) + 1  # cells in the line
    # Lines that may not be a record: a CR, another field count, nothing but delimiters and blanks.
    # Only those are told why (a reason for every line would build a column of texts to test).
    blank_or_cr = "^[\\s" + _in_pattern(delimiter) + "]*$|\\r"
    why = (
        pl.when(pl.col("text").str.strip_chars() == "")
        .then(pl.lit("the row holds no values (only blanks)"))
        .when(pl.col("text").str.contains("\r", literal=True))
        .then(pl.lit("a carriage return (CR) inside an unquoted cell"))
        .when(pl.col("n") != width)
        .then(pl.format(f"expected {width} fields as in the header, found {{}}", pl.col("n")))
        .otherwise(pl.lit("the row holds no values (only blanks)"))  # every cell blank
    )
    frame = (
        body.to_frame()
        .lazy()
        .with_row_index("line", offset)
        .filter(~pl.col("line").is_in(unstorable))
        .with_columns(pl.col("text").str.strip_suffix("\r"))
        .filter(pl.col("text") != "")
        .with_columns(n.alias("n"))
        .with_columns(
            (
                (pl.col("n") != width)
                | (
                    pl.col("text").str.replace_all('"', "", literal=True) if quoted else pl.col("text")
                ).str.contains(blank_or_cr)
            ).alias("odd")
        )
        .collect()
    )
    del body
    records.blank += body_lines - len(unstorable) - frame.height  # empty lines, filtered out above
    odd = frame.filter("odd").select("line", "text", why.alias("reason"))
    for line, text, why_not in odd.iter_rows():
        records.bad.append(_unreadable_text(line, text, encoding, why_not))
    good = frame.filter(~pl.col("odd")).drop("n", "odd") if odd.height else frame.drop("n", "odd")
    del frame
    records.lines = good.get_column("line").to_list()
    records.text_column = good.get_column("text")
    cells = records.text_column.str.splitn(delimiter, width).struct.unnest()
    if quoted:
        cells = cells.with_columns(pl.all().str.strip_prefix('"').str.strip_suffix('"'))
    records.frame = cells.rename(dict(zip(cells.columns, records.columns, strict=True)))


def _read_quoted(
    lines: list[str],
    newline: str,
    first: int,
    delimiter: str,
    encoding: str,
    records: FileRecords,
    foreign: frozenset[int],
    suspicious: bool,
) -> None:
    """A file with quotes: Python's csv reader, restarting after a quote that never closes.

    Empties `lines` once they are copied with their terminators, and keeps the records' texts as
    one column, so a large file is not held twice over.
    """
    suspicious = suspicious and _unstorable("".join(lines)) is not None
    ended = [line + newline for line in lines]
    lines.clear()
    header = _quoted_header(ended, first, delimiter)
    _header(header, first + 1, encoding, records)
    cells: list[list[str]] = []
    index = first + 1
    while index < len(ended):
        index = _read_records(
            ended, index, delimiter, len(header), encoding, suspicious, records, cells, foreign
        )
    del ended
    records.frame = pl.DataFrame(cells, schema=dict.fromkeys(records.columns, pl.String), orient="row")
    del cells
    records.text_column = pl.Series("text", records.texts, dtype=pl.String)
    records.texts = []


def _quoted_header(lines: list[str], index: int, delimiter: str, first_line: int | None = None) -> list[str]:
    """The header at lines[index], read strictly; `first_line` is its line number in the file
    where `lines` do not start the file."""
    reader = csv.reader(iter(lines[index:]), delimiter=delimiter, strict=True)
    line = first_line or index + 1
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
        if end - start > 1:
            text = _strip_terminator("".join(lines[start:end]))
        else:  # every line here ends with its terminator: CRLF, LF or (a CR-only file) CR
            line = lines[start]
            text = line[:-2] if line.endswith("\r\n") else line[:-1]
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
        elif not "".join(cells).strip():  # every cell blank
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
