"""Prefill a service form from master data only, each field with its source and verification.

Reads the master store and nothing else (invariant 2); checks the department's access policy,
purpose and county, masks what it may not see in full (and what is derived from it), and audits
the read before returning it (invariant 6).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from govdb.access.guard import Attempt, AuditContext, Outcome, guarded_read
from govdb.access.policy import Grant, check_reach, field_name
from govdb.base.actors import Actor
from govdb.errors import NotFoundError
from govdb.rulebook.models import FormRules
from govdb.serve._master_view import (
    DERIVED_FROM,
    clean_id_number,
    credentials_of,
    person_by_id_number,
    person_values,
)
from govdb.store.master import Credential, FieldHistory, Person, current_lineage, lineage_checks


@dataclass(frozen=True)
class PrefilledField:
    """One form field: its value and where it came from."""

    name: str
    label: str
    value: Any
    source: str | None
    verified_by: list[str]
    verified_at: dt.date | None
    locked: bool
    masked: bool
    required: bool


@dataclass(frozen=True)
class PrefillResult:
    form: str
    title: str
    person_id: str
    fields: list[PrefilledField]
    missing: list[str]
    documents_waived: list[str]
    documents_needed: list[str]
    audit_seq: int


def _verification(row: FieldHistory | None) -> tuple[str | None, list[str], dt.date | None]:
    if row is None:
        return None, [], None
    steps = [
        f"{c.get('level')}:{c.get('unit') or c.get('source')}" + (f" ({c['rule']})" if c.get("rule") else "")
        for c in lineage_checks(row)
    ]
    return row.source, steps, row.recorded_at.date()


def prefill_form(
    master: Engine,
    ctx: AuditContext,
    form_code: str,
    *,
    id_number: str,
    actor: Actor,
    today: dt.date | None = None,
) -> PrefillResult:
    """The form `form_code` filled for the person with `id_number`, as `actor` may see it.

    Refused and failed look-ups are audited like reads (govdb.access.guard)."""
    form = ctx.rules.forms.get(form_code)
    if form is None:
        raise NotFoundError(f"no form {form_code!r}; known forms: {sorted(ctx.rules.forms)}")
    today = today or dt.date.today()
    cleaned = clean_id_number(id_number)

    def read(ms: Session, attempt: Attempt) -> tuple[PrefillResult, Outcome]:
        person = person_by_id_number(ms, cleaned)
        attempt.subjects.append(person.person_id)
        check_reach(attempt.who, person.division_code)
        return _fill(ms, form, person, attempt.grant, today)

    result, seq = guarded_read(
        master,
        ctx,
        actor,
        purpose=form.purpose,
        action=f"prefill:{form.code}",
        query=("id_number", cleaned),
        read=read,
        only_reads=True,
    )
    return dataclasses.replace(result, audit_seq=seq)


def _fill(
    ms: Session, form: FormRules, person: Person, grant: Grant, today: dt.date
) -> tuple[PrefillResult, Outcome]:
    values = person_values(person, today)
    lineage = current_lineage(ms, "person", person.person_id)
    fields: list[PrefilledField] = []
    read, masked_names = [], []
    latest: dict[str, tuple[Credential, dict[str, FieldHistory]] | None] = {}
    for spec in form.fields:
        value, row = None, None
        if spec.source and spec.source.startswith("person."):
            name = spec.source.split(".", 1)[1]
            value = values.get(name)
            row = lineage.get(DERIVED_FROM.get(name, name))
        elif spec.source and spec.source.startswith("credential."):
            _, kind, *path = spec.source.split(".")
            if kind not in latest and grant.allows(f"credential.{kind}"):
                creds = credentials_of(ms, person.person_id, kind)  # one read per kind
                latest[kind] = (
                    (creds[-1], current_lineage(ms, "credential", creds[-1].credential_id)) if creds else None
                )
            if latest.get(kind) is not None:
                cred, cred_lineage = latest[kind]  # type: ignore[misc]
                value = cred.attributes.get(path[1]) if path[0] == "attributes" else getattr(cred, path[0])
                row = cred_lineage.get(path[-1])
        masked = False
        if spec.source:
            value, masked = grant.show(field_name(spec.source), value)
        if spec.source and value is not None and not masked:
            read.append(spec.name)
        if masked:
            masked_names.append(spec.name)
        source, steps, when = _verification(row) if value is not None else (None, [], None)
        if isinstance(value, dt.date):
            value = value.isoformat()
        fields.append(
            PrefilledField(
                spec.name,
                spec.label,
                value,
                source,
                steps,
                when,
                locked=spec.locked and value is not None and not masked and bool(steps),
                masked=masked,
                required=spec.required,
            )
        )
    by_name = {f.name: f for f in fields}
    waived = [
        d.name
        for d in form.documents
        if all(by_name[n].value is not None and by_name[n].verified_by for n in d.satisfied_by)
    ]
    result = PrefillResult(
        form=form.code,
        title=form.title,
        person_id=person.person_id,
        fields=fields,
        missing=[f.label for f in fields if f.value is None],
        documents_waived=waived,
        documents_needed=[d.name for d in form.documents if d.name not in waived],
        audit_seq=0,
    )
    return result, Outcome(read, masked_names)
