"""A hostile ingest corpus: a deterministic generator of several hundred small files, and the harness
that ingests them and checks what ingest promised (issue 9).

`generate(folder)` writes the files and returns `Case`s. A case is one source system and the files
ingested into it, in order (most cases hold one file; `sequence` cases hold several versions of an
export). Every file is one `Ingest` with the options to ingest it with and what must happen:

- always: the ingest raises a govdb.GovdbError (the file refused whole, nothing stored) or returns a
  report whose counts add up (read == stored + new_versions + duplicate + quarantined); the event and
  quarantine tables grow by exactly what the report says; a second ingest of the file stores nothing
  and changes no table; at the end the source holds sum(stored + new_versions) events;
- where the generator knows the truth (`expect`, built alongside the bytes it writes): the exact
  counts, the encoding, the quarantined lines, each stored record's payload, line, raw text and
  version, the source keys and how many versions each has, the renamed header names, occurred_at.

Families without an exact oracle (random bytes, truncated or mutated files, stray quotes, odd
headers...) only get the invariants. `check_case` runs one case and returns a list of failures (text),
so a test can report every broken file at once. `concurrent_worker` is the body of one process of
the concurrent-ingest test (it lives here so spawned processes can import it).
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import io
import json
import math
import random
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SEED = 20261123
UTC = dt.UTC
LOCAL_OFFSET = dt.timedelta(hours=8)  # Asia/Shanghai, no daylight saving time

# Characters that other tools treat as line breaks but a CSV/JSONL record must keep inside a cell.
UNICODE_BREAKS = ["\u2028", "\u2029", "\u0085", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e"]
ASCII_BREAKS = ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e"]  # the ones GBK can encode

NAMES = [
    "张伟",
    "王芳",
    "李娜",
    "刘洋",
    "陈静",
    "杨磊",
    "赵敏",
    "黄勇",
    "周杰",
    "吴霞",
    "欧阳娜娜",
    "司马光",
    "阿卜杜拉·买买提",
    "李 四",
    "Zhang Wei",
    "O'Brien",
    "钱七",
]
ADDRESSES = [
    "桂城街道桂一社区南海大道218号",
    "大沥镇黄岐社区",
    "狮山镇罗村联星村",
    "西樵镇",
    "里水镇和顺社区2号楼",
]
TEXTS = [
    "需要办理退休",
    "社保, 医保",
    '他说"好"',
    "单引号'在此",
    "ｆｕｌｌ　ｗｉｄｔｈ",
    "Ⅻ㈱№",
    "emoji 😀",
    "𠀀𪚥",
    "  前导空格",
    "尾随空格  ",
    "a;b|c",
    "百分号%和\\反斜杠",
    "<b>html</b>",
    "=1+2",
    "中文，全角逗号",
]
MULTILINE = ["第一行\n第二行", "a\r\nb", "空行\n\n之后", "尾\n"]
HEADERS = ["受理编号", "姓名", "身份证号", "联系电话", "事项", "地址", "备注"]


# --- what an ingest must do -----------------------------------------------------------------------


@dataclass
class Ingest:
    """One file to ingest, its options, and what must happen (`expect` holds only what is known)."""

    path: Path
    fmt: str
    key_column: str | None = None
    occurred_at_column: str | None = None
    expect: dict[str, Any] = field(default_factory=dict)
    lines_exact: bool = False  # raw_text / raw_bytes must be the file's physical lines


@dataclass
class Case:
    family: str
    source: str
    ingests: list[Ingest]
    keys: dict[str, int] | None = None  # source key -> versions, after every ingest of the case


class Ledger:
    """What the store holds for one source: per source key, the contents of its versions in order."""

    def __init__(self, keyed: bool) -> None:
        self.keyed = keyed
        self.seen: dict[str, list[str]] = {}

    def classify(self, key: str | None, content: str) -> tuple[str, int]:
        versions = self.seen.setdefault(key if self.keyed and key is not None else content, [])
        if content in versions:
            return "duplicate", versions.index(content) + 1
        versions.append(content)
        return ("stored" if len(versions) == 1 else "new_versions"), len(versions)

    def keys(self) -> dict[str, int] | None:
        return {k: len(v) for k, v in self.seen.items()} if self.keyed else None


def canonical_key(value: Any) -> str:
    """How the contract says a key compares: 1, "1", 1.0 and " 1 " are all "1"."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return repr(value)
    return str(value).strip()


def content_of(payload: dict[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=False, sort_keys=True)


class Expectation:
    """Counts, quarantined lines and stored records, accumulated as a file is assembled."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.counts: Counter[str] = Counter()
        self.quarantine_lines: list[int] = []
        self.events: list[dict[str, Any]] = []  # start, end, payload, version

    def good(
        self, key: str | None, payload: dict[str, Any], start: int, end: int, check: bool = True
    ) -> None:
        self.counts["read"] += 1
        outcome, version = self.ledger.classify(key, content_of(payload))
        self.counts[outcome] += 1
        if outcome != "duplicate" and check:
            self.events.append({"start": start, "end": end, "payload": payload, "version": version})

    def bad(self, line: int) -> None:
        self.counts["read"] += 1
        self.counts["quarantined"] += 1
        self.quarantine_lines.append(line)

    def blank(self) -> None:
        self.counts["blank"] += 1

    def as_dict(self, *, lines: bool = True, payloads: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            name: self.counts[name]
            for name in ("read", "stored", "new_versions", "duplicate", "quarantined", "blank")
        }
        if lines:
            out["quarantine_lines"] = sorted(self.quarantine_lines)
        if payloads:
            out["events"] = self.events
        return out


# --- text files (CSV, TSV, JSON Lines) ------------------------------------------------------------


def encodable(text: str, encoding: str) -> bool:
    """Whether text survives encoding and decoding back as the reader will (GBK read as GB18030)."""
    try:
        data = text.encode("gbk" if encoding == "gbk" else "utf-8")
    except UnicodeEncodeError:
        return False
    return data.decode("gb18030" if encoding == "gbk" else "utf-8") == text


def csv_cell(cell: str, delimiter: str, force_quote: bool = False) -> str:
    if force_quote or any(c in cell for c in (delimiter, '"', "\n", "\r")):
        return '"' + cell.replace('"', '""') + '"'
    return cell


class TextBuilder:
    """A CSV/TSV/JSONL file assembled record by record, with the outcome each record must have."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        encoding: str = "utf-8",
        eol: str = "\n",
        delimiter: str = ",",
        header: list[str] | None = None,
        key_column: str | None = None,
    ) -> None:
        self.encoding = encoding
        self.eol = eol
        self.delimiter = delimiter
        self.header = header
        self.names = expected_names(header) if header else None
        self.key_column = key_column
        self.records: list[bytes] = []
        self.blank_tail = False
        self.exp = Expectation(ledger)
        self.line = 1
        self.start = b"\xef\xbb\xbf" if encoding == "utf-8-sig" else b""
        if header is not None:
            self.header_bytes = self.encode(delimiter.join(csv_cell(h, delimiter) for h in header))
            self.line = 2
        else:
            self.header_bytes = None

    def encode(self, text: str, encoding: str | None = None) -> bytes:
        enc = encoding or self.encoding
        return text.encode("gbk" if enc == "gbk" else "utf-8")

    def _place(self, raw: bytes) -> tuple[int, int]:
        start = self.line
        end = start + raw.count(b"\n")
        self.line = end + 1
        self.records.append(raw)
        self.blank_tail = raw == b""
        return start, end

    # CSV/TSV rows
    def row(self, cells: list[str], *, quote: Iterable[int] = (), encoding: str | None = None) -> bytes:
        assert self.header is not None and self.names is not None
        quoted = set(quote)
        text = self.delimiter.join(csv_cell(c, self.delimiter, i in quoted) for i, c in enumerate(cells))
        raw = self.encode(text, encoding)
        start, end = self._place(raw)
        payload = dict(zip(self.names, cells, strict=True))
        key = canonical_key(payload[self.key_column]) if self.key_column else None
        self.exp.good(key, payload, start, end)
        return raw

    def repeat(self, raw: bytes, payload: dict[str, Any]) -> None:
        """The same record again, byte for byte."""
        start, end = self._place(raw)
        key = canonical_key(payload[self.key_column]) if self.key_column else None
        self.exp.good(key, payload, start, end)

    def bad(self, raw: bytes | str, encoding: str | None = None) -> None:
        data = raw if isinstance(raw, bytes) else self.encode(raw, encoding)
        assert b"\n" not in data
        start, _ = self._place(data)
        self.exp.bad(start)

    def blank(self) -> None:
        self._place(b"")
        self.exp.blank()

    # JSON Lines
    def obj(
        self,
        value: dict[str, Any],
        *,
        ensure_ascii: bool = False,
        payload: dict[str, Any] | None = None,
        compact: bool = False,
    ) -> bytes:
        text = json.dumps(value, ensure_ascii=ensure_ascii, separators=(",", ":") if compact else None)
        raw = self.encode(text)
        start, end = self._place(raw)
        payload = payload if payload is not None else value
        key = canonical_key(payload[self.key_column]) if self.key_column else None
        self.exp.good(key, payload, start, end)
        return raw

    def data(self, final_eol: bool = True) -> bytes:
        """The file: BOM, header and records, each ended by the file's line terminator (the last one
        left off when final_eol is False, unless the file ends in blank lines)."""
        eol = self.eol.encode()
        parts = ([self.header_bytes] if self.header_bytes is not None else []) + self.records
        body = b"".join(p + eol for p in parts)
        if not final_eol and parts and not self.blank_tail:
            body = body[: -len(eol)]
        return self.start + body


def expected_names(header: list[str]) -> list[str]:
    """Duplicate header names kept: the second `a` becomes `a_2`, the third `a_3`."""
    seen: Counter[str] = Counter()
    out = []
    for name in header:
        seen[name] += 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    assert len(set(out)) == len(out), header
    return out


# --- cell values ----------------------------------------------------------------------------------


