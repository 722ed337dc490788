"""One way to read personal master data: resolve, authorize, read, audit, then release.

`guarded_read` resolves the actor from master, checks the purpose against the access policy,
runs the read, and appends its audit entry before the result is returned. A refused read (unknown
unit, purpose not granted, another county) and a failed look-up are audited too, with what was
asked for as a keyed digest, so probing whether an ID number exists leaves a trace.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy import Connection, Engine
from sqlmodel import Session

from govdb.access.audit import AuditKey, Claimed, Read, append
from govdb.access.policy import Grant, authorize
from govdb.base.actors import Actor, ResolvedActor
from govdb.errors import AccessDeniedError, GovdbError, JurisdictionError, NotFoundError, StateError
from govdb.rulebook.loader import Rulebook
from govdb.store.locks import reading
from govdb.verify.actors import resolve

T = TypeVar("T")


@dataclass(frozen=True)
class AuditContext:
    """What every audited read needs besides the store: the key and the rules in force."""

    key: AuditKey
    rules: Rulebook
    fingerprint: str
    applied: bool = True  # False: opened to apply these rules; nothing personal is read under them


@dataclass
class Attempt:
    """Filled in by a read as it goes, so a refusal is recorded with whom it was about."""

    who: ResolvedActor
    grant: Grant
    subjects: list[str] = field(default_factory=list)
    subject_kind: str = "person"


@dataclass(frozen=True)
class Outcome:
    """What a read returns to its caller, and what its audit entry records."""

    fields: list[str]
    masked: list[str]
    outcome: str = "read"  # "not_found" when a search found nobody


def guarded_read(
    master: Engine,
    ctx: AuditContext,
    actor: Actor,
    *,
    purpose: str,
    action: str,
    query: tuple[str, str] | None,
    read: Callable[[Session, Attempt], tuple[T, Outcome]],
    only_reads: bool = False,
) -> tuple[T, int]:
    """Run `read` as `actor` for `purpose`; return its result and the audit entry's seq.

    `only_reads`: `read` writes nothing through its session, which then reads outside a
    transaction (`store.locks.reading`: on PostgreSQL no BEGIN and ROLLBACK, and the driver keeps
    its prepared statements), and the audit entry is appended on the same connection in one
    statement (govdb.access.audit.append)."""
    reads: Connection | None = None

    def record(
        reader: object, outcome: str, reason: str | None, attempt: Attempt | None, seen: Outcome | None = None
    ) -> int:
        return append(
            master,
            ctx.key,
            reader,  # type: ignore[arg-type]
            Read(
                action=action,
                purpose=str(purpose),
                subject_kind=attempt.subject_kind if attempt else "person",
                subjects=list(attempt.subjects) if attempt else [],
                fields=seen.fields if seen else [],
                masked=seen.masked if seen else [],
                outcome=outcome,
                reason=reason,
                query=query,
            ),
            rules_fingerprint=ctx.fingerprint,
            conn=reads,
        )

    with ExitStack() as stack:
        if only_reads:
            reads = stack.enter_context(reading(master))
        ms = stack.enter_context(Session(reads if reads is not None else master))
        try:
            if not isinstance(actor, Actor):
                raise StateError(f"the reader is an Actor(actor_id, unit_id), not {type(actor).__name__}")
            who = resolve(ms, actor)
        except GovdbError as exc:
            claimed = Claimed(str(getattr(actor, "actor_id", actor)), str(getattr(actor, "unit_id", "")))
            record(claimed, "refused", str(exc), None)
            raise
        attempt: Attempt | None = None
        try:
            if not ctx.applied:
                raise AccessDeniedError(
                    "the rules in use are not the ones applied to these stores; nothing personal is read "
                    "under them until `govdb rules apply` records them"
                )
            if not isinstance(purpose, str) or not purpose.strip():
                raise AccessDeniedError(
                    f"purpose {purpose!r} is empty; every read of personal data names its purpose"
                )
            if "\x00" in purpose:
                raise AccessDeniedError(f"purpose {purpose[:40]!r} holds a NUL character; name it in text")
            attempt = Attempt(who, authorize(ctx.rules, who, purpose))
            result, seen = read(ms, attempt)
        except NotFoundError as exc:
            record(who, "not_found", str(exc), attempt)
            raise
        except (AccessDeniedError, JurisdictionError, StateError) as exc:
            # A change refused (already done, out of order, lost a race) is on record too.
            record(who, "refused", str(exc)[:512], attempt)
            raise
        return result, record(who, seen.outcome, None, attempt, seen)
