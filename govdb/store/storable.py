"""What the stores can hold: text without NUL or lone surrogates, within its column's width.

PostgreSQL refuses a NUL (U+0000) in text, neither backend encodes a lone surrogate (an escaped
\\ud800-\\udfff without its pair) as UTF-8, and PostgreSQL refuses text longer than its column.
Ingest refuses such values (govdb.readers.records), but an edit of the event store can still plant
one in a standardized record or a proposal. `process` and `promote` check again with these helpers,
before the value reaches a transaction it would fail, and with it every record after it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import polars as pl
from sqlalchemy import Table

# The JSON escapes of a NUL and of a surrogate (paired ones match too: a suspect is decoded and
# looked at, which only the few suspects are).
SUSPECT_JSON = r"\\u0000|\\u[dD][89a-fA-F]"


def text_problem(text: str) -> str | None:
    """Why no store can hold `text` (a reason code), or None."""
    if "\x00" in text:
        return "nul_character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "lone_surrogate"
    return None


WHY = {
    "nul_character": "a NUL character (U+0000)",
    "lone_surrogate": "a lone surrogate (U+D800-U+DFFF without its pair)",
}


def shown(value: Any, limit: int = 60) -> str:
    """A value as a reader can see it: NUL, control characters and lone surrogates escaped
    (`'张\\x00伟'`), shortened to about `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def text_problems(value: Any, path: str = "") -> Iterator[tuple[str, str, str]]:
    """(field path, reason code, the text) for each text in `value`, keys included, nested in
    mappings and lists, that no store can hold."""
    if isinstance(value, str):
        why = text_problem(value)
        if why:
            yield path, why, value
    elif isinstance(value, dict):
        for key, item in value.items():
            name = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and (why := text_problem(key)):
                yield name, why, key
            yield from text_problems(item, name)
    elif isinstance(value, list | tuple):
        for n, item in enumerate(value):
            yield from text_problems(item, f"{path}[{n}]")


def suspects(texts: list[Any]) -> list[int]:
    """Positions of the JSON texts that may hold a NUL or a lone surrogate, found on the whole
    column at once (one polars scan); anything else (decoded values, None) is not a suspect."""
    column = pl.Series(
        [t.decode("utf-8", "replace") if isinstance(t, bytes) else t if isinstance(t, str) else None
         for t in texts],
        dtype=pl.String,
    )  # fmt: skip
    return column.str.contains(SUSPECT_JSON).fill_null(False).arg_true().to_list()


def widths(table: Table) -> dict[str, int]:
    """The width of each text column of `table` that has one (what PostgreSQL enforces)."""
    found = {c.name: getattr(c.type, "length", None) for c in table.columns}
    return {name: int(length) for name, length in found.items() if length}