class Values:
    """Random but deterministic cell values for one family."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.serial = 0

    def next_serial(self) -> int:
        self.serial += 1
        return self.serial

    def key(self, style: str | None = None) -> str:
        n = self.next_serial()
        style = style or self.rng.choice(["SL", "num", "zh", "mixed"])
        return {"SL": f"SL{n:05d}", "num": str(1000 + n), "zh": f"编号{n}", "mixed": f"K-{n}/甲"}[style]

    def id_number(self) -> str:
        return (
            f"440605{self.rng.randint(1940, 2010)}{self.rng.randint(1, 12):02d}{self.rng.randint(1, 28):02d}"
            + f"{self.rng.randint(0, 999):03d}"
            + self.rng.choice("0123456789X")
        )

    def phone(self) -> str:
        return self.rng.choice(
            [f"1{self.rng.randint(3000000000, 9999999999)}", f"0757-8{self.rng.randint(1000000, 9999999)}"]
        )

    def text(self, encoding: str, *, plain: bool, breaks: bool = False, tsv: bool = False) -> str:
        """A cell: `plain` ones need no quoting, `breaks` may hold a Unicode line break inside."""
        for _ in range(100):
            kind = self.rng.random()
            if breaks and kind < 0.5:
                pool = UNICODE_BREAKS if encoding != "gbk" else ASCII_BREAKS
                value = (
                    self.rng.choice(NAMES[:10]) + self.rng.choice(pool) + self.rng.choice(["后", "x", "办理"])
                )
            elif kind < 0.25:
                value = self.rng.choice(NAMES)
            elif kind < 0.45:
                value = self.rng.choice(ADDRESSES)
            elif kind < 0.55 and not plain:
                value = self.rng.choice(MULTILINE)
            else:
                value = self.rng.choice(TEXTS)
            if plain and any(c in value for c in ',"\n\r\t'):
                continue
            if tsv and any(c in value for c in '"\t\n\r'):
                continue
            if value.strip() == "" or not encodable(value, encoding):
                continue
            return value
        raise AssertionError("no value fits")


def local_time(rng: random.Random) -> tuple[str, dt.datetime]:
    """A local (Asia/Shanghai) time written as people write it, and the UTC instant it means."""
    local = dt.datetime(2026, 1, 1) + dt.timedelta(minutes=rng.randint(0, 365 * 24 * 60 - 1))
    fmt = rng.choice(["%Y/%m/%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"])
    if fmt == "%Y-%m-%d":
        local = local.replace(hour=0, minute=0, second=0)
    elif fmt == "%Y/%m/%d %H:%M":
        local = local.replace(second=0)
    else:
        local = local.replace(second=rng.randint(0, 59))
    return local.strftime(fmt), local - LOCAL_OFFSET


# --- the families ---------------------------------------------------------------------------------


class Corpus:
    """The folder, the cases so far, and a counter per family (names do not depend on other families)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.cases: list[Case] = []
        self.numbers: Counter[str] = Counter()

    def path(self, family: str, ext: str) -> Path:
        self.numbers[family] += 1
        return self.folder / f"{family}-{self.numbers[family]:03d}{ext}"

    def source(self, family: str) -> str:
        return f"corpus-{family}-{self.numbers[family]:03d}"

    def add(
        self, family: str, ingests: list[Ingest], ledger: Ledger | None = None, source: str | None = None
    ) -> None:
        keys = ledger.keys() if ledger is not None else None
        self.cases.append(Case(family, source or self.source(family), ingests, keys))

    def write(self, family: str, ext: str, data: bytes) -> Path:
        path = self.path(family, ext)
        path.write_bytes(data)
        return path


FAMILIES: dict[str, Callable[[Corpus, random.Random], None]] = {}


def family(
    name: str,
) -> Callable[[Callable[[Corpus, random.Random], None]], Callable[[Corpus, random.Random], None]]:
    def register(fn: Callable[[Corpus, random.Random], None]) -> Callable[[Corpus, random.Random], None]:
        FAMILIES[name] = fn
        return fn

    return register


def _header(rng: random.Random, width: int | None = None) -> list[str]:
    width = width or rng.randint(2, 6)
    rest = rng.sample(HEADERS[1:], width - 1)
    rest.insert(rng.randrange(width), HEADERS[0])
    return rest


def _encoding_name(encoding: str) -> str:
    return {"gbk": "gb18030"}.get(encoding, encoding)


def _text_ingest(
    corpus: Corpus,
    fam: str,
    b: TextBuilder,
    ext: str,
    *,
    key_column: str | None,
    final_eol: bool = True,
    occurred_at_column: str | None = None,
    expect_encoding: bool = True,
    extra: dict[str, Any] | None = None,
) -> Ingest:
    data = b.data(final_eol)
    path = corpus.write(fam, ext, data)
    expect = b.exp.as_dict()
    expect["refused"] = False
    if expect_encoding and any(byte > 0x7F for byte in data):
        expect["encoding"] = _encoding_name(b.encoding)
    if extra:
        expect.update(extra)
    fmt = {".csv": "csv", ".tsv": "tsv", ".txt": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}[ext]
    return Ingest(path, fmt, key_column, occurred_at_column, expect, lines_exact=True)


def _row(
    v: Values,
    header: list[str],
    key_column: str | None,
    encoding: str,
    *,
    tsv: bool,
    plain: bool,
    breaks: bool = False,
    key: str | None = None,
) -> list[str]:
    cells = []
    for name in header:
        if name == HEADERS[0]:
            cells.append(key if key is not None else v.key())
        elif name == "身份证号":
            cells.append(v.id_number())
        elif name == "联系电话":
            cells.append(v.phone())
        else:
            cells.append(v.text(encoding, plain=plain or tsv, breaks=breaks, tsv=tsv))
    return cells  # the key cell is a fresh serial unless given: rows differ by content


def _quotes(rng: random.Random, cells: list[str], tsv: bool) -> set[int]:
    return set() if tsv else {i for i in range(len(cells)) if rng.random() < 0.15}


@family("clean")
def _clean(corpus: Corpus, rng: random.Random) -> None:
    for encoding in ("utf-8", "utf-8-sig", "gbk"):
        for ext in (".csv", ".tsv"):
            for eol in ("\n", "\r\n"):
                for keyed in (True, False):
                    v = Values(rng)
                    tsv = ext == ".tsv"
                    header = _header(rng)
                    key = HEADERS[0] if keyed else None
                    ledger = Ledger(keyed)
                    b = TextBuilder(
                        ledger,
                        encoding=encoding,
                        eol=eol,
                        delimiter="\t" if tsv else ",",
                        header=header,
                        key_column=key,
                    )
                    for _ in range(rng.randint(1, 12)):
                        cells = _row(v, header, key, encoding, tsv=tsv, plain=False)
                        b.row(cells, quote=_quotes(rng, cells, tsv))
                    corpus.add(
                        "clean",
                        [_text_ingest(corpus, "clean", b, ext, key_column=key, final_eol=rng.random() < 0.8)],
                        ledger,
                    )


@family("repeats")
def _repeats(corpus: Corpus, rng: random.Random) -> None:
    """Known keys again: identical (duplicate), changed (new version), padded with spaces, reverted."""
    for i in range(18):
        v = Values(rng)
        keyed = i % 6 != 5
        encoding = rng.choice(["utf-8", "utf-8-sig", "gbk"])
        ext = rng.choice([".csv", ".csv", ".tsv"])
        tsv = ext == ".tsv"
        header = _header(rng, rng.randint(2, 5))
        key = HEADERS[0] if keyed else None
        ledger = Ledger(keyed)
        b = TextBuilder(
            ledger,
            encoding=encoding,
            eol=rng.choice(["\n", "\r\n"]),
            delimiter="\t" if tsv else ",",
            header=header,
            key_column=key,
        )
        written: list[tuple[bytes, dict[str, Any], list[str]]] = []
        for _ in range(rng.randint(4, 20)):
            action = rng.random()
            if written and action < 0.25:  # the same record again, byte for byte
                raw, payload, _ = rng.choice(written)
                b.repeat(raw, payload)
            elif written and keyed and action < 0.55:  # a known key, other content
                _, _, cells = rng.choice(written)
                k = cells[header.index(HEADERS[0])]
                if rng.random() < 0.3:
                    k = rng.choice([" ", "  ", "\t" if not tsv else " "]) + k + rng.choice(["", " ", "  "])
                new = _row(v, header, key, encoding, tsv=tsv, plain=False, key=k)
                raw = b.row(
                    new,
                    quote=_quotes(rng, new, tsv) - ({header.index(HEADERS[0])} if k != k.strip() else set()),
                )
                written.append((raw, dict(zip(b.names or [], new, strict=True)), new))
            else:
                cells = _row(v, header, key, encoding, tsv=tsv, plain=False)
                raw = b.row(cells, quote=_quotes(rng, cells, tsv))
                written.append((raw, dict(zip(b.names or [], cells, strict=True)), cells))
        corpus.add("repeats", [_text_ingest(corpus, "repeats", b, ext, key_column=key)], ledger)


@family("blank_whitespace")
def _blank_whitespace(corpus: Corpus, rng: random.Random) -> None:
    """Empty lines are blank; whitespace-only and empty-cells rows are records, quarantined."""
    for i in range(16):
        v = Values(rng)
        encoding = rng.choice(["utf-8", "gbk", "utf-8-sig"])
        ext = ".csv" if i % 3 else ".tsv"
        tsv = ext == ".tsv"
        d = "\t" if tsv else ","
        header = _header(rng, rng.randint(2, 4))
        key = HEADERS[0] if i % 2 else None
        ledger = Ledger(key is not None)
        b = TextBuilder(
            ledger,
            encoding=encoding,
            eol=rng.choice(["\n", "\r\n"]),
            delimiter=d,
            header=header,
            key_column=key,
        )
        width = len(header)
        junk = [
            "   ",
            " \t ",
            "\t",
            "  \t  ",
            " ",
            d * (width - 1),
            d * width,
            " " + d + " " * 3,
            d.join([" "] * width),
        ]
        if not tsv:
            junk += [d.join(['""'] * width), '" "' + d * (width - 1)]
        for _ in range(rng.randint(3, 14)):
            r = rng.random()
            if r < 0.3:
                b.blank()
            elif r < 0.6:
                b.bad(rng.choice(junk))
            else:
                cells = _row(v, header, key, encoding, tsv=tsv, plain=True)
                b.row(cells)
        if rng.random() < 0.5:
            b.blank()
            b.blank()
        corpus.add(
            "blank_whitespace", [_text_ingest(corpus, "blank_whitespace", b, ext, key_column=key)], ledger
        )


@family("unicode_breaks")
def _unicode_breaks(corpus: Corpus, rng: random.Random) -> None:
    """U+2028, U+2029, U+0085, VT, FF, FS, GS, RS inside unquoted cells split nothing."""
    for i in range(14):
        v = Values(rng)
        encoding = ["utf-8", "utf-8", "utf-8-sig", "gbk"][i % 4]
        ext = ".csv" if i % 2 == 0 else ".tsv"
        tsv = ext == ".tsv"
        header = _header(rng, rng.randint(2, 5))
        if len(header) == 1 or header == [HEADERS[0]]:
            header.append("备注")
        key = HEADERS[0] if i % 3 else None
        ledger = Ledger(key is not None)
        b = TextBuilder(
            ledger,
            encoding=encoding,
            eol=rng.choice(["\n", "\r\n"]),
            delimiter="\t" if tsv else ",",
            header=header,
            key_column=key,
        )
        for _ in range(rng.randint(2, 10)):
            cells = _row(v, header, key, encoding, tsv=tsv, plain=True, breaks=True)
            # at least one break in every row, in a cell that is not the key
            j = rng.choice([k for k, name in enumerate(header) if name != HEADERS[0]])
            pool = UNICODE_BREAKS if encoding != "gbk" else ASCII_BREAKS
            cells[j] = "办" + rng.choice(pool) + "理" + rng.choice(pool) + "x"
            b.row(cells)
        corpus.add("unicode_breaks", [_text_ingest(corpus, "unicode_breaks", b, ext, key_column=key)], ledger)


