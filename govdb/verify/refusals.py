"""Events `process` refuses to propose: a standardized record holding a value master cannot store.

Ingest refuses NULs and lone surrogates, and standardizing writes dates as YYYY-MM-DD and values
that fit master. An edit of the event store can still plant a NUL, a lone surrogate, an unreadable
record, a value wider than master's column or a date master cannot read. Proposed and approved,
it would fail `promote` (PostgreSQL refuses a NUL in text), and as promote applies a chunk in
one transaction it would block every later promote. It can also fail `process` itself (a NUL in
a blocking key). Such an event is refused here and never proposed. The checks are cheap: one
polars scan of the chunk's JSON texts for escaped NULs and surrogates (only the few suspects are
decoded and looked at), and whole-column width and date tests on the records linking reads.

A refused event that was `standardized` becomes `invalid`, the state of events that fail
validation; `process --retry invalid` standardizes it again from what was received, which no
edit of the standardized record touches. An event back from an identity check becomes `unlinked`,
as its check is resolved. Either way its quality flags say `field:reason` and the report names the
event, the field and the value, escaped.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from govdb.store.bulk import json_value
from govdb.store.master import Person
from govdb.store.states import EventStatus
from govdb.store.storable import WHY, shown, suspects, text_problems, widths
from govdb.verify.chunk_writes import ChunkWork

PERSON_WIDTH = widths(Person.__table__)  # type: ignore[attr-defined]
DATES = ("birth_date",)  # kept as dates in master: written YYYY-MM-DD
ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"
# (field, reason code, the value) for one problem of one record
Problem = tuple[str, str, Any]


def decode_records(rows: list[dict[str, Any]]) -> None:
    """Decode each row's standardized record in place, and put the problems of a record no store
    can hold under `unstorable`.

    The records come as JSON text (SQLite's; PostgreSQL's read cast to text), scanned as one
    column for escaped NULs and surrogates; only the suspects are walked (a value the driver had
    decoded already would not be scanned). A text that is not a JSON object leaves
    `standardized` None, with its problem."""
    texts = [r["standardized"] for r in rows]
    try:
        decoded = [json_value(t) for t in texts]
    except ValueError:  # a record edited into something that is not JSON: look at each
        decoded = [_decoded(t) for t in texts]
    for row, value, text in zip(rows, decoded, texts, strict=True):
        row["standardized"] = value
        if value is not None and not isinstance(value, dict):
            row["standardized"] = None
            row["unstorable"] = [("standardized", "record_unreadable", text)]
    for n in suspects(texts):
        found = list(text_problems(rows[n]["standardized"]))
        if found:
            rows[n]["unstorable"] = found


_UNREADABLE = object()


def _decoded(text: Any) -> Any:
    """The JSON value of one text, or a marker that `decode_records` reports as unreadable."""
    try:
        return json_value(text)
    except ValueError:
        return _UNREADABLE


def column_problems(records: pl.DataFrame, width: dict[str, int]) -> dict[str, list[Problem]]:
    """Values of `records` (event_id and text columns) master cannot store, on whole columns:
    wider than master's column, or a date not written YYYY-MM-DD. event id -> its problems."""
    parts = []
    for name in records.columns:
        value = pl.col(name)
        tests = []
        if name in width:
            tests.append((value.str.len_chars() > width[name], "too_long"))
        if name in DATES:
            readable = (
                value.str.contains(ISO_DATE) & value.str.to_date("%Y-%m-%d", strict=False).is_not_null()
            )
            tests.append((value.is_not_null() & ~readable.fill_null(False), "not_a_stored_date"))
        for test, code in tests:
            parts.append(
                records.filter(test.fill_null(False)).select(
                    "event_id", pl.lit(name).alias("field"), pl.lit(code).alias("code"), value.alias("value")
                )
            )
    found: dict[str, list[Problem]] = {}
    if parts:
        for event_id, field, code, value in pl.concat(parts).iter_rows():
            found.setdefault(event_id, []).append((field, code, value))
    return found


def payload_problems(payload: dict[str, Any], width: dict[str, int]) -> list[Problem]:
    """The values of one planned payload wider than master's column (an enterprise or place)."""
    return [
        (k, "too_long", v)
        for k, v in payload.items()
        if k in width and v is not None and len(str(v)) > width[k]
    ]


def seen(name: str) -> str:
    """A field's name as it may be shown and stored: a NUL or lone surrogate in it escaped."""
    return repr(name)[1:-1]


def explain(event_id: int, problems: list[Problem], width: dict[str, int] | None = None) -> str:
    """Why an event is not proposed, naming the event, each field and its value (escaped)."""
    parts = []
    for path, code, value in problems:
        field = seen(path)
        if code in WHY:
            parts.append(f"{field} holds {WHY[code]}, which master cannot store: {shown(value)}")
        elif code == "too_long":
            limit = (width or PERSON_WIDTH).get(path)
            parts.append(f"{field} is {len(str(value))} characters, master holds {limit}: {shown(value)}")
        elif code == "not_a_stored_date":
            parts.append(f"{field} {shown(value)} is not a date written YYYY-MM-DD")
        else:
            parts.append(f"its standardized record is not a JSON object: {shown(value)}")
    return f"event {event_id}: " + "; ".join(parts)


def refuse(
    work: ChunkWork, refused: dict[int, str], event: dict[str, Any], problems: list[Problem], why: str
) -> None:
    """Leave the event unproposed: `invalid` (or `unlinked`, back from an identity check), with a
    flag `field:reason` per problem; `refused` keeps the reason for the run's report."""
    target = EventStatus.invalid if event["status"] == EventStatus.standardized else EventStatus.unlinked
    work.status.setdefault((EventStatus(event["status"]), target), []).append({"event_id": event["event_id"]})
    flags = list(dict.fromkeys(f"{seen(field.split('.')[0])}:{code}" for field, code, _ in problems))
    work.flags.append({"k_event_id": event["event_id"], "v_flags": [*event["quality_flags"], *flags]})
    refused[event["event_id"]] = why
