"""Find the master person (or enterprise) a record is about (link_one), as a read of personal data.

The look-up itself is the linkage stage's (govdb.link.online); this wraps it as every personal
read is wrapped: the purpose must be granted, the matched person's fields come back as the
department's policy shows them and only inside its county, and the look-up is audited (also when
it finds nobody, so probing whether a person exists leaves a trace).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from govdb.access.guard import Attempt, AuditContext, Outcome, guarded_read
from govdb.access.policy import field_name
from govdb.base.actors import Actor
from govdb.errors import StateError
from govdb.link.model import LinkModel
from govdb.link.online import LinkResult
from govdb.link.online import link_one as link_record
from govdb.serve._master_view import clean_id_number
from govdb.serve.enterprise import link_one_enterprise_read
from govdb.standards import record as std
from govdb.store.master import Person


def link_one(
    master: Engine,
    ctx: AuditContext,
    record: dict[str, Any],
    *,
    actor: Actor,
    purpose: str,
    model: Callable[[], LinkModel],
    today: dt.date | None = None,
    address_hint: str | None = None,
    kind: str = "person",
) -> LinkResult:
    """`record` linked against master; `master` fields as `actor` may see them (audited).

    What comes back says no more than the reader may see: nothing but "new" when nobody
    matched (no nearest candidate, no probability, no comparison levels, which would confirm a
    guessed phone or birth date); for someone of another county, who it is and how sure, no
    fields and no explanation; inside the county, the comparison levels only of fields the
    policy shows in full. Every scored candidate is a subject of the audit entry, and what was
    looked up is kept as a keyed digest, so the people a search was about see it in who-read.

    `kind="enterprise"` links an enterprise record instead (`link_one_enterprise_read`)."""
    if kind == "enterprise":
        return link_one_enterprise_read(
            master, ctx, record, actor=actor, purpose=purpose, today=today, address_hint=address_hint
        )
    if kind != "person":
        raise StateError(f"link_one links a 'person' or an 'enterprise', not {kind!r}")
    if not isinstance(record, dict):
        raise StateError(
            f"link_one takes one record as a mapping of field to value, not {type(record).__name__}"
        )
    query = lookup_query(record, today)

    def read(ms: Session, attempt: Attempt) -> tuple[LinkResult, Outcome]:
        found = link_record(
            master,
            record,
            ctx.rules.matching["person"],
            model(),
            today=today,
            address_hint=address_hint,
            conn=ms.connection(),
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
            # Someone of another county: who it is (an id) and how sure, nothing personal.
            elsewhere = dataclasses.replace(found, match_weight=None, explanation={}, master=None)
            return elsewhere, Outcome(["person_id"], [])
        shown, seen, masked = {}, [], []
        for name, value in found.master.items():
            visible, was_masked = attempt.grant.show(field_name(name), value)
            if was_masked:
                masked.append(name)
                if visible is not None:
                    shown[name] = visible
            elif visible is not None:
                shown[name] = visible
                seen.append(name)
        explanation = {
            key: why
            for key, why in found.explanation.items()
            if key in ("blocking", "hard_rule", "candidate")
            or (isinstance(why, dict) and attempt.grant.in_full(field_name(key)))
        }
        return dataclasses.replace(found, master=shown, explanation=explanation), Outcome(seen, masked)

    result, _ = guarded_read(
        master, ctx, actor, purpose=purpose, action="link_one", query=query, read=read, only_reads=True
    )
    return result


def lookup_query(record: dict[str, Any], today: dt.date | None = None) -> tuple[str, str] | None:
    """The identifier a look-up was about, for its audit entry's keyed digest: the ID number,
    else the phone, else name and birth date, standardized as master keeps them (`identifiers`)."""
    if record.get("id_number") not in (None, ""):
        return ("id_number", clean_id_number(record["id_number"]))
    phone = _standard(std.phone, record.get("phone"))
    if phone:
        return ("phone", str(phone))
    name = _standard(std.name, record.get("name"))
    birth = _standard(lambda v: std.date(v, today or dt.date.today()), record.get("birth_date"))
    if name and birth:
        return ("name_birth", f"{name}|{birth.isoformat()}")
    return None


def identifiers(person: Person) -> list[tuple[str, str]]:
    """Every query a look-up of this person could have been recorded under (for who-read)."""
    out = [("id_number", clean_id_number(person.id_number))]
    phone = _standard(std.phone, person.phone)
    if phone:
        out.append(("phone", str(phone)))
    name = _standard(std.name, person.name)
    if name and person.birth_date:
        out.append(("name_birth", f"{name}|{person.birth_date.isoformat()}"))
    return out


def _standard(function: Callable[[Any], Any], value: Any) -> Any:
    if value in (None, ""):
        return None
    try:
        return function(value)
    except (TypeError, ValueError):
        return None
