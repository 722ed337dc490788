"""What a file held, record by record; encodings decided from evidence; text a store can hold."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import polars as pl

_BAD_BYTES = re.compile("[\udc80-\udcff]")  # what surrogateescape makes of undecodable bytes


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
    Each record's text as received is in `texts`, or, from the whole-column reader, in
    `text_column` (kept as one column, so ingest never turns 10^5 lines into Python strings and
    back); read it through `text(i)` and `text_series()`.
    """

    format: str
    encoding: str | None
    columns: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    texts: list[str | None] = field(default_factory=list)
    text_column: pl.Series | None = None
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

    def text(self, i: int) -> str | None:
        """Readable record i exactly as the file held it (None where the format has no text)."""
        return self.text_column[i] if self.text_column is not None else self.texts[i]

    def text_series(self) -> pl.Series:
        """Every readable record's text as received, in file order, as one column."""
        if self.text_column is not None:
            return self.text_column
        return pl.Series(self.texts, dtype=pl.String)

    def as_received(self, i: int) -> tuple[str, bytes]:
        """Readable record i as text and exact bytes (its JSON where the format has no text)."""
        text = self.text(i)
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
    return _decode(data).encoding


@dataclass(frozen=True)
class Decoded:
    """A file's text in the encoding its bytes show, decoded once (undecodable bytes escaped).

    `foreign` are the LF-separated lines of a GB18030 file that are UTF-8 text instead;
    `suspicious` is False only when the text surely holds no undecodable byte and no NUL, so a
    reader may skip looking for them line by line.
    """

    encoding: str
    text: str
    foreign: frozenset[int]
    suspicious: bool


def _decode(data: bytes) -> Decoded:
    """The encoding (see `detect_encoding`) and the text, decoding the file as few times as possible.

    GB18030 decodes almost any bytes, so a UTF-8 row in a GBK file would be stored garbled
    (赵六 as 璧靛叚) without a word; such rows (valid UTF-8 holding CJK characters) are named in
    `foreign`.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        text = data.decode("utf-8-sig", errors="surrogateescape").removeprefix("\ufeff")
        return Decoded("utf-8-sig", text, frozenset(), True)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:  # strictly valid UTF-8: no undecodable byte, only a NUL can make a line unstorable
        return Decoded("utf-8", text, frozenset(), "\x00" in text)
    bad_total, valid, utf8_cjk = _utf8_evidence(data)
    if valid < bad_total:
        # GB18030 only where it reads more of the file: a stray byte in ASCII text is no evidence for it.
        try:
            text, clean = data.decode("gb18030"), True
        except UnicodeDecodeError:
            text, clean = data.decode("gb18030", errors="surrogateescape"), False
        # Without a decoding error the replacing decoder gives this very text, so its count of
        # U+FFFD is the text's own; only a file with errors is decoded a second time to count them.
        replaced = text.count("\ufffd") if clean else data.decode("gb18030", errors="replace").count("\ufffd")
        if replaced < bad_total:
            return Decoded("gb18030", text, frozenset(utf8_cjk), not clean or "\x00" in text)
    return Decoded("utf-8", data.decode("utf-8", errors="surrogateescape"), frozenset(), True)


EVIDENCE_CHUNK = 1 << 20  # bytes weighed at once, so a large file is never held as text twice over


def _utf8_evidence(data: bytes) -> tuple[int, int, list[int]]:
    """How UTF-8 reads the file's LF-separated lines: undecodable sequences in all, extra bytes of
    the lines that decode, and the (0-based) lines that decode and hold CJK characters.

    Weighs lines by their non-ASCII content, about two per CJK character either way: a valid
    UTF-8 line by its extra bytes, an invalid one by its undecodable bytes. GBK text can form a
    short valid UTF-8 sequence by chance (\xce\xb2 reads as β), but never whole lines of it. An LF
    byte ends any UTF-8 sequence, so the file is weighed a slice of whole lines at a time.
    """
    bad_total = valid = first_line = start = 0
    cjk: list[int] = []
    while True:
        end = data.find(b"\n", start + EVIDENCE_CHUNK) if start + EVIDENCE_CHUNK < len(data) else -1
        text = (data[start:] if end < 0 else data[start:end]).decode("utf-8", errors="replace")
        bad = text.count("\ufffd")
        bad_total += bad
        lines = text.split("\n")
        if bad:  # plain Python over the lines: most of a GBK file's lines hold a U+FFFD early on
            for i, line in enumerate(lines):
                if line.isascii() or "\ufffd" in line:
                    continue
                valid += len(line.encode()) - len(line)
                if _CJK.search(line):
                    cjk.append(first_line + i)
        else:  # the whole slice is valid UTF-8
            valid += len(text.encode()) - len(text)
            cjk += [first_line + i for i, line in enumerate(lines) if _CJK.search(line)]
        if end < 0:
            return bad_total, valid, cjk
        first_line += len(lines)
        start = end + 1


_CJK = re.compile("[\u0800-\uffff]")


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
