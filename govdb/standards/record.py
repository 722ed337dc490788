"""The standards for one record, in plain Python, for online lookups.

A polars pipeline costs a fraction of a millisecond per operation however small the frame, and one
record passes through a few hundred of them; here the same rules run as ordinary Python on one
value. Every function gives exactly what its vectorised twin gives (tests/test_record.py holds
them equal over generated records): IDs, dates, phones, genders, names with pinyin, and addresses
down to village codes with the same gazetteer, supports, hint and tie rules as `addresses.py`.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from govdb.standards.addresses import (
    PART_AHEAD,
    ROAD_AHEAD,
    _countyless_cities,
    _township_names,
    _upper_gazetteer,
    _village_names,
)
from govdb.standards.dates import EXCEL_EPOCH
from govdb.standards.house_numbers import CN_NUMBER, arabic_numbers
from govdb.standards.ids import CHECK_CHARS, WEIGHTS
from govdb.standards.names import GENDER_WORDS, LATIN_NAME, MIDDLE_DOTS, SURNAME_READINGS, char_readings

LATIN = re.compile(LATIN_NAME.strip("^$"))


def _nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


# --- identifiers, dates, phones, genders ---------------------------------------------------------


def _clean_id(raw: str | None) -> str | None:
    """NFKC, no spaces or dashes, upper case (`ids.normalize`)."""
    return None if raw is None else re.sub(r"[\s\-_]", "", _nfkc(str(raw))).upper()


def _upgraded(text: str) -> str:
    if re.fullmatch(r"\d{15}", text):
        first17 = text[:6] + "19" + text[6:15]
        return first17 + _check_digit(first17)
    return text


def id_text(raw: str | None, today: dt.date) -> str | None:
    """The valid ID (15 digits upgraded), else the ID as written, cleaned (comparable for typos)."""
    return resident_id(raw, today)[0] or _clean_id(raw) or None


def _check_digit(first17: str) -> str:
    return CHECK_CHARS[sum(int(c) * w for c, w in zip(first17, WEIGHTS, strict=True)) % 11]


def _ymd(text: str, fmt: str) -> dt.date | None:
    try:
        return dt.datetime.strptime(text, fmt).date()
    except ValueError:
        return None


def resident_id(raw: str | None, today: dt.date) -> tuple[str | None, str | None, dt.date | None]:
    """(valid ID, its gender, its birth date); Nones when the ID is not valid."""
    cleaned = _clean_id(raw)
    text = _upgraded(cleaned) if cleaned else None
    if text is None or not re.fullmatch(r"\d{17}[\dX]", text):
        return None, None, None
    birth = _ymd(text[6:14], "%Y%m%d") if text[6:14].isdigit() else None
    if text[17] != _check_digit(text[:17]) or birth is None or birth > today:
        return None, None, None
    return text, "M" if int(text[16]) % 2 == 1 else "F", birth


def date(raw: Any, today: dt.date) -> dt.date | None:
    """A written date (every form `dates.parse_date` reads), not in the future."""
    if raw is None:
        return None
    if isinstance(raw, dt.date):
        raw = raw.isoformat()
    s = _nfkc(str(raw)).strip()
    s = re.sub(r"[ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?$", "", s, count=1)
    s = re.sub(r"[年月/.]", "-", s)
    s = re.sub(r"日$", "", s, count=1)
    s = re.sub(r"^(\d{4})(\d{2})(\d{2})$", r"\1-\2-\3", s, count=1)
    parsed: dt.date | None = None
    if re.fullmatch(r"\d{4}-\d{1,2}-\d{1,2}", s):
        parsed = _ymd(s, "%Y-%m-%d")
    elif re.fullmatch(r"\d{5}", s) and 1 <= int(s) <= 80000:
        parsed = EXCEL_EPOCH + dt.timedelta(days=int(s))
    return parsed if parsed is not None and parsed <= today else None


def phone(raw: str | None) -> str | None:
    if raw is None:
        return None
    digits = re.sub(r"^(\+86|0086)", "", re.sub(r"[\s\-()（）]", "", _nfkc(str(raw))), count=1)
    if re.fullmatch(r"86 ?1\d{10}", digits):
        digits = digits[2:]
    if re.fullmatch(r"1[3-9]\d{9}", digits):
        return digits
    if re.fullmatch(r"(010|02\d)\d{8}", digits) or re.fullmatch(r"0[3-9]\d{2}\d{7,8}", digits):
        area = 3 if re.match(r"(010|02\d)", digits) else 4
        return digits[:area] + "-" + digits[area:]
    return None


def gender(raw: str | None) -> str | None:
    return None if raw is None else GENDER_WORDS.get(_nfkc(str(raw)).strip().upper())


# --- names ---------------------------------------------------------------------------------------


def name(raw: str | None) -> str | None:
    """`standardize_name`: NFKC, middle dots unified, Han names without spaces, latin title-cased."""
    if raw is None:
        return None
    text = re.sub(MIDDLE_DOTS, "·", _nfkc(str(raw)).strip())
    text = re.sub(r"^·+|·+$", "", re.sub(r"\s*·\s*", "·", text))
    latin = LATIN.fullmatch(text)
    cleaned = _titlecase(re.sub(r"\s+", " ", text)) if latin else re.sub(r"\s+", "", text)
    return _nfkc(cleaned) or None


def _titlecase(text: str) -> str:
    """polars' to_titlecase: each run of letters and digits starts upper case, the rest lower."""
    return re.sub(r"[^\W_]+", lambda m: m.group(0)[:1].upper() + m.group(0)[1:].lower(), text)


