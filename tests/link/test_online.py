"""Online linkage against the master store, on both backends: the same decisions as batch, keys
kept current by bulk loads and promotion, and review-band links routed to the village."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import select as sa_select
from sqlmodel import Session, select

from govdb import Actor, GovDB
from govdb.demo import make_people
from govdb.errors import RulesChangedError
from govdb.link import link_frames, read_people
from govdb.link.blocking import rule_name
from govdb.link.keys import ensure_link_keys, key_rules_fingerprint, key_unrecorded_store, link_keys_current
from govdb.link.reads import feature_rows, person_rows, read_features
from govdb.link.stored import default_model
from govdb.rulebook import Rulebook
from govdb.rulebook.models import Bands, MatchingRules
from govdb.store.events import Proposal
from govdb.store.master import LinkKey, LinkKeyRules, Person, served_county

from ..conftest import REPO, TODAY
from .pairwise import best_link_pairwise

sys.path.insert(0, str(REPO / "benchmarks"))
import linkgen

WINDOW = Actor("clerk.wang", "department:transport:440605")  # sees full values (identity_lookup)


def test_link_one_gives_the_same_decision_as_batch(db: GovDB) -> None:
    master, events, _ = linkgen.generate(1500, 300, "hard", seed=5)
    db.load_people(master.drop("person_id"), source="population_register")
    with db.master.connect() as conn:
        people = read_people(conn)
    model = db.linkage_model()
    batch = link_frames(
        events, people, db.rules.matching["person"], model=model, today=TODAY, address_hint=db.served_county()
    ).links
    assert set(batch.get_column("decision")) >= {"match", "new"}
    for row in events.head(120).iter_rows(named=True):
        online = db.link_one(row, actor=WINDOW, purpose="identity_lookup", today=TODAY)
        expected = batch.row(by_predicate=pl.col("event_id") == row["event_id"], named=True)
        assert (online.person_id, online.decision) == (expected["person_id"], expected["decision"]), row
        if online.decision != "new":  # nobody found says nothing more (not even how near)
            assert abs(online.match_probability - expected["match_probability"]) < 1e-9


def test_keys_follow_bulk_loads_and_promotions(db: GovDB) -> None:
    register = make_people(30, seed=12, today=TODAY)
    db.load_people(register, source="population_register")
    with Session(db.master) as ms:
        keys = ms.exec(select(LinkKey)).all()
        people = ms.exec(select(Person)).all()
    by_id_number = {
        k.key.removeprefix("id_number="): k.person_id for k in keys if k.key.startswith("id_number=")
    }
    assert by_id_number == {p.id_number: p.person_id for p in people}
    newcomer = make_people(31, seed=13, today=TODAY).row(30, named=True)
    window = pl.DataFrame(
        {
            "编号": ["N1"],
            "姓名": [newcomer["name"]],
            "身份证号": [newcomer["id_number"]],
            "村居代码": [newcomer["division_code"]],
            "出生日期": [newcomer["birth_date"].isoformat()],
        }
    )
    db.ingest_frame(window, source="hall", key_column="编号", service_code="hall.resident_registration")
    db.process(today=TODAY)
    while tasks := db.tasks():
        for task in tasks:
            db.decide(task.task_id, Actor("clerk", task.unit_id), "approve")
    assert db.promote().people_created == 1
    # Found online by name and birth date alone, through keys written at promotion.
    found = db.link_one(
        {"name": newcomer["name"], "birth_date": str(newcomer["birth_date"])},
        actor=WINDOW,
        purpose="identity_lookup",
        today=TODAY,
    )
    assert found.decision in ("match", "review") and found.master is not None
    assert found.master["id_number"] == newcomer["id_number"]


def test_a_review_band_link_becomes_an_identity_check_for_the_village(db: GovDB) -> None:
    register = make_people(40, seed=21, today=TODAY)
    db.load_people(register, source="population_register")
    person = register.row(3, named=True)
    # Demand near certainty for a match, so a record without an ID lands in review.
    matching = db.rules.matching["person"].model_copy(update={"bands": Bands(match=1 - 1e-12, review=0.5)})
    db.rules = dataclasses.replace(db.rules, matching={"person": matching})
    window = pl.DataFrame(
        {
            "编号": ["C1"],
            "姓名": [person["name"]],
            "出生日期": [person["birth_date"].isoformat()],
            "村居代码": [person["division_code"]],
            "手机号": ["13999999999"],
        }
    )
    db.ingest_frame(window, source="hall", key_column="编号", service_code="hall.contact_update")
    first = db.process(today=TODAY).proposals
    assert (first.identity_reviews, first.proposals) == (1, 0)
    [task] = db.tasks()
    assert task.unit_id == f"village:{person['division_code']}"
    with Session(db.events) as es:
        review = es.exec(select(Proposal).where(Proposal.change == "confirm_identity")).one()
    with Session(db.master) as ms:
        candidate = ms.get(Person, review.entity_id)
    assert candidate is not None and candidate.id_number == person["id_number"]
    db.decide(task.task_id, Actor("li", task.unit_id), "approve")
    assert db.promote().promoted == 0  # an identity check changes no master data
    second = db.process(today=TODAY).proposals
    assert (second.linked, second.proposals) == (1, 1)
    with Session(db.events) as es:
        update = es.exec(select(Proposal).where(Proposal.change == "update_person")).one()
        review = es.exec(select(Proposal).where(Proposal.change == "confirm_identity")).one()
    assert update.entity_id == candidate.person_id and update.payload.get("phone") == "13999999999"
    assert review.state == "resolved"


def test_changed_blocking_rules_are_refused_until_applied_and_then_key_master_again(db: GovDB) -> None:
    """Keys written under other blocking rules would hide whoever only the new rule finds, and two
    deployments with different rules would re-key a county back and forth: look-ups, loads and
    `process` refuse them with a clear error; `rules apply` keys everyone again, once. A store
    keyed before the rules were recorded is keyed again when opened."""
    full = db.rules
    person = full.matching["person"]
    blocking = person.blocking.model_copy(
        update={"rules": [r for r in person.blocking.rules if rule_name(r) != "phone"]}
    )
    without_phone = person.model_copy(update={"blocking": blocking})
    governor = Actor("zhou", "department:data_bureau:440605")

    def use(rules: Rulebook) -> None:  # as if the stores were opened again with these rules
        db.rules, db.audit = rules, dataclasses.replace(db.audit, rules=rules)

    def current(rules: MatchingRules) -> bool:
        """link_keys_current (one statement), held equal to its two reads apart."""
        with db.master.connect() as conn:
            together = link_keys_current(conn, rules)
            recorded = conn.execute(sa_select(LinkKeyRules.fingerprint)).scalar()  # type: ignore[call-overload]
            apart = recorded == key_rules_fingerprint(rules, served_county(conn))[0]
        assert together == apart
        return together

    register = make_people(40, seed=21, today=TODAY)
    db.load_people(register.head(30), source="population_register")  # keyed by the shipped rules
    assert current(person) and not current(without_phone)
    use(dataclasses.replace(full, matching={**full.matching, "person": without_phone}))
    with pytest.raises(RulesChangedError, match=r"drop \['phone'\].*govdb rules apply"):
        db.load_people(register.tail(10), source="population_register")  # refused before writing
    assert db.counts()["person"] == 30
    assert db.apply_rules(governor).link_keys_written > 0
    assert current(without_phone) and not current(person)
    db.load_people(register.tail(10), source="population_register")
    someone = register.row(7, named=True)
    probe = {"name": someone["name"], "phone": someone["phone"]}  # only the phone rule blocks on this

    def phone_keys() -> int:
        with Session(db.master) as ms:
            return len([k for k in ms.exec(select(LinkKey.key)).all() if k.startswith("phone=")])

    assert phone_keys() == 0
    assert db.link_one(probe, actor=WINDOW, purpose="identity_lookup", today=TODAY).person_id is None

    use(full)  # the phone rule is back in rules/matching/person.yaml
    with pytest.raises(RulesChangedError, match=r"add \['phone'\]"):
        db.link_one(probe, actor=WINDOW, purpose="identity_lookup", today=TODAY)
    with pytest.raises(RulesChangedError):
        db.process(today=TODAY)
    assert phone_keys() == 0
    assert db.apply_rules(governor).link_keys_written > 0
    found = db.link_one(probe, actor=WINDOW, purpose="identity_lookup", today=TODAY)
    assert found.master is not None and found.master["id_number"] == someone["id_number"]
    assert phone_keys() == register.height
    with Session(db.master) as ms:
        recorded = ms.exec(select(LinkKeyRules)).one()
    assert "phone" in recorded.rules and recorded.address_hint == "440605"
    assert ensure_link_keys(db.master, person, rekey=True) == 0  # current: nothing written again

    with Session(db.master) as ms:  # a store keyed before this record existed
        ms.delete(ms.exec(select(LinkKeyRules)).one())
        ms.commit()
    assert not current(person)
    assert key_unrecorded_store(db.master, person) > 0  # what opening it does
    assert key_unrecorded_store(db.master, person) == 0
    assert phone_keys() == register.height
    again = db.link_one(probe, actor=WINDOW, purpose="identity_lookup", today=TODAY)
    assert (again.person_id, again.decision) == (found.person_id, found.decision)

    assert current(person)
    db.serve_district("440604")  # two counties served: addresses are read without a county hint
    with Session(db.master) as ms:
        assert ms.exec(select(LinkKeyRules)).one().address_hint is None  # keyed again, not refused
    assert current(person) and not current(without_phone)
    db.link_one(probe, actor=WINDOW, purpose="identity_lookup", today=TODAY)


def test_a_look_up_reads_features_and_people_as_the_frames_hold_them(db: GovDB) -> None:
    """link_one decodes its few candidates in plain Python: the same values and types as the
    polars decode that batch linking uses, for people with and without every field."""
    register = make_people(60, seed=4, today=TODAY)
    blanks = register.head(5).with_columns(
        pl.lit(None, pl.Date).alias("birth_date"), pl.lit(None).alias("phone")
    )
    db.load_people(pl.concat([register.slice(5), blanks]), source="population_register")
    with db.master.connect() as conn:
        ids = sorted(read_people(conn).get_column("person_id"))
        assert (
            sorted(feature_rows(conn, ids), key=lambda r: r["rid"])
            == read_features(conn, ids).sort("rid").to_dicts()
        )
        by_id = {r["person_id"]: r for r in person_rows(conn, ids)}
        assert [by_id[i] for i in ids] == read_people(conn, ids).sort("person_id").to_dicts()
    # Stored features with a field missing and one more (a store written before or after this
    # code's fields): the frame's fields, the missing one None, as the polars decode gives them.
    from sqlalchemy import text

    with db.master.begin() as conn:
        odd = conn.execute(text("SELECT features FROM linkfeatures WHERE person_id = :p"), {"p": ids[0]})
        stored = odd.scalar_one()
        stored = json.loads(stored) if isinstance(stored, str) else stored
        stored = {k: v for k, v in stored.items() if k != "township_code"} | {"extra": 1}
        conn.execute(
            text("UPDATE linkfeatures SET features = :f WHERE person_id = :p"),
            {"f": json.dumps(stored, ensure_ascii=False), "p": ids[0]},
        )
    with db.master.connect() as conn:
        rows = sorted(feature_rows(conn, ids[:3]), key=lambda r: r["rid"])
        assert rows == read_features(conn, ids[:3]).sort("rid").to_dicts()
        assert rows[0]["township_code"] is None and "extra" not in rows[0]


def test_the_default_model_from_features_held_equals_the_one_from_the_store(
    db: GovDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process run that holds everyone's features builds the untrained model from them instead
    of reading them again: the same model; features of some other population are not used."""
    import govdb.link.stored as stored

    db.load_people(make_people(80, seed=6, today=TODAY), source="population_register")
    rules = db.rules.matching["person"]
    with db.master.connect() as conn:
        everyone = read_features(conn)
    read = default_model(db.master, rules).to_dict()
    reads: list[object] = []
    monkeypatch.setattr(stored, "read_features", lambda conn, ids=None: reads.append(ids) or everyone)
    assert default_model(db.master, rules, features=everyone).to_dict() == read
    assert reads == []  # not read again
    assert default_model(db.master, rules, features=everyone.head(10)).to_dict() == read
    assert reads == [None]  # a frame of other people: everyone read from the store


