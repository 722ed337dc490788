"""Authoritative bulk loads of people (govdb.load): ids drawn in bulk, the people, their lineage,
feed and link keys in one transaction, and SQLite's checkpoint left to the store's thread."""

from __future__ import annotations

import json
import re

import polars as pl
import pytest
from sqlalchemy import Connection, func, select, text

from govdb import GovDB
from govdb.demo import make_people
from govdb.link.keys import refresh_link_keys
from govdb.link.reads import read_features
from govdb.load import bulk_load_people, new_person_ids
from govdb.store.master import BulkLoad, FieldHistory, LinkFeatures, LinkKey, MasterChange, Person

from .conftest import TODAY


def test_new_person_ids_keep_the_form_of_a_uuid4_prefix() -> None:
    ids = new_person_ids(20_000)
    assert ids.dtype == pl.String and ids.len() == 20_000 and ids.n_unique() == 20_000
    assert ids.str.contains(r"^P[0-9A-F]{12}4[0-9A-F]{2}$").all()
    # every hex digit but the version's is drawn: all sixteen appear at each drawn position
    for position in [*range(1, 13), 14, 15]:
        assert ids.str.slice(position, 1).n_unique() == 16
    assert new_person_ids(0).len() == 0


def _counts(db: GovDB) -> dict[str, int]:
    tables = {"person": Person, "history": FieldHistory, "feed": MasterChange, "keys": LinkKey}
    tables |= {"features": LinkFeatures, "loads": BulkLoad}
    with db.master.connect() as conn:
        return {
            name: conn.execute(select(func.count()).select_from(model.__table__)).scalar_one()  # type: ignore[attr-defined]
            for name, model in tables.items()
        }


class FailingKeys:
    def __init__(self) -> None:
        self.started: list[int] = []

    def start(self, conn: Connection, people: pl.DataFrame) -> None:
        self.started.append(people.height)

    def __call__(self, conn: Connection, people: pl.DataFrame) -> None:
        assert people.height == self.started[0]  # the same people, now written
        raise RuntimeError("the keys cannot be written")


def test_a_load_and_its_keys_commit_together_or_not_at_all(db: GovDB) -> None:
    register = make_people(40, seed=31, today=TODAY)
    db.load_people(register.head(20), source="population_register")
    before = _counts(db)
    assert before["person"] == before["features"] == 20 and before["keys"] >= 20 * 5
    keys = FailingKeys()
    with pytest.raises(RuntimeError, match="keys cannot"):
        bulk_load_people(db.master, register.tail(20), source="population_register", keys=keys)
    assert keys.started == [20]
    assert _counts(db) == before  # people, lineage, feed and load record rolled back with the keys

    db.load_people(register.tail(20), source="population_register")
    after = _counts(db)
    assert after["person"] == after["features"] == 40 and after["feed"] == before["feed"] + 20


def _keys_and_features(db: GovDB) -> tuple[list[tuple[str, str]], dict[str, str]]:
    with db.master.connect() as conn:
        keys = sorted((k, p) for k, p in conn.execute(text("SELECT key, person_id FROM linkkey")))
        features = read_features(conn).sort("rid")
    return keys, {r["rid"]: json.dumps(r, default=str, sort_keys=True) for r in features.to_dicts()}


def test_the_keys_a_load_writes_are_those_a_full_re_key_writes(db: GovDB) -> None:
    """The load keys its people from the frame it inserted, not from master: the keys and features
    must be what keying them from master gives, whatever the frame's types and missing columns."""
    register = make_people(60, seed=33, today=TODAY)
    db.load_people(register.head(20), source="population_register")  # dates as dates
    as_text = register.slice(20, 20).with_columns(pl.col("birth_date").cast(pl.String))
    db.load_people(as_text.drop("phone"), source="population_register")  # ISO text, no phones
    some = register.tail(20).with_columns(
        pl.when(pl.int_range(pl.len()) % 3 == 0).then(None).otherwise(pl.col("address")).alias("address")
    )
    db.load_people(some.drop("gender"), source="population_register")
    loaded = _keys_and_features(db)
    assert len(loaded[1]) == 60 and len(loaded[0]) > 60 * 5
    assert refresh_link_keys(db.master, db.rules.matching["person"]) == len(loaded[0])  # everyone again
    assert _keys_and_features(db) == loaded


def test_people_left_without_keys_are_keyed_by_the_next_load(db: GovDB) -> None:
    """An older version keyed a load's people in a second transaction; people a crash left between
    the two are keyed by the next load, as before."""
    register = make_people(30, seed=34, today=TODAY)
    db.load_people(register.head(25), source="population_register")
    keyed = _keys_and_features(db)
    with db.master.begin() as conn:
        left = conn.execute(text("SELECT person_id FROM person ORDER BY person_id LIMIT 3")).scalars().all()
        for table in ("linkkey", "linkfeatures"):
            conn.execute(
                text(f"DELETE FROM {table} WHERE person_id IN ('{left[0]}', '{left[1]}', '{left[2]}')")
            )
    db.load_people(register.tail(5), source="population_register")
    keys, features = _keys_and_features(db)
    assert set(keyed[0]) <= set(keys) and set(left) <= set(features) and len(features) == 30
    assert {k: v for k, v in features.items() if k in keyed[1]} == keyed[1]


