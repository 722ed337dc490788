"""The states of events, proposals, tasks and issuances, and the one table of allowed transitions.

Every state change in govdb is a conditional, set-based UPDATE (`... WHERE state = <expected>`)
whose row count is checked inside the caller's transaction (`move`), so two clerks or two jobs
acting at once cannot both move the same row: the second finds it already moved. The database
backs the enums with CHECK constraints (see `check_sql`), so no writer can store a state that is
not listed here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import polars as pl
from sqlalchemy import BindParameter, ClauseElement, Connection, Table, and_, bindparam, update

from govdb.errors import StateError
from govdb.store import arrays
from govdb.store.bulk import (
    bound_values,
    driver_cursor,
    insert_rows,
    key_form,
    row_values,
    update_many,
)
from govdb.store.updates import update_rows


class EventStatus(StrEnum):
    """Where one received event stands on its path to master data."""

    received = "received"  # stored by ingest, not yet standardized
    invalid = "invalid"  # failed validation; `process --retry invalid` takes it again
    standardized = "standardized"  # valid, waiting to be linked and proposed
    identity_review = "identity_review"  # the village is asked whether it is about a candidate
    unlinked = "unlinked"  # no change can be proposed (unknown service, no master person, no ID)
    confirmed = "confirmed"  # master already holds exactly what it says
    proposed = "proposed"  # its change is on its route of checks
    rejected = "rejected"  # a check rejected its change
    returned = "returned"  # the first check sent it back to the submitter to correct and resend
    promoted = "promoted"  # its change is in master


class ProposalState(StrEnum):
    pending = "pending"  # on its route: one task open
    approved = "approved"  # every step passed; `promote` applies it
    rejected = "rejected"  # a step rejected it; it never moves on
    returned = "returned"  # sent back to the submitter at the first step
    unroutable = "unroutable"  # no unit covers one of its steps
    resolved = "resolved"  # an identity check whose answer the next `process` took
    promoted = "promoted"  # applied to master
    reverted = "reverted"  # applied, then undone by an authorised actor (`govdb revert`)
    # approved, but a value master cannot store (a NUL, ...): `promote` set it aside, with why
    unpromotable = "unpromotable"


class TaskState(StrEnum):
    waiting = "waiting"  # a later step; opens when the one before passes
    open = "open"  # the step a unit must decide now
    approved = "approved"
    rejected = "rejected"
    returned = "returned"  # the first step sent back to the submitter
    cancelled = "cancelled"  # a later step of a rejected proposal


class Outcome(StrEnum):
    approve = "approve"
    reject = "reject"
    amend = "amend"  # approve with new values, recorded
    return_ = "return"  # the previous level looks again (the submitter, at the first step)


class IssuanceStatus(StrEnum):
    offered = "offered"
    accepted = "accepted"
    declined = "declined"
    delivered = "delivered"


# The one table of allowed transitions, per machine: state -> the states it may become.
TRANSITIONS: dict[type[StrEnum], dict[StrEnum, frozenset[StrEnum]]] = {
    EventStatus: {
        EventStatus.received: frozenset({EventStatus.standardized, EventStatus.invalid}),
        EventStatus.invalid: frozenset({EventStatus.received}),
        # -> invalid: `process` refuses a record edited to hold what master cannot store (a NUL).
        EventStatus.standardized: frozenset(
            {
                EventStatus.identity_review,
                EventStatus.unlinked,
                EventStatus.confirmed,
                EventStatus.proposed,
                EventStatus.invalid,
            }
        ),
        EventStatus.identity_review: frozenset(
            {EventStatus.unlinked, EventStatus.confirmed, EventStatus.proposed}
        ),
        EventStatus.proposed: frozenset({EventStatus.rejected, EventStatus.returned, EventStatus.promoted}),
        EventStatus.unlinked: frozenset(),
        EventStatus.confirmed: frozenset(),
        EventStatus.rejected: frozenset(),
        EventStatus.returned: frozenset(),
        # A split sends an event wrongly merged into someone back to be linked again.
        EventStatus.promoted: frozenset({EventStatus.standardized}),
    },
    ProposalState: {
        ProposalState.pending: frozenset(
            {ProposalState.approved, ProposalState.rejected, ProposalState.returned}
        ),
        ProposalState.approved: frozenset(
            {ProposalState.promoted, ProposalState.resolved, ProposalState.unpromotable}
        ),
        ProposalState.rejected: frozenset({ProposalState.resolved}),
        ProposalState.returned: frozenset(),
        ProposalState.unroutable: frozenset(),
        ProposalState.resolved: frozenset(),
        ProposalState.promoted: frozenset({ProposalState.reverted}),
        ProposalState.reverted: frozenset(),
        ProposalState.unpromotable: frozenset(),
    },
    TaskState: {
        # waiting -> approved: the step a decision opened passed at once by an auto-pass rule
        # (e.g. market regulation's own registration system, after the street approved).
        TaskState.waiting: frozenset({TaskState.open, TaskState.cancelled, TaskState.approved}),
        TaskState.open: frozenset(
            {TaskState.approved, TaskState.rejected, TaskState.waiting, TaskState.returned}
        ),
        TaskState.approved: frozenset({TaskState.open}),  # the next level returned it
        TaskState.rejected: frozenset(),
        TaskState.returned: frozenset(),
        TaskState.cancelled: frozenset(),
    },
    IssuanceStatus: {
        IssuanceStatus.offered: frozenset({IssuanceStatus.accepted, IssuanceStatus.declined}),
        IssuanceStatus.accepted: frozenset({IssuanceStatus.delivered}),
        IssuanceStatus.declined: frozenset(),
        IssuanceStatus.delivered: frozenset(),
    },
}


def allowed(machine: type[StrEnum], source: StrEnum | str, target: StrEnum | str) -> bool:
    """Whether the table allows `source` -> `target` in this machine."""
    table = TRANSITIONS[machine]
    return machine(target) in table.get(machine(source), frozenset())


def check_transition(machine: type[StrEnum], source: StrEnum | str, target: StrEnum | str) -> None:
    """Raise StateError unless the table allows `source` -> `target`."""
    if not allowed(machine, source, target):
        nexts = sorted(str(s) for s in TRANSITIONS[machine].get(machine(source), frozenset()))
        raise StateError(
            f"a {machine.__name__} cannot go from {str(source)!r} to {str(target)!r}; "
            f"from {str(source)!r} it may become: {', '.join(nexts) or 'nothing (it is final)'}"
        )


def parse(machine: type[StrEnum], value: object, *, what: str) -> Any:
    """The enum member named by `value`, exactly (no case folding, no guessing), or a StateError."""
    member = next((m for m in machine if m.value == value), None)
    if member is None:
        allowed_values = ", ".join(str(m) for m in machine)
        raise StateError(f"{what} {value!r} is not one of: {allowed_values}")
    return member


def one_of(column: str, values: Iterable[str]) -> str:
    """SQL that holds `column` to `values`, written as `=` tests joined by OR, not `IN (...)`:
    SQLite builds a temporary index for an IN list each time a statement runs, so a CHECK with
    one cost a bulk insert 3.7 us a row, a third of ingest's insert (benchmarks/RESULTS.md)."""
    return " OR ".join(f"{column} = '{value}'" for value in values)


