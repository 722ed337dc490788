"""Conflicts (比对): a verified value master did not take because a more trusted source holds
another. The owning department lists its open conflicts and resolves each once: accept the
proposed value, keep master's, or amend to a third value.

Both are reads of personal data (the two values) and go through the guard: purpose
`master_reconciliation` granted to the department, the entity registered in its county (from
master), audited, values masked as its policy says. Resolving is a checked transition (open ->
resolved, `WHERE status = 'open'`), so two officers resolving at once cannot both win; an accepted
or amended value becomes master's current value with lineage (source: the resolving department,
the check: who resolved which conflict how), and the change feed records it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, select, update
from sqlmodel import Session

from govdb.access.guard import Attempt, AuditContext, Outcome, guarded_read
from govdb.access.policy import Grant, check_reach
from govdb.base.actors import Actor, ResolvedActor
from govdb.base.clock import local_today, utcnow
from govdb.correct._writes import Where, actor_text, entity_table, feed, locate, supersede
from govdb.errors import AccessDeniedError, NotFoundError, StateError
from govdb.link.keys import refresh_link_keys, rekey_people
from govdb.link.reads import read_people
from govdb.rulebook.loader import Rulebook
from govdb.store.locks import job_lock, writing, xact_lock
from govdb.store.master import Conflict, Credential
from govdb.verify.decisions import standardized_amendments

PURPOSE = "master_reconciliation"
RESOLUTIONS = ("accept", "keep", "amend")
CONFLICT = Conflict.__table__  # type: ignore[attr-defined]
CREDENTIAL = Credential.__table__  # type: ignore[attr-defined]
KEYED = {"name", "id_number", "birth_date", "phone", "address", "division_code", "gender"}


@dataclass(frozen=True)
class ConflictView:
    """One conflict as its owner sees it (values masked where the policy masks the field)."""

    conflict_id: int
    entity_kind: str
    entity_id: str
    field: str
    master_value: str | None
    master_source: str
    proposed_value: str | None
    proposed_source: str
    owner_department: str | None
    status: str
    created_at: dt.datetime
    resolution: str | None = None
    resolved_value: str | None = None
    resolved_at: dt.datetime | None = None
    resolved_by: str | None = None
    reason: str | None = None
    masked: bool = False


def _policy_field(conn: Connection, row: Any) -> str:
    """The access-policy name of a conflict's field (credential.<kind> for a credential's holder)."""
    if row.entity_kind == "person":
        return str(row.field)
    if row.entity_kind == "credential":
        kind = conn.execute(
            select(CREDENTIAL.c.kind).where(CREDENTIAL.c.credential_id == row.entity_id)
        ).scalar_one_or_none()
        return f"credential.{kind}"
    return f"{row.entity_kind}.{row.field}"


def _view(conn: Connection, row: Any, grant: Grant, seen: dict[str, bool]) -> ConflictView:
    name = _policy_field(conn, row)
    if not grant.allows(name):
        raise AccessDeniedError(f"department {grant.department!r} may not read {name}")
    shown = [grant.show(name, v) for v in (row.master_value, row.proposed_value, row.resolved_value)]
    masked = any(m for v, m in shown if v is not None)
    seen[name] = seen.get(name, False) or masked
    return ConflictView(
        row.id,
        row.entity_kind,
        row.entity_id,
        row.field,
        shown[0][0],
        row.master_source,
        shown[1][0],
        row.proposed_source,
        row.owner_department,
        row.status,
        row.created_at,
        row.resolution,
        shown[2][0],
        row.resolved_at,
        row.resolved_by,
        row.resolution_reason,
        masked,
    )


def _standard(name: str, value: str, current: str | None) -> str:
    """An amended person value through the same standards and limits as a checker's amendment."""
    good, refused = standardized_amendments([(0, {name: value})], {0: {name: current}})
    if 0 in refused:
        raise StateError(f"amendment {name}={value[:40]!r} is refused: {refused[0]}")
    return str(good[0][name])


FIXED = {"division_code", "uscc", "id_number", "kind", "number", "person_id"}


def _checked(kind: str, name: str, value: str) -> str:
    """An amended value of an enterprise, place or credential: identity and jurisdiction are never
    amended here (they decide who it is and who checks it), and the value must fit master."""
    if name in FIXED:
        raise StateError(
            f"{name} of a {kind} cannot be amended in a conflict: it decides what the {kind} is and who "
            "checks it; keep master's value or accept the checked one"
        )
    text = value.strip()
    table, _ = entity_table(kind)
    column = table.c.get(name)
    limit = getattr(getattr(column, "type", None), "length", None) or 512
    if not text or len(text) > limit:
        raise StateError(f"amendment {name}={text[:40]!r} must be 1 to {limit} characters")
    return text


def _outcome(seen: dict[str, bool], outcome: str = "read") -> Outcome:
    return Outcome([n for n, m in seen.items() if not m], [n for n, m in seen.items() if m], outcome)


def _owner_and_place(conn: Connection, who: ResolvedActor, row: Any) -> Where:
    if row.owner_department != who.department:
        raise AccessDeniedError(
            f"conflict {row.id} is for department {row.owner_department!r} to resolve, not for "
            f"{who.department!r} (unit {who.unit_id!r})"
        )
    where = locate(conn, row.entity_kind, row.entity_id)
    check_reach(who, where.division_code, row.entity_kind)
    return where


