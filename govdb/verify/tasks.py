"""Tasks and decisions: each proposal walks its route step by step (village -> street -> department).

Only the first undecided step is open; approving it opens the next, or approves the proposal
when it was the last. An actor may decide only a task at their level, inside their jurisdiction
(invariant 5).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

from sqlmodel import Session, col, select

from govdb.errors import JurisdictionError, NotFoundError, StateError
from govdb.rulebook import registry
from govdb.rulebook.loader import Rulebook
from govdb.rulebook.models import Route
from govdb.standards.divisions import covers
from govdb.store.events import Decision, Event, Proposal, Task
from govdb.store.master import utcnow
from govdb.verify.actors import ResolvedActor
from govdb.verify.routes import AutoPassContext

Outcome = Literal["approve", "reject", "amend", "return"]


@dataclass(frozen=True)
class TaskView:
    """One task as a verifier sees it."""

    task_id: int
    proposal_id: str
    step: int
    level: str
    department: str | None
    unit_id: str
    state: str
    change: str
    division_code: str | None
    payload: dict[str, Any]
    created_at: dt.datetime


@dataclass(frozen=True)
class DecisionResult:
    """What a decision did: the task's new state and the proposal's."""

    task_id: int
    outcome: Outcome
    task_state: str
    proposal_id: str
    proposal_state: str
    next_task_id: int | None


def open_route(session: Session, proposal: Proposal, event: Event, route: Route, units: list[str]) -> None:
    """Create one task per step (the first open, the rest waiting) and apply auto-pass rules."""
    for step_no, (step, unit_id) in enumerate(zip(route.steps, units, strict=True)):
        session.add(
            Task(
                proposal_id=proposal.proposal_id,
                step=step_no,
                level=step.level,
                department=step.department,
                unit_id=unit_id,
                state="open" if step_no == 0 else "waiting",
            )
        )
    session.flush()
    _auto_pass(session, proposal, event, route)


def _auto_pass(session: Session, proposal: Proposal, event: Event, route: Route) -> None:
    tasks = _tasks_of(session, proposal.proposal_id)
    for task in tasks:
        if task.state == "approved":
            continue
        if task.state != "open":
            return
        step = route.steps[task.step]
        passed_by = None
        for ref in step.auto_pass:
            block = registry.get("auto_pass", ref.block)
            assert block is not None  # checked when the rules were loaded
            if block.function(
                AutoPassContext(proposal, event, step), block.params.model_validate(ref.params)
            ):
                passed_by = ref.block
                break
        if passed_by is None:
            return
        task.state, task.decided_at = "approved", utcnow()
        session.add(Decision(task_id=task.task_id, outcome="approve", unit_id=task.unit_id, rule=passed_by))
        _open_next(session, proposal, tasks, task.step)


def _tasks_of(session: Session, proposal_id: str) -> list[Task]:
    return list(
        session.exec(select(Task).where(Task.proposal_id == proposal_id).order_by(col(Task.step))).all()
    )


def _open_next(session: Session, proposal: Proposal, tasks: list[Task], step: int) -> Task | None:
    following = [t for t in tasks if t.step == step + 1]
    if following:
        following[0].state = "open"
        return following[0]
    proposal.state, proposal.updated_at = "approved", utcnow()
    return None


def list_tasks(
    session: Session, *, unit_id: str | None = None, state: str | None = "open", limit: int = 200
) -> list[TaskView]:
    """Tasks (open by default), oldest first, optionally only one unit's."""
    query = select(Task, Proposal).join(Proposal, col(Proposal.proposal_id) == col(Task.proposal_id))
    if unit_id:
        query = query.where(Task.unit_id == unit_id)
    if state:
        query = query.where(Task.state == state)
    query = query.order_by(col(Task.task_id)).limit(limit)
    return [
        TaskView(
            task.task_id or 0,
            task.proposal_id,
            task.step,
            task.level,
            task.department,
            task.unit_id,
            task.state,
            proposal.change,
            proposal.division_code,
            proposal.payload,
            task.created_at,
        )
        for task, proposal in session.exec(query).all()
    ]


