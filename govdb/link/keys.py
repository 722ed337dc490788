"""Master's blocking keys and linkage features: worked out from people's rows, written, kept
current as people change, and checked against the rules before a look-up trusts them.

Every master person's blocking keys live in the indexed `linkkey` table (one row per rule and
person) and their features in `linkfeatures`. Loads write them in bulk (govdb.link.loadkeys),
promotions and corrections re-key the people they change in their own transaction, and master
records which blocking rules and county hint its keys follow (`linkkeyrules`), so a look-up
(govdb.link.online) never answers through keys of other rules.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from typing import Any

import polars as pl
from sqlalchemy import Connection, Engine, delete, insert, select

from govdb.base.clock import utcnow
from govdb.errors import RulesChangedError
from govdb.link.blocking import key_string, rule_name
from govdb.link.features import prepare
from govdb.link.reads import read_people, stored_keys
from govdb.rulebook.models import MatchingRules
from govdb.store.bulk import among, driver_fetch, indexes_deferred, insert_frame
from govdb.store.locks import writing, xact_lock
from govdb.store.master import Division, LinkFeatures, LinkKey, LinkKeyRules, Person, served_county
from govdb.store.updates import delete_many

CHUNK = 5000  # people per statement deleting features


def key_strings(prepared: pl.DataFrame, rules: MatchingRules) -> pl.DataFrame:
    """(rid, key) for every blocking rule whose key columns are all present on a record."""
    parts = [
        prepared.select("rid", key_string(keys).alias("key")).drop_nulls("key")
        for keys in rules.blocking.rules
    ]
    return pl.concat(parts) if parts else pl.DataFrame(schema={"rid": pl.String, "key": pl.String})


KEYS_VERSION = 1  # raise when `prepare` or the key strings change: every store is keyed again


def key_rules_fingerprint(rules: MatchingRules, address_hint: str | None) -> tuple[str, list[str]]:
    """What stored keys depend on: the blocking rules (a key string names its rule, so order and
    max_block do not matter), the county hint features were prepared with, and the code's version."""
    names = sorted({rule_name(keys) for keys in rules.blocking.rules})
    document = json.dumps({"rules": names, "address_hint": address_hint, "version": KEYS_VERSION})
    return hashlib.sha256(document.encode()).hexdigest(), names


def link_keys_current(conn: Connection, rules: MatchingRules) -> bool:
    """Whether master's link keys were written with these blocking rules and master's county.

    Both are read from master at every call, in one statement through the driver (what
    `served_county` and `_keyed_with` read): every look-up asks, and their two SQLAlchemy
    statements cost about 0.1 ms of a 2-3 ms look-up."""
    keyed = LinkKeyRules.__table__.name  # type: ignore[attr-defined]
    division = Division.__table__.name  # type: ignore[attr-defined]
    mark = "%s" if conn.dialect.name == "postgresql" else "?"
    statement = (
        f"SELECT (SELECT fingerprint FROM {keyed} WHERE entity_kind = {mark}), "
        f"(SELECT min(code) FROM {division} WHERE level = 3), "
        f"(SELECT count(*) FROM {division} WHERE level = 3)"
    )
    ((recorded, county, counties),) = driver_fetch(conn, statement, (rules.entity,))
    fingerprint, _ = key_rules_fingerprint(rules, county if counties == 1 else None)
    return recorded == fingerprint


def ensure_link_keys(master: Engine, rules: MatchingRules, *, rekey: bool = False) -> int:
    """Make sure master's keys were written with these blocking rules before a look-up uses them;
    returns the key rows written (0 when current).

    A store that never recorded its rules (upgraded, or new) is keyed now, once. A store keyed
    with other rules is keyed again only with `rekey` (`govdb rules apply`); otherwise the
    change is refused: two deployments with different rules would re-key a county back and forth,
    and a look-up through stale keys misses whoever only a new rule would find."""
    with master.connect() as conn:
        if link_keys_current(conn, rules):
            return 0
    return refresh_link_keys(master, rules, [], rekey=rekey)  # [] names nobody: only what is stale


def key_unrecorded_store(master: Engine, rules: MatchingRules) -> int:
    """Key everyone if master never recorded which blocking rules its keys follow (a store from
    before the record, or a new one); a store keyed with other rules is left for `rules apply`."""
    with master.connect() as conn:
        if _keyed_with(conn, rules.entity) is not None:
            return 0
    try:
        return refresh_link_keys(master, rules, [])
    except RulesChangedError:  # another process recorded other rules meanwhile: look-ups refuse
        return 0