@family("unclosed_quote_row")
def _unclosed_quote_row(corpus: Corpus, rng: random.Random) -> None:
    """One data row opens a quote that never closes: only that row is quarantined."""
    for i in range(12):
        v = Values(rng)
        encoding = rng.choice(["utf-8", "gbk"])
        header = _header(rng, rng.randint(2, 5))
        key = HEADERS[0] if i % 2 else None
        ledger = Ledger(key is not None)
        b = TextBuilder(
            ledger, encoding=encoding, eol=rng.choice(["\n", "\r\n"]), header=header, key_column=key
        )
        n = rng.randint(1, 8)
        bad_at = rng.randint(0, n)  # n: the last record of the file
        for j in range(n + 1):
            if j == bad_at:
                cells = _row(v, header, key, encoding, tsv=True, plain=True)
                c = rng.randrange(len(cells))
                cells[c] = '"' + cells[c] + rng.choice(["", ",还有", " 未闭合"])
                b.bad(",".join(cells))
            else:
                b.row(_row(v, header, key, encoding, tsv=True, plain=True))
        corpus.add(
            "unclosed_quote_row",
            [
                _text_ingest(
                    corpus, "unclosed_quote_row", b, ".csv", key_column=key, final_eol=rng.random() < 0.7
                )
            ],
            ledger,
        )


@family("unclosed_quote_header")
def _unclosed_quote_header(corpus: Corpus, rng: random.Random) -> None:
    """A quote that never closes in the header: the file is refused, not read as 0 rows."""
    for i in range(4):
        v = Values(rng)
        header = _header(rng, 3)
        text = ",".join([*header[:1], '"' + header[1], *header[2:]]) + "\n"
        rows = "".join(
            ",".join(_row(v, header, None, "utf-8", tsv=True, plain=True)) + "\n" for _ in range(3 + i)
        )
        path = corpus.write(
            "unclosed_quote_header", ".csv", (text + rows).encode("utf-8" if i % 2 else "gbk")
        )
        corpus.add("unclosed_quote_header", [Ingest(path, "csv", None, None, {"refused": True})])


@family("field_count")
def _field_count(corpus: Corpus, rng: random.Random) -> None:
    """Too many or too few fields, quotes included: quarantined exactly as received."""
    for i in range(12):
        v = Values(rng)
        encoding = rng.choice(["utf-8", "gbk", "utf-8-sig"])
        ext = ".csv" if i % 4 else ".tsv"
        tsv = ext == ".tsv"
        d = "\t" if tsv else ","
        header = _header(rng, rng.randint(3, 5))
        key = HEADERS[0] if i % 2 else None
        ledger = Ledger(key is not None)
        b = TextBuilder(
            ledger,
            encoding=encoding,
            eol=rng.choice(["\n", "\r\n"]),
            delimiter=d,
            header=header,
            key_column=key,
        )
        for _ in range(rng.randint(3, 10)):
            cells = _row(v, header, key, encoding, tsv=tsv, plain=True)
            if rng.random() < 0.4:
                if rng.random() < 0.5:
                    cells = cells[: rng.randint(1, len(cells) - 1)]
                else:
                    cells = [*cells, *(["多余"] * rng.randint(1, 3))]
                quoted = set() if tsv else {k for k in range(len(cells)) if rng.random() < 0.5}
                if not tsv and rng.random() < 0.5:
                    cells[0] = cells[0] + ",带逗号"
                    quoted.add(0)
                b.bad(d.join(csv_cell(c, d, k in quoted) for k, c in enumerate(cells)))
            else:
                b.row(cells, quote=_quotes(rng, cells, tsv))
        corpus.add("field_count", [_text_ingest(corpus, "field_count", b, ext, key_column=key)], ledger)


def _gbk_only_line(text: str) -> bytes:
    data = text.encode("gbk")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return data
    raise AssertionError(f"{text!r} in GBK is valid UTF-8")


@family("mixed_encoding")
def _mixed_encoding(corpus: Corpus, rng: random.Random) -> None:
    """A UTF-8 file with a few GBK rows (or bytes no encoding reads): only those rows are quarantined."""
    for i in range(14):
        v = Values(rng)
        base = ["utf-8", "utf-8-sig", "gbk"][i % 3] if i < 9 else "utf-8"
        ext = ".csv" if i % 4 != 3 else ".tsv"
        tsv = ext == ".tsv"
        d = "\t" if tsv else ","
        header = _header(rng, rng.randint(2, 5))
        key = HEADERS[0] if i % 2 else None
        ledger = Ledger(key is not None)
        b = TextBuilder(
            ledger, encoding=base, eol=rng.choice(["\n", "\r\n"]), delimiter=d, header=header, key_column=key
        )
        n = rng.randint(6, 14)
        bad_rows = set(rng.sample(range(n), rng.randint(1, 3)))
        for j in range(n):
            cells = _row(v, header, key, "gbk", tsv=True, plain=True)  # text GBK can hold, in any file
            if j in bad_rows:
                if base != "gbk" and rng.random() < 0.6:
                    cells[rng.randrange(len(cells))] = rng.choice(
                        ["张伟", "桂城街道", "办理"]
                    )  # Chinese: GBK bytes
                    b.bad(_gbk_only_line(d.join(cells)))
                else:  # bytes that are neither UTF-8 nor GB18030; sometimes the field count is wrong too
                    cells[rng.randrange(len(cells))] = "x\xff\xfey"
                    if rng.random() < 0.5:
                        cells.append("多")
                    b.bad(
                        d.join(cells)
                        .replace("x\xff\xfey", "x\udcff\udcfey")
                        .encode("gbk" if base == "gbk" else "utf-8", "surrogateescape")
                    )
            else:
                b.row(cells)
        corpus.add("mixed_encoding", [_text_ingest(corpus, "mixed_encoding", b, ext, key_column=key)], ledger)


@family("nul")
def _nul(corpus: Corpus, rng: random.Random) -> None:
    """A NUL in a cell: quarantined (PostgreSQL text cannot hold it), its bytes kept."""
    for i in range(8):
        v = Values(rng)
        encoding = rng.choice(["utf-8", "gbk"])
        ext = ".csv" if i % 2 else ".tsv"
        tsv = ext == ".tsv"
        d = "\t" if tsv else ","
        header = _header(rng, rng.randint(2, 4))
        key = HEADERS[0] if i % 3 else None
        ledger = Ledger(key is not None)
        b = TextBuilder(ledger, encoding=encoding, eol="\n", delimiter=d, header=header, key_column=key)
        for _ in range(rng.randint(3, 8)):
            cells = _row(v, header, key, encoding, tsv=True, plain=True)
            if rng.random() < 0.35:
                c = rng.randrange(len(cells))
                cells[c] = rng.choice(["\x00", "a\x00b", cells[c] + "\x00"])
                b.bad(d.join(cells))
            else:
                b.row(cells)
        corpus.add("nul", [_text_ingest(corpus, "nul", b, ext, key_column=key)], ledger)


@family("long_key")
def _long_key(corpus: Corpus, rng: random.Random) -> None:
    """Keys up to 256 characters are stored, longer ones quarantined."""
    for i in range(8):
        v = Values(rng)
        encoding = "utf-8" if i % 2 else "gbk"
        header = _header(rng, 3)
        ledger = Ledger(True)
        b = TextBuilder(ledger, encoding=encoding, eol="\n", header=header, key_column=HEADERS[0])
        for _ in range(rng.randint(3, 8)):
            length = rng.choice([None, None, 100, 200, 256, 257, 300, 1000])
            if length is None:
                b.row(_row(v, header, HEADERS[0], encoding, tsv=True, plain=True))
                continue
            char = rng.choice(["k", "键"])
            k = f"{v.next_serial():04d}" + char * (length - 4)
            cells = _row(v, header, HEADERS[0], encoding, tsv=True, plain=True, key=k)
            if length <= 256:
                b.row(cells)
            else:
                b.bad(",".join(cells))
        corpus.add("long_key", [_text_ingest(corpus, "long_key", b, ".csv", key_column=HEADERS[0])], ledger)


@family("dup_header")
def _dup_header(corpus: Corpus, rng: random.Random) -> None:
    """`a,a,b`: both values kept, the second named a_2 (a third a_3), with a warning."""
    shapes = [["a", "a", "b"], ["a", "a", "a", "b"], ["姓名", "姓名", "电话"], ["k", "x", "x", "y", "y", "x"]]
    for i in range(10):
        v = Values(rng)
        header = list(shapes[i % len(shapes)])
        encoding = rng.choice(["utf-8", "gbk"])
        tsv = i % 3 == 0
        ext = ".tsv" if tsv else ".csv"
        d = "\t" if tsv else ","
        key = header[-1] if i % 2 and header.count(header[-1]) == 1 else None
        ledger = Ledger(key is not None)
        b = TextBuilder(ledger, encoding=encoding, eol="\n", delimiter=d, header=header, key_column=key)
        for _ in range(rng.randint(1, 6)):
            cells = [v.text(encoding, plain=True, tsv=True) + str(v.next_serial()) for _ in header]
            b.row(cells)
        corpus.add(
            "dup_header",
            [
                _text_ingest(
                    corpus,
                    "dup_header",
                    b,
                    ext,
                    key_column=key,
                    extra={"warnings": True, "columns": expected_names(header)},
                )
            ],
            ledger,
        )


@family("multiline_quoted")
def _multiline_quoted(corpus: Corpus, rng: random.Random) -> None:
    """Quoted cells holding line breaks (and doubled quotes) are one record each."""
    for i in range(10):
        v = Values(rng)
        encoding = rng.choice(["utf-8", "gbk", "utf-8-sig"])
        header = _header(rng, rng.randint(2, 5))
        if header == [HEADERS[0]]:
            header.append("备注")
        key = HEADERS[0] if i % 2 else None
        ledger = Ledger(key is not None)
        b = TextBuilder(
            ledger, encoding=encoding, eol=rng.choice(["\n", "\r\n"]), header=header, key_column=key
        )
        for _ in range(rng.randint(2, 8)):
            cells = _row(v, header, key, encoding, tsv=False, plain=False)
            j = rng.choice([k for k, name in enumerate(header) if name != HEADERS[0]] or [0])
            if header[j] != HEADERS[0]:
                cells[j] = rng.choice([*MULTILINE, '引"号"\n换行', "多,逗号\n\n行"])
            b.row(cells, quote=_quotes(rng, cells, False))
        corpus.add(
            "multiline_quoted", [_text_ingest(corpus, "multiline_quoted", b, ".csv", key_column=key)], ledger
        )


@family("occurred_at")
def _occurred_at(corpus: Corpus, rng: random.Random) -> None:
    """occurred_at keeps the time of day, from local time to UTC; a date alone is local midnight."""
    for _ in range(6):
        v = Values(rng)
        encoding = rng.choice(["utf-8", "gbk"])
        header = [HEADERS[0], "办理时间", "姓名"]
        ledger = Ledger(True)
        b = TextBuilder(ledger, encoding=encoding, eol="\n", header=header, key_column=HEADERS[0])
        occurred: dict[str, dt.datetime] = {}
        for _ in range(rng.randint(3, 10)):
            written, instant = local_time(rng)
            k = v.key()
            b.row([k, written, rng.choice(NAMES[:10])])
            occurred[k] = instant
        corpus.add(
            "occurred_at",
            [
                _text_ingest(
                    corpus,
                    "occurred_at",
                    b,
                    ".csv",
                    key_column=HEADERS[0],
                    occurred_at_column="办理时间",
                    extra={"occurred": occurred},
                )
            ],
            ledger,
        )


