"""Decisions: a batch of them checked as a whole, then written set-based in one transaction.

Each decision is checked for its task's state, the actor's jurisdiction (where the person lives in
master now) and its amendments (through the same standards as ingest); the rows are locked while
they are read, and every change is a checked transition (govdb.verify.tasks.write_transitions).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from sqlalchemy import Connection, Engine, bindparam, update
from sqlmodel import Session

from govdb.base.actors import Actor, ResolvedActor
from govdb.base.clock import utcnow
from govdb.errors import GovdbError, JurisdictionError, NotFoundError, StateError
from govdb.rulebook.loader import Rulebook
from govdb.rulebook.models import Step
from govdb.standards import STANDARD_COLUMNS
from govdb.store.bulk import driver_fetch, id_chunks, id_test
from govdb.store.locks import reading, writing
from govdb.store.master import Person
from govdb.store.states import Outcome, ProposalState, TaskState, parse
from govdb.store.storable import WHY, shown, text_problem
from govdb.validate import validate_frame
from govdb.verify.actors import resolve
from govdb.verify.routes import UnitIndex
from govdb.verify.tasks import (
    PROPOSAL,
    Flow,
    StepTask,
    auto_pass_decisions,
    check_jurisdiction,
    load_flows,
    run_auto_pass,
    write_transitions,
)

# Longest value each person field may take (master's column widths), checked when amended.
FIELD_LENGTH = {
    c.name: c.type.length
    for c in Person.__table__.columns  # type: ignore[attr-defined]
    if getattr(c.type, "length", None)
}
OTHER_LENGTH = 256


@dataclass(frozen=True)
class DecisionInput:
    """One decision a clerk makes: `DecisionInput(17, "approve")`, or reject/return with a reason,
    or amend with the new values."""

    task_id: int
    outcome: Outcome
    reason: str | None = None
    amendments: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DecisionResult:
    """What a decision did: the task's new state and the proposal's."""

    task_id: int
    outcome: Outcome
    task_state: str
    proposal_id: str
    proposal_state: str
    next_task_id: int | None


@dataclass(frozen=True)
class RefusedDecision:
    """A decision of a batch that was not recorded, and why."""

    index: int  # 1-based position in the batch (the row of a decisions file)
    task_id: int | None
    error: str


@dataclass
class BatchDecisionReport:
    """What one batch of decisions did; `refused` is empty unless refusals were allowed."""

    decided: list[DecisionResult] = field(default_factory=list)
    refused: list[RefusedDecision] = field(default_factory=list)
    auto_passed: int = 0


def parse_decision(raw: DecisionInput | Mapping[str, Any]) -> DecisionInput:
    """A decision from a mapping (a row of a decisions file), checked exactly: the outcome must be
    one of approve/reject/amend/return as written, the task id a whole number."""
    if not isinstance(raw, (DecisionInput, Mapping)):
        raise StateError(f"a decision is a mapping with task_id and outcome, not {raw!r}"[:200])
    if isinstance(raw, DecisionInput):
        data: Mapping[str, Any] = {
            "task_id": raw.task_id,
            "outcome": raw.outcome,
            "reason": raw.reason,
            "amendments": raw.amendments,
        }
    else:
        data = raw
    unknown = set(data) - {"task_id", "outcome", "reason", "amendments"}
    if unknown:
        raise StateError(
            f"unknown decision field(s) {sorted(unknown)}; use task_id, outcome, reason, amendments"
        )
    task_id = data.get("task_id")
    if isinstance(task_id, str) and task_id.strip().isdigit():
        task_id = int(task_id.strip())
    if isinstance(task_id, bool) or not isinstance(task_id, int) or not 1 <= task_id < 2**63:
        raise StateError(f"task_id {task_id!r} is not a task number")
    outcome = parse(Outcome, data.get("outcome"), what="outcome")
    reason = data.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise StateError(f"reason {reason!r} is not text")
    reason = reason.strip() if reason else None
    if reason and (why := text_problem(reason)):
        raise StateError(f"the reason holds {WHY[why]}, which no store can hold: {shown(reason)}")
    amendments = data.get("amendments") or {}
    if not isinstance(amendments, Mapping):
        raise StateError(f"amendments {amendments!r} are not a mapping of field to new value")
    if outcome in (Outcome.reject, Outcome.return_) and not reason:
        raise StateError(f"a {outcome.value} needs a reason so the record's owner knows what to fix")
    if outcome == Outcome.amend and not amendments:
        raise StateError("an amend needs the new values (field=value)")
    if amendments and outcome != Outcome.amend:
        raise StateError(f"new values come only with an amend, not with a {outcome.value}")
    return DecisionInput(task_id, outcome, reason, dict(amendments))


def standardized_amendments(
    amendments: Sequence[tuple[int, Mapping[str, Any]]], payloads: Mapping[int, Mapping[str, Any]]
) -> tuple[dict[int, dict[str, Any]], dict[int, str]]:
    """Amended values through the same standards as ingest, all at once: (index -> standardized
    values, index -> why it is refused). An impossible date, an invalid ID or a value too long
    for master's column is refused here, never discovered by `promote`."""
    good: dict[int, dict[str, Any]] = {}
    refused: dict[int, str] = {}
    rows: list[dict[str, Any]] = []
    for index, values in amendments:
        payload = payloads[index]
        problem = _amendment_problem(values, payload)
        if problem:
            refused[index] = problem
            continue
        if "attributes" in values:  # a credential's attributes: checked, merged, not standardized
            good[index] = {"attributes": {**payload["attributes"], **values["attributes"]}}
            continue
        rows.append({"row_id": index, **{k: str(v) for k, v in values.items()}})
    standard = sorted({k for r in rows for k in r if k in STANDARD_COLUMNS})
    std = pl.DataFrame()
    failures = pl.DataFrame()
    if rows and standard:
        frame = pl.DataFrame(
            [{k: r.get(k) for k in ("row_id", *standard)} for r in rows],
            schema={"row_id": pl.Int64, **dict.fromkeys(standard, pl.String)},
        )
        # An amended address is stored as text; where the person lives is not amended here.
        std, report = validate_frame(frame, row_id="row_id", place_addresses=False)
        std = std.with_columns(pl.col(pl.Date).dt.to_string("%Y-%m-%d"))
        failures = report.failures.filter(pl.col("severity") == "error")
    problems: dict[int, list[str]] = {}
    for f in failures.iter_rows(named=True) if failures.height else []:
        if f["row_id"] in dict(amendments) and f["column"] in dict(amendments)[f["row_id"]]:
            problems.setdefault(f["row_id"], []).append(f"{f['column']}={f['value']!r} ({f['reason']})")
    std_rows = {r["row_id"]: r for r in std.iter_rows(named=True)} if std.height else {}
    for row in rows:
        index = row["row_id"]
        if index in problems:
            refused[index] = "amended value(s) fail the standards: " + "; ".join(problems[index])
            continue
        values = {}
        for name in (k for k in row if k != "row_id"):
            value = std_rows[index].get(f"{name}_std") if name in standard else row[name]
            if value is None and row[name] not in (None, ""):
                value = row[name]
            limit = FIELD_LENGTH.get(name, OTHER_LENGTH)
            if value is not None and len(str(value)) > limit:
                problems.setdefault(index, []).append(
                    f"{name} is {len(str(value))} characters, at most {limit}"
                )
            values[name] = value
        if index in problems:
            refused[index] = "amended value(s) cannot be stored: " + "; ".join(problems[index])
        else:
            good[index] = values
    return good, refused


