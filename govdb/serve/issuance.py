"""After a programme run: offers move on (accepted / declined / delivered), delivered cards become
master credentials with lineage, and the ledger is exported (who was selected and why).

Only the programme's department, in its own county, moves an offer: the actor's unit comes from
master org units and each person's county from master, never from what the caller claims. Every
move is a checked, conditional set-based UPDATE (govdb.store.states.move), so two clerks marking
the same offer at once make one transition. A delivered card is written to master as a
credential with a lineage row per field, in the same transaction as the move
(`record_issued_credentials`, the one place master gains an issued credential). The export is a
read of personal data: audited through the guard with the programme as purpose, masked by the
department's policy.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from sqlalchemy import Connection, Engine, insert, select
from sqlmodel import Session

from govdb.access.guard import Attempt, AuditContext, Outcome, guarded_read
from govdb.base.actors import Actor, ResolvedActor
from govdb.base.clock import utcnow
from govdb.base.ids import ClusteredIds
from govdb.errors import AccessDeniedError, JurisdictionError, NotFoundError, StateError
from govdb.rulebook.loader import Rulebook
from govdb.rulebook.models import ProgrammeRules, blocks_of
from govdb.serve.programmes import SELECTED_FIELDS, withhold
from govdb.store.feed import change_rows, record_changes
from govdb.store.locks import writing
from govdb.store.master import BulkLoad, Credential, FieldHistory, Issuance, Person
from govdb.store.states import IssuanceStatus, move, parse
from govdb.verify.actors import resolve

ISSUANCE = Issuance.__table__  # type: ignore[attr-defined]
PERSON = Person.__table__  # type: ignore[attr-defined]
CREDENTIAL = Credential.__table__  # type: ignore[attr-defined]
HISTORY = FieldHistory.__table__  # type: ignore[attr-defined]
MAX_IDS = 10_000


@dataclass(frozen=True)
class IssuedCredential:
    """A card written to master when its issuance was delivered."""

    issuance_id: int
    credential_id: str
    person_id: str
    kind: str
    number: str
    issuer: str


@dataclass
class IssuanceMove:
    """What one marking did: the rows moved to `to`, and the credentials it wrote to master."""

    to: str
    moved: list[int]
    credentials: list[IssuedCredential] = field(default_factory=list)


def update_issuance(
    master: Engine, rules: Rulebook, ids: Iterable[int], *, to: str, actor: Actor
) -> IssuanceMove:
    """Move the issuances `ids` to `to` (accepted, declined or delivered) as `actor`, all or none.

    Refused unless the actor's unit is the programme's department and every person is registered
    in its county; refused when any row is not in a state that may become `to` (a declined offer
    is never delivered), including when another clerk moved it first."""
    target = parse(IssuanceStatus, to, what="issuance status")
    wanted = _ids(ids)
    with Session(master) as ms:
        who = resolve(ms, actor)
    with writing(master) as conn:
        rows = [
            dict(r)
            for r in conn.execute(
                select(
                    ISSUANCE.c.id,
                    ISSUANCE.c.programme,
                    ISSUANCE.c.cycle,
                    ISSUANCE.c.status,
                    ISSUANCE.c.person_id,
                    PERSON.c.division_code,
                )
                .join(PERSON, PERSON.c.person_id == ISSUANCE.c.person_id)
                .where(ISSUANCE.c.id.in_(wanted))
                .order_by(ISSUANCE.c.id)  # rows locked in one order: two markings queue, never deadlock
                .with_for_update(of=ISSUANCE)
            ).mappings()
        ]
        missing = sorted(set(wanted) - {r["id"] for r in rows})
        if missing:
            raise NotFoundError(f"no issuance with id {missing[:5]}; list them with `govdb programme offers`")
        for row in rows:
            _may_act(rules, who, row)
        now = utcnow()
        for source in sorted({r["status"] for r in rows}):
            group = [{"id": r["id"], "updated_at": now} for r in rows if r["status"] == source]
            move(conn, ISSUANCE, "status", IssuanceStatus, IssuanceStatus(source), target, group, key=("id",))
        issued: list[IssuedCredential] = []
        if target is IssuanceStatus.delivered:
            cards = [_card(rules.programmes[r["programme"]], r, now.date(), who) for r in rows]
            issued = record_issued_credentials(conn, [c for c in cards if c is not None])
    return IssuanceMove(str(target), sorted(wanted), issued)


def _ids(ids: Iterable[int]) -> list[int]:
    if ids is None or isinstance(ids, (str, bytes, int)):
        raise StateError(f"issuance ids are a list of whole numbers such as [12, 13], not {ids!r}")
    out = list(dict.fromkeys(ids))
    bad = [i for i in out if not isinstance(i, int) or isinstance(i, bool) or i < 1]
    if bad or not out:
        raise StateError(f"issuance ids are positive whole numbers such as [12, 13]; got {bad or 'none'}")
    if len(out) > MAX_IDS:
        raise StateError(f"{len(out)} issuance ids at once; mark at most {MAX_IDS} per call")
    return out


def _may_act(rules: Rulebook, who: ResolvedActor, row: dict[str, Any]) -> None:
    """The programme's department, in the county where the person is registered (from master)."""
    programme = rules.programmes.get(row["programme"])
    if programme is None:
        raise NotFoundError(f"issuance {row['id']} is of programme {row['programme']!r}, which has no rules")
    if who.level != "department" or who.department != programme.department:
        raise AccessDeniedError(
            f"issuance {row['id']} of {row['programme']!r} is moved by the {programme.department} "
            f"department; unit {who.unit_id!r} is {who.department or 'not a department'}"
        )
    if not (row["division_code"] or "").startswith(who.division_code):
        raise JurisdictionError(
            f"issuance {row['id']} is for a person registered outside {who.unit_id!r}'s county "
            f"{who.division_code}; the department unit of that county moves it"
        )