@family("header_only")
def _header_only(corpus: Corpus, rng: random.Random) -> None:
    for i in range(5):
        header = _header(rng)
        ledger = Ledger(False)
        b = TextBuilder(
            ledger,
            encoding=rng.choice(["utf-8", "gbk", "utf-8-sig"]),
            eol=rng.choice(["\n", "\r\n"]),
            header=header,
        )
        for _ in range(i):
            b.blank()
        corpus.add(
            "header_only",
            [_text_ingest(corpus, "header_only", b, ".csv", key_column=None, final_eol=i % 2 == 0)],
            ledger,
        )


@family("combo")
def _combo(corpus: Corpus, rng: random.Random) -> None:
    """Every CSV/TSV class above, mixed in one file."""
    for _ in range(45):
        v = Values(rng)
        encoding = rng.choice(["utf-8", "utf-8", "utf-8-sig", "gbk"])
        tsv = rng.random() < 0.3
        ext = ".tsv" if tsv else ".csv"
        d = "\t" if tsv else ","
        header = _header(rng, rng.randint(2, 6))
        if header == [HEADERS[0]]:
            header.append("备注")
        key = HEADERS[0] if rng.random() < 0.7 else None
        ledger = Ledger(key is not None)
        b = TextBuilder(
            ledger,
            encoding=encoding,
            eol=rng.choice(["\n", "\r\n"]),
            delimiter=d,
            header=header,
            key_column=key,
        )
        unclosed = not tsv and rng.random() < 0.3
        plain = tsv or unclosed
        written: list[tuple[bytes, dict[str, Any], list[str]]] = []
        k_index = header.index(HEADERS[0])
        unclosed_done = False
        for _ in range(rng.randint(5, 30)):
            r = rng.random()
            if r < 0.06:
                b.blank()
            elif r < 0.12:
                b.bad(rng.choice(["   ", " \t ", d * (len(header) - 1)]))
            elif r < 0.2 and written:
                raw, payload, _ = rng.choice(written)
                b.repeat(raw, payload)
            elif r < 0.3 and written and key:
                _, _, old = rng.choice(written)
                new = _row(v, header, key, encoding, tsv=tsv, plain=plain, breaks=True, key=old[k_index])
                raw = b.row(new, quote=set() if plain else _quotes(rng, new, tsv))
                written.append((raw, dict(zip(b.names or [], new, strict=True)), new))
            elif r < 0.35:
                cells = _row(v, header, key, encoding, tsv=True, plain=True)
                cells[rng.randrange(len(cells))] = "a\x00b"
                b.bad(d.join(cells))
            elif r < 0.4 and key:
                cells = _row(v, header, key, encoding, tsv=True, plain=True, key="长" * 300)
                b.bad(d.join(cells))
            elif r < 0.45:
                cells = [*_row(v, header, key, encoding, tsv=True, plain=True), "多余"]
                b.bad(d.join(cells))
            elif r < 0.5 and encoding in ("utf-8", "utf-8-sig"):
                cells = _row(v, header, key, "gbk", tsv=True, plain=True)
                cells[rng.randrange(len(cells))] = "张伟"
                b.bad(_gbk_only_line(d.join(cells)))
            elif r < 0.53 and unclosed and not unclosed_done:
                cells = _row(v, header, key, encoding, tsv=True, plain=True)
                cells[-1] = '"' + cells[-1]
                b.bad(d.join(cells))
                unclosed_done = True
            else:
                cells = _row(v, header, key, encoding, tsv=tsv, plain=plain, breaks=rng.random() < 0.3)
                raw = b.row(cells, quote=set() if plain else _quotes(rng, cells, tsv))
                written.append((raw, dict(zip(b.names or [], cells, strict=True)), cells))
        corpus.add(
            "combo",
            [_text_ingest(corpus, "combo", b, ext, key_column=key, final_eol=rng.random() < 0.8)],
            ledger,
        )


# --- JSON Lines -----------------------------------------------------------------------------------


def _jsonl_builder(ledger: Ledger, rng: random.Random, encoding: str, key: str | None) -> TextBuilder:
    return TextBuilder(ledger, encoding=encoding, eol=rng.choice(["\n", "\r\n"]), key_column=key)


def _obj(v: Values, encoding: str, key: str | None, key_value: Any = None) -> dict[str, Any]:
    rng = v.rng
    out: dict[str, Any] = {}
    if key:
        out[key] = key_value if key_value is not None else v.key()
    out["姓名"] = rng.choice([n for n in NAMES if encodable(n, encoding)])
    out["序号"] = v.next_serial()
    if rng.random() < 0.5:
        out["地址"] = rng.choice(ADDRESSES)
    if rng.random() < 0.3:
        out["金额"] = rng.choice([0.1, 12.5, -3, 10**20, 1e-7, True, None])
    if rng.random() < 0.3:
        out["明细"] = {"项目": [1, "二", {"三": None}], "空": {}, "列表": []}
    if rng.random() < 0.3:
        out["备注"] = rng.choice([t for t in TEXTS + MULTILINE if encodable(t, encoding)])
    return out


@family("jsonl_clean")
def _jsonl_clean(corpus: Corpus, rng: random.Random) -> None:
    for i in range(12):
        v = Values(rng)
        encoding = ["utf-8", "utf-8-sig", "gbk"][i % 3]
        key = "id" if i % 2 else None
        ledger = Ledger(key is not None)
        b = _jsonl_builder(ledger, rng, encoding, key)
        ensure_ascii = encoding != "gbk" and rng.random() < 0.3
        for _ in range(rng.randint(1, 12)):
            b.obj(_obj(v, encoding, key), ensure_ascii=ensure_ascii, compact=rng.random() < 0.5)
        ext = rng.choice([".jsonl", ".ndjson"])
        corpus.add(
            "jsonl_clean",
            [_text_ingest(corpus, "jsonl_clean", b, ext, key_column=key, final_eol=rng.random() < 0.8)],
            ledger,
        )


@family("jsonl_keys")
def _jsonl_keys(corpus: Corpus, rng: random.Random) -> None:
    """1, "1", 1.0 and " 1 " are one source key; changed content under it is a new version."""
    for _ in range(10):
        v = Values(rng)
        ledger = Ledger(True)
        b = _jsonl_builder(ledger, rng, "utf-8", "id")
        written: list[tuple[bytes, dict[str, Any]]] = []
        for _ in range(rng.randint(4, 16)):
            r = rng.random()
            if written and r < 0.25:
                raw, payload = rng.choice(written)
                b.repeat(raw, payload)
                continue
            n = rng.randint(1, 4)
            spelled = rng.choice([n, str(n), float(n), f" {n} ", f"{n} ", 10**18 + n, -n, n + 0.5])
            obj = _obj(v, "utf-8", "id", key_value=spelled)
            raw = b.obj(obj, ensure_ascii=rng.random() < 0.3)
            written.append((raw, obj))
        corpus.add("jsonl_keys", [_text_ingest(corpus, "jsonl_keys", b, ".jsonl", key_column="id")], ledger)


@family("jsonl_breaks")
def _jsonl_breaks(corpus: Corpus, rng: random.Random) -> None:
    """json.dumps(ensure_ascii=False) leaves U+2028, U+2029 and U+0085 raw: still one record each."""
    for i in range(8):
        v = Values(rng)
        key = "id" if i % 2 else None
        ledger = Ledger(key is not None)
        b = _jsonl_builder(ledger, rng, "utf-8" if i % 3 else "utf-8-sig", key)
        for _ in range(rng.randint(2, 10)):
            obj = _obj(v, "utf-8", key)
            obj["备注"] = "前" + rng.choice(UNICODE_BREAKS) + "后" + rng.choice(UNICODE_BREAKS)
            b.obj(obj)
        corpus.add(
            "jsonl_breaks", [_text_ingest(corpus, "jsonl_breaks", b, ".jsonl", key_column=key)], ledger
        )


@family("jsonl_bad")
def _jsonl_bad(corpus: Corpus, rng: random.Random) -> None:
    """Broken JSON, non-objects, lone surrogates, NUL, empty or long keys, whitespace: quarantined;
    NaN/Infinity and escaped surrogate pairs stored."""
    for i in range(14):
        v = Values(rng)
        key = "id" if i % 2 else None
        ledger = Ledger(key is not None)
        encoding = rng.choice(["utf-8", "utf-8", "gbk"])
        b = _jsonl_builder(ledger, rng, encoding, key)
        for _ in range(rng.randint(4, 16)):
            r = rng.random()
            if r < 0.07:
                b.blank()
            elif r < 0.14:
                b.bad(rng.choice(["   ", " \t ", "\t"]))
            elif r < 0.24:
                b.bad(
                    rng.choice(
                        [
                            "{broken",
                            '{"a": 1,}',
                            "[1, 2]",
                            "42",
                            '"text"',
                            "null",
                            "true",
                            "{'a': 1}",
                            '{"a": 1} {"b": 2}',
                            "}",
                            '{"a": tru}',
                        ]
                    )
                )
            elif r < 0.32:  # lone surrogates, escaped
                obj = _obj(v, encoding, key)
                obj["备注"] = "@@S@@"
                b.bad(
                    json.dumps(obj, ensure_ascii=rng.random() < 0.5).replace(
                        '"@@S@@"', rng.choice(['"\\ud800"', '"a\\udfffb"', '"\\udc00\\ud800"'])
                    )
                )
            elif r < 0.4:  # NUL
                obj = _obj(v, encoding, key)
                obj["备注"] = rng.choice(["\x00", "a\x00b"])
                b.bad(json.dumps(obj, ensure_ascii=rng.random() < 0.5))
            elif r < 0.47 and key:  # no usable key
                obj = _obj(v, encoding, key)
                choice = rng.choice(["missing", None, "", "   "])
                if choice == "missing":
                    del obj[key]
                else:
                    obj[key] = choice
                b.bad(json.dumps(obj, ensure_ascii=rng.random() < 0.5))
            elif r < 0.52 and key:
                obj = _obj(v, encoding, key, key_value="长" * 257)
                b.bad(json.dumps(obj, ensure_ascii=rng.random() < 0.5))
            elif r < 0.65:  # NaN and friends (Python writes them as bare literals), stored as strings
                obj = _obj(v, encoding, key)
                value = rng.choice([math.nan, math.inf, -math.inf])
                obj["值"] = value
                text = {"NaN": "NaN", "inf": "Infinity", "-inf": "-Infinity"}[
                    str(value).replace("nan", "NaN")
                ]
                b.obj(obj, payload=dict(obj, 值=text), ensure_ascii=rng.random() < 0.5)
            elif r < 0.72:  # an escaped surrogate pair is a real character
                obj = _obj(v, encoding, key)
                obj["备注"] = "😀"
                assert "\\ud83d\\ude00" in b.obj(obj, ensure_ascii=True).decode()
            else:
                b.obj(_obj(v, encoding, key), ensure_ascii=rng.random() < 0.2)
        corpus.add("jsonl_bad", [_text_ingest(corpus, "jsonl_bad", b, ".jsonl", key_column=key)], ledger)


