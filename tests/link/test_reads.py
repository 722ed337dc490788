"""Reading master people and their features a slice at a time, on both backends: the same frames
whatever the slice, for everyone and for a list of ids with repeats and unknown ones."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

import govdb.link.reads as reads
from govdb import GovDB
from govdb.demo import make_people
from govdb.link.reads import FeatureCache, read_features, read_people

TODAY = dt.date(2026, 11, 29)


def test_slices_read_what_one_pass_reads(db: GovDB, monkeypatch: pytest.MonkeyPatch) -> None:
    register = make_people(45, seed=9, today=TODAY)
    blanks = register.head(4).with_columns(
        pl.lit(None, pl.Date).alias("birth_date"), pl.lit(None).alias("phone")
    )
    db.load_people(pl.concat([register.slice(4), blanks]), source="population_register")
    with db.master.connect() as conn:
        everyone = read_features(conn).sort("rid")
        people = read_people(conn).sort("person_id")
        ids = people.get_column("person_id").to_list()
        asked = [*ids[::3], "P-nobody", ids[0], *ids[1::3]]
        by_ids = read_features(conn, asked).sort("rid")
        people_by_ids = read_people(conn, asked).sort("person_id")
        monkeypatch.setattr(reads, "SLICE", 7)  # many slices, the last one short
        assert read_features(conn).sort("rid").equals(everyone)
        assert read_features(conn, asked).sort("rid").equals(by_ids)
        assert read_people(conn, asked).sort("person_id").equals(people_by_ids)
        cache = FeatureCache()
        assert cache.load_everyone(conn)
        assert cache.all().sort("rid").equals(everyone)
        assert read_features(conn, []).schema == everyone.schema
        assert read_people(conn, []).schema == people.schema
    assert everyone.height == people.height == 45
    assert by_ids.get_column("rid").to_list() == sorted(set(ids[::3]) | set(ids[1::3]))
    assert people_by_ids.equals(people.filter(pl.col("person_id").is_in(asked)))
    assert people.schema["birth_date"] == pl.Date and everyone.schema["birth_date"] == pl.Date
    assert people.get_column("birth_date").null_count() == 4


def test_odd_ids_stored_bytes_and_driver_errors(db: GovDB) -> None:
    """An id with a NUL or of another type finds nobody (and breaks nothing); features a writer
    stored as a BLOB on SQLite read as text; a driver error arrives as SQLAlchemy's."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from govdb.store.bulk import driver_fetch

    db.load_people(make_people(12, seed=2, today=TODAY), source="population_register")
    with db.master.connect() as conn:
        everyone = read_features(conn).sort("rid")
        first = everyone.get_column("rid")[0]
        odd = [first + "\x00x", 123, "", "'; DROP TABLE person; --"]
        assert read_people(conn, odd).height == 0 and read_features(conn, odd).height == 0
        assert read_people(conn, [first, *odd]).get_column("person_id").to_list() == [first]
    if db.master.dialect.name == "sqlite":
        with db.master.begin() as conn:
            conn.execute(text("UPDATE linkfeatures SET features = CAST(features AS BLOB)"))
    with db.master.connect() as conn:
        assert read_features(conn).sort("rid").equals(everyone)
        assert read_features(conn, [first]).equals(everyone.head(1))
        with pytest.raises(DBAPIError, match="no_such_table"):
            driver_fetch(conn, "SELECT 1 FROM no_such_table", ())
    with db.master.connect() as conn:  # the pool's next connection works
        assert read_people(conn, [first]).height == 1


def test_cache_holds_master_rows_as_read_and_refreshes_changed_people(db: GovDB) -> None:
    """`FeatureCache.people` gives what `read_people` reads at that moment, before and after master
    changes (a phone changed, a person removed) that the change feed reports."""
    from sqlalchemy import text

    from govdb.base.clock import utcnow
    from govdb.store.feed import record_changes

    db.load_people(make_people(30, seed=5, today=TODAY), source="population_register")
    with db.master.connect() as conn:
        ids = read_people(conn).sort("person_id").get_column("person_id").to_list()
        asked = [ids[3], ids[0], "P-nobody", ids[3], ids[7]]
        cache = FeatureCache()
        assert cache.load_everyone(conn)
        assert cache.people(conn, asked).sort("person_id").equals(read_people(conn, asked).sort("person_id"))
    changed, removed = ids[0], ids[7]
    with db.master.begin() as conn:
        conn.execute(text("UPDATE person SET phone = '13900000000' WHERE person_id = :p"), {"p": changed})
        for table in ("linkkey", "linkfeatures", "credential", "issuance"):
            conn.execute(text(f"DELETE FROM {table} WHERE person_id = :p"), {"p": removed})
        conn.execute(text("DELETE FROM person WHERE person_id = :p"), {"p": removed})
        change = {
            "entity_kind": "person",
            "field": "phone",
            "op": "update",
            "valid_from": None,
            "cause_id": None,
        }
        rows = [
            {**change, "entity_id": changed, "cause": "test"},
            {**change, "entity_id": removed, "cause": "test"},
        ]
        record_changes(conn, pl.DataFrame(rows), utcnow())
    with db.master.connect() as conn:
        # No refresh called: the rows are read as they are now (a promote committed mid-chunk).
        fresh = cache.people(conn, asked).sort("person_id")
        assert fresh.equals(read_people(conn, asked).sort("person_id"))
        assert fresh.filter(pl.col("person_id") == changed).get_column("phone").to_list() == ["13900000000"]
        assert removed not in fresh.get_column("person_id").to_list()
        assert cache.all().filter(pl.col("rid") == removed).height == 0
        assert cache.people(conn, ids).height == len(ids) - 1
