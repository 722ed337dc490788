"""Tasks: each proposal walks its route step by step (village -> street -> department).

Only the first undecided step is open; approving it opens the next, or approves the proposal
when it was the last. An actor may decide only a task at their level whose place is inside their
jurisdiction (invariant 5). A batch of decisions is read with its rows locked, checked as a
whole, then written set-based in one transaction; every state change is a conditional UPDATE
whose row count is checked (govdb.store.states.move), so two clerks deciding one task cannot both
win and a rejected proposal can never move on (invariant 8).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl
from sqlalchemy import Connection, bindparam, select, update

from govdb.base.actors import ResolvedActor
from govdb.errors import JurisdictionError, StateError
from govdb.rulebook.loader import Rulebook
from govdb.standards.divisions import covers
from govdb.store.bulk import among, driver_fetch, id_chunks, id_test, result_processor
from govdb.store.events import Decision, Event, IngestBatch, Proposal, Task
from govdb.store.states import EventStatus, Move, Outcome, ProposalState, TaskState, move_all, parse
from govdb.verify.routes import AutoPassBatch, auto_passed, source_columns

TASK = Task.__table__  # type: ignore[attr-defined]
PROPOSAL = Proposal.__table__  # type: ignore[attr-defined]
DECISION = Decision.__table__  # type: ignore[attr-defined]
EVENT = Event.__table__  # type: ignore[attr-defined]
BATCH = IngestBatch.__table__  # type: ignore[attr-defined]
IDENTITY_ROUTE = "confirm_identity"


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


# --- a proposal's route in memory ------------------------------------------------------------


@dataclass
class StepTask:
    """One task of a route while it is being planned or decided."""

    step: int
    level: str
    department: str | None
    unit_id: str
    division_code: str | None
    route_step: int
    state: TaskState
    round: int = 0
    task_id: int | None = None
    stored: tuple[TaskState, int] | None = None  # (state, round) as read, None for a new task
    decided_at: dt.datetime | None = None
    passed_by: str | None = None
    passed_under: str | None = None  # fingerprint of the rulebook whose auto-pass rule passed it
    rehomed: bool = False  # re-assigned to the units of the person's current residence


@dataclass
class Flow:
    """A proposal and its tasks: the unit of every transition."""

    proposal_id: str
    route: str
    event_id: int
    tasks: list[StepTask]
    state: ProposalState = ProposalState.pending
    authenticated_source: str | None = None
    stored_state: ProposalState | None = None
    entity_id: str | None = None  # the master person a change is about
    home: str | None = None  # the place whose units check it (the proposal's division code)
    rehomed: bool = False
    entity_kind: str | None = None  # person, enterprise, place, credential (about its holder)
    payload: dict[str, Any] | None = None  # the proposed values, where a decision needs them
    source_known: bool = True  # False: `authenticated_source` is not read yet (see read_sources)

    def open_task(self) -> StepTask | None:
        return next((t for t in self.tasks if t.state == TaskState.open), None)

    def open_step(self, step: int, now: dt.datetime) -> StepTask | None:
        """Open `step`, or approve the proposal when the route has no such step."""
        if step < len(self.tasks):
            task = self.tasks[step]
            task.state, task.decided_at = TaskState.open, None
            return task
        self.state = ProposalState.approved
        return None


def run_auto_pass(
    rules: Rulebook, flows: Sequence[Flow], now: dt.datetime, conn: Connection | None = None
) -> int:
    """Pass every open step an auto-pass rule accepts, step after step; returns the passes.

    Vectorised: the rules run once per (route, step) over every proposal waiting there. Flows
    whose source is not known yet have it read through `conn`, only where a step has rules."""
    passes = 0
    fingerprint: str | None = None  # hashed once per run, and only when something passes
    waiting = [f for f in flows if f.open_task() is not None]
    while waiting:
        groups: dict[tuple[str, int], list[Flow]] = {}
        for flow in waiting:
            task = flow.open_task()
            assert task is not None
            groups.setdefault((flow.route, task.route_step), []).append(flow)
        waiting = []
        for (route_name, route_step), group in groups.items():
            step = rules.verification.routes[route_name].steps[route_step]
            if not step.auto_pass:
                continue
            if conn is not None:
                read_sources(conn, group)
            frame = source_columns(rules, pl.Series([f.authenticated_source for f in group], dtype=pl.String))
            passed = auto_passed(rules, AutoPassBatch(frame, route_name, step)).to_list()
            for flow, rule in zip(group, passed, strict=True):
                if rule is None:
                    continue
                task = flow.open_task()
                assert task is not None
                fingerprint = fingerprint or rules.fingerprint()
                task.state, task.decided_at, task.passed_by = TaskState.approved, now, rule
                task.passed_under = fingerprint
                passes += 1
                if flow.open_step(task.step + 1, now) is not None:
                    waiting.append(flow)
    return passes


# --- reading ---------------------------------------------------------------------------------


def list_tasks(
    conn: Connection, *, unit_id: str | None = None, state: str | None = "open", limit: int = 200
) -> list[TaskView]:
    """Tasks (open by default), oldest first, optionally only one unit's.

    Read through the driver: a clerk lists their queue before each batch, and SQLAlchemy's rows
    (a Row, a time parsed and a payload decoded per task) cost more than reading them."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise StateError(f"limit {limit!r} is not a positive whole number of tasks")
    tests, params = [], []
    if unit_id:
        tests.append("t.unit_id = ?")
        params.append(str(unit_id))
    if state:
        tests.append("t.state = ?")
        params.append(parse(TaskState, state, what="task state").value)
    where = f"WHERE {' AND '.join(tests)} " if tests else ""
    statement = (
        "SELECT t.task_id, t.proposal_id, t.step, t.level, t.department, t.unit_id, t.state, p.change, "
        "t.division_code, p.division_code, p.payload, t.created_at "
        f"FROM task t JOIN proposal p ON p.proposal_id = t.proposal_id {where}ORDER BY t.task_id LIMIT ?"
    )
    if conn.dialect.paramstyle != "qmark":
        statement = statement.replace("?", "%s")
    payload, created = result_processor(conn, PROPOSAL.c.payload), result_processor(conn, TASK.c.created_at)
    views = []
    for r in driver_fetch(conn, statement, (*params, limit)):
        values, at = r[10], r[11]
        views.append(
            TaskView(
                r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8] or r[9],
                values if payload is None else payload(values), at if created is None else created(at),
            )
        )  # fmt: skip
    return views