def in_list(column: str, values: Iterable[str]) -> str:
    """The `IN (...)` form of `one_of`, as the first migrations wrote their CHECKs."""
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


def rewrite_checks(
    op: Any, checks: Sequence[tuple[str, str, str, Sequence[str]]], write: Callable[[str, Sequence[str]], str]
) -> None:
    """Replace each named CHECK (table, name, column, values) by `write(column, values)` in an
    alembic migration (`op`); SQLite rebuilds the table in batch mode, keeping its indexes."""
    for table, name, column, values in checks:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(name, type_="check")
            batch_op.create_check_constraint(name, write(column, values))


def check_sql(column: str, machine: type[StrEnum]) -> str:
    """The SQL of a CHECK constraint that holds `column` to the machine's states."""
    return one_of(column, (m.value for m in machine))


def move(
    conn: Connection,
    table: Table,
    state_column: str,
    machine: type[StrEnum],
    source: StrEnum,
    target: StrEnum,
    rows: Sequence[Mapping[str, Any]],
    *,
    key: Iterable[str],
    values: Mapping[str, Any] | None = None,
    expect_all: bool = True,
) -> int:
    """Move the rows identified by `key` columns from `source` to `target`, set-based.

    `UPDATE ... SET state = target WHERE key = :key AND state = source` for each row, as one
    executemany on SQLite and one statement over arrays on PostgreSQL; each row of `rows` gives
    the key values (and the values of `values`' bind parameters). The count of moved rows is
    checked: with `expect_all`, a row that is no longer in `source` (another clerk or job moved it
    first) raises StateError and the caller's transaction is rolled back. Returns how many rows
    moved.
    """
    check_transition(machine, source, target)
    if not rows:
        return 0
    keys = list(key)
    fixed = {state_column: target.value, **(values or {})}
    if len(keys) == 1 and len(rows) > FEW and _driver_movable(keys[0], rows, fixed):
        # Many keys, constant values: one executemany of a frame through the driver (update_rows);
        # a few (a batch of decisions) cost less as tuples than as a frame (`_moved`).
        frame = pl.DataFrame({keys[0]: [r[keys[0]] for r in rows]})
        moved = update_rows(
            conn, table, frame, key=keys[0], where={state_column: source.value}, constants=fixed
        )
    else:
        moved = _moved(conn, table, state_column, source, keys, rows, fixed)
    if expect_all:
        _check_moved(table, source, len(rows), moved)
    return moved