def _amendment_problem(values: Mapping[str, Any], payload: Mapping[str, Any]) -> str | None:
    """Why these amendments cannot be made, or None. A checker corrects what their check is
    about; who the record is (`id_number`) and whose jurisdiction it falls in (`division_code`)
    are never amended (return it to the submitter instead), nor a credential's kind or number."""
    if "kind" in payload and "number" in payload:
        if set(values) != {"attributes"} or not isinstance(values["attributes"], Mapping):
            return (
                "a credential's check may amend only its attributes, as a mapping "
                f'{{"attributes": {{...}}}}; to correct its kind or number, return it (got {dict(values)!r})'
            )
        new = values["attributes"]
        unknown = set(new) - set(payload.get("attributes") or {})
        if unknown:
            known = sorted(payload["attributes"])
            return f"cannot amend attributes {sorted(map(str, unknown))}: the credential has {known}"
        bad = [k for k, v in new.items() if not isinstance(v, str) or not v.strip() or len(v) > OTHER_LENGTH]
        if bad:
            limit = f"at most {OTHER_LENGTH} characters"
            return f"attribute value(s) {sorted(map(str, bad))} must be non-empty text of {limit}"
        return _nul_problem(new)
    fixed = sorted(set(values) & {"id_number", "uscc", "division_code"})
    if fixed:
        return (
            f"{fixed} cannot be amended: they decide who the record is and who checks it; "
            "return the proposal to the submitter to correct them"
        )
    unknown = set(values) - set(payload)
    if unknown:
        return f"cannot amend {sorted(map(str, unknown))}: the proposal has fields {sorted(payload)}"
    empty = sorted(k for k, v in values.items() if v is None or not str(v).strip())
    if empty:
        return f"amended value(s) of {empty} are empty; to drop a change, reject or return it"
    return _nul_problem(values)


