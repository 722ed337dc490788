"""The check chain a promotion stores with each value: on SQLite built as JSON by the store, on
PostgreSQL from SQLAlchemy's values; both must say what the decisions say, whatever a decision
holds (amendments with quotes and emoji, a time on a whole second) or however it was stored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from govdb import Actor, GovDB
from govdb.demo import make_hall_events, make_people
from govdb.promote.reads import _checks_in_python, check_chains
from govdb.store.events import Proposal
from govdb.store.master import FieldHistory

from ..conftest import TODAY

PROPOSAL = Proposal.__table__  # type: ignore[attr-defined]
HISTORY = FieldHistory.__table__  # type: ignore[attr-defined]


def _decided_county(db: GovDB, tmp_path: Path) -> list[str]:
    """A county whose tasks are all decided, the first of each unit's batches amended."""
    register = make_people(40, seed=9, today=TODAY)
    db.load_people(register.slice(8), source="public_security")
    make_hall_events(register, tmp_path / "hall.csv", seed=9, today=TODAY)
    db.ingest(
        tmp_path / "hall.csv", source="hall", service_code="hall.resident_registration", key_column="受理编号"
    )
    db.process(today=TODAY)
    amended = 0
    while tasks := db.tasks(limit=10_000):
        for unit in sorted({t.unit_id for t in tasks}):
            batch: list[dict[str, Any]] = []
            for t in tasks:
                if t.unit_id != unit:
                    continue
                if amended < 3 and t.level == "village" and "name" in t.payload:
                    amended += 1
                    batch.append(
                        {
                            "task_id": t.task_id,
                            "outcome": "amend",
                            "amendments": {"name": f"王{'芳丽娜'[amended - 1]}"},
                        }
                    )
                else:
                    batch.append({"task_id": t.task_id, "outcome": "approve"})
            db.decide_many(Actor("clerk", unit), batch)
    assert amended == 3
    with db.events.connect() as conn:
        return list(
            conn.execute(select(PROPOSAL.c.proposal_id).where(PROPOSAL.c.state == "approved")).scalars()
        )


def _reference(conn: Any, ids: list[str]) -> dict[str, str]:
    """Each proposal's chain from SQLAlchemy's values (the form PostgreSQL's promote writes, and
    every promote wrote before), as canonical JSON: `true` is not `1`, nor `-0.0` `0`."""
    out: dict[str, list[Any]] = {}
    for proposal_id, check in _checks_in_python(conn, ids).values():
        out.setdefault(proposal_id, []).append(json.loads(check))
    return {p: _canonical(chain) for p, chain in out.items()}


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _built(conn: Any, ids: list[str]) -> dict[str, str]:
    return {p: _canonical(json.loads(c)) for p, c in check_chains(conn, ids).items()}


def test_check_chains_say_what_the_decisions_say_however_they_were_stored(db: GovDB, tmp_path: Path) -> None:
    ids = _decided_county(db, tmp_path)
    assert len(ids) > 10
    with db.events.begin() as conn:
        assert _built(conn, ids) == _reference(conn, ids)
        chains = {p: json.loads(c) for p, c in check_chains(conn, ids).items()}
        assert any(c["amendments"] == {"name": "王芳"} for chain in chains.values() for c in chain)
        assert all(c["at"].endswith("+00:00") for chain in chains.values() for c in chain)
        if conn.dialect.name == "sqlite":
            # An insider's edits, or rows an older version wrote: each still says what it holds.
            rows = conn.exec_driver_sql("SELECT id FROM decision ORDER BY id").scalars().all()
            edits = [
                ("decided_at", "2026-11-20 08:00:00.000000"),  # isoformat() writes no fraction
                ("decided_at", "2026-11-20 08:00:01"),  # stored without one
                ("decided_at", "2026-11-20T08:00:02.500000+00:00"),
                ("amendments", '{"address": "幸福路\\"1\\"号\\\\2 \\u2028 😀", "phone": null}'),
                ("amendments", "null"),
                ("amendments", "0"),
                ("amendments", "[]"),
                ("amendments", '"text"'),
                ("amendments", '{"n": [true, 1.0, -0.0, 1e5]}'),
                ("unit_id", 'village:"quoted"\\back'),
            ]
            for row_id, (column, value) in zip(rows, edits, strict=False):
                conn.execute(
                    text(f"UPDATE decision SET {column} = :v WHERE id = :id"), {"v": value, "id": row_id}
                )
            assert _built(conn, ids) == _reference(conn, ids)
            chains = {p: json.loads(c) for p, c in check_chains(conn, ids).items()}
            values = [c for chain in chains.values() for c in chain]
            assert {"2026-11-20T08:00:00+00:00", "2026-11-20T08:00:01+00:00"} <= {c["at"] for c in values}
            assert any(
                c["amendments"] == {"address": '幸福路"1"号\\2 \u2028 😀', "phone": None} for c in values
            )
            assert any(c["amendments"] == "text" for c in values)
            # A time of the right shape that is no time (30 February) is refused, as it always was:
            # never stored in lineage as if it were one.
            for impossible in ("2026-02-30 08:00:00.000000", "2026-11-20 24:00:00.000000"):
                conn.execute(
                    text("UPDATE decision SET decided_at = :v WHERE id = :id"),
                    {"v": impossible, "id": rows[-1]},
                )
                with pytest.raises(ValueError):
                    check_chains(conn, ids)


def test_a_promoted_value_keeps_its_proposals_chain(db: GovDB, tmp_path: Path) -> None:
    ids = _decided_county(db, tmp_path)
    with db.events.connect() as conn:
        expected = _reference(conn, ids)
    assert db.promote().promoted == len(ids)
    with db.master.connect() as conn:
        stored = conn.execute(
            select(HISTORY.c.proposal_id, HISTORY.c.checks).where(HISTORY.c.proposal_id.is_not(None))
        ).all()
    assert {p for p, _ in stored} <= set(expected) and len(stored) > len(ids)
    for proposal_id, checks in stored:
        assert _canonical(checks) == expected[proposal_id]