@family("jsonl_mixed_encoding")
def _jsonl_mixed_encoding(corpus: Corpus, rng: random.Random) -> None:
    for i in range(5):
        v = Values(rng)
        key = "id" if i % 2 else None
        ledger = Ledger(key is not None)
        b = _jsonl_builder(ledger, rng, "utf-8", key)
        n = rng.randint(5, 10)
        bad = set(rng.sample(range(n), rng.randint(1, 2)))
        for j in range(n):
            obj = _obj(v, "gbk", key)
            if j in bad:
                b.bad(_gbk_only_line(json.dumps(obj, ensure_ascii=False)))
            else:
                b.obj(obj)
        corpus.add(
            "jsonl_mixed_encoding",
            [_text_ingest(corpus, "jsonl_mixed_encoding", b, ".jsonl", key_column=key)],
            ledger,
        )


# --- XLSX -----------------------------------------------------------------------------------------


def write_xlsx(
    path: Path, rows: list[list[Any]], *, extra_sheet: bool = False, extra_data: bool = True
) -> None:
    """A workbook of `rows`; `extra_sheet` adds a second sheet, empty unless `extra_data` (then refused)."""
    import xlsxwriter

    book = xlsxwriter.Workbook(str(path))
    book.set_properties({"created": dt.datetime(2026, 11, 23)})  # the same bytes on every run
    sheet = book.add_worksheet("数据")
    date_format = book.add_format({"num_format": "yyyy-mm-dd hh:mm"})
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            if value is None:
                continue
            if isinstance(value, bool):
                sheet.write_boolean(r, c, value)
            elif isinstance(value, int | float):
                sheet.write_number(r, c, value)
            elif isinstance(value, dt.datetime):
                sheet.write_datetime(r, c, value, date_format)
            elif isinstance(value, tuple) and value[0] == "formula":
                sheet.write_formula(r, c, value[1])
            else:
                sheet.write_string(r, c, value)
    if extra_sheet:
        other = book.add_worksheet("其他")
        if extra_data:
            other.write_string(0, 0, "第二张表")
    book.close()


def _xlsx_case(
    corpus: Corpus,
    fam: str,
    rng: random.Random,
    *,
    header: list[str],
    key: str | None,
    rows: list[tuple[str, list[Any]]],
    ledger: Ledger,
    extra: dict[str, Any] | None = None,
) -> Ingest:
    """rows: ("good" | "bad", cells); the expectation follows the ledger."""
    exp = Expectation(ledger)
    names = expected_names(header)
    for n, (kind, cells) in enumerate(rows, start=2):
        if kind == "bad":
            exp.bad(n)
        else:
            payload = {name: cell for name, cell in zip(names, cells, strict=True)}
            k = canonical_key(payload[key]) if key else None
            exp.good(k, {n_: _xlsx_content(c) for n_, c in payload.items()}, n, n, check=False)
    path = corpus.path(fam, ".xlsx")
    write_xlsx(
        path, [header] + [cells for _, cells in rows], extra_sheet=rng.random() < 0.3, extra_data=False
    )
    expect = exp.as_dict(payloads=False)
    del expect["blank"]
    expect["refused"] = False
    expect["raw_text_none"] = True
    if extra:
        expect.update(extra)
    return Ingest(path, "xlsx", key, None, expect)


def _xlsx_content(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value.isoformat() if isinstance(value, dt.datetime) else value


def _xlsx_cells(v: Values, header: list[str], key: str | None, key_value: Any = None) -> list[Any]:
    rng = v.rng
    out: list[Any] = []
    for name in header:
        if name == key:
            out.append(key_value if key_value is not None else rng.choice([v.key(), 5000 + v.next_serial()]))
        elif name == "序号":
            out.append(v.next_serial())
        else:
            out.append(
                rng.choice(
                    [
                        rng.choice(NAMES),
                        rng.choice(ADDRESSES),
                        rng.choice(TEXTS),
                        rng.choice(MULTILINE),
                        3.25,
                        -7,
                        dt.datetime(2026, 11, 15, 16, 59),
                        True,
                    ]
                )
            )
    return out


@family("xlsx_clean")
def _xlsx_clean(corpus: Corpus, rng: random.Random) -> None:
    for i in range(12):
        v = Values(rng)
        header = ["编号", "序号", *rng.sample(["姓名", "地址", "备注", "时间", "金额"], rng.randint(1, 4))]
        key = "编号" if i % 2 else None
        ledger = Ledger(key is not None)
        rows = [("good", _xlsx_cells(v, header, key)) for _ in range(rng.randint(1, 12))]
        if key is None:
            for _, cells in rows:
                cells[0] = v.key()
        corpus.add(
            "xlsx_clean",
            [_xlsx_case(corpus, "xlsx_clean", rng, header=header, key=key, rows=rows, ledger=ledger)],
            ledger,
        )


@family("xlsx_dup_header")
def _xlsx_dup_header(corpus: Corpus, rng: random.Random) -> None:
    shapes = [["a", "a", "b"], ["a", "a", "a", "b"], ["姓名", "姓名", "编号"]]
    for i in range(5):
        v = Values(rng)
        header = list(shapes[i % len(shapes)])
        ledger = Ledger(False)
        rows = [
            ("good", [f"{rng.choice(NAMES)}{v.next_serial()}" for _ in header])
            for _ in range(rng.randint(1, 5))
        ]
        corpus.add(
            "xlsx_dup_header",
            [
                _xlsx_case(
                    corpus,
                    "xlsx_dup_header",
                    rng,
                    header=header,
                    key=None,
                    rows=rows,
                    ledger=ledger,
                    extra={"warnings": True, "columns": expected_names(header)},
                )
            ],
            ledger,
        )


@family("xlsx_repeats")
def _xlsx_repeats(corpus: Corpus, rng: random.Random) -> None:
    """Number 1, text "1", 1.0 and " 1 " as keys are one record; whitespace-only rows quarantined."""
    for _ in range(8):
        v = Values(rng)
        header = ["编号", "序号", "姓名"]
        key = "编号"
        ledger = Ledger(True)
        rows: list[tuple[str, list[Any]]] = []
        for _ in range(rng.randint(4, 14)):
            r = rng.random()
            if rows and r < 0.2:
                good = [row for row in rows if row[0] == "good"]
                if good:
                    rows.append(rng.choice(good))
                    continue
            if r < 0.3:
                rows.append(("bad", [rng.choice([" ", "  ", "\t"]) for _ in header]))
            elif r < 0.36:
                rows.append(("bad", ["长" * 300, v.next_serial(), "张伟"]))
            else:
                n = rng.randint(1, 4)
                rows.append(
                    (
                        "good",
                        _xlsx_cells(v, header, key, key_value=rng.choice([n, str(n), float(n), f" {n} "])),
                    )
                )
        corpus.add(
            "xlsx_repeats",
            [_xlsx_case(corpus, "xlsx_repeats", rng, header=header, key=key, rows=rows, ledger=ledger)],
            ledger,
        )


@family("xlsx_odd")
def _xlsx_odd(corpus: Corpus, rng: random.Random) -> None:
    """Invariants only: empty rows, formulas, control characters, header only, empty sheet, ragged rows."""
    v = Values(rng)
    shapes: list[list[list[Any]]] = [
        [["a", "b"], ["1", "x"], [None, None], ["2", "y"]],
        [["a", "b"], [("formula", "=1+1"), "x"], [("formula", "=A2*2"), "y"]],
        [["a", "b"], ["1", "x\x0by"], ["2", "z\x00"]],
        [["a", "b"]],
        [],
        [["a", "b"], ["1", "x", "多余"], ["2"]],
        [["a", None, "c"], ["1", "2", "3"]],
        [[None, "b"], ["1", "2"]],
        [["a", "a_2", "a"], ["1", "2", "3"]],
        [[1, 2.5], [3, 4]],
        [["a", "b"], [dt.datetime(1900, 1, 1), dt.datetime(9999, 12, 31, 23, 59)]],
        [["id", "v"], *[[str(n % 3), f"v{n}"] for n in range(30)]],
    ]
    for i, rows in enumerate(shapes):
        path = corpus.path("xlsx_odd", ".xlsx")
        write_xlsx(path, rows, extra_sheet=i % 2 == 1)
        key = "id" if rows and rows[0] and rows[0][0] == "id" else None
        corpus.add("xlsx_odd", [Ingest(path, "xlsx", key, None, {})])
    del v


# --- Parquet --------------------------------------------------------------------------------------


def _parquet_frame(
    rng: random.Random, n: int, v: Values, key: str | None
) -> tuple[Any, list[dict[str, Any]]]:
    import polars as pl

    cols: dict[str, Any] = {}
    if key:
        cols[key] = pl.Series(key, [1000 + v.next_serial() for _ in range(n)], dtype=pl.Int64)
    cols["序号"] = pl.Series("序号", [v.next_serial() for _ in range(n)], dtype=pl.Int64)
    kinds = rng.sample(
        [
            "decimal",
            "duration",
            "list_date",
            "struct_date",
            "float_nan",
            "time",
            "datetime_tz",
            "categorical",
            "bool",
            "null",
            "string",
            "date",
            "list_struct",
            "uint",
            "binary",
        ],
        rng.randint(2, 7),
    )
    for kind in kinds:
        if kind == "decimal":
            cols["金额"] = pl.Series(
                "金额",
                [
                    decimal.Decimal(f"{rng.randint(-(10**6), 10**6)}.{rng.randint(0, 99):02d}")
                    for _ in range(n)
                ],
                dtype=pl.Decimal(12, 2),
            )
        elif kind == "duration":
            cols["时长"] = pl.Series(
                "时长",
                [
                    dt.timedelta(seconds=rng.randint(0, 10**6), microseconds=rng.randint(0, 999))
                    for _ in range(n)
                ],
                dtype=pl.Duration("us"),
            )
        elif kind == "list_date":
            cols["日期们"] = pl.Series(
                "日期们",
                [
                    [
                        dt.date(2026, 1, 1) + dt.timedelta(days=rng.randint(0, 300))
                        for _ in range(rng.randint(0, 3))
                    ]
                    for _ in range(n)
                ],
                dtype=pl.List(pl.Date),
            )
        elif kind == "struct_date":
            cols["结构"] = pl.Series(
                "结构",
                [
                    {
                        "d": dt.date(2026, 11, 15),
                        "t": dt.datetime(2026, 11, 15, 16, 59),
                        "s": rng.choice(NAMES),
                    }
                    for _ in range(n)
                ],
            )
        elif kind == "float_nan":
            cols["值"] = pl.Series(
                "值",
                [rng.choice([math.nan, math.inf, -math.inf, 0.5, -0.0, 1e300]) for _ in range(n)],
                dtype=pl.Float64,
            )
        elif kind == "time":
            cols["时刻"] = pl.Series(
                "时刻", [dt.time(rng.randint(0, 23), rng.randint(0, 59)) for _ in range(n)]
            )
        elif kind == "datetime_tz":
            cols["时间"] = pl.Series("时间", [dt.datetime(2026, 11, 15, 8, 59, tzinfo=UTC) for _ in range(n)])
        elif kind == "categorical":
            cols["类别"] = pl.Series(
                "类别", [rng.choice(["甲", "乙"]) for _ in range(n)], dtype=pl.Categorical
            )
        elif kind == "bool":
            cols["是否"] = pl.Series("是否", [rng.random() < 0.5 for _ in range(n)])
        elif kind == "null":
            cols["空"] = pl.Series("空", [None] * n, dtype=pl.Null)
        elif kind == "string":
            cols["姓名"] = pl.Series(
                "姓名", [rng.choice(NAMES + TEXTS + MULTILINE + UNICODE_BREAKS[:3]) for _ in range(n)]
            )
        elif kind == "date":
            cols["日期"] = pl.Series("日期", [dt.date(1900 + rng.randint(0, 200), 1, 1) for _ in range(n)])
        elif kind == "list_struct":
            cols["明细"] = pl.Series(
                "明细", [[{"d": dt.timedelta(days=1), "x": [1.5, None]}] for _ in range(n)]
            )
        elif kind == "uint":
            cols["大数"] = pl.Series(
                "大数", [2**64 - 1 - rng.randint(0, 9) for _ in range(n)], dtype=pl.UInt64
            )
        elif kind == "binary":
            cols["字节"] = pl.Series(
                "字节", [bytes([rng.randint(1, 255) for _ in range(4)]) for _ in range(n)]
            )
    frame = pl.DataFrame(list(cols.values()))
    return frame, frame.to_dicts()


@family("parquet_dtypes")
def _parquet_dtypes(corpus: Corpus, rng: random.Random) -> None:
    """Decimal, Duration, nested lists and structs of dates, NaN/Infinity...: every row stored."""
    for i in range(14):
        v = Values(rng)
        key = "编号" if i % 2 else None
        ledger = Ledger(key is not None)
        n = rng.randint(1, 10)
        frame, rows = _parquet_frame(rng, n, v, key)
        exp = Expectation(ledger)
        for line, row in enumerate(rows, start=1):
            exp.good(canonical_key(row[key]) if key else None, {"序号": row["序号"]}, line, line, check=False)
        path = corpus.path("parquet_dtypes", ".parquet")
        frame.write_parquet(path, compression=rng.choice(["zstd", "snappy", "uncompressed"]))
        expect = exp.as_dict(lines=False, payloads=False)
        del expect["blank"]
        expect.update(refused=False, raw_text_none=True)
        corpus.add("parquet_dtypes", [Ingest(path, "parquet", key, None, expect)], ledger)


@family("parquet_repeats")
def _parquet_repeats(corpus: Corpus, rng: random.Random) -> None:
    """Repeated keys (same or changed content), NUL in text, null and over-long keys."""
    import polars as pl

    for _ in range(8):
        v = Values(rng)
        ledger = Ledger(True)
        exp = Expectation(ledger)
        keys: list[Any] = []
        names: list[str] = []
        for line in range(1, rng.randint(4, 14) + 1):
            r = rng.random()
            if r < 0.15 and line > 1:  # an earlier row again
                j = rng.randrange(len(keys))
                keys.append(keys[j])
                names.append(names[j])
            elif r < 0.25:
                keys.append(str(rng.randint(1, 3)))
                names.append(rng.choice(NAMES) + "\x00")
            elif r < 0.32:
                keys.append(rng.choice([None, "", "  ", "长" * 257]))
                names.append(rng.choice(NAMES) + str(v.next_serial()))
            else:
                keys.append(rng.choice(["1", "2", "3", " 2 ", f"{v.next_serial()}"]))
                names.append(rng.choice(NAMES) + str(v.next_serial()))
            k, name = keys[-1], names[-1]
            if k is None or k.strip() == "" or len(k.strip()) > 256 or "\x00" in name:
                exp.bad(line)
            else:
                exp.good(canonical_key(k), {"编号": k, "姓名": name}, line, line, check=False)
        frame = pl.DataFrame({"编号": pl.Series(keys, dtype=pl.String), "姓名": names})
        path = corpus.path("parquet_repeats", ".parquet")
        frame.write_parquet(path)
        expect = exp.as_dict(lines=False, payloads=False)
        del expect["blank"]
        expect.update(refused=False, raw_text_none=True)
        corpus.add("parquet_repeats", [Ingest(path, "parquet", "编号", None, expect)], ledger)


@family("parquet_odd")
def _parquet_odd(corpus: Corpus, rng: random.Random) -> None:
    """Invariants only: no rows, all-null rows, extreme values, binary with NUL, nested durations."""
    import polars as pl

    frames: list[Callable[[], Any]] = [
        lambda: pl.DataFrame({"a": pl.Series([], dtype=pl.String)}),
        lambda: pl.DataFrame({"a": [None, None], "b": pl.Series([None, None], dtype=pl.Int64)}),
        lambda: pl.DataFrame(
            {"d": pl.Series([decimal.Decimal("12345678901234567890.1234567890")], dtype=pl.Decimal(38, 10))}
        ),
        lambda: pl.DataFrame({"b": [b"\x00\x01\xff", b""]}),
        lambda: pl.DataFrame({"x": [[[dt.timedelta(days=-1)]], [[]]]}),
        lambda: pl.DataFrame({"k": [1.5, math.nan, math.inf], "v": ["a", "b", "c"]}),
        lambda: pl.DataFrame(
            {"t": pl.Series([dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31)], dtype=pl.Datetime("ms"))}
        ),
        lambda: pl.DataFrame(
            {"s": ["\ud800".encode("utf-8", "surrogatepass").decode("utf-8", "replace"), "\ufffe\uffff"]}
        ),
        lambda: pl.DataFrame({"arr": pl.Series([[1, 2], [3, 4]], dtype=pl.Array(pl.Int8, 2))}),
        lambda: pl.DataFrame({"e": pl.Series(["a", "b"], dtype=pl.Enum(["a", "b"]))}),
        lambda: pl.DataFrame({"i": pl.Series([2**100, -(2**100)], dtype=pl.Int128)}),
        lambda: pl.DataFrame({"": ["空列名"], " ": ["空格列名"]}),
    ]
    keys = [None, "a", None, None, None, "k", None, None, None, "e", "i", None]
    for make, key in zip(frames, keys, strict=True):
        try:
            frame = make()
            buffer = io.BytesIO()
            frame.write_parquet(buffer)
        except Exception:  # this polars cannot make or write it: skip
            continue
        path = corpus.write("parquet_odd", ".parquet", buffer.getvalue())
        corpus.add("parquet_odd", [Ingest(path, "parquet", key, None, {})])


