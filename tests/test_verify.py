"""The verification core: checked transitions, concurrent clerks and jobs, jurisdiction from master,
authenticated sources, batch decisions, amendments, set-based promotion and its recovery."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sqlalchemy import delete, func, select, text, update
from typer.testing import CliRunner

from govdb import AccessDeniedError, Actor, GovDB, JurisdictionError, StateError
from govdb.demo import make_disability_records, make_hall_events, make_people
from govdb.store.events import Decision, Event, Link, Proposal, Task
from govdb.store.master import FieldHistory, Issuance, LinkFeatures, LinkKey, Person, Promotion
from govdb.store.states import (
    TRANSITIONS,
    EventStatus,
    Outcome,
    ProposalState,
    TaskState,
    check_transition,
    parse,
)

from .conftest import BACKENDS, REPO, TODAY, open_backend

WINDOW = Actor("window.li", "department:service_hall:440605")  # finds applicants (identity_lookup)

WORKER = r"""
import json, sys
from govdb import GovDB, Actor, GovdbError
args = json.loads(sys.argv[1])
db = GovDB.open(master_url=args["master"], events_url=args["events"], rules=args["rules"])
import os, pathlib, time
barrier = pathlib.Path(args["barrier"])
(barrier / f"ready-{os.getpid()}").touch()
while not (barrier / "go").exists():
    time.sleep(0.01)
op = args["op"]
out = {"ok": True}
try:
    if op == "decide":
        won, lost = [], []
        for task_id in args["tasks"]:
            try:
                extra = {"reason": "查无此人"} if args["outcome"] in ("reject", "return") else {}
                db.decide(task_id, Actor(args["actor"], args["unit"]), args["outcome"], **extra)
                won.append(task_id)
            except GovdbError as exc:
                lost.append([task_id, type(exc).__name__, str(exc)])
        out.update(won=won, lost=lost)
    elif op == "process":
        r = db.process(today=__import__("datetime").date(2026, 11, 23))
        out.update(proposals=r.proposals.proposals)
    elif op == "promote":
        r = db.promote()
        out.update(promoted=r.promoted)
    elif op == "programme":
        r = db.run_programme(
            "senior_transit_card",
            as_of=__import__("datetime").date(2026, 11, 23),
            actor=Actor("transport.clerk", "department:transport:440605"),
        )
        out.update(issued=r.issued)
except GovdbError as exc:
    out = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
print(json.dumps(out))
"""


def _urls(db: GovDB) -> dict[str, str]:
    return {
        "master": db.master.url.render_as_string(hide_password=False),
        "events": db.events.url.render_as_string(hide_password=False),
        "rules": str(REPO / "rules"),
    }


def _at_once(db: GovDB, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run the jobs in separate processes, released together once all are ready; their JSON
    results, in order."""
    barrier = Path(tempfile.mkdtemp(prefix="govdb-barrier-"))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, json.dumps({**_urls(db), **job, "barrier": str(barrier)})],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd="/",
        )
        for job in jobs
    ]
    deadline = time.monotonic() + 300
    while len(list(barrier.glob("ready-*"))) < len(procs) and time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            break
        time.sleep(0.05)
    (barrier / "go").touch()
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr[-3000:]
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    return results


def _scenario(db: GovDB, folder: Path, *, people: int = 60, seed: int = 1) -> pl.DataFrame:
    register = make_people(people, seed=seed, today=TODAY)
    db.load_people(register, source="public_security")
    make_hall_events(register, folder / "hall.csv", seed=seed, today=TODAY)
    db.ingest(
        folder / "hall.csv", source="hall", key_column="受理编号", service_code="hall.resident_registration"
    )
    return register


def _count(engine: Any, query: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def _approve_all(db: GovDB) -> int:
    decided = 0
    while tasks := db.tasks(limit=10_000):
        by_unit: dict[str, list[dict[str, Any]]] = {}
        for t in tasks:
            by_unit.setdefault(t.unit_id, []).append({"task_id": t.task_id, "outcome": "approve"})
        for unit, batch in by_unit.items():
            decided += len(db.decide_many(Actor("clerk", unit), batch).decided)
    return decided


# --- the transition table ------------------------------------------------------------------


def test_the_transition_table_refuses_what_it_does_not_list() -> None:
    check_transition(TaskState, TaskState.open, TaskState.approved)
    with pytest.raises(StateError, match=r"from .rejected. to .approved.; .* may become: resolved"):
        check_transition(ProposalState, ProposalState.rejected, ProposalState.approved)
    with pytest.raises(StateError, match="cannot go from 'promoted'"):
        check_transition(EventStatus, EventStatus.promoted, EventStatus.received)
    for machine, table in TRANSITIONS.items():
        assert set(table) == set(machine), f"{machine.__name__}: every state has a row"
    assert parse(Outcome, "approve", what="outcome") is Outcome.approve
    with pytest.raises(StateError, match="'APPROVE' is not one of"):
        parse(Outcome, "APPROVE", what="outcome")


def test_the_database_refuses_an_unknown_state_and_a_second_decision(db: GovDB, tmp_path: Path) -> None:
    _scenario(db, tmp_path, people=30, seed=4)
    db.process(today=TODAY)
    task = db.tasks()[0]
    db.decide(task.task_id, Actor("v", task.unit_id), "approve")
    with pytest.raises(Exception, match=r"(?i)check|constraint"), db.events.begin() as conn:
        conn.execute(text("UPDATE task SET state = 'done' WHERE task_id = :t"), {"t": task.task_id})
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"), db.events.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO decision (task_id, round, outcome, actor_id, unit_id, amendments, decided_at)"
                " VALUES (:t, 0, 'reject', 'x', 'u', '{}', CURRENT_TIMESTAMP)"
            ),
            {"t": task.task_id},
        )