def load_flows(conn: Connection, task_ids: Sequence[int]) -> dict[str, Flow]:
    """The proposals of these tasks (with their payloads) and all their tasks, one statement per
    chunk of ids through the driver (SQLAlchemy's rows cost more than the reads), rows locked
    until the transaction ends (on PostgreSQL; SQLite's writer already holds the database). A
    task id that does not exist brings nothing.

    Every batch locks in one order, each proposal and then its tasks by step, proposals by id: no
    two batches wait for each other's rows."""
    flows: dict[str, Flow] = {}
    lock = " FOR UPDATE OF p, t" if conn.dialect.name == "postgresql" else ""
    payload, decided = result_processor(conn, PROPOSAL.c.payload), result_processor(conn, TASK.c.decided_at)
    for chunk in id_chunks(conn, sorted(set(task_ids))):
        test, params = id_test(conn, "task_id", chunk)
        statement = (
            "SELECT p.proposal_id, p.change, p.event_id, p.state, p.entity_id, p.division_code, "
            "p.entity_kind, p.payload, t.step, t.level, t.department, t.unit_id, t.division_code, t.state, "
            "t.round, t.task_id, t.decided_at FROM proposal p JOIN task t ON t.proposal_id = p.proposal_id "
            f"WHERE p.proposal_id IN (SELECT proposal_id FROM task WHERE {test}) "
            f"ORDER BY p.proposal_id, t.step{lock}"
        )
        fresh: set[str] = set()  # a proposal two chunks share is read once
        for row in driver_fetch(conn, statement, params):
            proposal_id = row[0]
            flow = flows.get(proposal_id)
            if flow is None:
                values = row[7] if payload is None else payload(row[7])
                flow = flows[proposal_id] = Flow(
                    proposal_id, row[1], row[2], [], ProposalState(row[3]), None, ProposalState(row[3]),
                    row[4], row[5], entity_kind=row[6], payload=values, source_known=False,
                )  # fmt: skip
                fresh.add(proposal_id)
            elif proposal_id not in fresh:
                continue
            step, level, department, unit, place, state, round_, task_id, at = row[8:]
            task_state = TaskState(state)
            at = at if decided is None or at is None else decided(at)
            flow.tasks.append(
                StepTask(step, level, department, unit, place, 0, task_state, round_, task_id,
                         (task_state, round_), at)
            )  # fmt: skip
    for flow in flows.values():
        _fix_route_steps(flow)
    return flows


def read_sources(conn: Connection, flows: Sequence[Flow]) -> None:
    """Fill in the authenticated source of the flows that lack it: the ingest that brought each
    proposal's event. Read only for a step with auto-pass rules; it costs a look-up of the event's
    row (wide, with its raw payload) for every proposal, which most decisions never need."""
    missing = {f.proposal_id: f for f in flows if not f.source_known}
    for chunk in id_chunks(conn, sorted(missing)):
        query = (
            select(PROPOSAL.c.proposal_id, BATCH.c.authenticated_source)
            .join(EVENT, EVENT.c.event_id == PROPOSAL.c.event_id)
            .join(BATCH, BATCH.c.batch_id == EVENT.c.batch_id, isouter=True)
            .where(among(conn, PROPOSAL.c.proposal_id, chunk))
        )
        for proposal_id, source in conn.execute(query):
            missing[proposal_id].authenticated_source = source
    for flow in missing.values():
        flow.source_known = True