FEW = 1000  # rows a move binds as tuples rather than as a frame


def _driver_movable(key: str, rows: Sequence[Mapping[str, Any]], fixed: Mapping[str, Any]) -> bool:
    """Whether `update_rows` can make this move: rows of one key each, all text or all 64-bit
    integers, none twice, and values that are constants (aware times; naive ones are refused by
    the general path, as before)."""
    if any(set(r) != {key} for r in rows):
        return False
    values = [r[key] for r in rows]
    text = all(type(v) is str for v in values)
    integer = all(type(v) is int and -(2**63) <= v < 2**63 for v in values)
    constant = all(
        v is None or type(v) in (str, int) or (isinstance(v, dt.datetime) and v.tzinfo is not None)
        for v in fixed.values()
    )
    return (text or integer) and constant and len(set(values)) == len(values)


def _moved(
    conn: Connection,
    table: Table,
    state_column: str,
    source: StrEnum,
    keys: list[str],
    rows: Sequence[Mapping[str, Any]],
    values: Mapping[str, Any],
) -> int:
    """The general move, for composite keys and per-row values: through the driver
    (`bulk.update_many`: one statement over arrays on PostgreSQL) unless a value is an SQL
    expression (`link_round + 1`), which SQLAlchemy's executemany writes."""
    if _plain(values):
        bound = _update_rows(keys, rows, values)
        return update_many(conn, table, list(values), keys, bound, where={state_column: source.value})
    where = and_(*(table.c[k] == bindparam(f"k_{k}") for k in keys), table.c[state_column] == source.value)
    statement = update(table).where(where).values(dict(values))
    params = [
        {**{f"k_{k}": r[k] for k in keys}, **{n: v for n, v in r.items() if n not in keys}} for r in rows
    ]
    return _rowcount(conn, statement, params)


def _plain(values: Mapping[str, Any]) -> bool:
    """Whether every value is a constant or a per-row bind parameter, not an SQL expression."""
    return not any(isinstance(v, ClauseElement) and not isinstance(v, BindParameter) for v in values.values())


def _update_rows(
    keys: Sequence[str], rows: Sequence[Mapping[str, Any]], values: Mapping[str, Any]
) -> list[tuple[Any, ...]]:
    """(*values, *keys) of each row, a bind parameter's value taken from the row by its name."""
    per_row = [(v.key if isinstance(v, BindParameter) else None, v) for v in values.values()]
    return [(*(v if name is None else r[name] for name, v in per_row), *(r[k] for k in keys)) for r in rows]


@dataclass(frozen=True)
class Move:
    """One checked move of `move_all`: the arguments of `move`."""

    table: Table
    state_column: str
    machine: type[StrEnum]
    source: StrEnum
    target: StrEnum
    rows: Sequence[Mapping[str, Any]]
    key: tuple[str, ...]
    values: Mapping[str, Any] = field(default_factory=dict)