def _nul_problem(values: Mapping[str, Any]) -> str | None:
    """A NUL character or a lone surrogate no store keeps (PostgreSQL refuses a NUL in text:
    promote would fail; neither backend encodes a lone surrogate), each value shown escaped."""
    found = sorted((str(k), why, str(v)) for k, v in values.items() if (why := text_problem(str(v))))
    if not found:
        return None
    whys = sorted({WHY[why] for _, why, _ in found})
    values_shown = ", ".join(f"{k}={shown(v)}" for k, _, v in found)
    return (
        f"amended value(s) of {[k for k, _, _ in found]} hold {' and '.join(whys)}, which no store "
        f"can hold ({values_shown}); type the value again"
    )


# --- deciding --------------------------------------------------------------------------------


@dataclass
class _Planned:
    index: int
    decision: DecisionInput
    flow: Flow
    task: StepTask
    amendments: dict[str, Any]


def decide_many(
    conn: Connection,
    rules: Rulebook,
    actor: ResolvedActor,
    decisions: Sequence[DecisionInput | Mapping[str, Any]],
    *,
    allow_refusals: bool = False,
    homes: Callable[[Iterable[tuple[str, str]]], Homes] | None = None,
) -> BatchDecisionReport:
    """Record a batch of decisions in the caller's (writing) transaction.

    `homes` (see `current_homes`) reads the master residences of the (entity kind, id) the tasks
    are about, once their rows are read and locked: a person who moved since their tasks opened
    is checked where they live now.

    Each decision is checked for its task's state, the actor's jurisdiction and its amendments;
    with `allow_refusals` the refused ones are reported and the rest recorded, otherwise the first
    refusal raises and nothing is recorded. A second decision on the same proposal in one batch is
    refused (its next step opens only when this batch is recorded)."""
    report = BatchDecisionReport()
    parsed: list[tuple[int, DecisionInput | None, str | None]] = []
    for index, raw in enumerate(decisions, start=1):
        try:
            parsed.append((index, parse_decision(raw), None))
        except GovdbError as exc:
            parsed.append((index, None, str(exc)))
    flows = load_flows(conn, [d.task_id for _, d, _ in parsed if d is not None])
    proposal_of = {t.task_id: f.proposal_id for f in flows.values() for t in f.tasks}
    payloads = {f.proposal_id: f.payload or {} for f in flows.values()}
    residences = (
        homes((f.entity_kind or "", f.entity_id) for f in flows.values() if f.entity_id is not None)
        if homes is not None
        else None
    )
    planned: list[_Planned] = []
    seen_proposals: set[str] = set()
    refusals: list[RefusedDecision] = []

    def refuse(index: int, task_id: int | None, error: str) -> None:
        if not allow_refusals:
            if len(decisions) == 1:
                raise _refusal_error(error)(error)
            where = f"decision {index}" + (f" (task {task_id})" if task_id is not None else "")
            raise _refusal_error(error)(f"{where}: {error}")
        refusals.append(RefusedDecision(index, task_id, error))

    for index, decision, error in parsed:
        if decision is None:
            refuse(index, None, error or "unreadable decision")
            continue
        proposal_id = proposal_of.get(decision.task_id)
        if proposal_id is None:
            refuse(
                index,
                decision.task_id,
                f"task {decision.task_id} does not exist; list open tasks with `govdb tasks list`",
            )
            continue
        flow = flows[proposal_id]
        task = next(t for t in flow.tasks if t.task_id == decision.task_id)
        if residences is not None:
            _follow_the_person(flow, residences)
        try:
            check_jurisdiction(actor, task, decision.task_id)
        except JurisdictionError as exc:
            refuse(index, decision.task_id, str(exc))
            continue
        if task.state != TaskState.open or flow.state != ProposalState.pending:
            refuse(
                index,
                decision.task_id,
                f"task {decision.task_id} is {task.state.value}, not open (its proposal is "
                f"{flow.state.value}); only the open step of a pending proposal can be decided",
            )
            continue
        if proposal_id in seen_proposals:
            refuse(index, decision.task_id, f"a decision on proposal {proposal_id} is already in this batch")
            continue
        seen_proposals.add(proposal_id)
        planned.append(_Planned(index, decision, flow, task, {}))
    amended = [(p.index, p.decision.amendments) for p in planned if p.decision.outcome == Outcome.amend]
    if amended:
        by_index = {p.index: p for p in planned}
        good, bad = standardized_amendments(
            amended, {i: payloads[by_index[i].flow.proposal_id] for i, _ in amended}
        )
        for index in sorted(bad):
            refuse(index, by_index[index].decision.task_id, bad[index])
        planned = [p for p in planned if p.index not in bad]
        for p in planned:
            p.amendments = good.get(p.index, {})
    report.refused = refusals
    if planned:
        _record(conn, rules, actor, planned, payloads, report)
    return report


