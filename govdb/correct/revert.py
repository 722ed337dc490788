"""Undo: revert a wrong promotion, and split events wrongly merged into someone.

A revert withdraws the promotion's lineage from the record and restores what master held before,
field by field: each value the promotion set is retracted (it never held), the value it replaced
is restored as current with its own lineage plus the revert as a check, and the entity's row is
written back. An entity the promotion created is deleted when nothing else refers to it. Issued
programme benefits of the person since the promotion are flagged for another look. The promotion
is marked reverted (who, when, why) and its proposal moves promoted -> reverted.

Reverts keep to a stack: a field the promotion set that a later promotion changed again must be
reverted from the top (the later one first), so nothing is restored beneath a newer value.

Record time keeps all of it: `closed_at` and `retracted_at` let an as-of query see master as it
was recorded before the revert (govdb.serve.asof).

Like a promotion, a revert spans both stores; the master half commits first with the promotion's
`reverted_at` (a conditional update, so two officers cannot revert twice), and a second call after
a crash only completes the event store's half.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlmodel import Session

from govdb.access.guard import Attempt, AuditContext, Outcome, guarded_read
from govdb.access.policy import check_reach
from govdb.base.actors import Actor, ResolvedActor
from govdb.base.clock import utcnow
from govdb.correct._writes import HISTORY, actor_text, entity_table, feed, locate, set_entity_field
from govdb.errors import AccessDeniedError, NotFoundError, StateError
from govdb.link.keys import refresh_link_keys, rekey_people
from govdb.link.reads import read_people
from govdb.promote import mark_held
from govdb.rulebook.loader import Rulebook
from govdb.store.events import Event, LinkExclusion, Proposal
from govdb.store.locks import job_lock, writing, xact_lock
from govdb.store.master import (
    Conflict,
    Credential,
    Issuance,
    LinkFeatures,
    LinkKey,
    Promotion,
    lineage_checks,
)
from govdb.store.states import EventStatus, ProposalState, move

PURPOSE = "master_correction"
CORRECTION_AUTHORITY = "data_bureau"  # keeps master: may revert any promotion in its county
PROMOTION = Promotion.__table__  # type: ignore[attr-defined]
PROPOSAL = Proposal.__table__  # type: ignore[attr-defined]
EVENT = Event.__table__  # type: ignore[attr-defined]
EXCLUSION = LinkExclusion.__table__  # type: ignore[attr-defined]
ISSUANCE = Issuance.__table__  # type: ignore[attr-defined]
CREDENTIAL = Credential.__table__  # type: ignore[attr-defined]
CONFLICT = Conflict.__table__  # type: ignore[attr-defined]


@dataclass
class RevertReport:
    """What one revert did (field names, never values)."""

    proposal_id: str
    entity_kind: str
    entity_id: str
    restored: list[str] = field(default_factory=list)  # fields given back their earlier value
    cleared: list[str] = field(default_factory=list)  # fields the promotion had set first
    withdrawn_past: list[str] = field(default_factory=list)  # past values it had added
    entity_deleted: bool = False
    issuances_flagged: int = 0
    completed_after_crash: bool = False


@dataclass
class SplitReport:
    """A split: the promotions reverted and the events sent back to be linked again."""

    person_id: str
    event_ids: list[int]
    reverts: list[RevertReport]


def _check(who: ResolvedActor, now: dt.datetime, reason: str | None, what: str, ref: str) -> dict[str, Any]:
    return {
        "level": "revert",
        "department": who.department,
        "unit": who.unit_id,
        "actor": who.actor_id,
        "outcome": what,
        "reverted": ref,
        "reason": reason,
        "at": now.isoformat(),
    }


def _same_field(kind: str, entity_id: str, name: str) -> list[Any]:
    return [
        HISTORY.c.entity_kind == kind,
        HISTORY.c.entity_id == entity_id,
        HISTORY.c.field == name,
        HISTORY.c.retracted_at.is_(None),
    ]


def _changed_later(conn: Connection, row: Any) -> bool:
    """Whether a later write closed this row (a past value it added beneath the current one was
    closed from the start: valid_to set when recorded, and the row above it is older)."""
    if row.valid_to is None:
        return False
    if row.closed_at is not None:
        return True
    above = (
        conn.execute(
            select(HISTORY.c.recorded_at).where(
                *_same_field(row.entity_kind, row.entity_id, row.field), HISTORY.c.valid_from == row.valid_to
            )
        )
        .scalars()
        .all()
    )
    return any(at > row.recorded_at for at in above)


def _first_recorded(conn: Connection, row: Any) -> Any:
    """When the value of `row` was first recorded: a row a revert restored is a copy (its last
    check names the row it restores), so follow the copies back to the promoted original."""
    while row.checks and isinstance(row.checks[-1], dict) and row.checks[-1].get("restores"):
        original = conn.execute(select(HISTORY).where(HISTORY.c.id == row.checks[-1]["restores"])).first()
        if original is None:
            break
        row = original
    return row.recorded_at


def _replaced(conn: Connection, row: Any) -> Any:
    """The row this one closed when it was promoted (closed in the same write, ending where it starts)."""
    query = select(HISTORY).where(
        *_same_field(row.entity_kind, row.entity_id, row.field), HISTORY.c.valid_to == row.valid_from
    )
    found = conn.execute(
        query.where(HISTORY.c.closed_at == _first_recorded(conn, row)).order_by(HISTORY.c.id.desc())
    ).first()
    if found is None:  # closed before record times were kept
        found = conn.execute(
            query.where(HISTORY.c.closed_at.is_(None), HISTORY.c.id < row.id).order_by(HISTORY.c.id.desc())
        ).first()
    return found


def _revert_master(
    conn: Connection,
    rules: Rulebook,
    who: ResolvedActor,
    promotion: Any,
    reason: str | None,
    now: dt.datetime,
) -> RevertReport:
    """The master half: retract, restore, write the entity back, flag, feed; in one transaction."""
    kind, entity_id, pid = promotion.entity_kind, promotion.entity_id, promotion.proposal_id
    report = RevertReport(pid, kind, entity_id)
    marked = conn.execute(
        update(PROMOTION)
        .where(PROMOTION.c.proposal_id == pid, PROMOTION.c.reverted_at.is_(None))
        .values(reverted_at=now, reverted_by=actor_text(who.actor_id, who.unit_id), revert_reason=reason)
    ).rowcount
    if marked != 1:
        raise StateError(f"promotion {pid} was reverted by someone else meanwhile; nothing was changed")
    rows = conn.execute(
        select(HISTORY)
        .where(HISTORY.c.proposal_id == pid, HISTORY.c.retracted_at.is_(None))
        .order_by(HISTORY.c.id)
    ).all()
    later = sorted({r.field for r in rows if _changed_later(conn, r)})
    if later:
        raise StateError(
            f"{kind} {entity_id}: {', '.join(later)} changed again after promotion {pid} (a later promotion "
            "or a conflict resolution); revert the later promotion first (newest first); nothing was changed"
        )
    where = locate(conn, kind, entity_id)
    _may_correct(rules, who, where, conn, kind, entity_id, {r.field for r in rows})
    # Its conflicts (比对) fall with it: nobody may accept a value from a withdrawn change.
    conn.execute(
        update(CONFLICT)
        .where(CONFLICT.c.proposal_id == pid, CONFLICT.c.status == "open")
        .values(
            status="resolved",
            resolution="withdrawn",
            resolved_at=now,
            resolved_by=actor_text(who.actor_id, who.unit_id),
            resolution_reason=f"promotion reverted: {reason}"[:512],
        )
    )
    others = conn.execute(
        select(HISTORY.c.id)
        .where(
            HISTORY.c.entity_kind == kind,
            HISTORY.c.entity_id == entity_id,
            HISTORY.c.retracted_at.is_(None),
            (HISTORY.c.proposal_id != pid) | HISTORY.c.proposal_id.is_(None),
        )
        .limit(1)
    ).first()
    retract = {"retracted_at": now}
    if others is None and rows:  # the promotion created the entity: it goes
        for row in rows:
            closing = {} if row.valid_to is not None else {"valid_to": row.valid_from, "closed_at": now}
            conn.execute(update(HISTORY).where(HISTORY.c.id == row.id).values(**retract, **closing))
        _delete_entity(conn, kind, entity_id, pid)
        report.entity_deleted = True
        if where.person_id and kind != "person":
            report.issuances_flagged = _flag_issuances(conn, where.person_id, promotion.applied_at, pid)
        feed(conn, [(kind, entity_id, None, "delete", None)], "revert", pid, now)
        return report
    changes: list[tuple[str, str, str | None, str, dt.date | None]] = []
    check = _check(who, now, reason, "reverted", pid)
    for row in rows:
        changes.append((kind, entity_id, row.field, "update", row.valid_from))
        if row.valid_to is not None:  # a past value it added beneath the current one
            conn.execute(update(HISTORY).where(HISTORY.c.id == row.id).values(retract))
            report.withdrawn_past.append(row.field)
            continue
        before = _replaced(conn, row)
        closed = conn.execute(
            update(HISTORY)
            .where(HISTORY.c.id == row.id, HISTORY.c.valid_to.is_(None), HISTORY.c.retracted_at.is_(None))
            .values(valid_to=row.valid_from, closed_at=now, **retract)
        ).rowcount
        if closed != 1:
            raise StateError(f"the {row.field} of {kind} {entity_id} changed meanwhile; nothing was changed")
        if before is None:
            set_entity_field(conn, kind, entity_id, row.field, None)
            report.cleared.append(row.field)
            continue
        conn.execute(update(HISTORY).where(HISTORY.c.id == before.id).values(retract))
        kept = ("entity_kind", "entity_id", "field", "value", "valid_from", "source", "proposal_id")
        restored = {c: getattr(before, c) for c in kept}
        conn.execute(
            insert(HISTORY),
            [
                {
                    **restored,
                    "bulk_load_id": before.bulk_load_id,
                    "event_ids": before.event_ids,
                    "valid_to": None,
                    "recorded_at": now,
                    "checks": [*lineage_checks(before), {**check, "restores": before.id}],
                }
            ],
        )
        set_entity_field(conn, kind, entity_id, row.field, before.value)
        report.restored.append(row.field)
    if where.person_id and rows:
        report.issuances_flagged = _flag_issuances(conn, where.person_id, promotion.applied_at, pid)
    feed(conn, changes, "revert", pid, now)
    return report


def _flag_issuances(conn: Connection, person_id: str, since: dt.datetime, pid: str) -> int:
    """Benefits issued to the person since the reverted promotion need another look."""
    return int(
        conn.execute(
            update(ISSUANCE)
            .where(
                ISSUANCE.c.person_id == person_id,
                ISSUANCE.c.created_at >= since,
                ISSUANCE.c.review_reason.is_(None),
            )
            .values(review_reason=f"master fact reverted (promotion {pid}): check eligibility again")
        ).rowcount
    )


def _may_correct(
    rules: Rulebook,
    who: ResolvedActor,
    where: Any,
    conn: Connection,
    kind: str,
    entity_id: str,
    fields: set[str],
) -> None:
    """Who may revert: the data bureau (the keeper of master), or the department that owns every
    fact the promotion changed (survivorship owners; a credential's issuer). From master and the
    rules, never from the caller."""
    check_reach(who, where.division_code, kind)
    if who.department == CORRECTION_AUTHORITY:
        return
    if kind == "credential":
        issuer = conn.execute(
            select(CREDENTIAL.c.issuer).where(CREDENTIAL.c.credential_id == entity_id)
        ).scalar_one_or_none()
        owners = {issuer}
    else:
        survivorship = rules.survivorship_of(kind)
        owners = {survivorship.fields[f].owner if f in survivorship.fields else None for f in fields}
    if owners != {who.department}:
        raise AccessDeniedError(
            f"department {who.department!r} does not own the facts this promotion changed (owners: "
            f"{sorted(str(o) for o in owners)}); the owner or {CORRECTION_AUTHORITY} reverts it"
        )


def _delete_entity(conn: Connection, kind: str, entity_id: str, pid: str) -> None:
    """Delete an entity the reverted promotion created, unless something else refers to it."""
    other = conn.execute(
        select(PROMOTION.c.proposal_id).where(
            PROMOTION.c.entity_kind == kind,
            PROMOTION.c.entity_id == entity_id,
            PROMOTION.c.proposal_id != pid,
            PROMOTION.c.reverted_at.is_(None),
        )
    ).first()
    if other is not None:
        raise StateError(
            f"{kind} {entity_id} was created by this promotion, and promotion {other.proposal_id} concerns "
            "it too (a change or a conflict); revert that one first; nothing was changed"
        )
    if kind == "person":
        held = conn.execute(
            select(CREDENTIAL.c.credential_id).where(CREDENTIAL.c.person_id == entity_id)
        ).first()
        issued = conn.execute(select(ISSUANCE.c.id).where(ISSUANCE.c.person_id == entity_id)).first()
        if held or issued:
            raise StateError(
                f"person {entity_id} was created by this promotion but now holds "
                f"{'credentials' if held else 'programme issuances'}; revert those first; nothing was changed"
            )
        conn.execute(delete(LinkKey.__table__).where(LinkKey.__table__.c.person_id == entity_id))  # type: ignore[attr-defined]
        conn.execute(delete(LinkFeatures.__table__).where(LinkFeatures.__table__.c.person_id == entity_id))  # type: ignore[attr-defined]
    table, key = entity_table(kind)
    conn.execute(delete(table).where(table.c[key] == entity_id))


def _mark_reverted(conn: Connection, proposal_ids: list[str]) -> None:
    move(
        conn,
        PROPOSAL,
        "state",
        ProposalState,
        ProposalState.promoted,
        ProposalState.reverted,
        [{"proposal_id": p} for p in proposal_ids],
        key=("proposal_id",),
        values={"updated_at": utcnow()},
        expect_all=False,
    )


def _promotion(conn: Connection, proposal_id: str) -> Any:
    row = conn.execute(select(PROMOTION).where(PROMOTION.c.proposal_id == proposal_id)).first()
    if row is None:
        raise NotFoundError(
            f"no promotion of proposal {str(proposal_id)[:40]!r}; promoted proposals are listed in a "
            "profile's lineage and in `govdb changes`"
        )
    return row


def _revert_all(
    events: Engine,
    master: Engine,
    rules: Rulebook,
    who: ResolvedActor,
    attempt: Attempt,
    proposal_ids: list[str],
    reason: str,
) -> list[RevertReport]:
    """Revert these promotions, in this order, in ONE master transaction (all or none), then mark
    their proposals. A promotion whose master half a crashed call committed is only completed, by
    an actor who could have reverted it (reach from the proposal's county in the event store)."""
    with events.connect() as conn:
        proposals = {
            r.proposal_id: r
            for r in conn.execute(
                select(PROPOSAL.c.proposal_id, PROPOSAL.c.state, PROPOSAL.c.division_code).where(
                    PROPOSAL.c.proposal_id.in_(proposal_ids)
                )
            )
        }
    reports: list[RevertReport] = []
    with writing(master) as conn:
        xact_lock(conn, "link_keys")  # first, as promote and loads: keys change with the values
        for proposal_id in proposal_ids:
            promotion = _promotion(conn, proposal_id)
            if promotion.reverted_at is None:
                where = locate(conn, promotion.entity_kind, promotion.entity_id)
                attempt.subjects.append(where.person_id or promotion.entity_id)
                reports.append(_revert_master(conn, rules, who, promotion, reason, utcnow()))
                continue
            proposal = proposals.get(proposal_id)
            attempt.subjects.append(promotion.entity_id)
            check_reach(who, proposal.division_code if proposal else None, promotion.entity_kind)
            if proposal is None or proposal.state != ProposalState.promoted:
                raise StateError(f"promotion {proposal_id} was already reverted; nothing was changed")
            reports.append(
                RevertReport(
                    proposal_id, promotion.entity_kind, promotion.entity_id, completed_after_crash=True
                )
            )
        # The people's keys in the same transaction: a crash never leaves a restored value keyed
        # as the reverted one. Only master keyed with other rules leaves them to a whole re-key.
        people = sorted({r.entity_id for r in reports if r.entity_kind == "person" and not r.entity_deleted})
        matching = rules.matching["person"]
        keyed = not people or rekey_people(conn, matching, read_people(conn, people)) is not None
    if not keyed:
        refresh_link_keys(master, rules.matching["person"], people)
    return reports


def revert_promotion(
    events: Engine,
    master: Engine,
    ctx: AuditContext,
    rules: Rulebook,
    *,
    proposal_id: str,
    actor: Actor,
    reason: str,
) -> RevertReport:
    """Revert one promotion as the data bureau or the owner of its facts (audited). Corrections
    and promotions take turns (the promote job lock), so none works from a stale read."""
    reason = _reason(reason)

    def run(ms: Session, attempt: Attempt) -> tuple[RevertReport, Outcome]:
        with job_lock(events, "promote"):
            mark_held(events, master, [proposal_id])  # a promote stopped before marking it: completed
            (report,) = _revert_all(events, master, rules, attempt.who, attempt, [proposal_id], reason)
            with writing(events) as conn:
                _mark_reverted(conn, [proposal_id])
        return report, Outcome(report.restored + report.cleared + report.withdrawn_past, [], "changed")

    result, _ = guarded_read(master, ctx, actor, purpose=PURPOSE, action="revert", query=None, read=run)
    return result


def _reason(reason: str | None) -> str:
    text = (reason or "").strip()
    if not text:
        raise StateError("a revert or split needs a reason (--reason): it is kept with the lineage")
    return text[:512]


def split_person(
    events: Engine,
    master: Engine,
    ctx: AuditContext,
    rules: Rulebook,
    *,
    person_id: str,
    event_ids: list[int],
    actor: Actor,
    reason: str,
) -> SplitReport:
    """Take events wrongly linked to `person_id` off them: revert their promotions (newest first),
    and send the events back to be linked again, never to this person (audited)."""
    reason = _reason(reason)
    wanted = sorted({int(e) for e in event_ids})
    if any(not 1 <= e < 2**63 for e in wanted):
        raise NotFoundError(f"event ids {[e for e in wanted if not 1 <= e < 2**63][:3]} are not event ids")
    if not wanted:
        raise StateError("name the events to split off (--event ID, repeatable)")

    def run(ms: Session, attempt: Attempt) -> tuple[SplitReport, Outcome]:
        with job_lock(events, "promote"):  # corrections and promotions take turns
            return split(attempt)

    def split(attempt: Attempt) -> tuple[SplitReport, Outcome]:
        who = attempt.who
        attempt.subjects.append(person_id)
        with master.connect() as conn:
            where = locate(conn, "person", person_id)
        check_reach(who, where.division_code, "person")
        with events.connect() as conn:
            held = list(
                conn.execute(select(PROPOSAL.c.proposal_id).where(PROPOSAL.c.event_id.in_(wanted))).scalars()
            )
        mark_held(events, master, held)  # a promote stopped before marking them: completed first
        with events.connect() as conn:
            proposals = conn.execute(
                select(
                    PROPOSAL.c.proposal_id, PROPOSAL.c.event_id, PROPOSAL.c.state, PROPOSAL.c.entity_id
                ).where(PROPOSAL.c.event_id.in_(wanted), PROPOSAL.c.entity_kind == "person")
            ).all()
            statuses: dict[int, str] = dict(
                conn.execute(
                    select(EVENT.c.event_id, EVENT.c.status).where(EVENT.c.event_id.in_(wanted))
                ).all()
            )
        missing = [e for e in wanted if e not in statuses]
        if missing:
            raise NotFoundError(f"events {missing[:5]} are not in the event store")
        promoted = [p for p in proposals if p.state == ProposalState.promoted and p.entity_id == person_id]
        for e in wanted:
            if statuses[e] != EventStatus.promoted or not any(p.event_id == e for p in promoted):
                raise StateError(
                    f"event {e} is {statuses[e]!r}, not a change promoted into person {person_id}; only "
                    "promoted events can be split off a person; nothing was changed"
                )
        with master.connect() as conn:
            applied = {
                r.proposal_id: r.applied_at
                for r in conn.execute(
                    select(PROMOTION.c.proposal_id, PROMOTION.c.applied_at).where(
                        PROMOTION.c.proposal_id.in_([p.proposal_id for p in promoted])
                    )
                )
            }
        newest_first = sorted(
            promoted, key=lambda p: (applied.get(p.proposal_id) or utcnow(), p.proposal_id), reverse=True
        )
        ids = [p.proposal_id for p in newest_first]
        reverts = _revert_all(events, master, rules, who, Attempt(who, attempt.grant), ids, reason)
        now = utcnow()
        with writing(events) as conn:
            _mark_reverted(conn, ids)
            conn.execute(
                insert(EXCLUSION),
                [
                    {
                        "event_id": e,
                        "entity_kind": "person",
                        "entity_id": person_id,
                        "actor": actor_text(who.actor_id, who.unit_id),
                        "reason": reason,
                        "created_at": now,
                    }
                    for e in wanted
                ],
            )
            move(
                conn,
                EVENT,
                "status",
                EventStatus,
                EventStatus.promoted,
                EventStatus.standardized,
                [{"event_id": e} for e in wanted],
                key=("event_id",),
                values={"link_round": EVENT.c.link_round + 1},
            )
        fields = sorted({f for r in reverts for f in r.restored + r.cleared + r.withdrawn_past})
        return SplitReport(person_id, wanted, reverts), Outcome(fields, [], "changed")

    result, _ = guarded_read(master, ctx, actor, purpose=PURPOSE, action="split", query=None, read=run)
    return result