@functools.cache
def _surname_tables() -> tuple[dict[str, str], dict[str, str]]:
    compound = {k: v for k, v in SURNAME_READINGS.items() if len(k) == 2}
    single = {k: v for k, v in SURNAME_READINGS.items() if len(k) == 1}
    return compound, single


def pinyin(std_name: str) -> str:
    """`names.name_pinyin` for one standardized name: syllables separated by spaces."""
    if LATIN.fullmatch(std_name):
        return std_name.lower()
    compound, single = _surname_tables()
    readings = char_readings()
    head = compound.get(std_name[:2])
    skip = 2 if head is not None else 0
    if head is None:
        head = single.get(std_name[:1])
        skip = 1 if head is not None else 0
    rest = [readings.get(c, c.lower()) for c in std_name[skip:] if c != "·"]
    return " ".join(p for p in ([head] if head is not None else []) + ([" ".join(rest)] if rest else []))


@dataclass(frozen=True)
class ParsedAddress:
    division_code: str | None
    rest: str | None


# --- addresses -----------------------------------------------------------------------------------


def address_text(raw: str | None) -> str | None:
    """The address as standardize keeps it: NFKC, no whitespace."""
    text = None if raw is None else re.sub(r"\s+", "", _nfkc(str(raw)))
    return text or None


@functools.cache
def _upper_index() -> tuple[dict[str, list[tuple[str, int]]], int, int]:
    index: dict[str, list[tuple[str, int]]] = {}
    for alias, code, level in _upper_gazetteer().iter_rows():
        index.setdefault(alias, []).append((code, level))
    lengths = [len(a) for a in index]
    return index, min(lengths), max(lengths)


@functools.cache
def _township_index() -> dict[tuple[str, str], list[tuple[str, str]]]:
    index: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for alias, code, _level, parent, first2 in _township_names().iter_rows():
        index.setdefault((parent, first2), []).append((alias, code))
    return index


@functools.cache
def _village_index() -> dict[tuple[str, str], list[tuple[str, str]]]:
    index: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for alias, village, township, county, first2 in _village_names().iter_rows():
        index.setdefault((township, first2), []).append((alias, village))
        index.setdefault((county, first2), []).append((alias, village))
    return index


@functools.cache
def _countyless() -> frozenset[str]:
    return frozenset(_countyless_cities().to_list())


_WIDTH = {1: 2, 2: 4, 3: 6, 4: 9}


def _prefix(code: str, level: int) -> str:
    return code[: _WIDTH.get(level, 12)]


def parse_address(raw: str | None, hint: str | None = None) -> ParsedAddress:
    """`addresses.parse_addresses` for one address: the division code and the remaining text."""
    text = address_text(raw)
    if text is None:
        return ParsedAddress(None, None)
    index, shortest, longest = _upper_index()
    spans: set[tuple[int, int, str, int]] = set()  # (start, end, code, level)
    for i in range(len(text)):
        for length in range(shortest, min(longest, len(text) - i) + 1):
            for code, level in index.get(text[i : i + length], ()):
                spans.add((i, i + length, code, level))
    # Townships right after a county (or a city without counties), and after the hint at the start.
    countyless = _countyless()
    parents = {(code, end) for start, end, code, level in spans if level == 3 or code in countyless}
    if hint:
        parents.add((hint[:6], 0))
    townships = _township_index()
    for parent, start in parents:
        rest = text[start:]
        for alias, code in townships.get((parent, rest[:2]), ()):
            if rest.startswith(alias):
                spans.add((start, start + len(alias), code, 4))
    # Names inside longer names are not matches; the same text naming two levels means the higher.
    covered: set[tuple[int, int]] = set()
    reach = -1
    for start, end in sorted({(s, e) for s, e, _, _ in spans}, key=lambda p: (p[0], -p[1])):
        if reach >= end:
            covered.add((start, end))
        reach = max(reach, end)
    kept = [s for s in spans if (s[0], s[1]) not in covered]
    top_level: dict[tuple[int, int], int] = {}
    for start, end, _, level in kept:
        top_level[(start, end)] = min(level, top_level.get((start, end), 9))
    top, parts = _names_in_text(text, kept, [s for s in kept if s[3] == top_level[(s[0], s[1])]])
    found: dict[str, tuple[int, int, int]] = {}  # code -> (start, end, level), first named
    for start, end, code, level in sorted(top):
        if code not in found:
            found[code] = (start, end, level)
    part_codes = {code for code, (start, end, level) in found.items() if (start, end, code, level) in parts}
    return _choose(text, found, hint, part_codes)


