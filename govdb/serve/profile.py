"""The one-person file (一人一档) and who read it: master only, as the access policy shows it.

A profile is everything the master store knows of one person: each field with its lineage (the
source, the checks it passed, when it was valid and recorded), the values it had before, the
person's credentials, the issuances of proactive programmes and the open conflicts (比对) on
their data. It reads the master store and nothing else (invariant 2) and goes through the same
guard as prefill (govdb.access.guard): the purpose must be granted, the person must be registered
in the reader's county or area, and the read is audited before it is returned (invariant 6).

What a department may not see follows one rule everywhere in the file. A field its policy does
not grant at all is *omitted*, together with its lineage, past values and conflicts, so that the
file does not even tell that such a value exists (a credential kind the policy does not grant
would otherwise reveal that the person holds, say, a disability certificate). A granted field
that is masked (or hidden because it is derived from a masked one) is shown masked, and so is
every past value and every conflicting value of it: a former ID number or birth date must not
undo the mask of the current one. Lineage of a masked field is kept: where a value came from and
who checked it says nothing about the value.

`who_read` answers a citizen's data-subject request: every audited read of their data, refused
reads and look-ups of their ID number that found nobody included. Asking is itself audited.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from govdb.access.audit import ReadRecord, reads_of
from govdb.access.guard import Attempt, AuditContext, Outcome, guarded_read
from govdb.access.policy import HIDDEN, Grant, check_reach
from govdb.base.actors import Actor
from govdb.base.clock import utcnow
from govdb.rulebook.loader import Rulebook
from govdb.rulebook.models import blocks_of
from govdb.serve._master_view import (
    DERIVED_FROM,
    clean_id_number,
    credentials_of,
    person_by_id_number,
    person_values,
)
from govdb.serve.asof import lineage_rows, rows_as_of
from govdb.serve.lookup import identifiers
from govdb.store.master import (
    Conflict,
    Credential,
    FieldHistory,
    Issuance,
    Person,
    current_lineage,
    lineage_checks,
)

# The person fields a profile can show, in the order a clerk reads them. Fields no policy grants
# (province, city, death date, record timestamps) are omitted like any other field not granted.
PERSON_FIELDS = (
    "name",
    "id_number",
    "gender",
    "birth_date",
    "age",
    "phone",
    "address",
    "division_code",
    "county",
    "township",
    "village",
    "death_date",
)
CREDENTIAL_DATES = ("valid_from", "valid_to")
AS_OF_FIELDS = ("name", "gender", "birth_date", "phone", "address", "division_code")  # id_number keys


@dataclass(frozen=True)
class Lineage:
    """Where a value came from (invariant 4): the source, the events it was proposed from, each
    check it passed ("level:unit (rule)"), its valid time and its record time."""

    source: str
    verified_by: list[str]
    event_ids: list[int]
    valid_from: dt.date | None
    valid_to: dt.date | None
    recorded_at: dt.datetime


@dataclass(frozen=True)
class PastValue:
    """A value the field had before (its valid time closed), masked exactly like the current one."""

    value: Any
    masked: bool
    lineage: Lineage


@dataclass(frozen=True)
class ProfileField:
    """One field of the file: its value as the reader may see it, its lineage and its history.

    `name` is the access-rule name ("name", "credential.disability_certificate.number"). Derived
    fields (age, village, township, county) carry the lineage of the field they are computed
    from and no history of their own (it is the history of that field)."""

    name: str
    value: Any
    masked: bool
    lineage: Lineage | None
    history: list[PastValue] = field(default_factory=list)


@dataclass(frozen=True)
class CredentialView:
    """A card or certificate the person holds, shown only when its kind is granted."""

    kind: str
    issuer: str | None
    valid_from: dt.date | None
    valid_to: dt.date | None
    fields: list[ProfileField]  # number and each attribute, each with lineage and history


@dataclass(frozen=True)
class IssuanceView:
    """A proactive programme's ledger row for the person (offered, accepted, delivered...).

    The delivery mode is masked when the programme decides it from a credential the reader may
    not see: "home" would tell that the person cannot walk."""

    programme: str
    cycle: str
    status: str
    delivery: str
    delivery_masked: bool
    as_of: dt.date
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass(frozen=True)
class ConflictView:
    """An open conflict (比对) on the person's data, for its owner department to settle; both
    values masked like the field."""

    field: str
    master_value: Any
    master_source: str
    proposed_value: Any
    proposed_source: str
    masked: bool
    owner_department: str | None
    created_at: dt.datetime


@dataclass(frozen=True)
class Profile:
    """Everything master knows of one person (一人一档), as one department may see it."""

    person_id: str | None  # master's id of the person, as the policy shows it
    purpose: str
    as_of: dt.date
    fields: list[ProfileField]
    credentials: list[CredentialView]
    issuances: list[IssuanceView]
    conflicts: list[ConflictView]
    audit_seq: int

    def get(self, name: str) -> ProfileField | None:
        """The field called `name`, or None when it is not in the file (not granted)."""
        return next((f for f in self.fields if f.name == name), None)


def person_profile(
    master: Engine,
    ctx: AuditContext,
    *,
    id_number: str,
    actor: Actor,
    purpose: str,
    today: dt.date | None = None,
    recorded_at: dt.datetime | None = None,
) -> Profile:
    """The file of the person with `id_number`, as `actor` may see it for `purpose` (audited).

    `today` is the valid time (what held on that day, default today); `recorded_at` the record
    time (what master had recorded by then, default now): a past day or record time answers
    from the bitemporal lineage (govdb.serve.asof), values and their lineage alike.

    Raises NotFoundError (no such person), AccessDeniedError (purpose not granted, unknown unit)
    or JurisdictionError (registered outside the reader's county); each is audited too."""
    as_of = today is not None or recorded_at is not None
    today = today or dt.date.today()
    cleaned = clean_id_number(id_number)

    def read(ms: Session, attempt: Attempt) -> tuple[Profile, Outcome]:
        person = person_by_id_number(ms, cleaned)
        attempt.subjects.append(person.person_id)
        check_reach(attempt.who, person.division_code)
        picked = None
        if as_of:
            rows = lineage_rows(ms, "person", person.person_id)
            picked = {
                k: SimpleNamespace(**{**row._mapping, "valid_to": valid_to})  # the end as known then
                for k, (row, valid_to) in rows_as_of(rows, today, recorded_at or utcnow()).items()
            }
            # The file as it was then: nothing master had not recorded yet, not even a name.
            person = person.model_copy(
                update={k: _as_column(k, picked[k].value if k in picked else None) for k in AS_OF_FIELDS}
            )
        return _build(ms, ctx.rules, person, attempt.grant, purpose, today, picked)

    result, seq = guarded_read(
        master,
        ctx,
        actor,
        purpose=purpose,
        action="profile",
        query=("id_number", cleaned),
        read=read,
    )
    return dataclasses.replace(result, audit_seq=seq)


def who_read(
    master: Engine,
    ctx: AuditContext,
    *,
    id_number: str,
    actor: Actor,
    purpose: str = "data_subject_request",
) -> list[ReadRecord]:
    """Every audited read of the person with `id_number`, oldest first (audited itself).

    Look-ups of the ID number are found by their keyed digest, so a search that found nobody is
    reported too, also when nobody has that number yet: then the answer holds only those
    look-ups and the request is audited as not_found. Like any read, it is answered only for a
    person registered in the asking unit's county. This request's own entry is appended after
    the answer is read, so it appears in the next answer, not in this one."""
    cleaned = clean_id_number(id_number)
    queries = [("id_number", cleaned)]

    def read(ms: Session, attempt: Attempt) -> tuple[list[ReadRecord], Outcome]:
        person = ms.exec(select(Person).where(Person.id_number == cleaned)).first()
        if person is None:
            return reads_of(master, ctx.key, "person", None, queries), Outcome(["reads"], [], "not_found")
        attempt.subjects.append(person.person_id)
        check_reach(attempt.who, person.division_code)
        every = queries + [q for q in identifiers(person) if q not in queries]  # phone, name+birth look-ups
        return reads_of(master, ctx.key, "person", person.person_id, every), Outcome(["reads"], [])

    records, _ = guarded_read(
        master,
        ctx,
        actor,
        purpose=purpose,
        action="who_read",
        query=("id_number", cleaned),
        read=read,
    )
    return records


# --- building the file ----------------------------------------------------------------------


class _Seen:
    """The field names the file showed and masked, for the audit entry (each name once)."""

    def __init__(self) -> None:
        self.read: dict[str, None] = {}
        self.masked: dict[str, None] = {}

    def note(self, name: str, value: Any, masked: bool) -> None:
        if masked:
            self.masked[name] = None
        elif value is not None:
            self.read[name] = None

    def outcome(self) -> Outcome:
        return Outcome(list(self.read), list(self.masked))


def _as_column(name: str, value: str | None) -> Any:
    return dt.date.fromisoformat(value) if name == "birth_date" and value else value


def _build(
    ms: Session,
    rules: Rulebook,
    person: Person,
    grant: Grant,
    purpose: str,
    today: dt.date,
    as_of: dict[str, Any] | None = None,
) -> tuple[Profile, Outcome]:
    seen = _Seen()
    person_id, masked = grant.show("person_id", person.person_id)
    seen.note("person_id", person_id, masked)
    values = person_values(person, today)
    lineage = current_lineage(ms, "person", person.person_id) if as_of is None else as_of
    past = _past(ms, "person", [person.person_id])
    fields = []
    for name in PERSON_FIELDS:
        if not grant.allows(name):
            continue
        value, masked = grant.show(name, values.get(name))
        seen.note(name, value, masked)
        base = DERIVED_FROM.get(name, name)
        history = (
            [] if name in DERIVED_FROM else _history(grant, seen, name, past.get((person.person_id, name)))
        )
        fields.append(ProfileField(name, value, masked, _lineage(lineage.get(base)), history))
    credentials = _credentials(ms, grant, seen, person.person_id)
    conflicts = _conflicts(ms, grant, seen, person.person_id, credentials)
    profile = Profile(
        person_id=person_id,
        purpose=purpose,
        as_of=today,
        fields=fields,
        credentials=[view for view, _ in credentials],
        issuances=_issuances(ms, rules, grant, seen, person.person_id),
        conflicts=conflicts,
        audit_seq=0,
    )
    return profile, seen.outcome()


def _steps(checks: Sequence[dict[str, Any]]) -> list[str]:
    """Each check as "level:unit (rule)", like prefill's verification; amendments (which may hold
    values) are left out."""
    return [
        f"{c.get('level')}:{c.get('unit') or c.get('source')}" + (f" ({c['rule']})" if c.get("rule") else "")
        for c in checks
    ]


def _lineage(row: FieldHistory | None) -> Lineage | None:
    if row is None:
        return None
    return Lineage(
        row.source,
        _steps(lineage_checks(row)),
        list(row.event_ids),
        row.valid_from,
        row.valid_to,
        row.recorded_at,
    )


def _past(ms: Session, kind: str, entity_ids: list[str]) -> dict[tuple[str, str], list[FieldHistory]]:
    """Closed lineage rows (valid_to set) of the entities, oldest valid time first, per field."""
    if not entity_ids:
        return {}
    rows = ms.exec(
        select(FieldHistory)
        .where(
            FieldHistory.entity_kind == kind,
            col(FieldHistory.entity_id).in_(entity_ids),
            col(FieldHistory.valid_to).is_not(None),
            col(FieldHistory.retracted_at).is_(None),
        )
        .order_by(col(FieldHistory.id))
    ).all()
    out: dict[tuple[str, str], list[FieldHistory]] = {}
    # Sorted here, not in SQL: the backends disagree on where a NULL valid_from sorts.
    for row in sorted(rows, key=lambda r: (r.valid_from or dt.date.min, r.id or 0)):
        out.setdefault((row.entity_id, row.field), []).append(row)
    return out


def _history(grant: Grant, seen: _Seen, name: str, rows: list[FieldHistory] | None) -> list[PastValue]:
    out = []
    for row in rows or []:
        value, masked = grant.show(name, row.value)
        seen.note(name, value, masked)
        lineage = _lineage(row)
        assert lineage is not None
        out.append(PastValue(value, masked, lineage))
    return out


def _credentials(
    ms: Session, grant: Grant, seen: _Seen, person_id: str
) -> list[tuple[CredentialView, Credential]]:
    """The person's credentials of granted kinds, each field masked by its access name."""
    held = [c for c in credentials_of(ms, person_id) if grant.allows(f"credential.{c.kind}")]
    past = _past(ms, "credential", [c.credential_id for c in held])
    out = []
    for cred in held:
        prefix = f"credential.{cred.kind}"
        seen.note(prefix, cred.kind, False)
        lineage = current_lineage(ms, "credential", cred.credential_id)
        fields = []
        for attr, raw in [("number", cred.number), *cred.attributes.items()]:
            name = f"{prefix}.{attr}"
            if not grant.allows(name):
                continue
            value, masked = grant.show(name, raw)
            seen.note(name, value, masked)
            history = _history(grant, seen, name, past.get((cred.credential_id, attr)))
            fields.append(ProfileField(name, value, masked, _lineage(lineage.get(attr)), history))
        dates = [grant.show(f"{prefix}.{d}", getattr(cred, d))[0] for d in CREDENTIAL_DATES]
        out.append((CredentialView(cred.kind, cred.issuer, dates[0], dates[1], fields), cred))
    return out


def _conflicts(
    ms: Session,
    grant: Grant,
    seen: _Seen,
    person_id: str,
    credentials: list[tuple[CredentialView, Credential]],
) -> list[ConflictView]:
    """Open conflicts on the person's fields and on their credentials of granted kinds."""
    kinds = {cred.credential_id: cred.kind for _, cred in credentials}
    rows = ms.exec(
        select(Conflict)
        .where(
            Conflict.status == "open",
            ((col(Conflict.entity_kind) == "person") & (col(Conflict.entity_id) == person_id))
            | (
                (col(Conflict.entity_kind) == "credential") & col(Conflict.entity_id).in_(list(kinds) or [""])
            ),
        )
        .order_by(col(Conflict.id))
    ).all()
    out = []
    for row in rows:
        name = row.field if row.entity_kind == "person" else f"credential.{kinds[row.entity_id]}.{row.field}"
        if not grant.allows(name):
            continue
        master_value, masked = grant.show(name, row.master_value)
        proposed_value, proposed_masked = grant.show(name, row.proposed_value)
        seen.note(name, master_value, masked)
        seen.note(name, proposed_value, proposed_masked)
        out.append(
            ConflictView(
                name,
                master_value,
                row.master_source,
                proposed_value,
                row.proposed_source,
                masked or proposed_masked,
                row.owner_department,
                row.created_at,
            )
        )
    return out


def _issuances(ms: Session, rules: Rulebook, grant: Grant, seen: _Seen, person_id: str) -> list[IssuanceView]:
    rows = ms.exec(
        select(Issuance)
        .where(Issuance.person_id == person_id)
        .order_by(col(Issuance.created_at), col(Issuance.id))
    ).all()
    out = []
    for row in rows:
        name = f"issuance.{row.programme}"
        masked = not all(grant.allows(f"credential.{k}") for k in _delivery_kinds(rules, row.programme))
        seen.note(name, row.status, False)
        if masked:
            seen.note(f"{name}.delivery", HIDDEN, True)
        out.append(
            IssuanceView(
                row.programme,
                row.cycle,
                row.status,
                HIDDEN if masked else row.delivery,
                masked,
                row.as_of,
                row.created_at,
                row.updated_at,
            )
        )
    return out


def _delivery_kinds(rules: Rulebook, programme: str) -> set[str]:
    """The credential kinds a programme's delivery mode is decided from (its home_if blocks)."""
    rule = rules.programmes.get(programme)
    if rule is None:  # a programme whose rule was removed: assume the worst
        return {"*"}
    return {str(ref.params["kind"]) for ref in blocks_of(rule.delivery.home_if) if "kind" in ref.params}