def test_a_load_of_known_people_only_inserts_nobody(db: GovDB) -> None:
    register = make_people(15, seed=32, today=TODAY)
    db.load_people(register, source="population_register")
    before = _counts(db)
    db.load_people(register, source="population_register")
    after = _counts(db)
    assert {k: after[k] - before[k] for k in after} == {k: int(k == "loads") for k in after}
    with db.master.connect() as conn:
        ids = conn.execute(text("SELECT person_id FROM person")).scalars().all()
    assert all(re.fullmatch(r"P[0-9A-F]{12}4[0-9A-F]{2}", i) for i in ids)


def test_keys_prepared_in_slices_are_those_prepared_at_once(
    db: GovDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A load prepares its people's keys a slice at a time (its memory); keys and features must
    be those of all the people at once, in the primary keys' order, whatever order they came in."""
    from govdb.link import loadkeys
    from govdb.link.keys import prepare_keys

    register = make_people(50, seed=35, today=TODAY)
    people = register.with_columns(new_person_ids(register.height)).reverse()  # not in id order
    rules, hint = db.rules.matching["person"], db.served_county()
    keys, features = prepare_keys(rules, loadkeys.master_people(people), hint)
    monkeypatch.setattr(loadkeys, "PREPARE_SLICE", 7)
    sliced = loadkeys.prepare_in_slices(rules, people, hint)
    assert keys.height > 50 * 5 and features.height == 50
    assert sliced[0].equals(keys) and sliced[1].equals(features)
    empty = loadkeys.prepare_in_slices(rules, people.clear(), hint)
    assert empty[0].is_empty() and empty[1].is_empty()


def test_a_load_into_an_empty_master_builds_every_person_index_after_its_rows(db: GovDB) -> None:
    """The first load builds person's indexes after its rows, the unique ID number's too: they are
    all there afterwards, and the ID number's still refuses a second person with the same one."""
    from sqlalchemy import inspect
    from sqlalchemy.exc import IntegrityError

    def indexes() -> set[tuple[str, bool]]:
        with db.master.connect() as conn:
            return {(ix["name"] or "", bool(ix["unique"])) for ix in inspect(conn).get_indexes("person")}

    before = indexes()
    assert ("ix_person_id_number", True) in before
    register = make_people(30, seed=36, today=TODAY)
    db.load_people(register, source="population_register")
    assert indexes() == before
    with pytest.raises(IntegrityError), db.master.begin() as conn:
        row = conn.execute(select(Person.__table__)).mappings().first()  # type: ignore[attr-defined]
        assert row is not None
        conn.execute(Person.__table__.insert(), [{**row, "person_id": "P-again"}])  # type: ignore[attr-defined]
    with db.master.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Person.__table__)).scalar_one() == 30  # type: ignore[attr-defined]


def test_the_feed_of_a_load_holds_its_constant_columns_as_any_change(db: GovDB) -> None:
    """The feed's columns with one value for every change go in as constants: each loaded person
    still has one numbered change with the load's kind, op and cause, and a writer whose changes
    differ in a column stores each its own value."""
    import datetime as dt

    from govdb.store.feed import change_rows, record_changes

    register = make_people(12, seed=37, today=TODAY)
    load_id = db.load_people(register, source="population_register")
    query = "SELECT seq, entity_kind, entity_id, field, op, valid_from, cause, cause_id FROM masterchange"
    with db.master.connect() as conn:
        rows = conn.execute(text(query + " ORDER BY seq")).all()
        ids = set(conn.execute(text("SELECT person_id FROM person")).scalars())
    assert [r[0] for r in rows] == list(range(rows[0][0], rows[0][0] + 12))
    assert {r[2] for r in rows} == ids
    assert {(r[1], r[3], r[4], r[5], r[6], r[7]) for r in rows} == {
        ("person", None, "insert", None, "bulk_load", load_id)
    }
    mixed = change_rows(
        [
            {"entity_kind": "person", "entity_id": "P1", "field": "phone", "op": "update", "cause": "c"},
            {"entity_kind": "person", "entity_id": "P1", "field": "name", "op": "update", "cause": "c"},
        ]
    )
    with db.master.begin() as conn:
        record_changes(conn, mixed, dt.datetime(2026, 12, 1, tzinfo=dt.UTC))
    with db.master.connect() as conn:
        last = conn.execute(text(query + " WHERE entity_id = 'P1' ORDER BY seq")).all()
    assert [(r[1], r[3], r[4], r[6], r[7]) for r in last] == [
        ("person", "phone", "update", "c", None),
        ("person", "name", "update", "c", None),
    ]