def _fix_route_steps(flow: Flow) -> None:
    """Recompute route steps once all tasks are known (a village or street task right after one of
    its level is a move's destination check and shares its step)."""
    route_step = -1
    for i, task in enumerate(flow.tasks):
        same = i > 0 and task.level in ("village", "street") and flow.tasks[i - 1].level == task.level
        route_step = route_step if same else route_step + 1
        task.route_step = route_step


# --- checks ----------------------------------------------------------------------------------


def check_jurisdiction(actor: ResolvedActor, task: StepTask, task_id: int) -> None:
    """Raise JurisdictionError unless the actor may decide this task (invariant 5): the task's
    level, its department, and a place inside the actor's unit's jurisdiction."""
    where = f"task {task_id} ({task.level} check of a record in {task.division_code})"
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
    if not task.division_code or not covers(actor.division_code, task.division_code):
        raise JurisdictionError(
            f"actor {actor.actor_id!r} of {actor.unit_id!r} (jurisdiction {actor.division_code}) "
            f"may not decide {where}: the record is outside that jurisdiction; "
            f"the task is assigned to {task.unit_id!r}"
        )


def auto_pass_decisions(flows: Iterable[Flow]) -> list[dict[str, Any]]:
    """Decision rows for the steps auto-pass rules passed (task ids must be known), each naming
    the rulebook (full fingerprint) whose rule passed it."""
    rows: list[dict[str, Any]] = []
    for flow in flows:
        for task in flow.tasks:
            if task.passed_by is not None and task.stored != (task.state, task.round):
                rows.append(
                    {
                        "task_id": task.task_id,
                        "round": task.round,
                        "outcome": Outcome.approve.value,
                        "actor_id": None,
                        "unit_id": task.unit_id,
                        "rule": task.passed_by,
                        "source": flow.authenticated_source,
                        "reason": None,
                        "amendments": {},
                        "decided_at": task.decided_at,
                        "rules_fingerprint": task.passed_under,
                    }
                )
    return rows


def write_transitions(
    conn: Connection, flows: Sequence[Flow], now: dt.datetime, decisions: Sequence[dict[str, Any]] = ()
) -> None:
    """Write every task, proposal and event state that changed in memory, as checked transitions,
    and the decision rows that changed them: one statement on PostgreSQL (`states.move_all`)."""
    rehomed = [
        {"k_id": t.task_id, "v_unit": t.unit_id, "v_division": t.division_code}
        for f in flows
        for t in f.tasks
        if t.rehomed and t.stored is not None
    ]
    if rehomed:
        conn.execute(
            update(TASK)
            .where(TASK.c.task_id == bindparam("k_id"))
            .values(unit_id=bindparam("v_unit"), division_code=bindparam("v_division")),
            rehomed,
        )
        conn.execute(
            update(PROPOSAL)
            .where(PROPOSAL.c.proposal_id == bindparam("k_id"))
            .values(division_code=bindparam("v_home"), county_code=bindparam("v_county")),
            [
                {"k_id": f.proposal_id, "v_home": f.home, "v_county": (f.home or "")[:6] or None}
                for f in flows
                if f.rehomed
            ],
        )
    task_moves: dict[tuple[TaskState, TaskState], list[dict[str, Any]]] = {}
    for flow in flows:
        for task in flow.tasks:
            if task.stored is None or task.stored == (task.state, task.round):
                continue
            source, old_round = task.stored
            task_moves.setdefault((source, task.state), []).append(
                {
                    "task_id": task.task_id,
                    "round": old_round,
                    "v_round": task.round,
                    "v_decided_at": task.decided_at,
                }
            )
    # Each task, proposal and event moves once, so the moves touch different rows and may go in
    # one statement; no constraint spans two tasks of a route, so none sees a half-written one.
    values: dict[str, Any] = {"round": bindparam("v_round"), "decided_at": bindparam("v_decided_at")}
    moves = [
        Move(TASK, "state", TaskState, source, target, rows, ("task_id", "round"), values)
        for (source, target), rows in task_moves.items()
    ]
    proposal_moves: dict[tuple[ProposalState, ProposalState], list[dict[str, Any]]] = {}
    event_moves: dict[EventStatus, list[dict[str, Any]]] = {}
    for flow in flows:
        if flow.stored_state is None or flow.stored_state == flow.state:
            continue
        proposal_moves.setdefault((flow.stored_state, flow.state), []).append(
            {"proposal_id": flow.proposal_id}
        )
        if flow.route != IDENTITY_ROUTE and flow.state in (ProposalState.rejected, ProposalState.returned):
            status = EventStatus.rejected if flow.state == ProposalState.rejected else EventStatus.returned
            event_moves.setdefault(status, []).append({"event_id": flow.event_id})
    moves += [
        Move(PROPOSAL, "state", ProposalState, was, becomes, rows, ("proposal_id",), {"updated_at": now})
        for (was, becomes), rows in proposal_moves.items()
    ]
    moves += [
        Move(EVENT, "status", EventStatus, EventStatus.proposed, status, rows, ("event_id",))
        for status, rows in event_moves.items()
    ]
    move_all(conn, moves, [(DECISION, decisions)])
