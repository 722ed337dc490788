"""Who may read which master fields, for which purpose, where, and what they see masked.

Every read of personal master data by a department (prefill, profile, look-up, programme run)
goes through `authorize` (the purpose must be granted, the grant says which fields are visible
and how each is masked), `check_reach` (a department reads only people of its own county; a
village or street unit only its own area) and then the audit chain (govdb.access.audit).

Masks are closed over derivation (the access rules' `derived`): masking or withholding the ID
number hides the birth date, gender, age and certificate numbers computed from it, unless the
policy gives one of them a mask of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from govdb.base.actors import ResolvedActor
from govdb.errors import AccessDeniedError, JurisdictionError
from govdb.rulebook import registry
from govdb.rulebook.loader import Rulebook
from govdb.rulebook.models import AccessRules
from govdb.rulebook.registry import KeepEnds

HIDDEN = "***"


@registry.register("mask", "keep_ends")
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


def field_name(source: str) -> str:
    """A form or profile source as the access rules name it: person.x -> x, credential.k.f kept."""
    name = source.split(".", 1)[1] if source.startswith("person.") else source
    return name.replace(".attributes.", ".")


@dataclass(frozen=True)
class Grant:
    """What one department may read for one purpose, and how each field is shown."""

    department: str
    purpose: str
    fields: frozenset[str]
    masks: dict[str, tuple[registry.Block, BaseModel]]
    hidden: frozenset[str]  # derived from a masked or withheld field, with no mask of its own

    def allows(self, field: str) -> bool:
        """Granted: the field itself, or a credential kind that contains it."""
        parts = field.split(".")
        return any(".".join(parts[:n]) in self.fields for n in range(1, len(parts) + 1))

    def in_full(self, field: str) -> bool:
        """Whether this department sees the field's value unmasked."""
        return self.show(field, "") == ("", False)

    def show(self, field: str, value: Any) -> tuple[Any, bool]:
        """The value as this department may see it, and whether it was masked."""
        if value is None:
            return None, False
        if not self.allows(field):
            return None, True
        if field in self.masks:
            block, params = self.masks[field]
            return block.function(str(value), params), True
        if field in self.hidden or any(field.startswith(h + ".") for h in self.hidden):
            return HIDDEN, True
        return value, False


def derived_closure(access: AccessRules, withheld: set[str]) -> set[str]:
    """Every field derived (transitively) from a withheld or masked field."""
    out: set[str] = set()
    todo = list(withheld)
    while todo:
        for child in access.derived.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


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
    known = set(access_fields(rules)) | set(rules.access.derived)
    withheld = {f for f in known if f not in policy.fields and not _covered(f, policy.fields)}
    hidden = derived_closure(rules.access, withheld | set(masks)) - set(masks)
    return Grant(department or "", purpose, frozenset(policy.fields), masks, frozenset(hidden))


def _covered(field: str, granted: list[str]) -> bool:
    parts = field.split(".")
    return any(".".join(parts[:n]) in granted for n in range(1, len(parts)))


def access_fields(rules: Rulebook) -> list[str]:
    """Every field named anywhere in the access rules (policies and derivations)."""
    out: list[str] = []
    for policy in rules.access.departments.values():
        out += policy.fields + list(policy.masked)
    for source, derived in rules.access.derived.items():
        out += [source, *derived]
    return out


def check_reach(actor: ResolvedActor, division_code: str | None, subject: str = "person") -> None:
    """A unit reads only inside its jurisdiction: a department its county, a village or street
    its own area, judged by where master says the subject is registered."""
    if not division_code or not division_code.startswith(actor.division_code):
        # Where the person is registered is itself personal: the message does not say.
        raise JurisdictionError(
            f"unit {actor.unit_id!r} covers {actor.division_code} and may not read this {subject}: "
            f"they are not registered in {actor.division_code}; ask the unit where they are registered"
        )
