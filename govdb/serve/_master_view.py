"""Read helpers shared by serving code: master only, never the event store (invariant 2)."""

from __future__ import annotations

import datetime as dt
import unicodedata
from typing import Any

from sqlmodel import Session, col, select

from govdb.errors import NotFoundError
from govdb.standards.divisions import ancestors, is_known
from govdb.store.master import Credential, Person


def clean_id_number(id_number: str) -> str:
    """An ID number as typed (full-width, spaces, dashes, lower-case x) in its stored form."""
    return "".join(unicodedata.normalize("NFKC", str(id_number)).split()).replace("-", "").upper()[:64]


def person_by_id_number(ms: Session, id_number: str) -> Person:
    cleaned = clean_id_number(id_number)
    person = ms.exec(select(Person).where(Person.id_number == cleaned)).first()
    if person is None:
        raise NotFoundError(f"no person with ID number {cleaned!r} in the master store")
    return person


def age_on(birth: dt.date | None, on: dt.date) -> int | None:
    if birth is None:
        return None
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def division_names(code: str | None) -> dict[str, str]:
    """village / township / county names of a division code."""
    if not code or not is_known(code):
        return {}
    names = {1: "province", 2: "city", 3: "county", 4: "township", 5: "village"}
    return {names[d.level]: d.name for d in ancestors(code)}


def credentials_of(ms: Session, person_id: str, kind: str | None = None) -> list[Credential]:
    query = select(Credential).where(Credential.person_id == person_id)
    if kind:
        query = query.where(Credential.kind == kind)
    return list(ms.exec(query.order_by(col(Credential.created_at))).all())


def person_values(person: Person, today: dt.date) -> dict[str, Any]:
    """Stored and derived person fields (age, village, township, county)."""
    values: dict[str, Any] = person.model_dump()
    values["age"] = age_on(person.birth_date, today)
    values.update(division_names(person.division_code))
    return values


DERIVED_FROM = {
    "age": "birth_date",
    "village": "division_code",
    "township": "division_code",
    "county": "division_code",
}
