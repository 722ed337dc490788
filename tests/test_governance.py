"""Governed rules: access policies and routes change only when applied on record, by a unit the
rules applied before allow; every decision, promotion and read names the rules it ran under."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select
from typer.testing import CliRunner

from govdb import AccessDeniedError, Actor, GovDB, load_rulebook
from govdb.access.governance import rules_status
from govdb.cli import app
from govdb.demo import make_disability_records, make_hall_events, make_people
from govdb.errors import NotFoundError, RulesChangedError
from govdb.rulebook import Rulebook
from govdb.store.events import Decision
from govdb.store.master import AuditLog, Promotion, RulesApplied

from .conftest import BACKENDS, PG_AUDIT_KEY, PG_URL, REPO, TODAY, _pg_schemas

BUREAU = Actor("zhou", "department:data_bureau:440605")
VILLAGE = Actor("li", "village:440605011001")
TRANSPORT = Actor("wang", "department:transport:440605")

Edit = Callable[[dict[str, Any]], None]


def _rules_copy(folder: Path, edits: dict[str, Edit]) -> Path:
    """The shipped rules copied to `folder`, each named file (relative path) edited as YAML data."""
    shutil.copytree(REPO / "rules", folder)
    for name, edit in edits.items():
        path = folder / name
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        edit(data)
        path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return folder


def _changed(folder: Path, edits: dict[str, Edit]) -> Rulebook:
    return load_rulebook(_rules_copy(folder, edits))


def _no_civil_affairs_masks(data: dict[str, Any]) -> None:
    del data["departments"]["civil_affairs"]["masked"]


def _reopen(db: GovDB, rules: Rulebook, **kwargs: Any) -> GovDB:
    """The same stores with other rules (the deployment's audit key)."""
    key = PG_AUDIT_KEY if db.master.dialect.name == "postgresql" else None
    return GovDB(db.config, rules, create=False, audit_key=key, **kwargs)


def _audit(db: GovDB, action: str = "rules_apply") -> list[Any]:
    with db.master.connect() as conn:
        return list(conn.execute(select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.seq)))


def test_changed_access_masks_are_refused_until_the_data_bureau_applies_them(
    db: GovDB, tmp_path: Path
) -> None:
    new = _changed(tmp_path / "rules", {"access/departments.yaml": _no_civil_affairs_masks})
    assert new.fingerprint(governed=True) != db.rules.fingerprint(governed=True)
    with pytest.raises(RulesChangedError, match=r"access\.departments\.civil_affairs") as refused:
        _reopen(db, new)
    assert "govdb rules apply" in str(refused.value) and "\n" not in str(refused.value)

    pending = _reopen(db, new, check_rules=False)
    try:
        status = rules_status(pending.master, pending.audit)
        assert status.differs and status.changed == ["access.departments.civil_affairs"]
        for outsider in (VILLAGE, TRANSPORT):
            with pytest.raises(AccessDeniedError, match=r"may not apply rules.*only to \['data_bureau'\]"):
                pending.apply_rules(outsider)
        with pytest.raises(NotFoundError, match="not registered"):
            pending.apply_rules(Actor("nobody", "village:999999999999"))
        refusals = [e for e in _audit(db) if e.outcome == "refused"]
        assert [e.unit_id for e in refusals] == [
            VILLAGE.unit_id,
            TRANSPORT.unit_id,
            "village:999999999999",
        ]
        with pytest.raises(RulesChangedError):  # refusals applied nothing
            _reopen(db, new)

        change = pending.apply_rules(BUREAU)
        assert change.changed == ["access.departments.civil_affairs"]
        assert change.previous == db.rules.fingerprint(governed=True)
        assert change.fingerprint == new.fingerprint(governed=True)
    finally:
        pending.close()
    entry = _audit(db)[-1]
    assert (entry.action, entry.outcome, entry.unit_id, entry.actor_id) == (
        "rules_apply",
        "changed",
        BUREAU.unit_id,
        "zhou",
    )
    assert entry.seq == change.audit_seq and entry.fields == ["access.departments.civil_affairs"]
    assert entry.rules_fingerprint == new.fingerprint()
    assert db.verify_audit().ok

    _reopen(db, new).close()  # the applied rules open now
    with pytest.raises(RulesChangedError, match=r"civil_affairs"):  # and the old ones no longer do
        _reopen(db, db.rules)
    with db.master.connect() as conn:
        applied = conn.execute(select(RulesApplied).order_by(RulesApplied.id)).all()
    assert [(r.actor_id, r.unit_id) for r in applied] == [
        ("govdb", "system:first-open"),
        ("zhou", BUREAU.unit_id),
    ]