# --- batch decisions -----------------------------------------------------------------------


def test_decide_many_checks_every_decision_and_records_a_batch_at_once(db: GovDB, tmp_path: Path) -> None:
    _scenario(db, tmp_path, people=60, seed=1)
    db.process(today=TODAY)
    tasks = db.tasks(limit=10_000)
    unit = max({t.unit_id for t in tasks}, key=lambda u: sum(t.unit_id == u for t in tasks))
    mine = [t for t in tasks if t.unit_id == unit]
    other = next(t for t in tasks if t.unit_id != unit and t.level == "village")
    actor = Actor("li", unit)
    with pytest.raises(StateError, match="'APPROVE' is not one of"):
        db.decide_many(actor, [{"task_id": mine[0].task_id, "outcome": "APPROVE"}])
    with pytest.raises(JurisdictionError, match=r"decision 2 .*outside that jurisdiction"):
        db.decide_many(
            actor,
            [
                {"task_id": mine[0].task_id, "outcome": "approve"},
                {"task_id": other.task_id, "outcome": "approve"},
            ],
        )
    assert _count(db.events, select(func.count()).select_from(Decision)) == 0  # the batch was refused whole
    with pytest.raises(StateError, match="actor id"):
        db.decide_many(Actor(" ", unit), [{"task_id": mine[0].task_id, "outcome": "approve"}])
    batch = [{"task_id": t.task_id, "outcome": "approve"} for t in mine]
    batch.append({"task_id": other.task_id, "outcome": "approve"})
    batch.append({"task_id": 10**9, "outcome": "approve"})
    report = db.decide_many(actor, batch, allow_refusals=True)
    assert len(report.decided) == len(mine)
    assert [(r.index, r.task_id) for r in report.refused] == [
        (len(mine) + 1, other.task_id),
        (len(mine) + 2, 10**9),
    ]
    again = db.decide_many(actor, batch[:1], allow_refusals=True)
    assert not again.decided and "is approved, not open" in again.refused[0].error


def test_an_impossible_or_too_long_amendment_is_refused_when_decided(db: GovDB, tmp_path: Path) -> None:
    _scenario(db, tmp_path, people=40, seed=5)
    db.process(today=TODAY)
    task = next(t for t in db.tasks() if t.change == "new_person")
    actor = Actor("v", task.unit_id)
    with pytest.raises(StateError, match="birth_date"):
        db.decide(task.task_id, actor, "amend", amendments={"birth_date": "1990-13-45"})
    with pytest.raises(StateError, match="address is 300 characters, at most 256"):
        db.decide(task.task_id, actor, "amend", amendments={"address": "桂" * 300})
    with pytest.raises(StateError, match="cannot amend"):
        db.decide(task.task_id, actor, "amend", amendments={"salary": "1"})
    # PostgreSQL would refuse a NUL at promote: it is refused here.
    with pytest.raises(StateError, match=r"\['address'\] hold a NUL"):
        db.decide(task.task_id, actor, "amend", amendments={"address": "桂城\x00街道"})
    result = db.decide(task.task_id, actor, "amend", amendments={"phone": "138 0013 8000"})
    assert result.task_state == "approved"
    with db.events.connect() as conn:
        payload = conn.execute(
            select(Proposal.payload).where(Proposal.proposal_id == task.proposal_id)
        ).scalar_one()
    assert payload["phone"] == "13800138000"  # stored standardized, as ingest would
    other = next(t for t in db.tasks() if t.change == "new_person" and t.task_id != task.task_id)
    written = {"address": " 桂城街道 南海大道１号 "}
    db.decide(other.task_id, Actor("v", other.unit_id), "amend", amendments=written)
    with db.events.connect() as conn:
        payload = conn.execute(
            select(Proposal.payload).where(Proposal.proposal_id == other.proposal_id)
        ).scalar_one()
    assert payload["address"] == "桂城街道南海大道1号"