# --- sequences: one source, several files ---------------------------------------------------------


@family("sequence")
def _sequence(corpus: Corpus, rng: random.Random) -> None:
    """v1 then v2 of an export (changed, new and unchanged records), then v1 again: all duplicates."""
    import polars as pl

    for i in range(12):
        v = Values(rng)
        fmt = ["csv", "jsonl", "xlsx", "parquet"][i % 4]
        ledger = Ledger(True)
        source = f"corpus-sequence-{i:02d}"
        base = {f"K{n}": f"{rng.choice(NAMES)}-{v.next_serial()}" for n in range(rng.randint(3, 10))}
        v2 = dict(base)
        for k in rng.sample(sorted(base), rng.randint(1, len(base))):
            v2[k] = f"{rng.choice(NAMES)}-{v.next_serial()}"
        for n in range(rng.randint(0, 3)):
            v2[f"N{n}"] = f"{rng.choice(NAMES)}-{v.next_serial()}"
        ingests = []
        for version in (base, v2):
            items = list(version.items())
            rng.shuffle(items)
            if fmt in ("csv", "jsonl"):
                b = TextBuilder(
                    ledger,
                    encoding=rng.choice(["utf-8", "gbk"]),
                    header=["编号", "姓名"] if fmt == "csv" else None,
                    key_column="编号",
                )
                for k, name in items:
                    if fmt == "csv":
                        b.row([k, name])
                    else:
                        b.obj({"编号": k, "姓名": name})
                ingests.append(_text_ingest(corpus, "sequence", b, "." + fmt, key_column="编号"))
            else:
                exp = Expectation(ledger)
                first = 2 if fmt == "xlsx" else 1
                for line, (k, name) in enumerate(items, start=first):
                    exp.good(k, {"编号": k, "姓名": name}, line, line, check=False)
                path = corpus.path("sequence", "." + fmt)
                if fmt == "xlsx":
                    write_xlsx(path, [["编号", "姓名"], *[[k, name] for k, name in items]])
                else:
                    pl.DataFrame(
                        {"编号": [k for k, _ in items], "姓名": [n for _, n in items]}
                    ).write_parquet(path)
                expect = exp.as_dict(lines=False, payloads=False)
                del expect["blank"]
                expect["refused"] = False
                ingests.append(Ingest(path, fmt, "编号", None, expect))
        # v1 again: every record is a duplicate of its version 1
        again = Ingest(
            ingests[0].path,
            ingests[0].fmt,
            "编号",
            None,
            {
                "refused": False,
                "read": len(base),
                "stored": 0,
                "new_versions": 0,
                "duplicate": len(base),
                "quarantined": 0,
            },
        )
        corpus.add("sequence", [*ingests, again], ledger, source=source)


@family("cross_format")
def _cross_format(corpus: Corpus, rng: random.Random) -> None:
    """Invariants only: one source fed the same records as CSV, JSONL, XLSX and Parquet."""
    import polars as pl

    for i in range(4):
        rows = [(f"K{n}", rng.choice(NAMES)) for n in range(5)]
        header = ["编号", "姓名"]
        csv_path = corpus.write(
            "cross_format", ".csv", ("编号,姓名\n" + "".join(f"{k},{n}\n" for k, n in rows)).encode()
        )
        jsonl_path = corpus.write(
            "cross_format",
            ".jsonl",
            "".join(json.dumps({"编号": k, "姓名": n}, ensure_ascii=False) + "\n" for k, n in rows).encode(),
        )
        xlsx_path = corpus.path("cross_format", ".xlsx")
        write_xlsx(xlsx_path, [header, *[list(r) for r in rows]])
        parquet_path = corpus.path("cross_format", ".parquet")
        pl.DataFrame({"编号": [k for k, _ in rows], "姓名": [n for _, n in rows]}).write_parquet(parquet_path)
        key = "编号" if i % 2 else None
        paths = [(csv_path, "csv"), (jsonl_path, "jsonl"), (xlsx_path, "xlsx"), (parquet_path, "parquet")]
        rng.shuffle(paths)
        corpus.add("cross_format", [Ingest(p, f, key, None, {"refused": False}) for p, f in paths])


# --- hostile bytes without an oracle --------------------------------------------------------------


def _valid_csv(rng: random.Random, v: Values) -> bytes:
    header = _header(rng)
    b = TextBuilder(
        Ledger(False), encoding=rng.choice(["utf-8", "gbk"]), eol=rng.choice(["\n", "\r\n"]), header=header
    )
    for _ in range(rng.randint(2, 10)):
        cells = _row(v, header, None, b.encoding, tsv=False, plain=False, breaks=True)
        b.row(cells, quote=_quotes(rng, cells, False))
    return b.data()