def test_changed_routes_are_refused_too(db: GovDB, tmp_path: Path) -> None:
    def auto_pass_streets(data: dict[str, Any]) -> None:
        data["routes"]["update_person"]["steps"] = [{"level": "village"}]  # the street check dropped

    new = _changed(tmp_path / "rules", {"verification/routes.yaml": auto_pass_streets})
    with pytest.raises(RulesChangedError, match=r"verification\.routes\.update_person"):
        _reopen(db, new)
    with _reopen(db, new, check_rules=False) as pending:
        assert pending.apply_rules(BUREAU).changed == ["verification.routes.update_person"]
    _reopen(db, new).close()


def test_rewording_a_description_or_changing_ungoverned_rules_is_not_refused(
    db: GovDB, tmp_path: Path
) -> None:
    def reword(data: dict[str, Any]) -> None:
        data["description"] = "Reworded: who reads what, and what they see masked."

    def retitle_form(data: dict[str, Any]) -> None:
        data["title"] = str(data.get("title", "")) + "（新）"

    new = _changed(
        tmp_path / "rules",
        {
            "access/departments.yaml": reword,
            "verification/routes.yaml": reword,
            "forms/senior_transit_card.yaml": retitle_form,
        },
    )
    assert new.fingerprint(governed=True) == db.rules.fingerprint(governed=True)
    assert new.fingerprint() != db.rules.fingerprint()  # forms are not governed, but recorded
    with _reopen(db, new) as reopened:
        assert reopened.audit.fingerprint == new.fingerprint()
        assert not rules_status(reopened.master, reopened.audit).differs


def test_granting_yourself_governance_in_the_new_rules_does_not_authorize_you(
    db: GovDB, tmp_path: Path
) -> None:
    def transport_governs(data: dict[str, Any]) -> None:
        data["departments"]["transport"]["purposes"].append("rules_governance")
        del data["departments"]["data_bureau"]

    new = _changed(tmp_path / "rules", {"access/departments.yaml": transport_governs})
    with _reopen(db, new, check_rules=False) as pending:
        with pytest.raises(AccessDeniedError, match=r"only to \['data_bureau'\]"):
            pending.apply_rules(TRANSPORT)
        assert _audit(db)[-1].outcome == "refused"
        change = pending.apply_rules(BUREAU)  # the rules applied before still decide
        assert change.changed == ["access.departments.data_bureau", "access.departments.transport"]
    # Now the applied rules grant transport, and no longer the data bureau.
    with _reopen(db, db.rules, check_rules=False) as back:
        with pytest.raises(AccessDeniedError, match=r"only to \['transport'\]"):
            back.apply_rules(BUREAU)
        assert back.apply_rules(TRANSPORT).changed
    _reopen(db, db.rules).close()


def test_decisions_and_promotions_record_the_rules_they_were_made_under(db: GovDB, tmp_path: Path) -> None:
    register = make_people(40, seed=5, today=TODAY)
    db.load_people(register, source="public_security")
    make_hall_events(register, tmp_path / "hall.csv", seed=5, today=TODAY)
    db.ingest(
        tmp_path / "hall.csv", source="hall", key_column="受理编号", service_code="hall.resident_registration"
    )
    make_disability_records(register, tmp_path / "cdpf.csv", seed=5, today=TODAY)
    db.ingest(
        tmp_path / "cdpf.csv",
        source="cdpf_system",
        source_token=db.register_source("cdpf_system"),
        key_column="记录编号",
        service_code="cdpf.disability_certificate",
    )
    db.process(today=TODAY)
    decided = 0
    while tasks := db.tasks(limit=10_000):
        by_unit: dict[str, list[dict[str, Any]]] = {}
        for t in tasks:
            by_unit.setdefault(t.unit_id, []).append({"task_id": t.task_id, "outcome": "approve"})
        for unit, batch in by_unit.items():
            decided += len(db.decide_many(Actor("clerk", unit), batch).decided)
    assert decided > 0
    assert db.promote().promoted > 0
    full = db.rules.fingerprint()
    assert db.audit.fingerprint == full
    with db.events.connect() as conn:
        by_kind = dict(
            conn.execute(
                select(
                    Decision.rule.is_(None), func.count(func.distinct(Decision.rules_fingerprint))
                ).group_by(Decision.rule.is_(None))
            ).all()
        )
        fingerprints = set(conn.execute(select(Decision.rules_fingerprint)).scalars())
    assert by_kind == {True: 1, False: 1}  # people's decisions and automatic passes
    assert fingerprints == {full}
    with db.master.connect() as conn:
        assert set(conn.execute(select(Promotion.rules_fingerprint)).scalars()) == {full}
        reads = set(
            conn.execute(select(AuditLog.rules_fingerprint).where(AuditLog.scheme == "hmac")).scalars()
        )
    assert reads == {full}