def test_the_default_model_does_not_depend_on_the_order_the_store_returns_features_in(
    db: GovDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    """u is sampled by row position. PostgreSQL returns a table's rows from wherever its last scan
    stopped, so two processes reading one store got two models; any order gives the same one."""
    import govdb.link.stored as stored

    db.load_people(make_people(300, seed=8, today=TODAY), source="population_register")
    rules = db.rules.matching["person"]
    with db.master.connect() as conn:
        everyone = read_features(conn)
    models = []
    for order in (everyone, everyone.reverse(), everyone.sample(fraction=1.0, shuffle=True, seed=3)):
        monkeypatch.setattr(stored, "read_features", lambda conn, ids=None, rows=order: rows)
        models.append(default_model(db.master, rules).to_dict())
        models.append(default_model(db.master, rules, features=order).to_dict())
    assert all(model == models[0] for model in models[1:])
    # A frame with a person twice is not one row per person in master: the store's are used.
    twice = pl.concat([everyone.head(everyone.height - 1), everyone.head(1)])
    reads: list[object] = []
    monkeypatch.setattr(stored, "read_features", lambda conn, ids=None: reads.append(ids) or everyone)
    assert default_model(db.master, rules, features=twice).to_dict() == models[0] and reads == [None]


def test_an_explanation_changed_by_replace_is_not_shadowed_by_the_linkers_text() -> None:
    """The linker's JSON text rides along only until the explanation is replaced (a split adds
    `excluded`, a look-up redacts): then the stored text is the new explanation's."""
    import dataclasses

    from govdb.link.online import LinkResult

    found = LinkResult.from_linker("r1", "P1", "match", 0.99, 9.1, '{"candidate":"P1"}', None)
    changed = dataclasses.replace(found, explanation={"candidate": "P1", "excluded": ["P2"]})
    assert changed.explanation_json is None and changed.explanation["excluded"] == ["P2"]


def test_a_linkers_explanation_is_decoded_when_first_read() -> None:
    """`from_linker` keeps the linker's text and decodes it on first read: the same result, in
    every way a caller can see, as one made with the decoded explanation."""
    import copy
    import dataclasses
    import pickle

    from govdb.link.online import LinkResult

    text = '{"candidate":"P1","name":{"level":"exact","weight":3.5},"runner_up":null}'
    made = LinkResult("r1", "P1", "match", 0.99, 9.1, json.loads(text), {"person_id": "P1"})
    lazy = LinkResult.from_linker("r1", "P1", "match", 0.99, 9.1, text, {"person_id": "P1"})
    assert "explanation" not in vars(lazy)  # nothing decoded yet
    assert lazy.explanation_json == text and lazy.decision == "match"
    assert "explanation" not in vars(lazy)
    assert lazy == made and repr(lazy) == repr(made)
    assert vars(lazy)["explanation"] is lazy.explanation  # decoded once, then kept
    fresh = LinkResult.from_linker("r1", "P1", "match", 0.99, 9.1, text, {"person_id": "P1"})
    assert dataclasses.astuple(fresh)[:-1] == dataclasses.astuple(made)[:-1]  # all but the text
    for twin in (copy.deepcopy(fresh), pickle.loads(pickle.dumps(fresh))):
        assert twin == made and twin.explanation_json == text
    with pytest.raises(AttributeError, match="no attribute 'missing'"):
        _ = lazy.missing  # type: ignore[attr-defined]
    with pytest.raises(dataclasses.FrozenInstanceError):
        lazy.explanation = {}  # type: ignore[misc]
    for bad in (None, b"{}", "[]", ""):
        with pytest.raises(TypeError, match="JSON object"):
            LinkResult.from_linker("r1", None, "new", 0.0, None, bad, None)  # type: ignore[arg-type]


def test_a_look_up_with_an_id_number_reads_only_candidates_it_could_choose(
    db: GovDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under `different_valid_ids` a record with an ID number can only link to the person with
    that number or to someone master holds no number for: `link_one` reads only those, and
    decides exactly as when it read every candidate (records with, without and with wrong IDs)."""
    import json

    from sqlalchemy import update

    import govdb.link.online as online
    from govdb.store.master import LinkFeatures

    master, events, _ = linkgen.generate(1500, 300, "hard", seed=5)
    db.load_people(master.drop("person_id"), source="population_register")
    table = LinkFeatures.__table__  # type: ignore[attr-defined]
    with db.master.connect() as conn:
        ids = sorted(read_people(conn).get_column("person_id"))
        rows = {r["rid"]: r for r in feature_rows(conn, ids)}
    # Master without an ID number for a few people (features as a record without one gives).
    nameless = ids[:40:4]
    with db.master.begin() as conn:
        for pid in nameless:
            stored = {k: v.isoformat() if k == "birth_date" and v else v for k, v in rows[pid].items()}
            conn.execute(
                update(table).where(table.c.person_id == pid).values(features=stored | {"id_number": None})
            )
    wanted = rows[ids[50]]["id_number"]
    with db.master.connect() as conn:
        some = feature_rows(conn, ids[:60], id_number=wanted)
    assert sorted(r["rid"] for r in some) == sorted([*nameless, ids[50]])

    sample = [r for r in events.head(150).iter_rows(named=True)]
    sample += [{**r, "id_number": None} for r in sample[:40]]  # records without an ID number
    sample += [{**r, "id_number": rows[ids[7]]["id_number"]} for r in sample[:20]]  # someone else's
    filtered = [db.link_one(r, actor=WINDOW, purpose="identity_lookup", today=TODAY) for r in sample]
    asked: list[object] = []
    everyone = online.feature_rows

    def unfiltered(conn: object, person_ids: list[str], *, id_number: str | None = None) -> list[object]:
        asked.append(id_number)
        return everyone(conn, person_ids)  # type: ignore[arg-type]

    monkeypatch.setattr(online, "feature_rows", unfiltered)
    read_all = [db.link_one(r, actor=WINDOW, purpose="identity_lookup", today=TODAY) for r in sample]
    assert any(a is not None for a in asked) and None in asked
    assert [dataclasses.astuple(a) for a in filtered] == [dataclasses.astuple(b) for b in read_all]
    assert {a.decision for a in filtered} >= {"match", "new"}
    assert json.dumps([a.explanation for a in filtered], sort_keys=True) == json.dumps(
        [b.explanation for b in read_all], sort_keys=True
    )


def test_which_candidates_could_be_chosen_comes_from_an_index_not_their_rows(db: GovDB) -> None:
    """A record with an ID number learns which candidates hold that number or none from master_0012's
    index on (the number, person_id): no candidate's row is read to find out (the rows
    of a large block are hundreds of reads at random places)."""
    from sqlalchemy import text

    from govdb.store.master import FEATURE_ID_NUMBER

    master, _, _ = linkgen.generate(300, 10, "hard", seed=9)
    db.load_people(master.drop("person_id"), source="population_register")
    dialect = db.master.dialect.name
    found = FEATURE_ID_NUMBER[dialect]
    with db.master.connect() as conn:
        if dialect == "sqlite":
            definition = conn.execute(
                text("SELECT sql FROM sqlite_master WHERE name = 'ix_linkfeatures_id_number'")
            ).scalar_one()
            select_from = "SELECT person_id FROM linkfeatures INDEXED BY ix_linkfeatures_id_number"
            # Each probe is a search of the index: a row is read only for someone found there.
            probes = {
                f"{found} = ?": ("x",),
                f"person_id IN (?, ?) AND {found} IS NULL": ("a", "b"),
            }
            for where, params in probes.items():
                plan = " ".join(
                    r[-1]
                    for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {select_from} WHERE {where}", params)
                )
                searched = "(<expr>=? AND person_id=?)" if "IS NULL" in where else "(<expr>=?)"
                assert f"SEARCH linkfeatures USING INDEX ix_linkfeatures_id_number {searched}" in plan, plan
        else:
            definition = conn.execute(
                text(
                    "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_linkfeatures_id_number' "
                    "AND schemaname = current_schema()"
                )
            ).scalar_one()
    assert "id_number" in definition and "person_id" in definition

    # Rows govdb never writes are still indexed, and never let a wrong number through: a number of
    # thousands of characters sharing the probe's first 64 (PostgreSQL indexes that prefix), and on
    # SQLite malformed JSON (no number to index).
    with db.master.connect() as conn:
        ids = sorted(read_people(conn).get_column("person_id"))
        rows = {r["rid"]: r for r in feature_rows(conn, ids)}
    probe = rows[ids[3]]["id_number"]
    stored = {k: v.isoformat() if k == "birth_date" and v else v for k, v in rows[ids[4]].items()}
    hostile = [("LONG1", json.dumps(stored | {"rid": "LONG1", "id_number": probe + "9" * 5000}))]
    if dialect == "sqlite":
        hostile.append(("BROKEN1", "{not json"))
    else:  # text a json value holds but `->>` cannot decode: no number, never a failed write
        hostile += [
            ("NUL1", '{"name": "a\\u0000b", "id_number": null}'),
            ("SURROGATE1", '{"id_number": "\\ud800x"}'),
        ]
    with db.master.begin() as conn:
        for person_id, features in hostile:
            conn.execute(
                text("INSERT INTO linkfeatures (person_id, features) VALUES (:p, :f)"),
                {"p": person_id, "f": features},
            )
    with db.master.connect() as conn:
        chosen = feature_rows(conn, [*ids[:10], "LONG1"], id_number=probe)
        assert [r["rid"] for r in chosen] == [ids[3]]
        if dialect == "postgresql":  # read as text and decoded in Python: one holds no number
            odd = feature_rows(conn, ["NUL1", "SURROGATE1"], id_number=probe)
            assert [r["name"] for r in odd] == ["a\x00b"]
        assert feature_rows(conn, [], id_number=probe) == []


def test_candidate_keys_read_through_the_driver_as_through_sqlalchemy(db: GovDB) -> None:
    """The look-up's candidate keys, read through the driver's cursor, are the rows SQLAlchemy's
    statement gives: keys of a block over max_block skipped, unknown and odd keys finding nobody."""
    from sqlalchemy import text

    import govdb.link.online as online

    db.load_people(make_people(80, seed=6, today=TODAY), source="population_register")
    with db.master.connect() as conn:
        stored = [k for (k,) in conn.execute(text("SELECT DISTINCT key FROM linkkey ORDER BY key"))]
        sizes = dict(conn.execute(text("SELECT key, count(*) FROM linkkey GROUP BY key")).all())
        big = max(sizes, key=lambda k: sizes[k])
        keys = [*stored[::7], big, "phone=nobody", "name=O'Brien \u5f20", ""]
        for max_block in (1, sizes[big] - 1, sizes[big], 1000):
            via_driver = online.candidate_keys(conn, keys, max_block)
            statement, params = online._candidates_statement(conn, keys, max_block, "l.key, l.person_id")
            via_sqlalchemy = [tuple(row) for row in conn.execute(statement, params)]
            assert sorted(via_driver) == sorted(via_sqlalchemy)
            assert all(sizes[k] <= max_block for k, _ in via_driver)
            assert any(k == big for k, _ in via_driver) == (sizes[big] <= max_block)
        assert {k for k, _ in online.candidate_keys(conn, keys, 1000)} == {*stored[::7], big}


def test_a_look_up_scores_large_blocks_as_pair_by_pair(db: GovDB, monkeypatch: pytest.MonkeyPatch) -> None:
    """link_one through `best_link` (a block a column at a time) returns what it returned through
    `best_link_pairwise`: person, decision, probability, weight, explanation and master row, for
    records in a village block of 300 people sharing a given name (with and without their ID
    number, the surname or birth date mistyped, someone else's ID number) and records elsewhere."""
    import govdb.link.online as online
    import govdb.link.record as one

    register = make_people(700, seed=17, today=TODAY)
    village = register.row(0, named=True)
    crowd = register.head(300).with_columns(
        (pl.col("name").str.slice(0, 1) + "伟").alias("name"),
        pl.lit(village["division_code"]).alias("division_code"),
        (pl.lit(village["address"]) + pl.int_range(300).cast(pl.String) + "室").alias("address"),
    )
    db.load_people(pl.concat([crowd, register.slice(300)]), source="population_register")
    people = pl.concat([crowd, register.slice(300)]).to_dicts()
    records: list[dict[str, object]] = []
    for i, person in enumerate(people[:60] + people[300:340]):
        record = {k: person[k] for k in ("name", "gender", "phone", "address", "id_number")}
        record |= {"event_id": f"r{i}", "birth_date": person["birth_date"].isoformat()}
        variant = i % 5
        if variant == 1:
            record["id_number"] = None
        elif variant == 2:
            record |= {"id_number": None, "name": "许" + str(person["name"])[1:], "phone": None}
        elif variant == 3:
            record |= {"id_number": None, "birth_date": None, "phone": None}
        elif variant == 4:
            record["id_number"] = people[(i * 7 + 1) % len(people)]["id_number"]  # someone else's
        records.append(record)
    records.append({"event_id": "nobody", "name": "欧阳娜娜", "address": village["address"]})

    sizes: list[int] = []
    reading = online.feature_rows

    def counted(conn: object, person_ids: list[str], **options: object) -> list[dict[str, object]]:
        sizes.append(len(person_ids))
        return reading(conn, person_ids, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(online, "feature_rows", counted)
    fast = [db.link_one(r, actor=WINDOW, purpose="identity_lookup", today=TODAY) for r in records]
    monkeypatch.setattr(one, "best_link", best_link_pairwise)
    plain = [db.link_one(r, actor=WINDOW, purpose="identity_lookup", today=TODAY) for r in records]
    assert [dataclasses.astuple(a) for a in fast] == [dataclasses.astuple(b) for b in plain]
    assert json.dumps([a.explanation for a in fast], sort_keys=True, ensure_ascii=False) == json.dumps(
        [b.explanation for b in plain], sort_keys=True, ensure_ascii=False
    )
    assert sum(size >= 300 for size in sizes) >= 20  # the village's block was read and scored
    assert {a.decision for a in fast} >= {"match", "new"} and any(a.explanation for a in fast)


def test_a_master_of_one_person_refuses_to_link_with_a_clear_error(db: GovDB, tmp_path: Path) -> None:
    """u is estimated from pairs of master's people: one person gives none. `process` says so, in
    the singular, and leaves its events waiting for the register (nothing proposed)."""
    from govdb.demo import make_hall_events
    from govdb.errors import StateError

    register = make_people(5, seed=11, today=TODAY)
    db.load_people(register.head(1), source="population_register")
    hall = tmp_path / "hall.csv"
    make_hall_events(register, hall, seed=11, today=TODAY)
    db.ingest(hall, source="hall", service_code="hall.resident_registration", key_column="受理编号")
    with pytest.raises(StateError, match=r"holds 1 person: .*load the population register"):
        db.process(today=TODAY)
    db.load_people(register.tail(4), source="population_register")
    assert db.process(today=TODAY).proposals.events > 0