def list_conflicts(
    master: Engine, ctx: AuditContext, *, actor: Actor, status: str = "open", limit: int = 1000
) -> list[ConflictView]:
    """The conflicts the actor's department owns, in its county, oldest first (audited)."""
    if status not in ("open", "resolved", "all"):
        raise StateError(f"status {status!r} is not one of: open, resolved, all")
    if not 1 <= limit <= 100_000:
        raise StateError(f"limit {limit} is out of range; list 1 to 100000 conflicts at a time")

    def read(ms: Session, attempt: Attempt) -> tuple[list[ConflictView], Outcome]:
        who = attempt.who
        seen: dict[str, bool] = {}
        out: list[ConflictView] = []
        query = select(CONFLICT).where(CONFLICT.c.owner_department == who.department).order_by(CONFLICT.c.id)
        if status != "all":
            query = query.where(CONFLICT.c.status == status)
        conn = ms.connection()
        for row in conn.execute(query).all():
            try:
                where = locate(conn, row.entity_kind, row.entity_id)
            except NotFoundError:
                continue  # its entity was removed by a revert; the conflict went with it
            if not where.division_code or not where.division_code.startswith(who.division_code):
                continue  # another county's: not listed, not said to exist
            attempt.subjects.append(where.person_id or row.entity_id)
            out.append(_view(conn, row, attempt.grant, seen))
            if len(out) >= limit:
                break
        attempt.subjects[:] = list(dict.fromkeys(attempt.subjects))
        return out, _outcome(seen)

    result, _ = guarded_read(master, ctx, actor, purpose=PURPOSE, action="conflicts", query=None, read=read)
    return result


def resolve_conflict(
    events: Engine,
    master: Engine,
    ctx: AuditContext,
    rules: Rulebook,
    *,
    conflict_id: int,
    resolution: str,
    actor: Actor,
    value: str | None = None,
    reason: str | None = None,
) -> ConflictView:
    """Resolve one open conflict as its owning department: accept, keep or amend (audited)."""
    if not 1 <= conflict_id < 2**63:
        raise NotFoundError(f"conflict {conflict_id} does not exist; list them with `govdb conflicts list`")
    if resolution not in RESOLUTIONS:
        raise StateError(f"resolution {resolution!r} is not one of: {', '.join(RESOLUTIONS)}")
    if resolution == "amend" and (value is None or not str(value).strip()):
        raise StateError("an amendment needs the value master should hold: give --value")
    if resolution != "amend" and value is not None:
        raise StateError(f"--value goes with amend only; {resolution!r} takes no value")
    reason = (reason or "").strip()[:512] or None

    def read(ms: Session, attempt: Attempt) -> tuple[ConflictView, Outcome]:
        who = attempt.who
        touched: list[str] = []
        # Corrections and promotions take turns (the promote job lock): none works from a stale read.
        with job_lock(events, "promote"), writing(master) as conn:
            xact_lock(conn, "link_keys")  # first, as promote and loads: the keys change with the value
            row = conn.execute(select(CONFLICT).where(CONFLICT.c.id == conflict_id)).first()
            if row is None:
                raise NotFoundError(
                    f"conflict {conflict_id} does not exist; list them with `govdb conflicts list`"
                )
            where = _owner_and_place(conn, who, row)
            attempt.subjects.append(where.person_id or row.entity_id)
            if row.status != "open":
                raise StateError(
                    f"conflict {conflict_id} was already resolved ({row.resolution}) by {row.resolved_by} "
                    f"at {row.resolved_at}; nothing was changed"
                )
            now = utcnow()
            new_value = {"accept": row.proposed_value, "amend": value, "keep": None}[resolution]
            if resolution == "amend" and row.entity_kind == "person":
                new_value = _standard(row.field, str(value), row.master_value)
            elif resolution == "amend":
                new_value = _checked(row.entity_kind, row.field, str(value))
            moved = conn.execute(
                update(CONFLICT)
                .where(CONFLICT.c.id == conflict_id, CONFLICT.c.status == "open")
                .values(
                    status="resolved",
                    resolution=resolution,
                    resolved_value=new_value if resolution != "keep" else row.master_value,
                    resolved_at=now,
                    resolved_by=actor_text(who.actor_id, who.unit_id),
                    resolution_reason=reason,
                )
            ).rowcount
            if moved != 1:
                raise StateError(f"conflict {conflict_id} was resolved by someone else meanwhile; look again")
            if resolution != "keep":
                check = {
                    "level": "conflict",
                    "department": who.department,
                    "unit": who.unit_id,
                    "actor": who.actor_id,
                    "outcome": resolution,
                    "conflict": conflict_id,
                    "proposal": row.proposal_id,
                    "at": now.isoformat(),
                }
                supersede(
                    conn,
                    row.entity_kind,
                    row.entity_id,
                    row.field,
                    new_value,
                    valid_from=local_today(),
                    now=now,
                    source=who.department or who.unit_id,
                    checks=[check],
                )
                feed(
                    conn,
                    [(row.entity_kind, row.entity_id, row.field, "update", local_today())],
                    "conflict",
                    str(conflict_id),
                    now,
                )
                if row.entity_kind == "person" and row.field in KEYED:
                    touched.append(row.entity_id)
            # The person's keys in the same transaction: a crash never leaves the new value keyed
            # as the old one. Only master keyed with other rules leaves it to a whole re-key after.
            keyed = not touched or (
                rekey_people(conn, rules.matching["person"], read_people(conn, touched)) is not None
            )
            resolved = conn.execute(select(CONFLICT).where(CONFLICT.c.id == conflict_id)).one()
            seen: dict[str, bool] = {}
            view = _view(conn, resolved, attempt.grant, seen)
        if not keyed:
            refresh_link_keys(master, rules.matching["person"], touched)
        return view, _outcome(seen, "changed")

    result, _ = guarded_read(
        master, ctx, actor, purpose=PURPOSE, action="resolve_conflict", query=None, read=read
    )
    return result
