"""Proactive programmes (主动服务): eligibility over master data at a date, delivery, a ledger.

A programme run selects everyone its eligibility conditions accept at the as-of date (blocks
combined by all / any / not, govdb.serve.eligibility), decides delivery (home delivery when an
enrichment condition matches, e.g. a disability certificate that says the person cannot walk),
and records one ledger row per person per cycle (once, a year, a month), so a second run in the
cycle issues nothing twice. Every selected person carries the reasons they were selected, and
everyone a `not` kept out is reported with why. Offers move on and are exported in
govdb.serve.issuance.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from sqlalchemy import Engine, select
from sqlmodel import Session

from govdb.access.guard import Attempt, AuditContext, Outcome, guarded_read
from govdb.base.actors import Actor
from govdb.base.clock import utcnow
from govdb.errors import AccessDeniedError, NotFoundError, StateError
from govdb.serve.eligibility import judge, population
from govdb.store.bulk import Constant, insert_frame
from govdb.store.locks import job_lock, writing
from govdb.store.master import Issuance


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
    excluded: list[dict[str, Any]] = field(default_factory=list)  # whom a `not` kept out, and why


def cycle_key(cycle: str, as_of: dt.date) -> str:
    """The ledger's cycle of a run at `as_of`: once, 2026, or 2026-11 (one row per person each)."""
    if cycle == "once":
        return "once"
    return str(as_of.year) if cycle == "yearly" else f"{as_of.year:04d}-{as_of.month:02d}"


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
    if not isinstance(as_of, dt.date) or isinstance(as_of, dt.datetime):
        # A time of day has no place in a ledger of dates (and its zone would move the day).
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
        run, kinds = _run(
            master, name, programme, as_of=as_of, dry_run=dry_run, within=attempt.who.division_code
        )
        ledger.extend(dict(s) for s in run.selected)  # as selected, before masking for the reader
        attempt.subjects.extend(s["person_id"] for s in [*run.selected, *run.excluded])
        # Home delivery is the department's to carry out, so it is shown; why (a disability
        # certificate's category and grade) only if its policy grants those credentials. The
        # same holds for any condition over a credential kind the department may not read.
        hidden = [words for words, kind in kinds.items() if not attempt.grant.allows(f"credential.{kind}")]
        masked = show_people(attempt, [*run.selected, *run.excluded], hidden)
        shown = []
        if run.selected or run.excluded:
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
WITHHELD_CONDITION = "a condition on another department's records (not shown to this department)"


def show_people(attempt: Attempt, people: list[dict[str, Any]], hidden: list[str]) -> set[str]:
    """Mask each person's fields as the reader's grant shows them, in place; reasons that speak
    of credentials the reader may not see are withheld. Returns the masked keys."""
    masked: set[str] = set()
    # The grant decides by field, not by value: fields it shows in full are left as they are.
    masking = [key for key in SELECTED_FIELDS if not attempt.grant.in_full(key)]
    for person in people:
        for key in masking:
            value, was_masked = attempt.grant.show(key, person[key])
            person[key] = value
            if was_masked:
                masked.add(key)
        if hidden and any(h in r for r in person["reasons"] for h in hidden):
            person["reasons"] = list(dict.fromkeys(withhold(r, hidden) for r in person["reasons"]))
            masked.add("reasons")
    return masked


def withhold(reason: str, hidden: list[str]) -> str:
    """The reason, or words saying it is withheld when it speaks of any of `hidden`."""
    if not any(h in reason for h in hidden):
        return reason
    return WITHHELD_REASON if reason.startswith("home:") else WITHHELD_CONDITION


def _record(master: Engine, name: str, run: ProgrammeRun, selected: list[dict[str, Any]]) -> None:
    """The ledger rows of a run in one bulk insert (the unique (programme, cycle, person) backs
    "never twice")."""
    table = Issuance.__table__  # type: ignore[attr-defined]
    now = utcnow()
    rows = pl.DataFrame(
        {
            "person_id": [s["person_id"] for s in selected],
            "delivery": [s["delivery"] for s in selected],
            "reasons": [json.dumps(s["reasons"], ensure_ascii=False) for s in selected],
        },
        schema=dict.fromkeys(("person_id", "delivery", "reasons"), pl.String),
    )
    constants: dict[str, Constant] = {
        "programme": name,
        "cycle": run.cycle,
        "run_id": run.run_id,
        "as_of": run.as_of.isoformat(),
        "status": "offered",
        "unverified_inputs": "[]",
        "created_at": now,
        "updated_at": now,
    }
    with writing(master) as conn:  # begun before the insert: no statement journal on SQLite
        insert_frame(conn, table, rows, constants)


def _run(
    master: Engine, name: str, programme: Any, *, as_of: dt.date, dry_run: bool, within: str
) -> tuple[ProgrammeRun, dict[str, str]]:
    """Who is newly eligible, under the programme's job lock the caller holds: a second run at
    once waits, then finds them in the ledger. Also returns the words of each credential
    condition with its kind (withheld from readers not granted that kind)."""
    pop = population(master, as_of, within)
    cycle = cycle_key(programme.cycle, as_of)
    judged = judge(pop, list(programme.eligibility), list(programme.delivery.home_if))
    frame, kinds = judged.people, judged.credential_words
    chosen = frame.filter(pl.col("eligible"))
    table = Issuance.__table__  # type: ignore[attr-defined]
    with master.connect() as conn:
        done = list(
            conn.execute(
                select(table.c.person_id).where(table.c.programme == name, table.c.cycle == cycle)
            ).scalars()
        )
    new = chosen.filter(~pl.col("person_id").is_in(done))
    default = programme.delivery.default
    # Built on whole columns: a county's first run selects a sixth of its people.
    home = pl.col("home").fill_null(False)
    selected = new.select(
        *SELECTED_FIELDS,
        pl.when(home).then(pl.lit("home")).otherwise(pl.lit(default)).alias("delivery"),
        pl.when(home)
        .then(pl.concat_list("why", pl.col("home_why").list.eval(pl.lit("home: ") + pl.element())))
        .otherwise(pl.col("why"))
        .alias("reasons"),
    ).to_dicts()
    excluded = (
        frame.filter(pl.col("before") & ~pl.col("eligible"))
        .select(*SELECTED_FIELDS, pl.col("why_not").alias("reasons"))
        .to_dicts()
    )
    run = ProgrammeRun(
        programme=name,
        run_id=str(uuid.uuid4()),
        as_of=as_of,
        cycle=cycle,
        eligible=chosen.height,
        issued=0 if dry_run else len(selected),
        already_issued=chosen.height - new.height,
        home_delivery=sum(s["delivery"] == "home" for s in selected),
        selected=selected,
        excluded=excluded,
    )
    return run, kinds
