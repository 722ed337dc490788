"""Serving enterprises (法人库): prefill an enterprise form, and find the master enterprise a
record is about (`link_one` for enterprises), each as an audited, purpose-bound read.

Master only (invariant 2). The department's access policy names enterprise fields as
`enterprise.<field>`; a department reads only enterprises registered in its own county (from
master), and every read, refusal and miss is audited with the enterprise as its subject.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import unicodedata
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, select

from govdb.access.guard import Attempt, AuditContext, Outcome, guarded_read
from govdb.access.policy import check_reach
from govdb.base.actors import Actor
from govdb.errors import NotFoundError, StateError
from govdb.link.enterprises import link_one_enterprise
from govdb.link.online import LinkResult
from govdb.rulebook.models import FormRules
from govdb.serve._master_view import division_names
from govdb.serve.prefill import PrefilledField, _verification
from govdb.store.master import Enterprise, current_lineage

DERIVED_FROM = {"village": "division_code", "township": "division_code", "county": "division_code"}


@dataclass(frozen=True)
class EnterprisePrefill:
    """An enterprise form filled from master: each field with its source and verification."""

    form: str
    title: str
    enterprise_id: str
    fields: list[PrefilledField]
    missing: list[str]
    documents_waived: list[str]
    documents_needed: list[str]
    audit_seq: int


def clean_uscc(uscc: str) -> str:
    """A credit code as typed (full-width, spaces, dashes, lower case) in its stored form."""
    return "".join(unicodedata.normalize("NFKC", str(uscc)).split()).replace("-", "").upper()[:64]


def find_enterprise(ms: Session, *, enterprise_id: str | None = None, uscc: str | None = None) -> Enterprise:
    if (enterprise_id is None) == (uscc is None):
        raise StateError("name the enterprise by its enterprise id or its unified social credit code (one)")
    if uscc is not None:
        found = ms.exec(select(Enterprise).where(Enterprise.uscc == clean_uscc(uscc))).first()
        what = f"unified social credit code {clean_uscc(uscc)!r}"
    else:
        found = ms.get(Enterprise, str(enterprise_id))
        what = f"id {enterprise_id!r}"
    if found is None:
        raise NotFoundError(f"no enterprise with {what} in the master store")
    return found


def enterprise_values(enterprise: Enterprise) -> dict[str, Any]:
    """Stored and derived enterprise fields (village, township, county of its registration)."""
    values: dict[str, Any] = enterprise.model_dump()
    values.update(division_names(enterprise.division_code))
    return values


def prefill_enterprise_form(
    master: Engine,
    ctx: AuditContext,
    form_code: str,
    *,
    actor: Actor,
    enterprise_id: str | None = None,
    uscc: str | None = None,
) -> EnterprisePrefill:
    """The form `form_code` filled for one master enterprise, as `actor` may see it (audited)."""
    form = ctx.rules.forms.get(form_code)
    if form is None:
        raise NotFoundError(f"no form {form_code!r}; known forms: {sorted(ctx.rules.forms)}")
    if not any((f.source or "").startswith("enterprise.") for f in form.fields):
        raise StateError(f"form {form_code!r} is filled for a person; give an ID number, not an enterprise")
    query = ("uscc", clean_uscc(uscc)) if uscc is not None else ("enterprise_id", str(enterprise_id))

    def read(ms: Session, attempt: Attempt) -> tuple[EnterprisePrefill, Outcome]:
        attempt.subject_kind = "enterprise"
        enterprise = find_enterprise(ms, enterprise_id=enterprise_id, uscc=uscc)
        attempt.subjects.append(enterprise.enterprise_id)
        check_reach(attempt.who, enterprise.division_code, subject="enterprise")
        return _fill(ms, form, enterprise, attempt)

    result, seq = guarded_read(
        master, ctx, actor, purpose=form.purpose, action=f"prefill:{form.code}", query=query, read=read
    )
    return dataclasses.replace(result, audit_seq=seq)


def _fill(
    ms: Session, form: FormRules, enterprise: Enterprise, attempt: Attempt
) -> tuple[EnterprisePrefill, Outcome]:
    values = enterprise_values(enterprise)
    lineage = current_lineage(ms, "enterprise", enterprise.enterprise_id)
    fields, read, masked_names = [], [], []
    for spec in form.fields:
        value, row, masked = None, None, False
        if spec.source and spec.source.startswith("enterprise."):
            name = spec.source.split(".", 1)[1]
            value, masked = attempt.grant.show(spec.source, values.get(name))
            row = lineage.get(DERIVED_FROM.get(name, name))
            if value is not None and not masked:
                read.append(spec.name)
        if masked:
            masked_names.append(spec.name)
        source, steps, when = _verification(row) if value is not None else (None, [], None)
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
    result = EnterprisePrefill(
        form=form.code,
        title=form.title,
        enterprise_id=enterprise.enterprise_id,
        fields=fields,
        missing=[f.label for f in fields if f.value is None],
        documents_waived=waived,
        documents_needed=[d.name for d in form.documents if d.name not in waived],
        audit_seq=0,
    )
    return result, Outcome(read, masked_names)


def link_one_enterprise_read(
    master: Engine,
    ctx: AuditContext,
    record: dict[str, Any],
    *,
    actor: Actor,
    purpose: str,
    today: dt.date | None = None,
    address_hint: str | None = None,
) -> LinkResult:
    """`record` (name, uscc, legal_representative, phone, address) linked against the master
    enterprises, as `actor` may see the match (audited, like the person look-up): nothing but
    "new" when nobody matched; an enterprise of another county is an id and a probability."""
    if not isinstance(record, dict):
        raise StateError(
            f"link_one takes one record as a mapping of field to value, not {type(record).__name__}"
        )
    query: tuple[str, str] | None = None
    if record.get("uscc") not in (None, ""):
        query = ("uscc", clean_uscc(record["uscc"]))
    elif record.get("name") not in (None, ""):
        query = ("enterprise_name", "".join(unicodedata.normalize("NFKC", str(record["name"])).split()))

    def read(ms: Session, attempt: Attempt) -> tuple[LinkResult, Outcome]:
        attempt.subject_kind = "enterprise"
        found = link_one_enterprise(
            master, record, ctx.rules.matching["enterprise"], today=today, address_hint=address_hint
        )
        scored = [found.explanation.get(k) for k in ("candidate", "runner_up")]
        attempt.subjects.extend(sorted({str(p) for p in scored if p}))
        if found.person_id is None or found.master is None:
            nobody = dataclasses.replace(
                found, person_id=None, match_probability=0.0, match_weight=None, explanation={}, master=None
            )
            return nobody, Outcome([], [], "not_found")
        division = found.master.get("division_code")
        if not division or not str(division).startswith(attempt.who.division_code):
            elsewhere = dataclasses.replace(found, match_weight=None, explanation={}, master=None)
            return elsewhere, Outcome(["enterprise.enterprise_id"], [])
        shown: dict[str, Any] = {}
        seen: list[str] = []
        masked: list[str] = []
        for name, value in found.master.items():
            if value is None:
                continue
            visible, was_masked = attempt.grant.show(f"enterprise.{name}", value)
            if visible is not None:
                shown[name] = visible
            (masked if was_masked else seen).append(f"enterprise.{name}")
        explanation = {
            key: why
            for key, why in found.explanation.items()
            if key in ("blocking", "hard_rule", "candidate")
            or (isinstance(why, dict) and attempt.grant.in_full(f"enterprise.{key}"))
        }
        return dataclasses.replace(found, master=shown, explanation=explanation), Outcome(seen, masked)

    result, _ = guarded_read(master, ctx, actor, purpose=purpose, action="link_one", query=query, read=read)
    return result
