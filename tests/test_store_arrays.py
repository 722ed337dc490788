"""Row-wise writes as set statements: `update_many` and `insert_rows` give the same rows and the
same counts on SQLite (one executemany) and PostgreSQL (one statement over arrays)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from sqlalchemy import JSON, BigInteger, Column, Date, DateTime, Integer, MetaData, String, Table, select
from sqlalchemy.exc import IntegrityError
from sqlmodel.sql.sqltypes import AutoString

from govdb.api import GovDB
from govdb.store.bulk import insert_rows, update_many
from govdb.store.states import TaskState, move
from govdb.store.updates import delete_many

WHEN = dt.datetime(2026, 12, 1, 8, 30, tzinfo=dt.UTC)


@pytest.fixture
def scratch(db: GovDB) -> Iterator[Table]:
    """A table of composite keys, a state, JSON, a date, an aware time and bounded text (typed as
    the models type it) in the event store."""
    table = Table(
        "scratch_rows",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("round", Integer, primary_key=True),
        Column("state", String(16), nullable=False),
        Column("note", JSON),
        Column("day", Date),
        Column("at", DateTime(timezone=True)),
        Column("label", AutoString(8)),  # as the models declare their text (a TypeDecorator)
        Column("body", String),
        Column("big", BigInteger),
    )
    table.create(db.events)
    try:
        yield table
    finally:
        table.drop(db.events)


def _rows(db: GovDB, table: Table) -> list[tuple[object, ...]]:
    with db.events.connect() as conn:
        got = conn.execute(select(table).order_by(table.c.id, table.c.round)).all()
    return [(*r[:5], r.at.replace(tzinfo=None) if r.at else None, r.label) for r in got]


def test_insert_rows_and_update_many_write_every_type_and_count_what_still_held(
    db: GovDB, scratch: Table
) -> None:
    with db.events.begin() as conn:
        inserted = insert_rows(
            conn,
            scratch,
            [
                {
                    "id": i,
                    "round": 0,
                    "state": "open",
                    "note": {"n": i, "名": "张伟"} if i % 2 else None,
                    "day": dt.date(2026, 1, i),
                    "at": WHEN,
                    "label": None,
                }
                for i in range(1, 6)
            ],
        )
    assert inserted == 5
    assert _rows(db, scratch)[0] == (
        1,
        0,
        "open",
        {"n": 1, "名": "张伟"},
        dt.date(2026, 1, 1),
        WHEN.replace(tzinfo=None),
        None,
    )
    with db.events.begin() as conn:  # row 3 is no longer open: another clerk moved it
        conn.execute(scratch.update().where(scratch.c.id == 3).values(state="done"))
        changed = update_many(
            conn,
            scratch,
            ["state", "note", "round", "label"],
            ["id", "round"],
            [("done", {"李": "娜"}, 1, f"L{i}", i, 0) for i in (1, 2, 3)],
            where={"state": "open"},
        )
    assert changed == 2
    got = _rows(db, scratch)
    assert [r[:4] + r[6:] for r in got[:3]] == [
        (1, 1, "done", {"李": "娜"}, "L1"),
        (2, 1, "done", {"李": "娜"}, "L2"),
        (3, 0, "done", {"n": 3, "名": "张伟"}, None),
    ]
    with db.events.begin() as conn:  # a constant tested for NULL: only the rows still without a label
        assert update_many(conn, scratch, ["label"], ["id"], [("x", 1), ("y", 4)], where={"label": None}) == 1
    assert [r[6] for r in _rows(db, scratch)] == ["L1", "L2", None, "y", None]


def test_update_many_with_a_key_twice_counts_each_statement_alike(db: GovDB, scratch: Table) -> None:
    """Keys given twice are not one array statement (it would change the row once): both backends
    run the rows one by one, and the second finds the row already moved."""
    with db.events.begin() as conn:
        insert_rows(conn, scratch, [{"id": 1, "round": 0, "state": "open", "note": None, "day": None,
                                     "at": None, "label": None}])  # fmt: skip
        changed = update_many(conn, scratch, ["state"], ["id"], [("a", 1), ("b", 1)], where={"state": "open"})
    assert changed == 1
    assert _rows(db, scratch)[0][2] == "a"
    with db.events.begin() as conn:  # 1 and "1" are one integer key to the database
        changed = update_many(conn, scratch, ["state"], ["id"], [("c", 1), ("d", "1")])
    assert changed == 2
    assert _rows(db, scratch)[0][2] == "d"


def test_delete_many_deletes_exactly_the_rows_of_its_keys_on_both_backends(db: GovDB, scratch: Table) -> None:
    """Composite keys, a key given twice, a key that names no row, a fraction where an integer key
    goes and a key longer than its column: each row named is deleted once, nothing else is, and
    the count is the rows deleted (PostgreSQL: one statement over arrays; SQLite: executemany)."""
    with db.events.begin() as conn:
        rows = [(i, r) for i in (1, 2, 3) for r in (0, 1)]
        insert_rows(conn, scratch, [{"id": i, "round": r, "state": "open", "note": None, "day": None,
                                     "at": None, "label": f"L{i}{r}"} for i, r in rows])  # fmt: skip
    with db.events.begin() as conn:
        deleted = delete_many(
            conn, scratch, ("id", "round"), [(1, 0), (3, 1), (3, 1), (9, 9), (2.5, 0), ("2", 1)]
        )
    assert deleted == 3
    assert [(r[0], r[1]) for r in _rows(db, scratch)] == [(1, 1), (2, 0), (3, 0)]
    with db.events.begin() as conn:
        assert delete_many(conn, scratch, ("label",), [("L11-longer",), ("L20",)]) == 1
        assert delete_many(conn, scratch, ("label",), []) == 0
    assert [(r[0], r[1]) for r in _rows(db, scratch)] == [(1, 1), (3, 0)]


def test_a_refused_row_fails_the_whole_batch_as_sqlalchemy_raises(db: GovDB, scratch: Table) -> None:
    """The arrays' statement fails as one, with SQLAlchemy's error (what the CLI recognises)."""
    with pytest.raises(IntegrityError), db.events.begin() as conn:  # NOT NULL, either backend
        insert_rows(conn, scratch, [{"id": i, "round": 0, "state": None if i == 2 else "open", "note": None,
                                     "day": None, "at": None, "label": None} for i in (1, 2, 3)])  # fmt: skip
    assert _rows(db, scratch) == []


def test_a_move_of_tasks_with_per_row_rounds_is_one_checked_transition(db: GovDB, scratch: Table) -> None:
    """`move` with composite keys and a per-row value (a task's round) through `update_many`."""
    from sqlalchemy import bindparam

    from govdb.errors import StateError

    with db.events.begin() as conn:
        insert_rows(conn, scratch, [{"id": i, "round": 0, "state": "open", "note": None, "day": None,
                                     "at": None, "label": None} for i in (1, 2)])  # fmt: skip
    rows = [{"id": i, "round": 0, "v_round": 1} for i in (1, 2)]
    with db.events.begin() as conn:
        moved = move(conn, scratch, "state", TaskState, TaskState.open, TaskState.waiting, rows,
                     key=("id", "round"), values={"round": bindparam("v_round")})  # fmt: skip
    assert moved == 2
    assert [r[1:3] for r in _rows(db, scratch)] == [(1, "waiting"), (1, "waiting")]
    with pytest.raises(StateError, match="2 of 2"), db.events.begin() as conn:  # round 0 is gone
        move(conn, scratch, "state", TaskState, TaskState.waiting, TaskState.open, rows,
             key=("id", "round"), values={"round": bindparam("v_round")})  # fmt: skip


def test_a_column_of_mixed_python_types_is_written_as_each_backend_casts_it(
    db: GovDB, scratch: Table
) -> None:
    """A number beside text in one column (what SQLite takes as its column's affinity makes it):
    PostgreSQL's driver dumps a list of one Python type only, so such a column goes as text."""
    with db.events.begin() as conn:
        insert_rows(
            conn,
            scratch,
            [
                {"id": i, "round": 0, "state": "open", "note": None, "day": None, "at": None, "label": label}
                for i, label in ((1, 7), (2, "x"), (3, None))
            ],
        )
        rows = [(dt.date(1962, 7, 3), 4, 1), (dt.date(1963, 8, 4), "5", 2)]
        assert update_many(conn, scratch, ["day", "round"], ["id"], rows) == 2
    assert [(r[0], r[1], r[4], r[6]) for r in _rows(db, scratch)] == [
        (1, 4, dt.date(1962, 7, 3), "7"),
        (2, 5, dt.date(1963, 8, 4), "x"),
        (3, 0, None, None),
    ]


def test_text_that_looks_like_array_syntax_or_null_comes_back_as_written(db: GovDB, scratch: Table) -> None:
    """Values an array literal would misread (NULL, braces, commas, quotes, backslashes, spaces)
    are written and updated exactly, text and JSON alike."""
    hostile = [
        "NULL",
        "null",
        "a,b",
        '{"x":1}',
        'q"uote',
        "back\\slash",
        "{}",
        "",
        " lead ",
        "中文",
        "t\tn\n",
    ]
    with db.events.begin() as conn:
        insert_rows(
            conn,
            scratch,
            [
                {
                    "id": i,
                    "round": 0,
                    "state": "open",
                    "note": {"v": v} if i % 2 else v,
                    "day": None,
                    "at": None,
                    "label": None,
                    "body": v,
                }
                for i, v in enumerate(hostile)
            ],
        )
        rows = [(f"{v}!", {"w": v}, i) for i, v in enumerate(hostile)]
        assert update_many(conn, scratch, ["body", "note"], ["id"], rows, where={"state": "open"}) == len(
            hostile
        )
    with db.events.connect() as conn:
        got = conn.execute(select(scratch.c.body, scratch.c.note).order_by(scratch.c.id)).all()
    assert [tuple(r) for r in got] == [(f"{v}!", {"w": v}) for v in hostile]


def test_a_key_longer_than_its_column_finds_no_row_and_a_long_value_is_refused(
    db: GovDB, scratch: Table
) -> None:
    """Nothing is cut to a column's length on the way: a key longer than the column matches no
    row (a checked move finds it gone), and a value too long for the column fails the batch on
    PostgreSQL, as a single statement would (SQLite keeps text of any length)."""
    from sqlalchemy.exc import DBAPIError

    with db.events.begin() as conn:
        insert_rows(conn, scratch, [{"id": 1, "round": 0, "state": "open", "note": None, "day": None,
                                     "at": None, "label": "ABCDEFGH", "body": None}])  # fmt: skip
        moved = update_many(
            conn, scratch, ["body"], ["label"], [("moved", "ABCDEFGH-x")], where={"state": "open"}
        )
        assert moved == 0
        statelike = update_many(
            conn, scratch, ["body"], ["id"], [("moved", 1)], where={"state": "open-but-longer!"}
        )
        assert statelike == 0
    if db.events.dialect.name == "postgresql":
        with pytest.raises(DBAPIError, match="too long"), db.events.begin() as conn:
            update_many(conn, scratch, ["label"], ["id"], [("ABCDEFGHIJ", 1)])
        with pytest.raises(DBAPIError, match="too long"), db.events.begin() as conn:
            insert_rows(conn, scratch, [{"id": 2, "round": 0, "state": "open", "note": None, "day": None,
                                         "at": None, "label": "ABCDEFGHIJ", "body": None}])  # fmt: skip
    assert [(r[0], r[6]) for r in _rows(db, scratch)] == [(1, "ABCDEFGH")]


def test_update_rows_tests_an_expected_null_alike_and_numbers_mixed_with_floats_go_in(
    db: GovDB, scratch: Table
) -> None:
    import polars as pl

    from govdb.store.updates import update_rows

    with db.events.begin() as conn:
        insert_rows(conn, scratch, [{"id": i, "round": 0, "state": "open", "note": None, "day": None,
                                     "at": None, "label": None if i == 1 else "x", "body": None}
                                    for i in (1, 2)])  # fmt: skip
        frame = pl.DataFrame({"id": [1, 2], "body": ["b1", "b2"]})
        assert update_rows(conn, scratch, frame, key="id", where={"label": None}) == 1
        assert update_many(conn, scratch, ["round"], ["id"], [(5, 1), (6.0, 2)]) == 2
    assert [(r[0], r[1]) for r in _rows(db, scratch)] == [(1, 5), (2, 6)]
    # An integer past 2**53 beside a float: as the integer it is, not its nearest float8.
    with db.events.begin() as conn:
        assert update_many(conn, scratch, ["big"], ["id"], [(2**53 + 1, 1), (6.0, 2)]) == 2
    with db.events.connect() as conn:
        assert conn.execute(select(scratch.c.big).order_by(scratch.c.id)).scalars().all() == [2**53 + 1, 6]
    with db.events.connect() as conn:
        assert conn.execute(select(scratch.c.body).order_by(scratch.c.id)).scalars().all() == ["b1", None]
    # A key of 2.5 names no row (the cast of the keys rounded it to row 2's); 2.0 names row 2.
    with db.events.begin() as conn:
        assert update_many(conn, scratch, ["body"], ["id"], [("half", 2.5)]) == 0
        assert update_many(conn, scratch, ["body"], ["id"], [("x", 1), ("half", 1.5), ("two", 2.0)]) == 2
    with db.events.connect() as conn:
        assert conn.execute(select(scratch.c.body).order_by(scratch.c.id)).scalars().all() == ["x", "two"]
    if db.events.dialect.name == "postgresql":  # a fraction beside an int, rounded as assigned
        with db.events.begin() as conn:
            assert update_many(conn, scratch, ["big"], ["id"], [(7, 1), (2.5, 2)]) == 2
            one = conn.exec_driver_sql("SELECT CAST(CAST(2.5 AS float8) AS bigint)").scalar()
        with db.events.connect() as conn:
            assert conn.execute(select(scratch.c.big).order_by(scratch.c.id)).scalars().all() == [7, one]


def _scratch_rows(ids: range, state: str = "open") -> list[dict[str, object]]:
    return [{"id": i, "round": 0, "state": state, "note": None, "day": None, "at": None, "label": None}
            for i in ids]  # fmt: skip


def test_move_all_writes_moves_and_inserts_together_and_refuses_them_all_if_one_row_moved(
    db: GovDB, scratch: Table, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch's moves and the rows inserted with them: one statement on PostgreSQL, one after the
    other on SQLite, the same rows either way. A row another clerk moved first refuses the whole
    batch, and the caller's transaction keeps nothing of it."""
    from sqlalchemy import bindparam

    from govdb.store import arrays
    from govdb.store.states import Move, StateError, move_all

    statements: list[int] = []
    together = arrays.together
    monkeypatch.setattr(arrays, "together", lambda c, s: statements.append(len(s)) or together(c, s))
    log = Table("scratch_log", MetaData(), Column("id", Integer, primary_key=True), Column("what", String))
    log.create(db.events)
    try:
        with db.events.begin() as conn:
            insert_rows(conn, scratch, _scratch_rows(range(1, 5)) + _scratch_rows(range(5, 7), "waiting"))
        per_row = {"round": bindparam("v_round")}
        approve = Move(
            scratch,
            "state",
            TaskState,
            TaskState.open,
            TaskState.approved,
            [{"id": i, "round": 0, "v_round": 0} for i in (1, 2)],
            ("id", "round"),
            per_row,
        )
        reopen = Move(scratch, "state", TaskState, TaskState.waiting, TaskState.open,
                      [{"id": 5, "round": 0, "v_round": 1}], ("id", "round"), per_row)  # fmt: skip
        with db.events.begin() as conn:
            move_all(conn, [approve, reopen], [(log, [{"id": 1, "what": "a"}, {"id": 2, "what": "b"}])])
        assert [r[1:3] for r in _rows(db, scratch)] == [
            (0, "approved"),
            (0, "approved"),
            (0, "open"),
            (0, "open"),
            (1, "open"),
            (0, "waiting"),
        ]
        assert statements == ([3] if db.events.dialect.name == "postgresql" else [])
        two = [{"id": i, "round": 0, "v_round": 0} for i in (2, 3)]
        stale = Move(
            scratch, "state", TaskState, TaskState.open, TaskState.rejected, two, ("id", "round"), per_row
        )
        with pytest.raises(StateError, match="1 of 2 scratch_rows"), db.events.begin() as conn:
            move_all(conn, [stale], [(log, [{"id": 3, "what": "c"}])])
        with db.events.connect() as conn:
            assert conn.execute(select(log.c.id).order_by(log.c.id)).scalars().all() == [1, 2]
        assert [r[2] for r in _rows(db, scratch)][2] == "open"
    finally:
        log.drop(db.events)


def test_move_all_runs_apart_what_one_statement_would_not_see(db: GovDB, scratch: Table) -> None:
    """One statement sees none of its own changes: two moves of the same row (open, then on to
    approved, by its key or by the key the first gave it) and a key given twice run one after the
    other, with the outcome and the count of moving them in order, on both backends."""
    from sqlalchemy import bindparam

    from govdb.store.states import Move, StateError, move_all

    with db.events.begin() as conn:
        insert_rows(conn, scratch, _scratch_rows(range(1, 3), "waiting"))
    first, key = [{"id": 1, "round": 0}], ("id", "round")
    opened = Move(scratch, "state", TaskState, TaskState.waiting, TaskState.open, first, key)
    approved = Move(scratch, "state", TaskState, TaskState.open, TaskState.approved, first, key)
    with db.events.begin() as conn:
        move_all(conn, [opened, approved])
    assert [r[2] for r in _rows(db, scratch)] == ["approved", "waiting"]
    twice = Move(scratch, "state", TaskState, TaskState.waiting, TaskState.open,
                 [{"id": 2, "round": 0}, {"id": 2, "round": 0}], ("id", "round"))  # fmt: skip
    with pytest.raises(StateError, match="1 of 2"), db.events.begin() as conn:
        move_all(conn, [twice])
    assert [r[2] for r in _rows(db, scratch)] == ["approved", "waiting"]
    # a move that gives its row a new key (a task's next round), then one that names the new key
    per_row = {"round": bindparam("v_round")}
    to_round_1 = Move(
        scratch,
        "state",
        TaskState,
        TaskState.waiting,
        TaskState.open,
        [{"id": 2, "round": 0, "v_round": 1}],
        key,
        per_row,
    )
    in_round_1 = Move(scratch, "state", TaskState, TaskState.open, TaskState.approved,
                      [{"id": 2, "round": 1, "v_round": 1}], key, per_row)  # fmt: skip
    with db.events.begin() as conn:
        move_all(conn, [to_round_1, in_round_1])
    assert [r[1:3] for r in _rows(db, scratch)] == [(0, "approved"), (1, "approved")]


def test_rows_read_through_the_driver_compare_a_time_as_its_column_stores_it(
    db: GovDB, scratch: Table
) -> None:
    """`driver_mappings` binds without SQLAlchemy's execution: an aware time went to sqlite3 as
    its own text (with `+00:00`), which sorts after the stored text, so `at = t` found nothing and
    `at > t` found the row at t; an IN list's times too."""
    from govdb.store.bulk import driver_mappings

    later = WHEN + dt.timedelta(microseconds=1)
    with db.events.begin() as conn:
        insert_rows(conn, scratch, [{"id": i, "round": 0, "state": "open", "note": None, "day": None,
                                     "at": at, "label": None, "body": None}
                                    for i, at in ((1, WHEN), (2, later))])  # fmt: skip
    with db.events.connect() as conn:
        ids = [scratch.c.id]
        assert [r["id"] for r in driver_mappings(conn, select(*ids).where(scratch.c.at == WHEN))] == [1]
        assert [r["id"] for r in driver_mappings(conn, select(*ids).where(scratch.c.at > WHEN))] == [2]
        listed = select(*ids).where(scratch.c.at.in_([WHEN, WHEN - dt.timedelta(days=1)]))
        assert [r["id"] for r in driver_mappings(conn, listed)] == [1]