def _keyed_with(conn: Connection, entity_kind: str) -> str | None:
    """The fingerprint of the rules master's keys follow; read alone (every look-up asks)."""
    table = LinkKeyRules.__table__  # type: ignore[attr-defined]
    return conn.execute(select(table.c.fingerprint).where(table.c.entity_kind == entity_kind)).scalar()


def _anyone(conn: Connection) -> bool:
    table = Person.__table__  # type: ignore[attr-defined]
    return conn.execute(select(table.c.person_id).limit(1)).first() is not None


def _recorded_rules(conn: Connection, entity_kind: str) -> dict[str, Any] | None:
    table = LinkKeyRules.__table__  # type: ignore[attr-defined]
    row = conn.execute(select(table).where(table.c.entity_kind == entity_kind)).mappings().first()
    return None if row is None else dict(row)


def _keyed_otherwise(recorded: dict[str, Any], rules: MatchingRules, hint: str | None) -> RulesChangedError:
    _, names = key_rules_fingerprint(rules, hint)
    differences = [
        f"add {added}" if (added := sorted(set(names) - set(recorded["rules"]))) else "",
        f"drop {dropped}" if (dropped := sorted(set(recorded["rules"]) - set(names))) else "",
        f"serve county {hint} (keyed for {recorded['address_hint']})"
        if recorded["address_hint"] != hint
        else "",
    ]
    changed = " and ".join(d for d in differences if d)
    return RulesChangedError(
        f"master's link keys were written with other blocking rules (the rules in use {changed}); "
        "look-ups through them would miss people. Key master with the rules in use: `govdb rules apply "
        "--actor NAME@UNIT` (about 15 s per 200,000 people), or use the rules it was keyed with"
    )


def _record_key_rules(conn: Connection, rules: MatchingRules, address_hint: str | None) -> None:
    table = LinkKeyRules.__table__  # type: ignore[attr-defined]
    fingerprint, names = key_rules_fingerprint(rules, address_hint)
    conn.execute(delete(table).where(table.c.entity_kind == rules.entity))
    conn.execute(
        insert(table),
        [
            {
                "entity_kind": rules.entity,
                "fingerprint": fingerprint,
                "rules": names,
                "address_hint": address_hint,
                "keyed_at": utcnow(),
            }
        ],
    )


def refresh_link_keys(
    master: Engine,
    rules: MatchingRules,
    person_ids: Iterable[str] | None = None,
    *,
    missing_only: bool = False,
    today: dt.date | None = None,
    rekey: bool = False,
) -> int:
    """(Re)write the blocking keys and features of these people (all when None, or only people
    without keys when `missing_only`); returns the key rows written.

    For named people only the difference is written: keys they no longer have are deleted, new
    ones inserted (a new phone changes one key of nine), so a promotion's refresh costs little.
    A store that has not recorded the rules its keys were written with is keyed whole, once; one
    keyed with other blocking rules or another county hint is keyed whole again with `rekey`, else
    refused (RulesChangedError): keys of two rule sets side by side would answer a look-up by half.
    The county hint comes from master (the divisions served), never from the caller."""
    table = LinkKey.__table__  # type: ignore[attr-defined]
    with writing(master) as conn:
        xact_lock(conn, "link_keys")  # loads, promotions and corrections re-key people at once
        address_hint = served_county(conn)
        recorded = _recorded_rules(conn, rules.entity)
        if recorded is None or recorded["fingerprint"] != key_rules_fingerprint(rules, address_hint)[0]:
            if recorded is not None and not rekey and _anyone(conn):  # nobody keyed: nothing to refuse
                raise _keyed_otherwise(recorded, rules, address_hint)
            person_ids, missing_only = None, False
            _record_key_rules(conn, rules, address_hint)
        old: pl.DataFrame | None = None
        everyone = person_ids is None and not missing_only
        if missing_only:  # the people without keys, read in one statement
            people = read_people(conn, without_keys=True)
        else:
            if everyone:
                conn.execute(delete(table))
                conn.execute(delete(LinkFeatures.__table__))  # type: ignore[attr-defined]
            else:
                person_ids = sorted(set(person_ids or ()))
                old = stored_keys(conn, person_ids)
            people = read_people(conn, person_ids)
        if people.height == 0:
            return 0
        keys, features = prepare_keys(rules, people, address_hint, today=today)
        return write_keys(conn, keys, features, old=old, replace=not everyone)