def _card(
    programme: ProgrammeRules, row: dict[str, Any], today: dt.date, who: ResolvedActor
) -> dict[str, Any] | None:
    if programme.credential is None:
        return None
    years = programme.credential.valid_years
    return {
        "issuance_id": row["id"],
        "programme": programme.name,
        "cycle": row["cycle"],
        "person_id": row["person_id"],
        "kind": programme.credential.kind,
        "issuer": programme.department,
        "valid_from": today,
        "valid_to": _years_later(today, years) if years else None,
        "actor_id": who.actor_id,
        "unit_id": who.unit_id,
    }


def _years_later(day: dt.date, years: int) -> dt.date:
    """The same day `years` later (29 February becomes 28 February in a common year)."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


def record_issued_credentials(conn: Connection, rows: Sequence[dict[str, Any]]) -> list[IssuedCredential]:
    """Write delivered cards to master as credentials, with a lineage row per field, inside the
    caller's transaction (the one of the checked transition to delivered).

    Each row: issuance_id, programme, cycle, person_id, kind, issuer (the department), valid_from,
    valid_to, and who marked it delivered (actor_id, unit_id: kept in the lineage's check). It is
    an authoritative write by the issuing department, recorded like a bulk load (one BulkLoad row
    per issuer, its source the department). The card's number is derived from
    the issuance (unique per kind, since an issuance is delivered once). This is the one place an
    issued credential enters master: a change feed of master hooks here."""
    if not rows:
        return []
    now = utcnow()
    issued: list[IssuedCredential] = []
    credentials: list[dict[str, Any]] = []
    history: list[dict[str, Any]] = []
    for issuer in sorted({r["issuer"] for r in rows}):
        load_id = str(uuid.uuid4())
        mine = [r for r in rows if r["issuer"] == issuer]
        conn.execute(
            insert(BulkLoad.__table__),  # type: ignore[attr-defined]
            [
                {
                    "load_id": load_id,
                    "source": issuer,
                    "entity_kind": "credential",
                    "rows": len(mine),
                    "loaded_at": now,
                }
            ],
        )
        new_id = ClusteredIds()  # the cards' ids together in the credential table's index
        for r in mine:
            checks = [
                {
                    "level": "authoritative",
                    "source": issuer,
                    "at": now.isoformat(),
                    "actor": r.get("actor_id"),
                    "unit": r.get("unit_id"),
                    "issuance_id": r["issuance_id"],
                }
            ]
            credential_id = new_id("C")
            number = f"{r['cycle'].replace('-', '').upper()}-{r['issuance_id']:010d}"
            attributes = {"programme": r["programme"], "cycle": r["cycle"], "issuance_id": r["issuance_id"]}
            credentials.append(
                {
                    "credential_id": credential_id,
                    "person_id": r["person_id"],
                    "kind": r["kind"],
                    "number": number,
                    "attributes": attributes,
                    "issuer": issuer,
                    "valid_from": r["valid_from"],
                    "valid_to": r["valid_to"],
                    "created_at": now,
                }
            )
            values = {
                "person_id": r["person_id"],
                "kind": r["kind"],
                "number": number,
                "issuer": issuer,
                "valid_from": r["valid_from"].isoformat(),
                "valid_to": r["valid_to"].isoformat() if r["valid_to"] else None,
                **{k: str(v) for k, v in attributes.items()},
            }
            history.extend(
                {
                    "entity_kind": "credential",
                    "entity_id": credential_id,
                    "field": name,
                    "value": value,
                    "valid_from": r["valid_from"],
                    "valid_to": None,
                    "recorded_at": now,
                    "source": issuer,
                    "proposal_id": None,
                    "bulk_load_id": load_id,
                    "event_ids": [],
                    "checks": checks,
                }
                for name, value in values.items()
                if value is not None
            )
            issued.append(
                IssuedCredential(r["issuance_id"], credential_id, r["person_id"], r["kind"], number, issuer)
            )
    conn.execute(insert(CREDENTIAL), credentials)
    conn.execute(insert(HISTORY), history)
    record_changes(
        conn,
        change_rows(
            [
                {
                    **{k: h[k] for k in ("entity_kind", "entity_id", "field", "valid_from")},
                    "op": "insert",
                    "cause": "issuance",
                    "cause_id": h["bulk_load_id"],
                }
                for h in history
            ]
        ),
        now,
    )
    return issued


EXPORT_COLUMNS: dict[str, pl.DataType | type[pl.DataType]] = {
    "issuance_id": pl.Int64,
    "programme": pl.String,
    "cycle": pl.String,
    "status": pl.String,
    "delivery": pl.String,
    "person_id": pl.String,
    "name": pl.String,
    "birth_date": pl.String,
    "division_code": pl.String,
    "address": pl.String,
    "reasons": pl.List(pl.String),
    "as_of": pl.Date,
    "updated_at": pl.Datetime,
}


def selection(
    master: Engine,
    ctx: AuditContext,
    name: str,
    *,
    actor: Actor,
    cycle: str | None = None,
    statuses: Sequence[str] | None = None,
    action: str = "export",
) -> pl.DataFrame:
    """The ledger of programme `name` (one cycle, some statuses): who was selected and why.

    A read of personal data by the programme's department in its county, for the programme as
    purpose: audited with everyone listed, each field as the department's policy shows it; reasons
    over credentials the department may not read are withheld."""
    programme = ctx.rules.programmes.get(name)
    if programme is None:
        raise NotFoundError(f"no programme {name!r}; known programmes: {sorted(ctx.rules.programmes)}")
    wanted = [str(parse(IssuanceStatus, s, what="issuance status")) for s in statuses or []]

    def read(ms: Session, attempt: Attempt) -> tuple[pl.DataFrame, Outcome]:
        if attempt.who.department != programme.department:
            raise AccessDeniedError(
                f"programme {name!r} is run by the {programme.department} department; "
                f"unit {attempt.who.unit_id!r} is {attempt.who.department or 'not a department'}"
            )
        query = (
            select(
                ISSUANCE.c.id.label("issuance_id"),
                ISSUANCE.c.programme,
                ISSUANCE.c.cycle,
                ISSUANCE.c.status,
                ISSUANCE.c.delivery,
                ISSUANCE.c.person_id,
                PERSON.c.name,
                PERSON.c.birth_date,
                PERSON.c.division_code,
                PERSON.c.address,
                ISSUANCE.c.reasons,
                ISSUANCE.c.as_of,
                ISSUANCE.c.updated_at,
            )
            .join(PERSON, PERSON.c.person_id == ISSUANCE.c.person_id)
            .where(
                ISSUANCE.c.programme == name,
                PERSON.c.division_code.startswith(attempt.who.division_code, autoescape=True),
            )
            .order_by(ISSUANCE.c.id)
        )
        if cycle is not None:
            query = query.where(ISSUANCE.c.cycle == cycle)
        if wanted:
            query = query.where(ISSUANCE.c.status.in_(wanted))
        rows = [dict(r) for r in ms.connection().execute(query).mappings()]
        attempt.subjects.extend(r["person_id"] for r in rows)
        kinds = {
            str(b.params["kind"])
            for b in blocks_of([*programme.eligibility, *programme.delivery.home_if])
            if b.block == "has_credential"
        }
        hidden = [f"holds a {k}" for k in sorted(kinds) if not attempt.grant.allows(f"credential.{k}")]
        masked: set[str] = set()
        for row in rows:
            row["reasons"] = list(row["reasons"] or [])
            for key in SELECTED_FIELDS:
                value, was_masked = attempt.grant.show(key, row[key])
                row[key] = None if value is None else str(value)
                masked.update([key] if was_masked else [])
            if any(h in r for r in row["reasons"] for h in hidden):
                row["reasons"] = list(dict.fromkeys(withhold(r, hidden) for r in row["reasons"]))
                masked.add("reasons")
        frame = pl.DataFrame(rows, schema=EXPORT_COLUMNS)
        shown = [c for c in EXPORT_COLUMNS if c not in masked] if rows else []
        return frame, Outcome(shown, sorted(masked))

    frame, _ = guarded_read(
        master, ctx, actor, purpose=name, action=f"{action}:{name}"[:32], query=None, read=read
    )
    return frame
