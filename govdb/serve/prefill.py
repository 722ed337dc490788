"""Prefill a service form from master data only, each field with its source and verification.

Reads the master store and nothing else (invariant 2); checks the department's access policy and
purpose, masks what it may not see in full, and audits the read (invariant 6).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from govdb.access import audit, authorize
from govdb.errors import NotFoundError
from govdb.rulebook.loader import Rulebook
from govdb.serve._master_view import (
    DERIVED_FROM,
    credentials_of,
    person_by_id_number,
    person_values,
)
from govdb.store.master import Credential, FieldHistory, current_lineage
from govdb.verify.actors import Actor, resolve


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
        for c in row.checks
    ]
    return row.source, steps, row.recorded_at.date()


def prefill_form(
    master: Engine,
    rules: Rulebook,
    form_code: str,
    *,
    id_number: str,
    actor: Actor,
    today: dt.date | None = None,
) -> PrefillResult:
    """The form `form_code` filled for the person with `id_number`, as `actor` may see it."""
    form = rules.forms.get(form_code)
    if form is None:
        raise NotFoundError(f"no form {form_code!r}; known forms: {sorted(rules.forms)}")
    today = today or dt.date.today()
    with Session(master) as ms:
        who = resolve(ms, actor)
        grant = authorize(rules, who, form.purpose)
        person = person_by_id_number(ms, id_number)
        values = person_values(person, today)
        lineage = current_lineage(ms, "person", person.person_id)
        fields: list[PrefilledField] = []
        read, masked_names = [], []
        latest: dict[str, tuple[Credential, dict[str, FieldHistory]] | None] = {}
        for spec in form.fields:
            value, row, allowed = None, None, True
            if spec.source and spec.source.startswith("person."):
                name = spec.source.split(".", 1)[1]
                allowed = grant.allows(name)
                value = values.get(name)
                row = lineage.get(DERIVED_FROM.get(name, name))
            elif spec.source and spec.source.startswith("credential."):
                _, kind, *path = spec.source.split(".")
                allowed = grant.allows(f"credential.{kind}")
                if kind not in latest:  # one read per credential kind, however many fields use it
                    creds = credentials_of(ms, person.person_id, kind)
                    latest[kind] = (
                        (creds[-1], current_lineage(ms, "credential", creds[-1].credential_id))
                        if creds
                        else None
                    )
                if latest[kind] is not None:
                    cred, cred_lineage = latest[kind]
                    value = (
                        cred.attributes.get(path[1]) if path[0] == "attributes" else getattr(cred, path[0])
                    )
                    row = cred_lineage.get(path[-1])
            masked = False
            if not allowed:
                value, masked = None, True
            elif value is not None:
                value, masked = grant.show(spec.source.split(".", 1)[1] if spec.source else spec.name, value)
            if spec.source and value is not None:
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
        entry = audit(
            ms,
            who,
            purpose=form.purpose,
            action=f"prefill:{form.code}",
            subject_kind="person",
            subject_id=person.person_id,
            fields=read,
            masked=masked_names,
        )
        ms.commit()
        by_name = {f.name: f for f in fields}
        waived = [
            d.name
            for d in form.documents
            if all(by_name[n].value is not None and by_name[n].verified_by for n in d.satisfied_by)
        ]
        return PrefillResult(
            form=form.code,
            title=form.title,
            person_id=person.person_id,
            fields=fields,
            missing=[f.label for f in fields if f.value is None],
            documents_waived=waived,
            documents_needed=[d.name for d in form.documents if d.name not in waived],
            audit_seq=entry.seq,
        )