def move_all(
    conn: Connection, moves: Sequence[Move], inserts: Sequence[tuple[Table, Sequence[Mapping[str, Any]]]] = ()
) -> None:
    """Several checked moves (every row expected), then the rows inserted with them, as if one
    after the other (`move`, `insert_rows`): so on SQLite; on PostgreSQL in one statement
    (`arrays.together`, one round trip where a batch of decisions took six or seven).

    A statement sees none of its own changes, so a move that could not see an earlier one (rows
    of one table moved by another key, or a key an earlier move names or gives a row) starts a
    new statement, and one that cannot go over arrays (an SQL expression for a value, a key given
    twice) runs on its own, in its turn. On StateError the caller's transaction must roll back,
    as after `move`: the moves of its statement have run."""
    for m in moves:
        check_transition(m.machine, m.source, m.target)
    moves = [m for m in moves if m.rows]
    inserts = [(table, rows) for table, rows in inserts if rows]
    if conn.dialect.name != "postgresql":
        for m in moves:
            _move_one(conn, m)
        for table, rows in inserts:
            insert_rows(conn, table, rows)
        return
    joint: list[Move] = []
    seen: dict[str, tuple[tuple[str, ...], set[tuple[Any, ...]]]] = {}  # table -> (key, keys moved)
    for m in moves:
        these = [key_form([r[k] for k in m.key]) for r in m.rows]
        if not _plain(m.values) or len(m.rows) > arrays.ARRAY_ROWS or len(set(these)) != len(these):
            _move_together(conn, joint)
            joint, seen = [], {}
            _move_one(conn, m)
            continue
        key, moved = seen.get(m.table.name, (m.key, set()))
        if key != m.key or not moved.isdisjoint(these):
            _move_together(conn, joint)
            joint, seen = [], {}
            key, moved = m.key, set()
        moved.update(these)
        if set(m.key) & set(m.values):  # it gives rows new keys (a task's round): they count too
            moved.update(key_form([_new_value(r, k, m.values) for k in m.key]) for r in m.rows)
        seen[m.table.name] = (key, moved)
        joint.append(m)
    _move_together(conn, joint, inserts)


def _new_value(row: Mapping[str, Any], column: str, values: Mapping[str, Any]) -> Any:
    """What a move leaves in `column` of this row: its new value where it sets one, else the key's."""
    if column not in values:
        return row[column]
    value = values[column]
    return row[value.key] if isinstance(value, BindParameter) else value


def _move_together(
    conn: Connection, moves: Sequence[Move], inserts: Sequence[tuple[Table, Sequence[Mapping[str, Any]]]] = ()
) -> None:
    """The moves (of different rows), then the inserts, as one statement; every move checked."""
    statements: list[tuple[str, Sequence[Any]]] = []
    for m in moves:
        fixed = {m.state_column: m.target.value, **m.values}
        sets, where = list(fixed), {m.state_column: m.source.value}
        bound = bound_values(conn, m.table, [*sets, *m.key], _update_rows(m.key, m.rows, fixed))
        sql = arrays.update_statement(conn, m.table, sets, m.key, where=where, constants={})
        statements.append(
            (sql, arrays.update_params(conn, m.table, sets, m.key, bound, where=where, constants={}))
        )
    for table, rows in inserts:
        columns, values = row_values(table, rows)
        bound = bound_values(conn, table, columns, values)
        statements.append(
            (arrays.insert_statement(conn, table, columns), arrays.insert_params(conn, table, columns, bound))
        )
    if not statements:
        return
    with driver_cursor(conn, "WITH ... (moves)") as cursor:
        counts = arrays.together(cursor, statements)
    for m, moved in zip(moves, counts, strict=False):
        _check_moved(m.table, m.source, len(m.rows), moved)


def _move_one(conn: Connection, m: Move) -> None:
    move(conn, m.table, m.state_column, m.machine, m.source, m.target, m.rows, key=m.key, values=m.values)


def _check_moved(table: Table, source: StrEnum, expected: int, moved: int) -> None:
    if moved != expected:
        raise StateError(
            f"{expected - moved} of {expected} {table.name} row(s) were no longer {source.value!r} "
            f"(another clerk or job moved them first); nothing was changed, look again and retry"
        )


def _rowcount(conn: Connection, statement: Any, params: list[dict[str, Any]]) -> int:
    """Rows matched by one execute or executemany (SQLite and psycopg sum executemany counts)."""
    result = conn.execute(statement, params[0] if len(params) == 1 else params)
    return int(result.rowcount)