def test_decisions_from_a_file_on_the_command_line(db: GovDB, tmp_path: Path) -> None:
    if db.events.dialect.name != "sqlite":
        pytest.skip("the command line opens the home folder")
    from govdb.cli import app

    _scenario(db, tmp_path, people=40, seed=6)
    db.process(today=TODAY)
    tasks = db.tasks()
    unit = tasks[0].unit_id
    mine = [t for t in tasks if t.unit_id == unit]
    decisions = tmp_path / "decisions.csv"
    rows = ["task_id,outcome,reason,amendments"]
    rows += [f"{t.task_id},approve,," for t in mine]
    rows.append("999999,reject,查无此人,")
    decisions.write_text("\n".join(rows) + "\n", encoding="utf-8")
    home = str(Path(db.config.home or tmp_path))
    result = CliRunner().invoke(
        app, ["tasks", "decide", "--from", str(decisions), "--actor", f"li@{unit}", "--home", home]
    )
    assert result.exit_code != 0 and "decision" in result.output and "does not exist" in result.output
    result = CliRunner().invoke(
        app,
        [
            "tasks",
            "decide",
            "--from",
            str(decisions),
            "--actor",
            f"li@{unit}",
            "--allow-refusals",
            "--home",
            home,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "999999" in result.output and "does not exist" in result.output
    assert all(t.state == "approved" for t in db.tasks(state=None) if t.task_id in {m.task_id for m in mine})


# --- jurisdiction from master --------------------------------------------------------------


def test_an_event_claiming_another_village_is_checked_by_the_persons_own_village(
    db: GovDB, tmp_path: Path
) -> None:
    """Invariant 5: the event's division is data to verify; the person's master residence decides."""
    register = make_people(30, seed=8, today=TODAY)
    db.load_people(register, source="public_security")
    person = register.row(0, named=True)
    villages = [u for u in db.units("village") if u.division_code != person["division_code"]]
    claimed = villages[0].division_code
    hostile = tmp_path / "hostile.csv"
    hostile.write_text(
        "受理编号,姓名,身份证号,联系电话,村居代码\n"
        f"X1,冒名顶替,{person['id_number']},13900000000,{claimed}\n",
        encoding="utf-8",
    )
    db.ingest(hostile, source="hall", key_column="受理编号", service_code="hall.resident_registration")
    db.process(today=TODAY)
    with db.events.connect() as conn:
        tasks = conn.execute(select(Task).order_by(Task.step)).all()
    assert [(t.level, t.division_code) for t in tasks] == [
        ("village", person["division_code"]),
        ("village", claimed),
        ("street", person["division_code"]),
    ]
    with pytest.raises(JurisdictionError, match="outside that jurisdiction"):
        db.decide(tasks[0].task_id, Actor("attacker", f"village:{claimed}"), "approve")
    db.decide(
        tasks[0].task_id,
        Actor("home", f"village:{person['division_code']}"),
        "reject",
        reason="本人未申请变更",
    )
    assert db.promote().promoted == 0
    with db.master.connect() as conn:
        name = conn.execute(select(Person.name).where(Person.id_number == person["id_number"])).scalar_one()
    assert name == person["name"]


def test_a_move_is_checked_by_the_home_and_the_destination_village(db: GovDB, tmp_path: Path) -> None:
    register = make_people(30, seed=9, today=TODAY)
    db.load_people(register, source="public_security")
    person = register.row(1, named=True)
    destination = next(u for u in db.units("village") if u.division_code[:9] != person["division_code"][:9])
    moved = tmp_path / "move.csv"
    moved.write_text(
        "受理编号,姓名,身份证号,村居代码\n"
        f"M1,{person['name']},{person['id_number']},{destination.division_code}\n",
        encoding="utf-8",
    )
    db.ingest(
        moved,
        source="hall_window_system",
        source_token=db.register_source("hall_window_system"),
        key_column="受理编号",
        service_code="hall.resident_registration",
    )
    db.process(today=TODAY)
    units = [t.unit_id for t in db.tasks(state=None)]
    assert units[:2] == [f"village:{person['division_code']}", destination.unit_id]
    _approve_all(db)
    assert db.promote().promoted == 1
    with db.master.connect() as conn:
        code = conn.execute(
            select(Person.division_code).where(Person.id_number == person["id_number"])
        ).scalar_one()
    assert code == destination.division_code


# --- authenticated sources -----------------------------------------------------------------


def test_a_certificate_without_the_sources_token_earns_no_automatic_pass(db: GovDB, tmp_path: Path) -> None:
    """Invariant 9: a department name typed by the caller proves nothing."""
    register = make_people(60, seed=3, today=TODAY)
    db.load_people(register, source="public_security")
    make_disability_records(register, tmp_path / "cdpf.csv", seed=3, today=TODAY)
    forged = {"key_column": "记录编号", "service_code": "cdpf.disability_certificate"}
    with pytest.raises(AccessDeniedError, match="registered: its ingests must give its token"):
        db.ingest(tmp_path / "cdpf.csv", source="cdpf_system", department="disabled_federation", **forged)
    db.ingest(tmp_path / "cdpf.csv", source="cdpf_copy", department="disabled_federation", **forged)
    report = db.process(today=TODAY)
    assert report.proposals.proposals > 0 and report.proposals.auto_approved == 0
    assert db.promote().promoted == 0
    with pytest.raises(AccessDeniedError, match="not its registered token"):
        db.ingest(tmp_path / "cdpf.csv", source="cdpf_system", source_token="guess", **forged)
    token = db.register_source("cdpf_system")
    fresh = db.register_source("cdpf_system")
    with pytest.raises(AccessDeniedError):  # registering again replaced the first token
        db.ingest(tmp_path / "cdpf.csv", source="cdpf_system", source_token=token, **forged)
    make_disability_records(register, tmp_path / "cdpf2.csv", seed=4, today=TODAY)
    db.ingest(tmp_path / "cdpf2.csv", source="cdpf_system", source_token=fresh, **forged)
    report = db.process(today=TODAY)
    assert report.proposals.auto_approved == report.proposals.proposals > 0
    with db.events.connect() as conn:
        rules = set(
            conn.execute(select(Decision.rule, Decision.source).where(Decision.rule.is_not(None))).all()
        )
    assert rules == {("from_own_system", "cdpf_system")}


# --- concurrent clerks and jobs (separate processes) ---------------------------------------


def test_clerks_deciding_the_same_tasks_at_once_decide_each_once(db: GovDB, tmp_path: Path) -> None:
    _scenario(db, tmp_path, people=80, seed=11)
    db.process(today=TODAY)
    village = [t for t in db.tasks(limit=10_000) if t.level == "village"]
    busiest = sorted({t.unit_id for t in village}, key=lambda u: -sum(t.unit_id == u for t in village))[:3]
    tasks = [t for t in village if t.unit_id in busiest]
    ids = [t.task_id for t in tasks]
    jobs = [
        {
            "op": "decide",
            # clerks start from opposite ends of the list, so they collide in the middle
            "tasks": [t.task_id for t in tasks if t.unit_id == unit][:: 1 if i % 2 == 0 else -1],
            "actor": f"c{i}",
            "unit": unit,
            "outcome": outcome,
        }
        for unit in busiest
        for i, outcome in enumerate(("approve", "reject", "return", "approve"))
    ]
    results = _at_once(db, jobs)
    with db.events.connect() as conn:
        per_task = dict(
            conn.execute(
                select(Decision.task_id, func.count())
                .where(Decision.task_id.in_(ids))
                .group_by(Decision.task_id)
            ).all()
        )
        rejected = set(
            conn.execute(select(Proposal.proposal_id).where(Proposal.state == "rejected")).scalars()
        )
        by_reject = set(
            conn.execute(
                select(Task.proposal_id)
                .join(Decision, Decision.task_id == Task.task_id)
                .where(Decision.outcome == "reject")
            ).scalars()
        )
    assert per_task == dict.fromkeys(ids, 1)
    assert sum(len(r["won"]) for r in results) == len(ids)
    assert all(lost[1] == "StateError" for r in results for lost in r["lost"]), results
    _approve_all(db)  # later levels approve whatever is still open
    db.promote()
    with db.master.connect() as conn:
        promoted = set(conn.execute(select(Promotion.proposal_id)).scalars())
    assert rejected == by_reject and not rejected & promoted, results


def test_process_promote_and_programme_runs_at_once_do_everything_once(db: GovDB, tmp_path: Path) -> None:
    _scenario(db, tmp_path, people=80, seed=12)
    results = _at_once(db, [{"op": "process"}] * 3)
    assert all(r["ok"] for r in results) and sum(r["proposals"] for r in results) > 0
    assert sorted(r["proposals"] for r in results)[:2] == [0, 0]
    with db.events.connect() as conn:
        twice = conn.execute(
            text(
                "SELECT count(*) FROM (SELECT event_id FROM proposal"
                " GROUP BY event_id, change HAVING count(*) > 1) d"
            )
        ).scalar_one()
    assert twice == 0
    _approve_all(db)
    with db.events.connect() as conn:
        approved = conn.execute(
            select(func.count()).select_from(Proposal).where(Proposal.state == "approved")
        ).scalar_one()
    results = _at_once(db, [{"op": "promote"}] * 3)
    assert all(r["ok"] for r in results), results
    assert sum(r["promoted"] for r in results) == approved > 0
    with db.master.connect() as conn:
        current = conn.execute(
            text(
                "SELECT count(*) FROM (SELECT entity_id, field FROM fieldhistory WHERE valid_to IS NULL "
                "GROUP BY entity_kind, entity_id, field HAVING count(*) > 1) d"
            )
        ).scalar_one()
    assert current == 0
    results = _at_once(db, [{"op": "programme"}] * 3)
    assert all(r["ok"] for r in results), results
    issued = _count(db.master, select(func.count()).select_from(Issuance))
    assert sum(r["issued"] for r in results) == issued > 0


# --- promotion: lineage, recovery, several changes at once ---------------------------------


def test_history_is_never_inverted_and_an_older_change_stays_in_the_past(db: GovDB, tmp_path: Path) -> None:
    import datetime as dt

    register = make_people(20, seed=13, today=TODAY)
    db.load_people(register, source="public_security", valid_from=dt.date(2026, 11, 20))
    person = register.row(2, named=True)
    changes = tmp_path / "changes.csv"
    changes.write_text(
        "受理编号,姓名,身份证号,联系电话,办理时间\n"
        f"C1,{person['name']},{person['id_number']},13711112222,2026-11-14 09:00\n"
        f"C2,{person['name']},{person['id_number']},13733334444,2026-11-25 09:00\n",
        encoding="utf-8",
    )
    db.ingest(
        changes,
        source="hall_window_system",
        source_token=db.register_source("hall_window_system"),
        key_column="受理编号",
        occurred_at_column="办理时间",
        service_code="hall.contact_update",
    )
    db.process(today=TODAY)
    _approve_all(db)
    report = db.promote()
    assert report.promoted == 2 and report.past_values == 1
    with db.master.connect() as conn:
        rows = conn.execute(
            select(FieldHistory.valid_from, FieldHistory.valid_to, FieldHistory.value).where(
                FieldHistory.field == "phone"
            )
        ).all()
        phone = conn.execute(select(Person.phone).where(Person.id_number == person["id_number"])).scalar_one()
    assert all(r.valid_to is None or r.valid_from is None or r.valid_from <= r.valid_to for r in rows)
    assert phone == "13733334444"
    past = next(r for r in rows if r.value == "13711112222")
    assert (past.valid_from, past.valid_to) == (dt.date(2026, 11, 14), dt.date(2026, 11, 20))


def test_two_changes_of_one_resident_in_one_file_promote_and_keep_one_set_of_keys(
    db: GovDB, tmp_path: Path
) -> None:
    register = make_people(20, seed=14, today=TODAY)
    db.load_people(register, source="public_security")
    person = register.row(3, named=True)
    changes = tmp_path / "two.csv"
    changes.write_text(
        "受理编号,姓名,身份证号,联系电话,地址\n"
        f"T1,{person['name']},{person['id_number']},13755556666,\n"
        f"T2,{person['name']},{person['id_number']},,{person['address']}2号\n",
        encoding="utf-8",
    )
    db.ingest(
        changes,
        source="hall_window_system",
        source_token=db.register_source("hall_window_system"),
        key_column="受理编号",
        service_code="hall.contact_update",
    )
    db.process(today=TODAY)
    _approve_all(db)
    assert db.promote().promoted == 2
    with db.master.connect() as conn:
        keyed = conn.execute(select(func.count()).select_from(LinkFeatures)).scalar_one()
    assert keyed == 20
    found = db.link_one(
        {"name": person["name"], "id_number": person["id_number"]}, actor=WINDOW, purpose="identity_lookup"
    )
    assert found.decision == "match"


KILL = r"""
import json, os, sys
import govdb.promote as promote
from govdb import GovDB
args = json.loads(sys.argv[1])
point = args["point"]
if point == "before_marking":
    promote._mark_promoted = lambda *a, **k: os._exit(9)
elif point == "after_marking":
    original = promote._mark_promoted
    def mark(*a, **k):
        original(*a, **k)
        os._exit(9)
    promote._mark_promoted = mark
db = GovDB.open(master_url=args["master"], events_url=args["events"], rules=args["rules"])
db.promote()
"""


def _unkeyed_promotions(db: GovDB) -> int:
    with db.master.connect() as conn:
        return conn.execute(
            select(func.count()).select_from(Promotion).where(Promotion.keys_refreshed.is_(False))
        ).scalar_one()


@pytest.mark.parametrize("point", ["before_marking", "after_marking"])
def test_a_promote_killed_between_its_steps_is_completed_by_the_next(
    db: GovDB, tmp_path: Path, point: str
) -> None:
    _scenario(db, tmp_path, people=40, seed=15)
    db.process(today=TODAY)
    _approve_all(db)
    proc = subprocess.run(
        [sys.executable, "-c", KILL, json.dumps({**_urls(db), "point": point})],
        capture_output=True,
        text=True,
        cwd="/",
        timeout=600,
    )
    assert proc.returncode == 9, proc.stderr[-2000:]
    # The first chunk's people were keyed in the transaction that changed them: a kill after it
    # leaves no person changed but keyed as they were.
    with db.master.connect() as conn:
        people = conn.execute(select(func.count()).select_from(Person)).scalar_one()
        keyed = conn.execute(select(func.count()).select_from(LinkFeatures)).scalar_one()
    assert _unkeyed_promotions(db) == 0 and people == keyed
    report = db.promote()
    assert report.promoted == 0
    with db.events.connect() as conn:
        left = conn.execute(
            select(func.count()).select_from(Proposal).where(Proposal.state == "approved")
        ).scalar_one()
        promoted_events = conn.execute(
            select(func.count()).select_from(Event).where(Event.status == "promoted")
        ).scalar_one()
    assert left == 0 and promoted_events > 0


def test_promotions_left_unkeyed_are_keyed_by_the_next_promote(db: GovDB, tmp_path: Path) -> None:
    """As an older version's run killed before its keys step left them (or a chunk promoted while
    master's keys followed other rules): the next run re-keys those people first."""
    _scenario(db, tmp_path, people=40, seed=15)
    db.process(today=TODAY)
    _approve_all(db)
    assert db.promote().promoted > 0
    link_key, features = LinkKey.__table__, LinkFeatures.__table__  # type: ignore[attr-defined]
    with db.master.begin() as conn:
        people = (
            conn.execute(select(Promotion.entity_id).where(Promotion.entity_kind == "person").distinct())
            .scalars()
            .all()
        )
        conn.execute(update(Promotion).where(Promotion.entity_kind == "person").values(keys_refreshed=False))
        conn.execute(delete(link_key).where(link_key.c.person_id.in_(people)))
        conn.execute(delete(features).where(features.c.person_id.in_(people)))
    assert people and _unkeyed_promotions(db) > 0
    report = db.promote()
    assert report.promoted == 0 and report.keys_refreshed == len(people)
    with db.master.connect() as conn:
        everyone = conn.execute(select(func.count()).select_from(Person)).scalar_one()
        keyed = conn.execute(select(func.count()).select_from(LinkFeatures)).scalar_one()
        rekeyed = conn.execute(
            select(func.count(func.distinct(link_key.c.person_id))).where(link_key.c.person_id.in_(people))
        ).scalar_one()
    assert everyone == keyed and rekeyed == len(people) and _unkeyed_promotions(db) == 0


def test_a_register_file_loads_standardized_and_refuses_rows_without_a_valid_id(
    db: GovDB, tmp_path: Path
) -> None:
    register = make_people(30, seed=16, today=TODAY)
    written = register.with_columns(pl.col("birth_date").cast(pl.String)).rename(
        {"name": "姓名", "id_number": "身份证号", "birth_date": "出生日期", "division_code": "村居代码"}
    )
    bad = pl.DataFrame({"姓名": ["无证"], "身份证号": ["123"]})
    path = tmp_path / "register.csv"
    pl.concat([written, bad], how="diagonal").write_csv(path)
    report = db.load_people_file(path, source="public_security")
    assert (report.read, report.loaded, report.refused_rows) == (31, 30, 1)
    assert report.refused.get_column("line").unique().to_list() == [32]
    again = db.load_people_file(path, source="public_security")
    assert (again.loaded, again.already_known) == (0, 30)
    with db.master.connect() as conn:
        keyed = conn.execute(select(func.count()).select_from(LinkFeatures)).scalar_one()
    assert keyed == 30
    fresh = make_people(3, seed=99, today=TODAY).with_columns(pl.Series("person_id", ["R1", "R2", "R3"]))
    db.load_people(fresh, source="public_security")
    with db.master.connect() as conn:
        ids = set(
            conn.execute(select(Person.person_id).where(Person.person_id.in_(["R1", "R2", "R3"]))).scalars()
        )
    assert ids == {"R1", "R2", "R3"}


# --- what the attacker review found: amendments, trust, credentials, moved people ----------


def test_amendments_never_change_who_a_record_is_or_who_checks_it(db: GovDB, tmp_path: Path) -> None:
    register = make_people(60, seed=3, today=TODAY)
    db.load_people(register, source="public_security")
    make_hall_events(register, tmp_path / "hall.csv", seed=3, today=TODAY)
    db.ingest(
        tmp_path / "hall.csv", source="hall", key_column="受理编号", service_code="hall.resident_registration"
    )
    make_disability_records(register, tmp_path / "cdpf.csv", seed=3, today=TODAY)
    db.ingest(
        tmp_path / "cdpf.csv",
        source="cdpf_copy",
        key_column="记录编号",
        service_code="cdpf.disability_certificate",
    )
    db.process(today=TODAY)
    person_task = next(t for t in db.tasks(limit=10_000) if t.change == "new_person")
    clerk = Actor("v", person_task.unit_id)
    for amended in ({"id_number": register["id_number"][0]}, {"division_code": "440605011001"}):
        with pytest.raises(StateError, match="cannot be amended"):
            db.decide(person_task.task_id, clerk, "amend", amendments=amended)
    with pytest.raises(StateError, match="empty"):
        db.decide(person_task.task_id, clerk, "amend", amendments={"name": None})
    cert = next(t for t in db.tasks(limit=10_000) if t.change == "disability_record")
    officer = Actor("o", cert.unit_id)
    for amended in ({"attributes": "boom"}, {"number": "X"}, {"kind": "senior_transit_card"}):
        with pytest.raises(StateError, match="only its attributes"):
            db.decide(cert.task_id, officer, "amend", amendments=amended)
    with pytest.raises(StateError, match="non-empty text"):
        db.decide(cert.task_id, officer, "amend", amendments={"attributes": {"disability_grade": 3}})
    name = next(iter(cert.payload["attributes"]))
    result = db.decide(cert.task_id, officer, "amend", amendments={"attributes": {name: "二级"}})
    assert result.proposal_state == "approved"


def test_an_unproven_source_gets_no_departments_trust(db: GovDB, tmp_path: Path) -> None:
    """Invariant 9 in survivorship: typing source="public_security" earns nothing."""
    register = make_people(20, seed=17, today=TODAY)
    db.load_people(register, source="public_security")
    person = register.row(0, named=True)
    renamed = tmp_path / "rename.csv"
    renamed.write_text(
        f"受理编号,姓名,身份证号\nR1,冒名,{person['id_number']}\n",
        encoding="utf-8",
    )
    db.ingest(
        renamed,
        source="public_security",
        department="public_security",
        key_column="受理编号",
        service_code="hall.contact_update",
    )
    db.process(today=TODAY)
    _approve_all(db)
    report = db.promote()
    assert report.conflicts == 1 and report.fields_updated == 0
    with db.master.connect() as conn:
        name = conn.execute(select(Person.name).where(Person.id_number == person["id_number"])).scalar_one()
    assert name == person["name"]


def test_checks_follow_a_person_who_moved_while_their_change_waited(db: GovDB, tmp_path: Path) -> None:
    register = make_people(20, seed=18, today=TODAY)
    db.load_people(register, source="public_security")
    person = register.row(0, named=True)
    destination = next(u for u in db.units("village") if u.division_code[:9] != person["division_code"][:9])
    hall = {"source": "hall_window_system", "source_token": db.register_source("hall_window_system")}
    move = tmp_path / "move.csv"
    move.write_text(
        f"受理编号,姓名,身份证号,村居代码\nM1,{person['name']},{person['id_number']},{destination.division_code}\n",
        encoding="utf-8",
    )
    phone = tmp_path / "phone.csv"
    phone.write_text(
        f"受理编号,姓名,身份证号,联系电话\nP1,{person['name']},{person['id_number']},13912345678\n",
        encoding="utf-8",
    )
    db.ingest(move, key_column="受理编号", service_code="hall.resident_registration", **hall)
    db.ingest(phone, key_column="受理编号", service_code="hall.contact_update", **hall)
    db.process(today=TODAY)
    phone_task = next(t for t in db.tasks() if t.payload.get("phone") == "13912345678")
    while tasks := [t for t in db.tasks() if t.proposal_id != phone_task.proposal_id]:
        for t in tasks:
            db.decide(t.task_id, Actor("c", t.unit_id), "approve")
    assert db.promote().promoted == 1  # the move
    old_village = Actor("old", f"village:{person['division_code']}")
    with pytest.raises(JurisdictionError, match="outside that jurisdiction"):
        db.decide(phone_task.task_id, old_village, "approve")
    result = db.decide(phone_task.task_id, Actor("new", destination.unit_id), "approve")
    assert result.task_state == "approved"
    assert (
        next(t for t in db.tasks(state=None) if t.task_id == phone_task.task_id).unit_id
        == destination.unit_id
    )


def test_a_credential_number_held_by_someone_else_becomes_a_conflict(db: GovDB, tmp_path: Path) -> None:
    register = make_people(60, seed=3, today=TODAY)
    db.load_people(register, source="public_security")
    token = db.register_source("cdpf_system")
    make_disability_records(register, tmp_path / "cdpf.csv", seed=3, today=TODAY)
    first = pl.read_csv(tmp_path / "cdpf.csv", infer_schema=False)
    options = {"key_column": "记录编号", "service_code": "cdpf.disability_certificate", "source_token": token}
    db.ingest(tmp_path / "cdpf.csv", source="cdpf_system", **options)
    db.process(today=TODAY)
    db.promote()
    other = register.filter(~pl.col("id_number").is_in(first["身份证号"].implode())).row(0, named=True)
    stolen = first.head(1).with_columns(
        pl.lit("R-STOLEN").alias("记录编号"),
        pl.lit(other["id_number"]).alias("身份证号"),
        pl.lit(other["name"]).alias("姓名"),
    )
    stolen.write_csv(tmp_path / "stolen.csv")
    db.ingest(tmp_path / "stolen.csv", source="cdpf_system", **options)
    db.process(today=TODAY)
    report = db.promote()
    assert report.conflicts == 1
    with db.master.connect() as conn:
        owner = conn.execute(
            text(
                "SELECT p.id_number FROM credential c JOIN person p ON p.person_id = c.person_id"
                " WHERE c.number = :n"
            ),
            {"n": first["残疾人证号"][0]},
        ).scalar_one()
    assert owner == first["身份证号"][0]


def test_a_value_written_differently_opens_no_task(db: GovDB, tmp_path: Path) -> None:
    """Traditional characters, a phone with dashes: master already holds it, so nothing is proposed."""
    from govdb.standards.hanzi import DATA

    register = make_people(30, seed=19, today=TODAY)
    db.load_people(register, source="public_security")
    simplified = {s: t for t, s in pl.read_parquet(DATA / "traditional.parquet").iter_rows()}
    person = next(
        r for r in register.iter_rows(named=True) if any(c in simplified for c in r["name"] + r["address"])
    )
    traditional = lambda text: "".join(simplified.get(c, c) for c in text)  # noqa: E731
    phone = f"{person['phone'][:3]}-{person['phone'][3:7]}-{person['phone'][7:]}"
    same = tmp_path / "same.csv"
    same.write_text(
        "受理编号,姓名,身份证号,联系电话,地址\n"
        f"S1,{traditional(person['name'])},{person['id_number']},{phone},{traditional(person['address'])}\n",
        encoding="utf-8",
    )
    db.ingest(same, source="hall", key_column="受理编号", service_code="hall.contact_update")
    report = db.process(today=TODAY)
    assert (report.proposals.unchanged, report.proposals.proposals) == (1, 0)
    assert db.tasks() == []


def test_odd_arguments_get_a_govdb_error_not_a_traceback(db: GovDB, tmp_path: Path) -> None:
    from govdb import GovdbError

    _scenario(db, tmp_path, people=20, seed=20)
    db.process(today=TODAY)
    task = db.tasks()[0]
    actor = Actor("v", task.unit_id)
    calls = [
        lambda: db.decide(2**63, actor, "approve"),
        lambda: db.decide_many(actor, None),  # type: ignore[arg-type]
        lambda: db.decide_many(actor, ["approve"]),  # type: ignore[list-item]
        lambda: db.tasks(limit="a"),  # type: ignore[arg-type]
        lambda: db.tasks(limit=-1),
        lambda: db.tasks(state="bogus"),
        lambda: db.decide(task.task_id, Actor("x" * 200, task.unit_id), "approve"),
        lambda: db.ingest(tmp_path / "hall.csv", source="cdpf_system", source_token=123),  # type: ignore[arg-type]
    ]
    for call in calls:
        with pytest.raises(GovdbError):
            call()


def _linking_records(register: pl.DataFrame) -> pl.DataFrame:
    """Hall records that make the linker work: exact ones, mistyped names without an ID number,
    a phone and a birth date only, and people master does not know."""
    import random

    rng = random.Random(5)
    rows = []
    for i, p in enumerate(register.iter_rows(named=True)):
        kind = i % 4
        name = p["name"] if kind != 1 else p["name"][0] + rng.choice("伟芳娜敏静丽强磊军洋")
        rows.append(
            {
                "受理编号": f"L{i:05d}",
                "姓名": name,
                "身份证号": p["id_number"] if kind in (0, 3) else None,
                "出生日期": f"{p['birth_date']:%Y-%m-%d}",
                "联系电话": p["phone"] if kind in (0, 2) else None,
                "地址": p["address"],
                "村居代码": p["division_code"],
            }
        )
    strangers = make_people(40, seed=77, today=TODAY)
    for j, p in enumerate(strangers.iter_rows(named=True)):
        rows.append(
            {
                "受理编号": f"N{j:05d}",
                "姓名": p["name"],
                "身份证号": p["id_number"],
                "出生日期": f"{p['birth_date']:%Y-%m-%d}",
                "联系电话": p["phone"],
                "地址": p["address"],
                "村居代码": p["division_code"],
            }
        )
    return pl.DataFrame(rows, schema=dict.fromkeys(rows[0], pl.String))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("max_block", [1000, 5])
def test_linking_against_everyone_in_memory_finds_what_the_key_look_ups_find(
    backend: str, max_block: int, tmp_path: Path, rules: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large run blocks against every master person in memory; a small one looks candidates up
    by key. Both must link, explain and propose exactly alike, also where key values are shared by
    more people than `max_block` (a person who is a candidate through another key is not paired
    through such a value either)."""
    import shutil

    import govdb.verify.pipeline as pipeline
    from govdb import load_rulebook
    from govdb.link.reads import FeatureCache

    if max_block != 1000:
        shutil.copytree(REPO / "rules", tmp_path / "rules")
        matching = tmp_path / "rules" / "matching" / "person.yaml"
        matching.write_text(
            matching.read_text(encoding="utf-8").replace("max_block: 1000", f"max_block: {max_block}")
        )
        rules = load_rulebook(tmp_path / "rules")
        assert rules.matching["person"].blocking.max_block == max_block

    register = make_people(300, seed=31, today=TODAY)
    register = register.with_columns(pl.format("P{}", pl.int_range(pl.len())).alias("person_id"))
    records = _linking_records(register)
    # A phone shared by more people than max_block 5 allows to block on: the first person and
    # seven more no record is about, so only the first is a candidate of this chunk.
    shared = "13812345678"
    sharers = make_people(7, seed=99, today=TODAY).with_columns(
        pl.format("S{}", pl.int_range(pl.len())).alias("person_id")
    )
    register = pl.concat([register, sharers]).with_columns(
        pl.when((pl.col("person_id") == "P0") | pl.col("person_id").str.starts_with("S"))
        .then(pl.lit(shared))
        .otherwise(pl.col("phone"))
        .alias("phone")
    )
    first = register.row(0, named=True)  # a candidate of this chunk through its own ID number
    phone_only = {"受理编号": "H00000", "姓名": first["name"], "联系电话": shared, "村居代码": None}
    records = pl.concat([records, pl.DataFrame([phone_only], schema=records.schema)], how="diagonal")
    seen = {}
    loaded: list[bool] = []
    load_everyone = FeatureCache.load_everyone

    def spy(self: FeatureCache, conn: Any) -> bool:
        loaded.append(load_everyone(self, conn))
        return loaded[-1]

    monkeypatch.setattr(FeatureCache, "load_everyone", spy)
    given: list[int | None] = []  # the features the untrained model was built from, if given
    linkage_model = GovDB.linkage_model

    def model_spy(self: GovDB, features: pl.DataFrame | None = None) -> Any:
        given.append(None if features is None else features.height)
        return linkage_model(self, features)

    monkeypatch.setattr(GovDB, "linkage_model", model_spy)
    # Linked in this process, which then holds everyone (tests/verify/test_link_worker.py: a second).
    monkeypatch.setenv("GOVDB_LINK_PROCESS", "0")
    for mode, threshold in (("keys", 10**12), ("memory", 0)):
        monkeypatch.setattr(pipeline, "IN_MEMORY_EVENTS", threshold)
        with open_backend(backend, tmp_path / mode, rules) as db:
            db.serve_district("440605")
            db.load_people(register, source="public_security")
            # A service that links records without an ID number too (registration requires one).
            db.ingest_frame(records, source="hall", key_column="受理编号", service_code="hall.contact_update")
            report = db.process(today=TODAY)
            with db.events.connect() as conn:
                links = conn.execute(
                    select(
                        Link.event_id, Link.entity_id, Link.decision, Link.score, Link.explanation
                    ).order_by(Link.event_id, Link.id)
                ).all()
                proposed = conn.execute(
                    select(
                        Proposal.event_id,
                        Proposal.entity_id,
                        Proposal.change,
                        Proposal.state,
                        Proposal.payload,
                    ).order_by(Proposal.event_id, Proposal.change)
                ).all()
            seen[mode] = (report.proposals, [tuple(r) for r in links], [tuple(r) for r in proposed])
    assert seen["keys"][1] and seen["keys"][2]
    decisions = [r[2] for r in seen["keys"][1]]
    assert {"match", "new"} <= set(decisions), decisions  # the records made the linker decide both ways
    assert len(decisions) == len(records)  # every record was linked, those without an ID number too
    assert loaded == [True]  # only the second run held everyone in memory
    assert given == [None, register.height]  # ... and built its model from the features it held
    assert seen["memory"] == seen["keys"]  # the same links and scores: the same model


def test_progress_never_counts_past_its_total_when_events_arrive_during_a_run(
    db: GovDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events ingested while `process` runs are standardized and proposed by that run too; the
    total it reports grows to take them in, so progress never shows more done than there is."""
    import govdb.verify.pipeline as pipeline

    register = make_people(6, seed=4, today=TODAY)
    db.load_people(register, source="public_security")

    def records(first: int) -> pl.DataFrame:
        rows = register.slice(first, 3)
        return pl.DataFrame(
            {
                "受理编号": [f"A{first + i}" for i in range(3)],
                "姓名": rows["name"],
                "身份证号": rows["id_number"],
            }
        )

    ingest = {"source": "hall", "key_column": "受理编号", "service_code": "hall.contact_update"}
    db.ingest_frame(records(0), **ingest)
    monkeypatch.setattr(pipeline, "CHUNK", 1)
    seen: list[tuple[int, int]] = []

    def arriving(done: int, total: int) -> None:
        if not seen:
            db.ingest_frame(records(3), **ingest)  # three more while the first is under way
        seen.append((done, total))

    report = db.process(today=TODAY, progress=arriving)
    assert report.validation.rows == report.proposals.events == 6  # the late three included
    assert seen[0] == (1, 3) and seen[-1] == (6, 6)
    assert all(done <= total for done, total in seen), seen


def test_a_run_in_memory_sees_what_a_promote_changes_while_it_runs(
    db: GovDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A promote between two chunks changes a person's phone: the next chunk links a record known
    only by the name and the new phone to that person, as a key look-up at that moment would."""
    import govdb.verify.pipeline as pipeline

    register = make_people(20, seed=3, today=TODAY)
    db.load_people(register, source="public_security")
    first = register.row(0, named=True)
    new_phone = "13977776666"

    def record(key: str, **values: Any) -> pl.DataFrame:
        row = {"受理编号": key, "姓名": first["name"], **values}
        return pl.DataFrame([row], schema=dict.fromkeys(row, pl.String))

    ingest = {"source": "hall", "key_column": "受理编号", "service_code": "hall.contact_update"}
    db.ingest_frame(record("C0", 身份证号=first["id_number"], 联系电话=new_phone), **ingest)
    db.process(today=TODAY)
    while tasks := db.tasks(limit=1000):
        for task in tasks:
            db.decide(task.task_id, Actor("clerk", task.unit_id), "approve")
    db.ingest_frame(record("C1", 身份证号=first["id_number"]), **ingest)
    db.ingest_frame(record("C2", 联系电话=new_phone), **ingest)
    monkeypatch.setattr(pipeline, "CHUNK", 1)
    monkeypatch.setattr(pipeline, "IN_MEMORY_EVENTS", 0)
    promoted: list[int] = []

    def between_chunks(done: int, total: int) -> None:
        if done == 2:  # the first record linked, the second not read yet
            promoted.append(db.promote().promoted)

    db.process(today=TODAY, progress=between_chunks)
    assert promoted == [1]
    with db.events.connect() as conn:
        link = conn.execute(
            select(Link.entity_id, Link.decision, Link.explanation)
            .join(Event, Event.event_id == Link.event_id)
            .where(Event.source_key == "C2")
        ).one()
    with db.master.connect() as conn:
        person_id = conn.execute(
            select(Person.person_id).where(Person.id_number == first["id_number"])
        ).scalar()
    assert link.entity_id == person_id and link.decision in ("match", "review"), link
    assert link.explanation["phone"]["level"] == "exact"