def decide_as(
    events: Engine,
    master: Engine,
    rules: Rulebook,
    actor: Actor,
    decisions: Iterable[DecisionInput | Mapping[str, Any]],
    *,
    units: Callable[[Session], UnitIndex],
    allow_refusals: bool = False,
) -> BatchDecisionReport:
    """`decide_many` as `actor` (resolved in master), in a writing transaction of the event store;
    `units` gives the checking units (read through the session given) that `current_homes` uses."""
    if decisions is None or isinstance(decisions, (str, bytes, dict)):
        raise StateError("decisions are a list of mappings such as {'task_id': 12, 'outcome': 'approve'}")
    batch = list(decisions)
    with reading(master) as conn, Session(bind=conn) as ms:
        who = resolve(ms, actor)
        homes = functools.partial(current_homes, conn, units=units(ms))  # read once rows are locked
        with writing(events) as events_conn:
            return decide_many(events_conn, rules, who, batch, allow_refusals=allow_refusals, homes=homes)


@dataclass(frozen=True)
class Homes:
    """Where the people of a batch live in master now, and the units that check there."""

    residence: Mapping[str, str | None]
    units: UnitIndex


def current_homes(master: Connection, entities: Iterable[tuple[str, str]], units: UnitIndex) -> Homes:
    """Where master has these (entity kind, id) now: people (a credential is about its holder),
    enterprises and places, by their registered division."""
    entities = set(entities)
    residence: dict[str, str | None] = {}
    # Read through the driver: a batch's few dozen look-ups cost less than SQLAlchemy's rows.
    for table, key, kind in (("person", "person_id", None), ("enterprise", "enterprise_id", "enterprise"),
                             ("place", "place_id", "place")):  # fmt: skip
        ids = sorted(
            {i for k, i in entities if k == kind or (kind is None and k not in ("enterprise", "place"))}
        )
        for chunk in id_chunks(master, ids):
            test, params = id_test(master, key, chunk)
            residence.update(
                driver_fetch(master, f"SELECT {key}, division_code FROM {table} WHERE {test}", params)
            )
    return Homes(residence, units)