@pytest.mark.parametrize("backend", BACKENDS)
def test_first_opens_at_once_record_the_founding_rules_once(
    backend: str, tmp_path: Path, rules: Rulebook
) -> None:
    # The key is given: several processes writing one new key file at once is another matter.
    where: dict[str, Any] = {"audit_key": PG_AUDIT_KEY}
    schemas = None
    if backend == "postgresql":
        if not PG_URL:
            pytest.skip("GOVDB_TEST_PG_URL is not set")
        schemas = _pg_schemas()
        where["master_url"], where["events_url"] = next(schemas)
    # The schema is made first: alembic keeps its state in module globals, so migrating in threads
    # of one process is unsupported (processes are serialized by the migration lock).
    GovDB.open(tmp_path / "home", rules=rules, check_rules=False, **where).close()
    opened: list[GovDB] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(3)

    def first_open() -> None:
        barrier.wait()
        try:
            opened.append(GovDB.open(tmp_path / "home", rules=rules, create=False, **where))
        except BaseException as exc:  # asserted below
            errors.append(exc)

    try:
        threads = [threading.Thread(target=first_open) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors
        assert len(opened) == 3
        with opened[0].master.connect() as conn:
            assert conn.execute(select(func.count()).select_from(RulesApplied)).scalar_one() == 1
            founding = select(func.count()).select_from(AuditLog).where(AuditLog.action == "rules_apply")
            assert conn.execute(founding).scalar_one() == 1
        assert opened[0].verify_audit().ok
    finally:
        for gov in opened:
            gov.close()
        if schemas is not None:
            next(schemas, None)


# --- the command line ----------------------------------------------------------------------

runner = CliRunner()


def _run(*args: str) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_rules_show_and_apply_on_the_command_line(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    assert _run("--home", home, "init", "--district", "440605").exit_code == 0
    shipped = load_rulebook(REPO / "rules")
    result = _run("--home", home, "--rules", str(REPO / "rules"), "rules", "show", "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["fingerprint"] == shipped.fingerprint()
    assert shown["governed_fingerprint"] == shipped.fingerprint(governed=True)
    assert shown["applied"]["actor_id"] == "govdb" and shown["differs"] is False

    new = str(_rules_copy(tmp_path / "rules", {"access/departments.yaml": _no_civil_affairs_masks}))
    result = _run("--home", home, "--rules", new, "tasks", "list")
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "govdb rules apply" in lines[0] and "civil_affairs" in lines[0], result.stderr

    result = _run("--home", home, "--rules", new, "rules", "show")
    assert result.exit_code == 0 and "DIFFER" in result.stdout and "civil_affairs" in result.stdout
    result = _run("--home", home, "--rules", new, "rules", "apply", "--actor", f"li@{VILLAGE.unit_id}")
    assert result.exit_code == 1 and "may not apply rules" in result.stderr
    result = _run("--home", home, "--rules", new, "rules", "apply", "--actor", f"zhou@{BUREAU.unit_id}")
    assert result.exit_code == 0, result.output
    assert "access.departments.civil_affairs" in result.stdout
    assert _run("--home", home, "--rules", new, "tasks", "list").exit_code == 0
    assert _run("--home", home, "--rules", str(REPO / "rules"), "tasks", "list").exit_code == 1


def test_an_insider_cannot_swap_rules_by_writing_the_record_of_applied_rules(
    db: GovDB, tmp_path: Path
) -> None:
    """The record of applied rules is sealed with the audit key and must be the one the audit
    log's last rules_apply entry made: a row written by hand, or an older row replayed as the
    newest, is refused at open (and rows cannot be changed or removed at all)."""
    from govdb.access.governance import governed_parts
    from govdb.errors import AuditChainError

    new = _changed(tmp_path / "rules", {"access/departments.yaml": _no_civil_affairs_masks})
    with db.master.connect() as conn:
        founding = dict(conn.execute(select(RulesApplied)).mappings().one())
    forged = {
        **{k: v for k, v in founding.items() if k not in ("id", "mac")},
        "fingerprint": new.fingerprint(governed=True),
        "full_fingerprint": new.fingerprint(),
        "summary": governed_parts(new),
        "actor_id": "zhou",
        "unit_id": "department:data_bureau:440605",
    }
    with db.master.begin() as conn:  # INSERT is all the application role may do here
        conn.execute(RulesApplied.__table__.insert(), [forged | {"mac": "0" * 64}])
    with pytest.raises(AuditChainError, match="without the audit key"):
        _reopen(db, new)
    with pytest.raises(Exception, match="append-only"), db.master.begin() as conn:
        conn.execute(RulesApplied.__table__.delete())


def test_an_older_record_of_applied_rules_replayed_is_refused(db: GovDB) -> None:
    from govdb.errors import AuditChainError

    with db.master.connect() as conn:
        founding = dict(conn.execute(select(RulesApplied)).mappings().one())
    db.apply_rules(BUREAU)  # the same rules again: a later rules_apply entry and record
    with db.master.begin() as conn:  # the founding row's copy: its seal is genuine
        conn.execute(RulesApplied.__table__.insert(), [{k: v for k, v in founding.items() if k != "id"}])
    with pytest.raises(AuditChainError, match="replayed"):
        _reopen(db, db.rules)
