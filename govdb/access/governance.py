"""Governed rules: access policies and routes change only when someone applies them, on record.

A rulebook's governed fingerprint covers its access policies and its verification file (routes,
services, departments, sources). The stores remember the last one applied; opening them with
different governed rules is refused (`RulesChangedError`) until `apply_rules` records the change
as an audit entry. Who may apply is decided by the rules applied before (their access policy must
grant the actor's department the purpose `rules_governance`), never by the new rules themselves.
The first open of a new store applies its rules as the founding set.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any, NoReturn

from sqlalchemy import Connection, Engine, func, insert, select
from sqlmodel import Session

from govdb.access.audit import HEAD, KEY_ENV, LOG, AuditKey, Claimed, Read, Reader, append
from govdb.access.guard import AuditContext
from govdb.base.actors import Actor
from govdb.base.clock import utcnow
from govdb.errors import AccessDeniedError, AuditChainError, GovdbError, RulesChangedError
from govdb.rulebook.loader import Rulebook, plain_data
from govdb.store.engine import store_errors
from govdb.store.locks import job_lock, writing
from govdb.store.master import RulesApplied
from govdb.verify.actors import resolve

APPLIED = RulesApplied.__table__  # type: ignore[attr-defined]
GOVERNANCE_PURPOSE = "rules_governance"
FOUNDER = Claimed("govdb", "system:first-open")


@dataclass(frozen=True)
class RulesChange:
    """One application of governed rules."""

    fingerprint: str
    previous: str | None
    changed: list[str]  # dotted parts that differ from the previous rules
    applied_at: dt.datetime
    actor_id: str
    unit_id: str
    audit_seq: int
    link_keys_written: int = 0  # master keyed again: its keys were written with other blocking rules


def governed_parts(rules: Rulebook) -> dict[str, Any]:
    """The governed rules as plain data, one entry per department policy, route, service, source."""
    access = plain_data(rules.access)
    verification = plain_data(rules.verification)
    parts: dict[str, Any] = {}
    for name, policy in access.get("departments", {}).items():
        parts[f"access.departments.{name}"] = policy
    parts["access.derived"] = access.get("derived", {})
    for section in ("departments", "routes", "services", "sources"):
        for name, value in verification.get(section, {}).items():
            parts[f"verification.{section}.{name}"] = value
    return parts


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    canon = lambda v: json.dumps(v, sort_keys=True, ensure_ascii=False)  # noqa: E731
    return sorted(k for k in set(old) | set(new) if canon(old.get(k)) != canon(new.get(k)))


def _latest(conn: Connection) -> dict[str, Any] | None:
    row = conn.execute(select(APPLIED).order_by(APPLIED.c.id.desc()).limit(1)).mappings().first()
    return dict(row) if row else None


def _seal(key: AuditKey, row: dict[str, Any]) -> str:
    """The key's MAC over what an applied-rules row says, so nobody without the key can add,
    replace or edit one (the fingerprints are plain hashes anyone can compute)."""
    summary = json.dumps(row["summary"], sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    digest = hashlib.sha256(summary.encode("utf-8")).hexdigest()
    return key.mac(
        f"rules|{row['fingerprint']}|{row['full_fingerprint']}|{row['audit_seq']}|"
        f"{row['actor_id']}|{row['unit_id']}|{digest}"
    )


def _record(conn: Connection, key: AuditKey, rules: Rulebook, who: Any, seq: int) -> dt.datetime:
    now = utcnow()
    row = {
        "fingerprint": rules.fingerprint(governed=True),
        "full_fingerprint": rules.fingerprint(),
        "rules_dir": str(rules.root)[:1024],
        "applied_at": now,
        "actor_id": who.actor_id,
        "unit_id": who.unit_id,
        "summary": governed_parts(rules),
        "audit_seq": seq,
    }
    row["mac"] = _seal(key, row)
    conn.execute(insert(APPLIED), [row])
    return now


def _read_latest(master: Engine, key: AuditKey) -> dict[str, Any] | None:
    """The last applied rules, checked: sealed with the key, and recorded by the audit chain's
    last `rules_apply` entry (an older row replayed as the newest points to an older entry)."""
    with store_errors(master), master.connect() as conn:
        latest = _latest(conn)
        if latest is None:
            return None
        last_apply = conn.execute(
            select(func.max(LOG.c.seq)).where(LOG.c.action == "rules_apply", LOG.c.outcome == "changed")
        ).scalar_one_or_none()
        entry = conn.execute(select(LOG).where(LOG.c.seq == latest["audit_seq"])).mappings().first()
        sealed_with = conn.execute(select(HEAD.c.key_id).where(HEAD.c.id == 1)).scalar_one_or_none()
    if sealed_with not in (None, key.key_id):
        raise AuditChainError(
            f"the audit log was sealed with audit key {sealed_with}, not this one ({key.key_id}); "
            f"open the stores with the deployment's key ({KEY_ENV})"
        )
    if latest.get("mac") != _seal(key, latest):
        raise AuditChainError(
            f"the record of applied rules (row {latest['id']}) was written or changed without the audit "
            "key: someone swapped the rules in the database; restore it and run `govdb audit verify`"
        )
    if (
        entry is None
        or entry["action"] != "rules_apply"
        or entry["outcome"] != "changed"
        or entry["subject_id"] != latest["fingerprint"][:32]
        or last_apply != latest["audit_seq"]
    ):
        raise AuditChainError(
            f"the record of applied rules (row {latest['id']}) is not the one the audit log's last "
            f"rules_apply entry recorded (entry {latest['audit_seq']} vs {last_apply}): an older "
            "record was replayed; restore it and run `govdb audit verify`"
        )
    return latest


def ensure_applied(master: Engine, ctx: AuditContext) -> None:
    """Refuse governed rules that differ from the last applied; apply the first ever."""
    wanted = ctx.rules.fingerprint(governed=True)
    latest = _read_latest(master, ctx.key)
    if latest is None:
        # Another process may found the store at the same moment with other rules: those win,
        # and these are then checked against them like any others.
        latest = _apply_founding(master, ctx)
    if latest is None or latest["fingerprint"] == wanted:
        return
    changed = _differences(latest["summary"], governed_parts(ctx.rules))
    shown = ", ".join(changed[:6]) + (f" and {len(changed) - 6} more" if len(changed) > 6 else "")
    applied = f"{latest['applied_at']:%Y-%m-%d %H:%M} by {latest['actor_id']}@{latest['unit_id']}"
    raise RulesChangedError(
        f"the rules in {str(ctx.rules.root)!r} change access policies or routes "
        f"({shown or 'their content'}) from those applied on {applied}; if the change is intended, "
        "record it with `govdb rules apply --actor NAME@UNIT` (a unit whose department the applied "
        f"rules grant '{GOVERNANCE_PURPOSE}'), else open with the applied rules"
    )


def _apply_founding(master: Engine, ctx: AuditContext) -> dict[str, Any] | None:
    """Record these rules as the first of a new store, once even when several processes open it at
    once: returns None when this call founded it, else the rules another opener founded first.

    The audit entry is appended in its own transaction, so the whole founding is serialized by a
    lock that outlives transactions (an advisory lock on PostgreSQL, a file lock beside SQLite)."""
    with job_lock(master, "rules"):
        return _found(master, ctx)


def _found(master: Engine, ctx: AuditContext) -> dict[str, Any] | None:
    """The founding itself, under the rules lock the caller holds."""
    latest = _read_latest(master, ctx.key)
    if latest is not None:
        return latest
    seq = append(
        master,
        ctx.key,
        FOUNDER,
        Read(
            action="rules_apply",
            purpose=GOVERNANCE_PURPOSE,
            subject_kind="rules",
            subjects=[ctx.rules.fingerprint(governed=True)[:32]],
            outcome="changed",
            reason="the founding rules of a new store",
        ),
        rules_fingerprint=ctx.fingerprint,
    )
    with writing(master) as conn:
        _record(conn, ctx.key, ctx.rules, FOUNDER, seq)
    return None


def _refuse(
    master: Engine,
    ctx: AuditContext,
    who: Reader,
    subject: list[str],
    reason: str,
    error: GovdbError | None = None,
) -> NoReturn:
    """Audit a refused application, then raise `error` (AccessDeniedError by default)."""
    append(
        master,
        ctx.key,
        who,
        Read("rules_apply", GOVERNANCE_PURPOSE, "rules", subject, outcome="refused", reason=reason),
        rules_fingerprint=ctx.fingerprint,
    )
    raise error or AccessDeniedError(reason)


def _governors(parts: dict[str, Any]) -> list[str]:
    """The departments the given governed rules grant `rules_governance`."""
    prefix = "access.departments."
    return sorted(
        k.removeprefix(prefix)
        for k, v in parts.items()
        if k.startswith(prefix) and GOVERNANCE_PURPOSE in (v or {}).get("purposes", [])
    )


def apply_rules(master: Engine, ctx: AuditContext, actor: Actor) -> RulesChange:
    """Record the current governed rules as applied by `actor` (audited; refused and audited when
    the previously applied rules do not grant the actor's department `rules_governance`).

    A store that has no applied rules yet (opened without the check) first records its founding
    rules, as any first open would; the actor is then judged by those."""
    wanted = ctx.rules.fingerprint(governed=True)
    subject = [wanted[:32]]
    with Session(master) as ms:
        try:
            who = resolve(ms, actor)
        except GovdbError as exc:
            claimed = Claimed(str(actor.actor_id), str(actor.unit_id))
            _refuse(master, ctx, claimed, subject, str(exc), exc)
    with job_lock(master, "rules"):  # one application at a time, each judged by the one before
        latest = _read_latest(master, ctx.key)
        if latest is None:
            _found(master, ctx)
            latest = _read_latest(master, ctx.key)
        assert latest is not None
        previous_parts: dict[str, Any] = latest["summary"]
        if who.department not in _governors(previous_parts):
            _refuse(
                master,
                ctx,
                who,
                subject,
                f"unit {who.unit_id!r} (department {who.department!r}) may not apply rules: the applied "
                f"access rules grant '{GOVERNANCE_PURPOSE}' only to {_governors(previous_parts)}",
            )
        changed = _differences(previous_parts, governed_parts(ctx.rules))
        seq = append(
            master,
            ctx.key,
            who,
            Read(
                "rules_apply",
                GOVERNANCE_PURPOSE,
                "rules",
                subject,
                fields=changed[:200],
                outcome="changed",
                reason=f"applied governed rules {wanted[:12]} from {str(ctx.rules.root)[:200]}"
                + ("" if changed else " (the same as those applied before)"),
            ),
            rules_fingerprint=ctx.fingerprint,
        )
        with writing(master) as conn:
            at = _record(conn, ctx.key, ctx.rules, who, seq)
    return RulesChange(wanted, latest["fingerprint"], changed, at, who.actor_id, who.unit_id, seq)


@dataclass(frozen=True)
class AppliedRules:
    """The governed rules last applied to the stores."""

    fingerprint: str  # governed
    full_fingerprint: str
    rules_dir: str
    applied_at: dt.datetime
    actor_id: str
    unit_id: str
    audit_seq: int | None


@dataclass(frozen=True)
class RulesStatus:
    """The rules in use beside the ones last applied: whether the stores accept them as they are."""

    rules_dir: str
    fingerprint: str  # full: what every decision, promotion and read records
    governed_fingerprint: str
    applied: AppliedRules | None  # None: nothing applied yet (a new store)
    changed: list[str]  # governed parts that differ from the applied ones

    @property
    def differs(self) -> bool:
        return self.applied is not None and self.applied.fingerprint != self.governed_fingerprint


def rules_status(master: Engine, ctx: AuditContext) -> RulesStatus:
    """The rules in use, the ones last applied, and what differs between them."""
    rules = ctx.rules
    governed = rules.fingerprint(governed=True)
    latest = _read_latest(master, ctx.key)
    applied = None
    changed: list[str] = []
    if latest is not None:
        applied = AppliedRules(
            latest["fingerprint"],
            latest["full_fingerprint"],
            latest["rules_dir"],
            latest["applied_at"],
            latest["actor_id"],
            latest["unit_id"],
            latest["audit_seq"],
        )
        if latest["fingerprint"] != governed:
            changed = _differences(latest["summary"], governed_parts(rules))
    return RulesStatus(str(rules.root), rules.fingerprint(), governed, applied, changed)


def rules_applied(master: Engine, ctx: AuditContext) -> bool:
    """Whether the rules in use are the ones last applied to the stores (False when that cannot
    be read): a store opened to inspect or apply other rules works under them only once applied."""
    try:
        return not rules_status(master, ctx).differs
    except GovdbError:
        return False


def require_applied(ctx: AuditContext, rules: Rulebook) -> None:
    """Refuse work under `rules` (the rules in use) unless they are the ones applied to the stores."""
    if not ctx.applied:
        raise RulesChangedError(
            f"the rules in {str(rules.root)!r} are not the ones applied to these stores; "
            "apply them first (`govdb rules apply --actor NAME@UNIT`)"
        )