def _valid_jsonl(rng: random.Random, v: Values) -> bytes:
    return "".join(
        json.dumps(_obj(v, "utf-8", "id"), ensure_ascii=rng.random() < 0.5) + "\n"
        for _ in range(rng.randint(2, 10))
    ).encode()


@family("stray_quotes")
def _stray_quotes(corpus: Corpus, rng: random.Random) -> None:
    """Quotes where RFC 4180 has none: mid-cell, after a space, after a closing quote, in TSV."""
    lines = [
        '1,ab"cd,x',
        '2, "spaced",x',
        '3,"closed"tail,x',
        '4,"a""b,x',
        '5,"""",x',
        '6,",",x',
        '7,"\n',
        '8,x,"y',
        '9,"a"b"c",x',
        "10,'single',x",
    ]
    for i in range(10):
        chosen = rng.sample(lines, rng.randint(1, 5))
        text = "编号,内容,其他\n" + "\n".join(chosen) + "\n"
        ext = ".csv" if i % 3 else ".tsv"
        if ext == ".tsv":
            text = text.replace(",", "\t")
        path = corpus.write("stray_quotes", ext, text.encode("utf-8" if i % 2 else "gbk"))
        corpus.add(
            "stray_quotes", [Ingest(path, ext[1:], "编号" if i % 2 else None, None, {"refused": False})]
        )


@family("odd_headers")
def _odd_headers(corpus: Corpus, rng: random.Random) -> None:
    """Invariants only: empty names, names that collide with renames, blank lines or BOM/NUL/GBK/newlines
    in the header, key column duplicated."""
    files = [
        "a,,b\n1,2,3\n",
        "a,a,a_2\n1,2,3\n4,5,6\n",
        "\n\n编号,姓名\nK1,张伟\n",
        "   \n编号,姓名\nK1,张伟\n",
        "编号,姓\x00名\nK1,张伟\n",
        '"编号\n多行",姓名\nK1,张伟\n',
        "编号,姓名,\nK1,张伟,\n",
        " 编号 , 姓名 \nK1,张伟\n",
        "编号\ufeff,姓名\nK1,张伟\n",
        "编号,编号\nK1,K2\nK1,K3\n",
        "编号\u2028x,姓名\nK1,张伟\n",
        ",\n,\n1,2\n",
    ]
    datas = [text.encode() for text in files] + [
        "编号,姓名\nK1,张伟\n".encode("gbk") + "K2,李娜\n".encode(),  # a GBK header, UTF-8 rows
        "姓名,电话\n".encode("gbk") + "张伟,1\n李娜,2\n".encode(),
    ]
    for i, data in enumerate(datas):
        path = corpus.write("odd_headers", ".csv", data)
        corpus.add("odd_headers", [Ingest(path, "csv", "编号" if i in (2, 3, 9) else None, None, {})])


@family("line_endings")
def _line_endings(corpus: Corpus, rng: random.Random) -> None:
    """Invariants only: CR-only files, mixed LF/CRLF/CR, a lone CR inside a cell, no final terminator."""
    v = Values(rng)
    for i in range(8):
        data = _valid_csv(rng, v) if i % 2 else _valid_jsonl(rng, v)
        if i < 2:
            data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r")
        elif i < 4:
            data = b"".join(line + rng.choice([b"\n", b"\r\n", b"\r"]) for line in data.splitlines())
        elif i < 6:
            data = data.replace("张".encode(), b"\r", 1).replace(b"a", b"a\r", 1)
        else:
            data = data.rstrip(b"\r\n") + rng.choice([b"\r", b"\n\r", b"\r\r\n"])
        ext = ".csv" if i % 2 else ".jsonl"
        path = corpus.write("line_endings", ext, data)
        corpus.add("line_endings", [Ingest(path, ext[1:], None, None, {})])


@family("truncated")
def _truncated(corpus: Corpus, rng: random.Random) -> None:
    """Invariants only: valid files cut at a random byte (mid-character, mid-quote, mid-zip)."""
    import polars as pl

    v = Values(rng)
    for i in range(24):
        kind = i % 4
        if kind == 0:
            data, ext = _valid_csv(rng, v), ".csv"
        elif kind == 1:
            data, ext = _valid_jsonl(rng, v), ".jsonl"
        elif kind == 2:
            buffer = io.BytesIO()
            import xlsxwriter

            book = xlsxwriter.Workbook(buffer, {"in_memory": True})
            book.set_properties({"created": dt.datetime(2026, 11, 23)})
            sheet = book.add_worksheet()
            for r in range(5):
                sheet.write_row(r, 0, ["a", "b"] if r == 0 else [str(r), rng.choice(NAMES)])
            book.close()
            data, ext = buffer.getvalue(), ".xlsx"
        else:
            buffer = io.BytesIO()
            pl.DataFrame({"a": list(range(20)), "b": [rng.choice(NAMES) for _ in range(20)]}).write_parquet(
                buffer
            )
            data, ext = buffer.getvalue(), ".parquet"
        cut = rng.randint(1, max(1, len(data) - 1))
        path = corpus.write("truncated", ext, data[:cut])
        corpus.add("truncated", [Ingest(path, ext[1:], None, None, {})])


@family("mutated")
def _mutated(corpus: Corpus, rng: random.Random) -> None:
    """Invariants only: valid CSV/TSV/JSONL with bytes flipped, inserted or deleted, and hostile
    characters spliced in."""
    v = Values(rng)
    specials = [
        b"\x00",
        b'"',
        b",",
        b"\t",
        b"\r",
        b"\n",
        b"\xff",
        b"\xfe",
        b"\x80",
        b"\xe2\x80\xa8",
        b"\xc2\x85",
        b"\x0b",
        b"\x1e",
        b"\xef\xbb\xbf",
        b"\xed\xa0\x80",
        b"\\u0000",
        b"\\ud800",
        b"NaN",
        b"{",
        b"}",
    ]
    for i in range(36):
        ext = [".csv", ".tsv", ".jsonl"][i % 3]
        data = bytearray(_valid_jsonl(rng, v) if ext == ".jsonl" else _valid_csv(rng, v))
        if ext == ".tsv":
            data = bytearray(bytes(data).replace(b",", b"\t"))
        for _ in range(rng.randint(1, 6)):
            pos = rng.randrange(len(data) + 1)
            op = rng.random()
            if op < 0.4:
                data[pos:pos] = rng.choice(specials)
            elif op < 0.7 and pos < len(data):
                data[pos] = rng.randrange(256)
            else:
                del data[pos : pos + rng.randint(1, 4)]
        key = ("id" if ext == ".jsonl" else HEADERS[0]) if rng.random() < 0.3 else None
        path = corpus.write("mutated", ext, bytes(data))
        corpus.add("mutated", [Ingest(path, ext[1:], key, None, {})])


@family("random_bytes")
def _random_bytes(corpus: Corpus, rng: random.Random) -> None:
    """Invariants only: random bytes under every extension, some behind a format's magic number."""
    exts = [".csv", ".tsv", ".txt", ".jsonl", ".ndjson", ".xlsx", ".parquet"]
    magic = {".xlsx": b"PK\x03\x04", ".parquet": b"PAR1"}
    for i in range(35):
        ext = exts[i % len(exts)]
        size = rng.choice([0, 1, 2, 17, 300, 4096])
        data = bytes(rng.randrange(256) for _ in range(size))
        if ext in magic and i % 2:
            data = magic[ext] + data + (magic[ext] if ext == ".parquet" else b"")
        if i % 5 == 0 and ext not in magic:
            data = "编号,姓名\n".encode() + data
        path = corpus.write("random_bytes", ext, data)
        corpus.add(
            "random_bytes",
            [Ingest(path, ext.lstrip(".").replace("ndjson", "jsonl").replace("txt", "tsv"), None, None, {})],
        )


@family("empty")
def _empty(corpus: Corpus, rng: random.Random) -> None:
    """Invariants only: nothing, only blank lines, only a BOM, only whitespace."""
    for data in (b"", b"\n\n", b"\r\n", b"\xef\xbb\xbf", b"   \n", b"\xef\xbb\xbf\n", b"\x00"):
        for ext in (".csv", ".jsonl"):
            path = corpus.write("empty", ext, data)
            corpus.add("empty", [Ingest(path, ext[1:], None, None, {})])


