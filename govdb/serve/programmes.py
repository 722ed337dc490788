"""Proactive programmes (主动服务): eligibility over master data at a date, delivery, a ledger.

A programme run selects everyone its eligibility blocks accept at the as-of date, decides
delivery (home delivery when an enrichment block matches, e.g. a disability certificate that says
the person cannot walk), and records one ledger row per person per cycle, so a second run issues
nothing twice. Every selected person carries the reasons they were selected.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from pydantic import BaseModel
from sqlalchemy import Engine, insert, select
from sqlmodel import Session

from govdb.access.guard import Attempt, AuditContext, Outcome, guarded_read
from govdb.base.actors import Actor
from govdb.base.clock import utcnow
from govdb.errors import AccessDeniedError, NotFoundError, StateError
from govdb.rulebook import registry
from govdb.rulebook.registry import AgeParams, CredentialParams
from govdb.standards.ids import age_at
from govdb.store.locks import job_lock, writing
from govdb.store.master import Credential, Division, Issuance, Person
from govdb.store.states import IssuanceStatus, move, parse


@dataclass(frozen=True)
class Population:
    """What eligibility blocks see: master people and credentials, and the as-of date."""

    people: pl.DataFrame
    credentials: pl.DataFrame
    served_divisions: list[str]
    as_of: dt.date


Selection = tuple[pl.Series, str]  # (bool per person, the reason in words)


@registry.register("eligibility", "alive")
def alive(pop: Population, params: BaseModel) -> Selection:
    """No death date on or before the as-of date."""
    mask = pop.people.select(
        (pl.col("death_date").is_null() | (pl.col("death_date") > pop.as_of)).alias("m")
    ).to_series()
    return mask, "alive"


@registry.register("eligibility", "resident_in_jurisdiction")
def resident_in_jurisdiction(pop: Population, params: BaseModel) -> Selection:
    """Registered in a division this deployment serves."""
    codes = pop.people.get_column("division_code")
    mask = codes.is_in(pop.served_divisions).fill_null(False)
    return mask, "resident in the jurisdiction"


@registry.register("eligibility", "age_at_least")
def age_at_least(pop: Population, params: AgeParams) -> Selection:
    """Aged at least `years` on the as-of date."""
    mask = pop.people.select(
        (age_at(pl.col("birth_date"), pop.as_of) >= params.years).fill_null(False)
    ).to_series()
    return mask, f"aged {params.years} or over on {pop.as_of.isoformat()}"


@registry.register("eligibility", "has_credential")
def has_credential(pop: Population, params: CredentialParams) -> Selection:
    """Holds a valid credential of `kind` whose attributes take one of the listed values."""
    creds = pop.credentials.filter(
        (pl.col("kind") == params.kind) & (pl.col("valid_to").is_null() | (pl.col("valid_to") >= pop.as_of))
    )
    for name, allowed in params.attributes.items():
        creds = creds.filter(pl.col("attributes").str.json_path_match(f"$.{name}").is_in(allowed))
    mask = pop.people.get_column("person_id").is_in(creds.get_column("person_id").implode())
    described = ", ".join("/".join(v) for v in params.attributes.values())
    return mask, f"holds a {params.kind}" + (f" ({described})" if described else "")


@dataclass
class ProgrammeRun:
    """The outcome of one run: who was selected now, and who had been already."""

    programme: str
    run_id: str
    as_of: dt.date
    cycle: str
    eligible: int
    issued: int
    already_issued: int
    home_delivery: int
    selected: list[dict[str, Any]] = field(default_factory=list)


def _population(master: Engine, as_of: dt.date, within: str = "") -> Population:
    """Master people (of the division prefix `within`) and their credentials at `as_of`."""
    person = Person.__table__  # type: ignore[attr-defined]
    with master.connect() as conn:
        people = pl.DataFrame(
            [
                dict(r)
                for r in conn.execute(
                    select(
                        Person.__table__.c.person_id,  # type: ignore[attr-defined]
                        Person.__table__.c.name,  # type: ignore[attr-defined]
                        Person.__table__.c.birth_date,  # type: ignore[attr-defined]
                        Person.__table__.c.death_date,  # type: ignore[attr-defined]
                        Person.__table__.c.division_code,  # type: ignore[attr-defined]
                        Person.__table__.c.address,  # type: ignore[attr-defined]
                    ).where(person.c.division_code.startswith(within, autoescape=True))
                ).mappings()
            ],
            schema={
                "person_id": pl.String,
                "name": pl.String,
                "birth_date": pl.Date,
                "death_date": pl.Date,
                "division_code": pl.String,
                "address": pl.String,
            },
        )
        creds = pl.DataFrame(
            [
                {**r, "attributes": json.dumps(r["attributes"], ensure_ascii=False)}
                for r in conn.execute(
                    select(
                        Credential.__table__.c.person_id,  # type: ignore[attr-defined]
                        Credential.__table__.c.kind,  # type: ignore[attr-defined]
                        Credential.__table__.c.attributes,  # type: ignore[attr-defined]
                        Credential.__table__.c.valid_to,  # type: ignore[attr-defined]
                    )
                ).mappings()
            ],
            schema={"person_id": pl.String, "kind": pl.String, "attributes": pl.String, "valid_to": pl.Date},
        )
        served = list(conn.execute(select(Division.__table__.c.code)).scalars())  # type: ignore[attr-defined]
    return Population(people, creds, served, as_of)


def _apply(pop: Population, refs: list[Any]) -> tuple[pl.Series, list[str]]:
    mask = pl.Series([True] * pop.people.height, dtype=pl.Boolean)
    reasons = []
    for ref in refs:
        block = registry.get("eligibility", ref.block)
        assert block is not None  # checked when the rules were loaded
        selected, reason = block.function(pop, block.params.model_validate(ref.params))
        mask = mask & selected
        reasons.append(reason)
    return mask, reasons


def run_programme(
    master: Engine,
    ctx: AuditContext,
    name: str,
    *,
    as_of: dt.date,
    actor: Actor,
    dry_run: bool = False,
) -> ProgrammeRun:
    """Select, decide delivery and record in the ledger everyone newly eligible at `as_of`.

    A run reads personal data: `actor` must be of the programme's department, which must be
    granted the programme as a purpose; it sees only people of its own jurisdiction, each field
    as its policy shows it, and the run (a dry run too) is audited with everyone it selected."""
    if not isinstance(as_of, dt.date):
        raise StateError(f"as_of is a date such as datetime.date(2026, 12, 31), not {as_of!r}")
    programme = ctx.rules.programmes.get(name)
    if programme is None:
        raise NotFoundError(f"no programme {name!r}; known programmes: {sorted(ctx.rules.programmes)}")

    def read(ms: Session, attempt: Attempt) -> tuple[ProgrammeRun, Outcome]:
        if attempt.who.department != programme.department:
            raise AccessDeniedError(
                f"programme {name!r} is run by the {programme.department} department; "
                f"unit {attempt.who.unit_id!r} is {attempt.who.department or 'not a department'}"
            )
        run = _run(master, name, programme, as_of=as_of, dry_run=dry_run, within=attempt.who.division_code)
        ledger.extend(dict(s) for s in run.selected)  # as selected, before masking for the reader
        attempt.subjects.extend(s["person_id"] for s in run.selected)
        shown, masked = [], set()
        # Home delivery is the department's to carry out, so it is shown; why (a disability
        # certificate's category and grade) only if its policy grants those credentials.
        unseen = [
            ref
            for ref in programme.delivery.home_if
            if ref.params.get("kind") and not attempt.grant.allows(f"credential.{ref.params['kind']}")
        ]
        for person in run.selected:
            for key in SELECTED_FIELDS:
                value, was_masked = attempt.grant.show(key, person[key])
                person[key] = value
                if was_masked:
                    masked.add(key)
            if unseen and person["delivery"] == "home":
                person["reasons"] = [*person["reasons"][: len(programme.eligibility)], WITHHELD_REASON]
                masked.add("reasons")
        if run.selected:
            shown = [k for k in (*SELECTED_FIELDS, "delivery", "reasons") if k not in masked]
        return run, Outcome(shown, sorted(masked))

    ledger: list[dict[str, Any]] = []
    # One run at a time per programme; the selection is audited before the ledger records it, so
    # no issuance exists whose selection is not on record.
    with job_lock(master, f"programme:{name}"):
        run, _ = guarded_read(
            master,
            ctx,
            actor,
            purpose=name,
            action=("dry_run:" if dry_run else "programme:") + name[:20],
            query=None,
            read=read,
        )
        if ledger and not dry_run:
            _record(master, name, run, ledger)
    return run


SELECTED_FIELDS = ("person_id", "name", "birth_date", "division_code", "address")
WITHHELD_REASON = "delivered at home by another department's records (not shown to this department)"


def _record(master: Engine, name: str, run: ProgrammeRun, selected: list[dict[str, Any]]) -> None:
    """The ledger rows of a run (the unique (programme, cycle, person) backs "never twice")."""
    table = Issuance.__table__  # type: ignore[attr-defined]
    now = utcnow()
    with master.begin() as conn:
        conn.execute(
            insert(table),
            [
                {
                    "programme": name,
                    "cycle": run.cycle,
                    "person_id": s["person_id"],
                    "run_id": run.run_id,
                    "as_of": run.as_of,
                    "delivery": s["delivery"],
                    "status": "offered",
                    "reasons": s["reasons"],
                    "unverified_inputs": [],
                    "created_at": now,
                    "updated_at": now,
                }
                for s in selected
            ],
        )


def _run(
    master: Engine, name: str, programme: Any, *, as_of: dt.date, dry_run: bool, within: str
) -> ProgrammeRun:
    """Who is newly eligible, under the programme's job lock the caller holds: a second run at
    once waits, then finds them in the ledger."""
    pop = _population(master, as_of, within)
    cycle = "once" if programme.cycle == "once" else str(as_of.year)
    eligible_mask, reasons = _apply(pop, programme.eligibility)
    home_mask, home_reasons = (
        _apply(pop, programme.delivery.home_if)
        if programme.delivery.home_if
        else (pl.Series([False] * pop.people.height), [])
    )
    chosen = pop.people.with_columns(
        eligible_mask.alias("eligible"), (home_mask & bool(home_reasons)).alias("home")
    )
    chosen = chosen.filter(pl.col("eligible"))
    table = Issuance.__table__  # type: ignore[attr-defined]
    with master.connect() as conn:
        done = set(
            conn.execute(
                select(table.c.person_id).where(table.c.programme == name, table.c.cycle == cycle)
            ).scalars()
        )
    new = chosen.filter(~pl.col("person_id").is_in(list(done)))
    run_id = str(uuid.uuid4())
    default = programme.delivery.default
    selected = [
        {
            "person_id": r["person_id"],
            "name": r["name"],
            "birth_date": r["birth_date"],
            "division_code": r["division_code"],
            "address": r["address"],
            "delivery": "home" if r["home"] else default,
            "reasons": reasons + (home_reasons if r["home"] else []),
        }
        for r in new.iter_rows(named=True)
    ]
    return ProgrammeRun(
        programme=name,
        run_id=run_id,
        as_of=as_of,
        cycle=cycle,
        eligible=chosen.height,
        issued=0 if dry_run else len(selected),
        already_issued=chosen.height - new.height,
        home_delivery=sum(s["delivery"] == "home" for s in selected),
        selected=selected,
    )


def update_issuance(master: Engine, programme: str, person_id: str, status: str) -> None:
    """Move one ledger row along offered -> accepted / declined -> delivered (a checked
    transition: a row another clerk moved meanwhile is refused, not overwritten)."""
    target = parse(IssuanceStatus, status, what="issuance status")
    table = Issuance.__table__  # type: ignore[attr-defined]
    with writing(master) as conn:
        row = conn.execute(
            select(table.c.id, table.c.status)
            .where(table.c.programme == programme, table.c.person_id == person_id)
            .order_by(table.c.id.desc())
        ).first()
        if row is None:
            raise NotFoundError(f"person {person_id!r} has no issuance in programme {programme!r}")
        move(
            conn,
            table,
            "status",
            IssuanceStatus,
            IssuanceStatus(row.status),
            target,
            [{"id": row.id}],
            key=("id",),
            values={"updated_at": utcnow()},
        )