Span = tuple[int, int, str, int]  # (start, end, code, level)


def _names_in_text(text: str, spans: list[Span], top: list[Span]) -> tuple[list[Span], set[Span]]:
    """`addresses._names_in_text`: `top` without the names followed by a road word (unless a
    division under them is named next) and the names after a lower-level division; and the
    names followed by a township or village word (`part`)."""
    roads: set[Span] = set()
    parts: set[Span] = set()
    for start, end, code, level in top:
        road = bool(ROAD_AHEAD.match(text, end))
        if not (road or (level <= 3 and PART_AHEAD.match(text, end))):
            continue
        prefix = _prefix(code, level)
        if any(s == end and c != code and c.startswith(prefix) for s, _, c, _ in spans):
            continue
        if level in (3, 4) and _village_at(text[end:], code, level):
            continue
        (roads if road else parts).add((start, end, code, level))
    top = [s for s in top if s not in roads]
    passed = {lvl: min((e for _, e, _, lv in top if lv > lvl), default=None) for lvl in (1, 2, 3)}
    return [s for s in top if (at := passed.get(s[3])) is None or s[0] < at], parts


def _village_at(rest: str, code: str, level: int) -> bool:
    """Whether `rest` starts with the name of a village under `code` (a county or a township)."""
    return any(
        rest.startswith(alias) and village[: _WIDTH[level]] == code
        for alias, village in _village_index().get((code, rest[:2]), ())
    )


def _choose(
    text: str, found: dict[str, tuple[int, int, int]], hint: str | None, parts: set[str]
) -> ParsedAddress:
    hint_prefix = (hint.rstrip("0") if len(hint) == 6 else hint) if hint else None
    hint_levels = {2: 1, 4: 2, 6: 3, 9: 4, 12: 5}.get(len(hint_prefix), 0) if hint_prefix else 0
    candidates = []
    for code, (start, end, level) in found.items():
        ancestors = [
            (a_level, a_end)
            for a_code, (_, a_end, a_level) in found.items()
            if a_level < level and a_level in _WIDTH and _prefix(a_code, a_level) == code[: _WIDTH[a_level]]
            and a_end <= start
        ]  # fmt: skip
        support = len({a for a, _ in ancestors})
        nearest = max((a for a, _ in ancestors), default=0)
        chain_end = max([end] + [e for _, e in ancestors])
        hinted = bool(hint_prefix) and _prefix(code, level).startswith(hint_prefix)  # type: ignore[arg-type]
        if hinted:
            support += hint_levels
        countyless = code[4:6] == "00"
        if code in parts and support == 0:
            continue  # 新昌村 alone is no county
        if level <= 3 or hinted or nearest >= 3 or (countyless and nearest >= 2):
            candidates.append((support * 10 + level, code, level, chain_end))
    if not candidates:
        return _house_numbers(ParsedAddress(None, text))
    best = max(c[0] for c in candidates)
    top = [c for c in candidates if c[0] == best]
    if len({c[1] for c in top}) > 1:
        return _house_numbers(ParsedAddress(None, text))
    _, code, level, chain_end = top[0]
    rest = text[chain_end:]
    if level in (3, 4):
        hits = [
            (len(alias), alias, village)
            for alias, village in _village_index().get((code, rest[:2]), ())
            if rest.startswith(alias)
            and village[: _WIDTH[level]] == code
            and not ROAD_AHEAD.match(rest, len(alias))
        ]
        if hits:
            k = max(h[0] for h in hits)
            longest = {(alias, village) for n, alias, village in hits if n == k}
            if len({v for _, v in longest}) == 1:
                alias, village = next(iter(longest))
                code, rest = village, rest[len(alias) :]
    return _house_numbers(ParsedAddress(code, rest))


def _house_numbers(parsed: ParsedAddress) -> ParsedAddress:
    if parsed.rest and CN_NUMBER.search(parsed.rest):
        return ParsedAddress(parsed.division_code, arabic_numbers(parsed.rest))
    return parsed
