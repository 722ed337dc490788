"""`promote` writes only what changed: a new phone names no other column of `person`, so the ID
number, birth date and division indexes are not rewritten for it (an UPDATE naming a column
rewrites its index entries on SQLite even when the value is the same)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select, text

from govdb import Actor, GovDB
from govdb.demo import make_people
from govdb.store.master import LinkKey, Person

from ..conftest import TODAY


def _approve_all(db: GovDB) -> None:
    while tasks := db.tasks(limit=10_000):
        for unit in {t.unit_id for t in tasks}:
            batch = [{"task_id": t.task_id, "outcome": "approve"} for t in tasks if t.unit_id == unit]
            db.decide_many(Actor("clerk", unit), batch)


def test_a_new_phone_updates_the_phone_and_names_no_indexed_column(db: GovDB, tmp_path: Path) -> None:
    register = make_people(20, seed=21, today=TODAY)
    db.load_people(register, source="public_security")
    people = [register.row(i, named=True) for i in (2, 5)]
    changes = tmp_path / "phones.csv"
    changes.write_text(
        "受理编号,姓名,身份证号,联系电话,地址\n"
        + "".join(f"T{i},{p['name']},{p['id_number']},1375555000{i},\n" for i, p in enumerate(people)),
        encoding="utf-8",
    )
    db.ingest(changes, source="hall_window_system", source_token=db.register_source("hall_window_system"),
              key_column="受理编号", service_code="hall.contact_update")  # fmt: skip
    db.process(today=TODAY)
    _approve_all(db)
    sqlite = db.master.dialect.name == "sqlite"
    if sqlite:  # fires once per row whose UPDATE names one of these columns, whatever the value
        with db.master.begin() as conn:
            conn.execute(text("CREATE TABLE named_columns (person_id TEXT)"))
            conn.execute(text(
                "CREATE TRIGGER names_indexed AFTER UPDATE OF id_number, name, gender, birth_date, address,"
                " division_code ON person BEGIN INSERT INTO named_columns VALUES (new.person_id); END"
            ))  # fmt: skip
    with db.master.connect() as conn:
        before = {r.id_number: r for r in conn.execute(select(Person)).all()}
        keys_before = conn.execute(select(LinkKey.__table__)).all()  # type: ignore[attr-defined]
    report = db.promote()
    assert report.promoted == 2 and report.fields_updated == 2 and report.keys_refreshed == 2
    with db.master.connect() as conn:
        after = {r.id_number: r for r in conn.execute(select(Person)).all()}
        keys_after = conn.execute(select(LinkKey.__table__)).all()  # type: ignore[attr-defined]
        named = conn.execute(text("SELECT count(*) FROM named_columns")).scalar() if sqlite else 0
    assert named == 0
    for i, p in enumerate(people):
        old, new = before[p["id_number"]], after[p["id_number"]]
        assert new.phone == f"1375555000{i}" and new.phone != old.phone
        assert [getattr(new, c) for c in ("name", "gender", "birth_date", "address", "division_code")] == [
            getattr(old, c) for c in ("name", "gender", "birth_date", "address", "division_code")
        ]
        assert new.updated_at > old.updated_at
    # Their keys changed where a key holds the phone, in the promotion's own transaction.
    changed = set(keys_after) ^ set(keys_before)
    assert changed and {k.person_id for k in changed} <= {before[p["id_number"]].person_id for p in people}
