"""JSON Lines: one object per LF-terminated line, numbers kept as written for telling records apart."""

from __future__ import annotations

import decimal
import json
from dataclasses import dataclass
from typing import Any

from govdb.readers.records import (
    _FOREIGN,
    FileRecords,
    _bad_reason,
    _decode,
    _payload_problem,
    _split_lines,
    _unreadable_text,
    _unstorable,
    jsonable,
    unique_names,
)


def _pairs_keeping_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's members; a repeated member name is kept as `name_2` like a repeated column."""
    out = dict(pairs)
    if len(out) == len(pairs):
        return out
    names = unique_names((name for name, _ in pairs), [])
    return dict(zip(names, (value for _, value in pairs), strict=True))


def _read_jsonl(data: bytes) -> FileRecords:
    decoded = _decode(data)
    encoding, text, foreign = decoded.encoding, decoded.text, decoded.foreign
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
