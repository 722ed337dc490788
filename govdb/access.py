"""Who may read which master fields, masking, and the hash-chained audit log (invariant 6).

Every read of personal master data by a department (prefill, profile, export) goes through
`authorize` and `audit`: the first refuses purposes the department is not granted and says which
fields it sees masked, the second appends one entry whose hash covers the previous entry's hash.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session, select

from govdb.errors import AccessDeniedError
from govdb.rulebook import registry
from govdb.rulebook.loader import Rulebook
from govdb.store.master import AuditLog, utcnow
from govdb.verify.actors import ResolvedActor

GENESIS = "0" * 64


class KeepEnds(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    head: int = Field(ge=0)
    tail: int = Field(ge=0)


@registry.register("mask", "keep_ends", KeepEnds)
def keep_ends(value: str, params: KeepEnds) -> str:
    """Show the first `head` and last `tail` characters, star the rest (440605********123X)."""
    if len(value) <= params.head + params.tail:
        return "*" * len(value)
    return (
        value[: params.head]
        + "*" * (len(value) - params.head - params.tail)
        + value[len(value) - params.tail :]
    )


@registry.register("mask", "hide")
def hide(value: str, params: BaseModel) -> str:
    """Show nothing but that a value exists."""
    return "***"


@dataclass(frozen=True)
class Grant:
    """What one department may read for one purpose."""

    department: str
    purpose: str
    fields: frozenset[str]
    masks: dict[str, tuple[registry.Block, BaseModel]]

    def allows(self, field: str) -> bool:
        return field in self.fields or field.split(".")[0] in self.fields

    def show(self, field: str, value: Any) -> tuple[Any, bool]:
        """The value as this department may see it, and whether it was masked."""
        if value is None:
            return None, False
        if field in self.masks:
            block, params = self.masks[field]
            return block.function(str(value), params), True
        return value, False


def authorize(rules: Rulebook, actor: ResolvedActor, purpose: str) -> Grant:
    """The grant of the actor's department for `purpose`, or AccessDeniedError."""
    department = actor.department
    policy = rules.access.departments.get(department or "")
    if policy is None:
        raise AccessDeniedError(
            f"unit {actor.unit_id!r} (department {department!r}) has no access policy "
            "for personal master data; "
            "add one to the access rules"
        )
    if purpose not in policy.purposes:
        raise AccessDeniedError(
            f"department {department!r} may not read personal data for purpose {purpose!r}; "
            f"its granted purposes are {policy.purposes}"
        )
    masks = {}
    for fld, ref in policy.masked.items():
        block = registry.get("mask", ref.block)
        assert block is not None  # checked when the rules were loaded
        masks[fld] = (block, block.params.model_validate(ref.params))
    return Grant(department or "", purpose, frozenset(policy.fields), masks)


def _entry_hash(prev_hash: str, body: dict[str, Any]) -> str:
    payload = json.dumps(body, ensure_ascii=False, sort_keys=True, default=str)
    return hashlib.sha256((prev_hash + payload).encode("utf-8")).hexdigest()


def _body(entry: AuditLog) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "at": entry.at.isoformat(),
        "actor_id": entry.actor_id,
        "unit_id": entry.unit_id,
        "department": entry.department,
        "purpose": entry.purpose,
        "action": entry.action,
        "subject_kind": entry.subject_kind,
        "subject_id": entry.subject_id,
        "fields": entry.fields,
        "masked": entry.masked,
    }


def audit(
    session: Session,
    actor: ResolvedActor,
    *,
    purpose: str,
    action: str,
    subject_kind: str,
    subject_id: str,
    fields: list[str],
    masked: list[str],
) -> AuditLog:
    """Append one entry to the audit chain, in the caller's master transaction."""
    last = session.exec(select(AuditLog).order_by(AuditLog.seq.desc()).limit(1)).first()  # type: ignore[union-attr]
    entry = AuditLog(
        seq=(last.seq + 1) if last else 1,
        at=utcnow().replace(microsecond=0),
        actor_id=actor.actor_id,
        unit_id=actor.unit_id,
        department=actor.department,
        purpose=purpose,
        action=action,
        subject_kind=subject_kind,
        subject_id=subject_id,
        fields=fields,
        masked=masked,
        prev_hash=last.hash if last else GENESIS,
        hash="",
    )
    entry.hash = _entry_hash(entry.prev_hash, _body(entry))
    session.add(entry)
    return entry


def verify_audit_chain(session: Session) -> int:
    """Check every link of the chain; return the number of entries, or raise on the first break."""
    prev = GENESIS
    count = 0
    for entry in session.exec(select(AuditLog).order_by(AuditLog.seq)):  # type: ignore[arg-type]
        if entry.prev_hash != prev or entry.hash != _entry_hash(prev, _body(entry)):
            raise AccessDeniedError(
                f"the audit log is broken at entry {entry.seq}: it was changed after it was written"
            )
        prev = entry.hash
        count += 1
    return count