def _follow_the_person(flow: Flow, homes: Homes) -> None:
    """Re-assign the undecided checks of a change to the units of the person's current master
    residence when they moved since the tasks opened (invariant 5: jurisdiction from master now)."""
    now_home = homes.residence.get(flow.entity_id or "")
    if flow.rehomed or not now_home or not flow.home or now_home == flow.home:
        return
    for task in flow.tasks:
        if task.division_code != flow.home or task.state not in (TaskState.open, TaskState.waiting):
            continue
        step = Step(level=task.level, department=task.department)  # type: ignore[arg-type]
        unit = homes.units.unit_for(step, now_home)
        if unit is not None:
            task.unit_id, task.division_code, task.rehomed = unit, now_home, True
    flow.home, flow.rehomed = now_home, True


def _refusal_error(message: str) -> type[GovdbError]:
    if "may not decide" in message:
        return JurisdictionError
    if "does not exist" in message:
        return NotFoundError
    return StateError


def _record(
    conn: Connection,
    rules: Rulebook,
    actor: ResolvedActor,
    planned: list[_Planned],
    payloads: dict[str, dict[str, Any]],
    report: BatchDecisionReport,
) -> None:
    """Apply the planned decisions in memory, then write every change set-based."""
    now = utcnow()
    fingerprint = rules.fingerprint()  # the rulebook these decisions are made under, hashed once
    decision_rows: list[dict[str, Any]] = []
    opened: list[Flow] = []
    for p in planned:
        task, flow, outcome = p.task, p.flow, p.decision.outcome
        decision_rows.append(
            {
                "task_id": task.task_id,
                "round": task.round,
                "outcome": outcome.value,
                "actor_id": actor.actor_id,
                "unit_id": actor.unit_id,
                "rule": None,
                "source": None,
                "reason": p.decision.reason,
                "amendments": p.amendments,
                "decided_at": now,
                "rules_fingerprint": fingerprint,
            }
        )
        task.decided_at = now
        if outcome in (Outcome.approve, Outcome.amend):
            task.state = TaskState.approved
            if flow.open_step(task.step + 1, now) is not None:
                opened.append(flow)
        elif outcome == Outcome.reject:
            task.state = TaskState.rejected
            flow.state = ProposalState.rejected
            for other in flow.tasks:
                if other.state == TaskState.waiting:
                    other.state = TaskState.cancelled
        elif task.step == 0:  # a return at the first level goes back to the submitter
            task.state, flow.state = TaskState.returned, ProposalState.returned
        else:  # a return: the previous level looks again, in a new round
            task.state, task.round = TaskState.waiting, task.round + 1
            previous = flow.tasks[task.step - 1]
            previous.state, previous.round, previous.decided_at = TaskState.open, previous.round + 1, None
    report.auto_passed = run_auto_pass(rules, opened, now, conn)
    decision_rows += auto_pass_decisions([p.flow for p in planned])
    amended = [
        {"k_proposal_id": p.flow.proposal_id, "v_payload": {**payloads[p.flow.proposal_id], **p.amendments}}
        for p in planned
        if p.amendments
    ]
    if amended:
        conn.execute(
            update(PROPOSAL)
            .where(PROPOSAL.c.proposal_id == bindparam("k_proposal_id"), PROPOSAL.c.state == "pending")
            .values(payload=bindparam("v_payload"), updated_at=now),
            amended,
        )
    write_transitions(conn, [p.flow for p in planned], now, decision_rows)
    for p in planned:
        task, flow = p.task, p.flow
        following = flow.open_task()
        report.decided.append(
            DecisionResult(
                task.task_id or 0,
                p.decision.outcome,
                task.state.value,
                flow.proposal_id,
                flow.state.value,
                following.task_id if following is not None and following is not task else None,
            )
        )