def check_jurisdiction(actor: ResolvedActor, task: Task, proposal: Proposal) -> None:
    """Raise JurisdictionError unless the actor may decide this task (invariant 5)."""
    where = f"task {task.task_id} ({task.level} check of a record in {proposal.division_code})"
    if actor.level != task.level:
        raise JurisdictionError(
            f"actor {actor.actor_id!r} of {actor.level} unit {actor.unit_id!r} may not decide {where}: "
            f"it needs a {task.level} unit"
        )
    if task.level == "department" and actor.department != task.department:
        raise JurisdictionError(
            f"actor {actor.actor_id!r} of department {actor.department!r} may not decide {where}: "
            f"the fact belongs to {task.department!r}"
        )
    if not covers(actor.division_code, proposal.division_code):
        raise JurisdictionError(
            f"actor {actor.actor_id!r} of {actor.unit_id!r} (jurisdiction {actor.division_code}) "
            f"may not decide {where}: "
            f"the record is outside that jurisdiction; the task is assigned to {task.unit_id!r}"
        )


def decide(
    session: Session,
    rules: Rulebook,
    actor: ResolvedActor,
    task_id: int,
    outcome: Outcome,
    *,
    reason: str | None = None,
    amendments: dict[str, Any] | None = None,
) -> DecisionResult:
    """Record one decision on an open task and move the proposal along its route."""
    task = session.get(Task, task_id)
    if task is None:
        raise NotFoundError(f"task {task_id} does not exist; list open tasks with `govdb tasks list`")
    proposal = session.get(Proposal, task.proposal_id)
    assert proposal is not None
    if task.state != "open":
        raise StateError(
            f"task {task_id} is {task.state}, not open; only the open step of a route can be decided"
        )
    check_jurisdiction(actor, task, proposal)
    if outcome in ("reject", "return") and not (reason and reason.strip()):
        raise StateError(f"a {outcome} needs a reason (--reason) so the record's owner knows what to fix")
    if outcome == "amend" and not amendments:
        raise StateError("an amend needs the new values (--set field=value)")
    if amendments:
        unknown = set(amendments) - set(proposal.payload)
        if unknown:
            raise StateError(
                f"cannot amend {sorted(unknown)}: the proposal has fields {sorted(proposal.payload)}"
            )
    now = utcnow()
    session.add(
        Decision(
            task_id=task_id,
            outcome=outcome,
            actor_id=actor.actor_id,
            unit_id=actor.unit_id,
            reason=reason,
            amendments=amendments or {},
        )
    )
    tasks = _tasks_of(session, proposal.proposal_id)
    next_task: Task | None = None
    task.decided_at = now
    event = session.get(Event, proposal.event_id)
    assert event is not None
    if outcome in ("approve", "amend"):
        task.state = "approved"
        if amendments:
            proposal.payload = {**proposal.payload, **amendments}
        next_task = _open_next(session, proposal, tasks, task.step)
        if next_task is not None:
            _auto_pass(session, proposal, event, rules.verification.routes[proposal.change])
    elif outcome == "reject":
        task.state = "rejected"
        proposal.state = "rejected"
        for other in tasks:
            if other.state == "waiting":
                other.state = "cancelled"
        event.status = "rejected"
    else:  # return: the previous level looks again; at the first level the submitter does
        task.state = "waiting"
        if task.step == 0:
            task.state, proposal.state = "returned", "returned"
        else:
            previous = next(t for t in tasks if t.step == task.step - 1)
            previous.state, previous.decided_at = "open", None
            next_task = previous
    proposal.updated_at = now
    session.flush()
    return DecisionResult(
        task_id,
        outcome,
        task.state,
        proposal.proposal_id,
        proposal.state,
        next_task.task_id if next_task else None,
    )