def rekey_people(conn: Connection, rules: MatchingRules, people: pl.DataFrame) -> int | None:
    """Rewrite these people's keys and features from their rows as given (`read_people`'s
    columns), in the caller's master transaction: a promotion re-keys the people it changes in the
    transaction that changes them, so no crash can leave them changed but keyed as they were.
    Returns the key rows written, or None, writing nothing, when master's keys follow other rules
    or another county (then `refresh_link_keys` re-keys everyone, or refuses, as it decides).
    The caller takes `xact_lock(conn, "link_keys")` before it reads or writes people."""
    if people.height == 0:
        return 0 if link_keys_current(conn, rules) else None
    prepared = rekey_prepared(conn, rules, people)
    if prepared is None:
        return None
    added, features, gone, _ = prepared
    return write_keys(conn, added, features, gone=gone, replace=True)


# Keys to add, features, keys to delete, and the people who held keys when they were read.
Rekeying = tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, set[str]]


def rekey_prepared(conn: Connection, rules: MatchingRules, people: pl.DataFrame) -> Rekeying | None:
    """`rekey_people`'s reads and work for one or more people, nothing written: the keys their
    rows give them that master lacks, their features, the stored keys their rows no longer give,
    and who of them held keys; or None when master's keys follow other rules or another county."""
    if not link_keys_current(conn, rules):  # the check a bulk load's keys make (LoadKeys)
        return None
    old = stored_keys(conn, people.get_column("person_id").to_list())
    keys, features = prepare_keys(rules, people, served_county(conn))
    added, gone = key_changes(keys, old)
    return added, features, gone, set(old.get_column("person_id").unique().to_list())


def key_changes(keys: pl.DataFrame, old: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The keys (key, person_id) of `keys` that `old` lacks, in their order, and those of `old`
    that `keys` lacks: what to add and delete to make the stored `old` into `keys`."""
    on = ["key", "person_id"]
    return keys.join(old, on=on, how="anti"), old.join(keys, on=on, how="anti")


def prepare_keys(
    rules: MatchingRules,
    people: pl.DataFrame,
    address_hint: str | None,
    *,
    today: dt.date | None = None,
    ordered: bool = True,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The blocking keys (key, person_id) and linkage features (person_id, JSON text) of master
    people (its columns, as `read_people` gives them), each in its primary key's order: computed,
    not written (a load computes them in a thread of its own while it writes its people). Keys
    in no order unless `ordered` (a caller that sorts slices' keys together sorts them once)."""
    prepared = prepare(people, id_column="person_id", today=today, address_hint=address_hint)
    # In primary-key order: the index grows by appending instead of splitting pages at random.
    keys = key_strings(prepared, rules).unique().select("key", pl.col("rid").alias("person_id"))
    if ordered:
        keys = keys.sort("key", "person_id")
    # One JSON object per person, encoded by polars for the whole column at once.
    features = prepared.sort("rid").select(
        pl.col("rid").alias("person_id"),
        pl.struct(pl.all().exclude("birth_date"), pl.col("birth_date").cast(pl.String))
        .struct.json_encode()
        .alias("features"),
    )
    return keys, features


def write_keys(
    conn: Connection,
    keys: pl.DataFrame,
    features: pl.DataFrame,
    *,
    old: pl.DataFrame | None = None,
    gone: pl.DataFrame | None = None,
    replace: bool = True,
) -> int:
    """Write what `prepare_keys` computed; `old` holds the people's stored keys (only the
    difference is written), or `gone` the stored keys to delete (`keys` then holds only those to
    add: `key_changes`); `replace` deletes their stored features first. Returns the key rows
    written."""
    table = LinkKey.__table__  # type: ignore[attr-defined]
    if old is not None:
        keys, gone = key_changes(keys, old)
    if gone is not None and gone.height:
        # In the primary key's order: each index page is found once, not once per key at random.
        delete_many(
            conn, table, ("key", "person_id"), gone.select("key", "person_id").sort("key", "person_id").rows()
        )
    with indexes_deferred(conn, table, keys.height):
        insert_frame(conn, table, keys)
    _store_features(conn, features, replace=replace)
    return keys.height


def _store_features(conn: Connection, features: pl.DataFrame, *, replace: bool = True) -> None:
    table = LinkFeatures.__table__  # type: ignore[attr-defined]
    # SQLite rewrites a person's row in place: a delete and an insert would move each person's
    # entry in the primary key's index too (a promotion re-keys a chunk's people at random
    # places). PostgreSQL's COPY cannot, so their rows go first.
    in_place = replace and conn.dialect.name == "sqlite"
    ids = features.get_column("person_id").to_list() if replace and not in_place else []
    for start in range(0, len(ids), CHUNK):
        conn.execute(delete(table).where(among(conn, table.c.person_id, ids[start : start + CHUNK])))
    # A load into a store that holds fewer: the ID number's index built once after the rows (its
    # entries come in person order, the numbers at random places).
    with indexes_deferred(conn, table, features.height):
        insert_frame(conn, table, features, update_on_conflict=("person_id",) if in_place else ())
