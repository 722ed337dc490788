"""Proposals promote sets aside: values master cannot store, found before the master transaction.

`process` refuses such records and decisions refuse such amendments, but a proposal's payload can
still be edited in the event store. One value PostgreSQL refuses (a NUL in text, text wider than
its column), or one Python cannot make a row of (a birth date that is no date, a credential
without a number), would fail the chunk's one master transaction, and every promote after it
would fail the same way. So each approved proposal is looked at in Python first (a walk of its
payload, no database): one with such a value moves approved -> unpromotable with its reason, and
the rest of the chunk promotes.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from govdb.promote.entities import ENTERPRISE, PLACE, TABLES
from govdb.promote.survivorship import CREDENTIAL, HISTORY, PERSON, PERSON_COLUMNS, lineage_source
from govdb.store.storable import WHY, shown, text_problems, widths

COLUMNS = {
    "person": (widths(PERSON), PERSON_COLUMNS),
    "enterprise": (widths(ENTERPRISE), TABLES["enterprise"][2]),
    "place": (widths(PLACE), TABLES["place"][2]),
}
CREDENTIAL_WIDTH = widths(CREDENTIAL)
FIELD_WIDTH = widths(HISTORY)["field"]  # a credential's attribute names are lineage field names
SOURCE_WIDTH = widths(HISTORY)["source"]


def unstorable(proposal: dict[str, Any]) -> str | None:
    """Why master cannot store this proposal's payload (every problem, each value escaped), or None."""
    payload = proposal["payload"]
    problems = [
        f"{_name(path)} holds {WHY[code]}: {shown(text)}" for path, code, text in text_problems(payload)
    ]
    problems += _lineage(proposal)
    if not isinstance(payload, dict):
        problems.append(f"the payload is not a mapping of field to value: {shown(payload)}")
    elif proposal["entity_kind"] == "credential":
        problems += _credential(payload)
    elif proposal["entity_kind"] in COLUMNS:
        problems += _columns(proposal, payload)
    if not problems:
        return None
    return f"proposal {proposal['proposal_id']} (event {proposal['event_id']}): " + "; ".join(problems)


def _name(path: str) -> str:
    return repr(path)[1:-1]  # a NUL in a key shown escaped, as its value is


def _lineage(proposal: dict[str, Any]) -> list[str]:
    """The proposal's own text master keeps: who vouches (its lineage source) and the entity."""
    problems = [
        f"its {name} holds {WHY[code]}: {shown(text)}"
        for name in ("source", "department", "entity_id")
        for _, code, text in text_problems(proposal.get(name))
    ]
    source = lineage_source(proposal)
    if not problems and len(source) > SOURCE_WIDTH:
        problems.append(f"its lineage source is {len(source)} characters, master holds {SOURCE_WIDTH}")
    return problems


def _columns(proposal: dict[str, Any], payload: dict[str, Any]) -> list[str]:
    """Values for master's columns: text, within the column's width, dates as dates."""
    width, columns = COLUMNS[proposal["entity_kind"]]
    problems = []
    for name in (c for c in columns if c in payload):
        value = payload[name]
        if value is not None and not isinstance(value, str):
            # Master's columns are text: a number or true/false is not guessed into text (SQLite
            # and PostgreSQL would write true as 1 and as true), it is refused.
            problems.append(f"{name} is not text: {shown(value)}")
        elif name == "birth_date" and value is not None and not _date(value):
            problems.append(f"{name} {shown(value)} is not a date written YYYY-MM-DD")
        elif name in width and value is not None and len(str(value)) > width[name]:
            problems.append(f"{name} is {len(str(value))} characters, master holds {width[name]}")
    if proposal["entity_kind"] == "person" and not proposal["entity_id"] and not payload.get("id_number"):
        problems.append("a new person without an id_number")
    return problems


def _date(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _credential(payload: dict[str, Any]) -> list[str]:
    """A credential needs its kind and number as text within their columns, and attributes as a
    mapping whose names fit a lineage field name."""
    problems = []
    for name in ("kind", "number"):
        value = payload.get(name)
        if not isinstance(value, str) or not value:
            problems.append(f"{name} is not text: {shown(value)}")
        elif len(value) > CREDENTIAL_WIDTH[name]:
            problems.append(f"{name} is {len(value)} characters, master holds {CREDENTIAL_WIDTH[name]}")
    attributes = payload.get("attributes", {})
    if not isinstance(attributes, dict):
        problems.append(f"attributes are not a mapping: {shown(attributes)}")
    else:
        long = [_name(str(k)) for k in attributes if len(str(k)) > FIELD_WIDTH]
        if long:
            problems.append(f"attribute name(s) longer than {FIELD_WIDTH} characters: {long}")
    return problems


def missing_entity(proposal: dict[str, Any], people: set[str], by_id_number: set[str]) -> str | None:
    """Why a proposal cannot be applied to master as it now is (read in the chunk's transaction),
    or None: the person it changes is gone (a correction reverted their creation) and it does not
    carry what a new person needs, or the person a new credential belongs to is gone."""
    payload, entity = proposal["payload"], proposal["entity_id"]
    where = f"proposal {proposal['proposal_id']} (event {proposal['event_id']})"
    if proposal["entity_kind"] == "person" and entity not in people:
        known = payload.get("id_number") in by_id_number
        if not known and not (payload.get("id_number") and payload.get("name")):
            gone = f"changes person {entity}, who is no longer in master" if entity else "adds a person"
            return f"{where}: {gone}, and holds no ID number and name to register them anew"
    if proposal["entity_kind"] == "credential" and entity not in people:
        return f"{where}: belongs to person {shown(entity)}, who is not in master (reverted?)"
    return None