def generate(folder: Path, *, seed: int = SEED, families: Iterable[str] | None = None) -> list[Case]:
    """Write the corpus under folder (created) and return its cases; the same seed gives the same bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    corpus = Corpus(folder)
    for name in families or FAMILIES:
        FAMILIES[name](corpus, random.Random(f"{seed}:{name}"))
    return corpus.cases


# --- the harness ----------------------------------------------------------------------------------


COUNTS = ("read", "stored", "new_versions", "duplicate", "quarantined", "blank")


def _scalar(engine: Any, sql: str, **params: Any) -> Any:
    from sqlalchemy import text

    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar()


def _rows(engine: Any, sql: str, **params: Any) -> list[Any]:
    from sqlalchemy import text

    with engine.connect() as conn:
        return list(conn.execute(text(sql), params))


def table_counts(engine: Any, source: str) -> tuple[int, int]:
    return (
        _scalar(engine, "SELECT count(*) FROM event WHERE source_system = :s", s=source),
        _scalar(engine, "SELECT count(*) FROM quarantine WHERE source_system = :s", s=source),
    )


def as_json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def as_utc(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def line_starts(data: bytes | str) -> list[int]:
    """Offsets where each physical line starts; lines end at LF only."""
    nl = b"\n" if isinstance(data, bytes) else "\n"
    starts = [0]
    pos = data.find(nl)  # type: ignore[arg-type]
    while pos != -1:
        starts.append(pos + 1)
        pos = data.find(nl, pos + 1)  # type: ignore[arg-type]
    return starts


def _at_line(data: bytes | str, starts: list[int], line: int, piece: bytes | str) -> bool:
    """Whether piece is what the file holds from the start of `line` up to a line end."""
    if not 1 <= line <= len(starts):
        return False
    at = starts[line - 1]
    if not data.startswith(piece, at):  # type: ignore[arg-type]
        return False
    rest = data[at + len(piece) : at + len(piece) + 2]
    cr, lf = ("\r", "\n") if isinstance(data, str) else (b"\r", b"\n")
    return len(rest) == 0 or rest[:1] == lf or rest == cr + lf or piece.endswith(lf)  # type: ignore[arg-type]


def _record_at(data: bytes | str, starts: list[int], line: int, piece: bytes | str) -> bool:
    """A record may be numbered by its first or its last physical line."""
    lf = "\n" if isinstance(piece, str) else b"\n"
    inner = piece.rstrip(lf).count(lf)  # type: ignore[arg-type]
    return _at_line(data, starts, line, piece) or (inner > 0 and _at_line(data, starts, line - inner, piece))


def _describe(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)[-3:]
    where = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in reversed(frames))
    return f"{type(exc).__name__}: {str(exc)[:300]} [{where}]"


@dataclass
class Outcome:
    report: Any = None
    refused: str | None = None
    crashed: str | None = None


def ingest_once(db: Any, source: str, ing: Ingest) -> Outcome:
    from govdb import GovdbError

    try:
        return Outcome(
            report=db.ingest(
                ing.path, source=source, key_column=ing.key_column, occurred_at_column=ing.occurred_at_column
            )
        )
    except GovdbError as exc:
        return Outcome(refused=str(exc) or type(exc).__name__)
    except Exception as exc:  # a traceback: what the issue forbids
        return Outcome(crashed=_describe(exc))


def conservation_problems(report: Any) -> list[str]:
    missing = [
        name
        for name in (*COUNTS, "quarantine", "versions", "warnings", "encoding")
        if not hasattr(report, name)
    ]
    if missing:
        return [f"the report has no {missing}"]
    out = []
    total = report.stored + report.new_versions + report.duplicate + report.quarantined
    if report.read != total:
        out.append(
            f"read {report.read} != stored {report.stored} + new_versions {report.new_versions} + "
            f"duplicate {report.duplicate} + quarantined {report.quarantined}"
        )
    if (
        min(
            report.read,
            report.stored,
            report.new_versions,
            report.duplicate,
            report.quarantined,
            report.blank,
        )
        < 0
    ):
        out.append("negative count")
    if len(report.quarantine) != report.quarantined:
        out.append(
            f"quarantine list has {len(report.quarantine)} rows, quarantined says {report.quarantined}"
        )
    if sum(1 for v in report.versions if v.version > 1) != report.new_versions:
        out.append(
            f"versions list has {sum(1 for v in report.versions if v.version > 1)} new versions, "
            f"new_versions says {report.new_versions}"
        )
    return out


def counts_of(report: Any) -> dict[str, int]:
    return {name: getattr(report, name) for name in COUNTS}


def check_case(db: Any, case: Case) -> list[str]:
    """Ingest every file of a case twice over (all, then all again); every broken promise as text."""
    engine = db.events
    failures: list[str] = []
    seen_files: dict[str, dict[str, int]] = {}  # file digest -> counts of its first ingest
    stored_total = 0
    for round_ in (1, 2):
        for n, ing in enumerate(case.ingests):
            where = f"{case.family}/{ing.path.name} (ingest {n + 1}, round {round_})"
            digest = hashlib.sha256(ing.path.read_bytes()).hexdigest()
            before = table_counts(engine, case.source)
            outcome = ingest_once(db, case.source, ing)
            after = table_counts(engine, case.source)
            problems: list[str] = []
            if outcome.crashed:
                problems.append(f"traceback: {outcome.crashed}")
            elif outcome.refused is not None:
                if ing.expect.get("refused") is False:
                    problems.append(f"refused, but the file must be read: {outcome.refused[:300]}")
                if after != before:
                    problems.append(f"refused but the tables changed: {before} -> {after}")
            else:
                report = outcome.report
                conserved = conservation_problems(report)
                if conserved and conserved[0].startswith("the report has no"):
                    failures += [f"{where}: {conserved[0]}"]
                    continue
                problems += conserved
                if ing.expect.get("refused") is True:
                    problems.append(f"read, but the file must be refused: {counts_of(report)}")
                stored_total += report.stored + report.new_versions
                repeat = digest in seen_files
                first = seen_files.setdefault(digest, counts_of(report))
                if repeat:  # the same bytes again: nothing new, the same rows quarantined
                    if report.stored or report.new_versions:
                        problems.append(
                            f"a repeated ingest stored {report.stored} + {report.new_versions} versions"
                        )
                    if after != before:
                        problems.append(f"a repeated ingest changed the tables: {before} -> {after}")
                    same = {
                        k: (first[k], getattr(report, k))
                        for k in ("read", "quarantined", "blank")
                        if first[k] != getattr(report, k)
                    }
                    if same:
                        problems.append(f"a repeated ingest counted differently (first, now): {same}")
                else:
                    grown = (after[0] - before[0], after[1] - before[1])
                    if grown != (report.stored + report.new_versions, report.quarantined):
                        problems.append(
                            f"tables grew by (events, quarantine) {grown}, the report says "
                            f"{(report.stored + report.new_versions, report.quarantined)}"
                        )
                if round_ == 1 and not repeat:
                    problems += _check_expectations(db, case, ing, report)
                elif round_ == 1 and ing.expect:
                    problems += _check_counts(ing.expect, report)
            failures += [f"{where}: {p}" for p in problems]
    events, _ = table_counts(engine, case.source)
    if events != stored_total:
        failures.append(
            f"{case.family}/{case.source}: the source holds {events} events, reports stored {stored_total}"
        )
    if case.keys is not None:
        failures += [f"{case.family}/{case.source}: {p}" for p in _check_keys(engine, case)]
    return failures


def _check_counts(expect: dict[str, Any], report: Any) -> list[str]:
    wrong = {
        k: (expect[k], getattr(report, k)) for k in COUNTS if k in expect and expect[k] != getattr(report, k)
    }
    return [f"counts (expected, got): {wrong}; quarantine: {report.quarantine[:6]}"] if wrong else []


def _check_keys(engine: Any, case: Case) -> list[str]:
    assert case.keys is not None
    rows = _rows(
        engine,
        "SELECT source_key, count(*), min(version), max(version) FROM event "
        "WHERE source_system = :s GROUP BY source_key",
        s=case.source,
    )
    got = {r[0]: int(r[1]) for r in rows}
    problems = []
    if got != case.keys:
        missing = {k: n for k, n in case.keys.items() if got.get(k) != n}
        extra = {k: n for k, n in got.items() if k not in case.keys}
        problems.append(
            f"source keys and their versions: expected {dict(list(missing.items())[:5])}, "
            f"got {dict(list({k: got.get(k) for k in missing}.items())[:5])}; unexpected "
            f"{dict(list(extra.items())[:5])}"
        )
    gaps = [r[0] for r in rows if (r[2], r[3]) != (1, r[1])]
    if gaps:
        problems.append(f"versions are not 1..n for keys {gaps[:5]}")
    return problems


def _check_expectations(db: Any, case: Case, ing: Ingest, report: Any) -> list[str]:
    expect = ing.expect
    problems = _check_counts(expect, report)
    if "encoding" in expect and report.encoding != expect["encoding"]:
        problems.append(f"encoding {report.encoding!r}, expected {expect['encoding']!r}")
    if "quarantine_lines" in expect:
        got = sorted(q.line for q in report.quarantine)
        if got != expect["quarantine_lines"]:
            problems.append(
                f"quarantined lines {got}, expected {expect['quarantine_lines']} ({report.quarantine[:4]})"
            )
    if expect.get("warnings") and not any("the header repeats" in w for w in report.warnings):
        problems.append("no warning about renamed duplicate header names")
    batch = getattr(report, "batch_id", None)
    if batch is None:
        return [*problems, "the report has no batch_id to find what it stored"]
    events = _rows(
        db.events,
        "SELECT source_key, version, source_line, raw_text, raw, occurred_at FROM event "
        "WHERE batch_id = :b ORDER BY event_id",
        b=batch,
    )
    quarantined = _rows(
        db.events, "SELECT line, raw_text, raw_bytes, reason FROM quarantine WHERE batch_id = :b", b=batch
    )
    raws = []
    for e in events:
        raw = as_json(e.raw)
        raws.append(raw)
        if not isinstance(raw, dict):
            problems.append(f"raw of line {e.source_line} is not a JSON object: {str(raw)[:80]}")
    if "columns" in expect:
        bad = [
            sorted(r)
            for r in raws
            if isinstance(r, dict) and list(r) != expect["columns"] and sorted(r) != sorted(expect["columns"])
        ]
        if bad:
            problems.append(f"raw columns {bad[0]}, expected {expect['columns']}")
    if expect.get("raw_text_none"):
        kept = [e.source_line for e in events if e.raw_text is not None]
        if kept:
            problems.append(f"raw_text should be None for {ing.fmt}, lines {kept[:5]} have one")
    if "occurred" in expect:
        for e in events:
            want = expect["occurred"].get(e.source_key)
            if want is not None and as_utc(e.occurred_at) != want:
                problems.append(f"occurred_at of {e.source_key}: {e.occurred_at}, expected {want} UTC")
    if "events" in expect:
        problems += _check_events(expect["events"], events, raws)
    if ing.lines_exact:
        problems += _check_raw_lines(ing.path.read_bytes(), report, events, quarantined)
    return problems


def _check_events(expected: list[dict[str, Any]], events: list[Any], raws: list[Any]) -> list[str]:
    problems = []
    want = {content_of(x["payload"]): x for x in expected}
    got: dict[str, Any] = {}
    for e, raw in zip(events, raws, strict=True):
        if isinstance(raw, dict):
            got[content_of(raw)] = e
    missing = [w for c, w in want.items() if c not in got]
    extra = [c for c in got if c not in want]
    if missing or extra:
        problems.append(
            f"stored payloads differ: missing {[m['payload'] for m in missing[:2]]}, unexpected {extra[:2]}"
        )
    for c, w in want.items():
        e = got.get(c)
        if e is None:
            continue
        if e.source_line not in (w["start"], w["end"]):
            problems.append(f"record of lines {w['start']}-{w['end']} stored with line {e.source_line}")
        if e.version != w["version"]:
            problems.append(
                f"record of line {w['start']} stored as version {e.version}, expected {w['version']}"
            )
    return problems


def _check_raw_lines(data: bytes, report: Any, events: list[Any], quarantined: list[Any]) -> list[str]:
    """raw_text is the record as the file held it (decoded), raw_bytes its exact bytes."""
    problems = []
    encoding = report.encoding or "utf-8"
    text = data.decode(encoding, errors="surrogateescape")
    text_starts = line_starts(text)
    byte_starts = line_starts(data)
    for e in events:
        if e.raw_text is None or not _record_at(text, text_starts, e.source_line, e.raw_text):
            problems.append(
                f"event raw_text {str(e.raw_text)[:60]!r} is not line {e.source_line} as received"
            )
    for q in quarantined:
        raw_bytes = bytes(q.raw_bytes) if q.raw_bytes is not None else None
        if raw_bytes is None or not _record_at(data, byte_starts, q.line, raw_bytes):
            problems.append(
                f"quarantine raw_bytes {raw_bytes[:60] if raw_bytes else None!r} are not line "
                f"{q.line} as received"
            )
    return problems


# --- concurrent ingest: one process ---------------------------------------------------------------


def concurrent_worker(
    barrier: Any, queue: Any, master_url: str, events_url: str, jobs: list[tuple[str, str, str | None]]
) -> None:
    """Open the store, wait for the others, ingest each (path, source, key) as they all do; report back."""
    results: list[dict[str, Any]] = []
    try:
        from govdb import GovDB, GovdbError

        db = GovDB.open(master_url=master_url, events_url=events_url, create=False)
    except Exception as exc:
        for _ in jobs:
            barrier.wait(timeout=300)
        queue.put([{"error": _describe(exc)}])
        return
    for path, source, key in jobs:
        barrier.wait(timeout=300)
        try:
            report = db.ingest(path, source=source, key_column=key)
            results.append({**counts_of(report), "problems": conservation_problems(report)})
        except GovdbError as exc:
            results.append({"error": f"GovdbError: {exc}"})
        except Exception as exc:
            results.append({"error": _describe(exc)})
    db.close()
    queue.put(results)
