"""Decisions refuse what no store can hold (govdb.verify.decisions): an amended value or a reason
with a NUL or a lone surrogate is a StateError naming the field and showing the value escaped,
never a proposal `promote` cannot apply nor a driver's encoding error."""

from __future__ import annotations

from pathlib import Path

import pytest

from govdb import Actor, GovDB
from govdb.demo import make_hall_events, make_people
from govdb.errors import StateError
from govdb.verify.decisions import _amendment_problem

from ..conftest import TODAY


def test_an_amendment_or_reason_no_store_can_hold_is_refused(db: GovDB, tmp_path: Path) -> None:
    register = make_people(40, seed=5, today=TODAY)
    db.load_people(register, source="public_security")
    make_hall_events(register, tmp_path / "hall.csv", seed=5, today=TODAY)
    db.ingest(
        tmp_path / "hall.csv", source="hall", service_code="hall.resident_registration", key_column="受理编号"
    )
    db.process(today=TODAY)
    task = next(t for t in db.tasks() if t.change == "new_person")
    actor = Actor("v", task.unit_id)
    with pytest.raises(StateError, match=r"\['address'\] hold a NUL character \(U\+0000\).*'桂城\\x00街道'"):
        db.decide(task.task_id, actor, "amend", amendments={"address": "桂城\x00街道"})
    with pytest.raises(StateError, match=r"\['address'\] hold a lone surrogate.*'桂城\\ud800街道'"):
        db.decide(task.task_id, actor, "amend", amendments={"address": "桂城\ud800街道"})
    with pytest.raises(StateError, match=r"the reason holds a NUL character .*'地址\\x00不对'"):
        db.decide(task.task_id, actor, "reject", reason="地址\x00不对")
    assert db.decide(task.task_id, actor, "approve").task_state == "approved"  # the task was left open


def test_a_credential_attribute_amended_to_hold_a_nul_is_refused() -> None:
    payload = {
        "kind": "disability_certificate",
        "number": "N1",
        "attributes": {"disability_category": "肢体"},
    }
    why = _amendment_problem({"attributes": {"disability_category": "肢\x00体"}}, payload)
    assert why is not None and "['disability_category'] hold a NUL character" in why and "'肢\\x00体'" in why
