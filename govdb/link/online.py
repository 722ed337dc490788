"""Linkage against the master store: one record (a service-hall lookup) or a batch of events.

Every master person's blocking keys live in the indexed `linkkey` table (one row per rule and
person: "name_pinyin+birth_date=zhangwei|1990-01-02") and their linkage features in `linkfeatures`,
both written when people are loaded or promoted. A record's own keys are looked up there and the
candidates' features read by primary key. A batch of events (`govdb process`) is then scored by the
batch code; one record (`link_one`) by its plain-Python twins (govdb.link.record), which give the
same decision as `govdb link` for the same record in a few milliseconds.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Collection, Iterable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from sqlalchemy import Connection, Engine, bindparam, delete, insert, select, text

from govdb.base.clock import utcnow
from govdb.errors import ConfigError, RulesChangedError
from govdb.link import record as one
from govdb.link.batch import link_prepared
from govdb.link.blocking import key_string, rule_name
from govdb.link.features import prepare
from govdb.link.model import LinkModel
from govdb.link.reads import (
    FeatureCache,
    feature_rows,
    person_rows,
    read_features,
    read_people,
    stored_keys,
)
from govdb.rulebook.models import MatchingRules
from govdb.store.bulk import among, driver_fetch, indexes_deferred, insert_frame
from govdb.store.locks import reading, writing, xact_lock
from govdb.store.master import (
    Division,
    LinkFeatures,
    LinkKey,
    LinkKeyRules,
    Person,
    served_county,
)

CHUNK = 5000
KEY_CHUNK = 50_000  # keys per candidate lookup


@dataclass(frozen=True)
class LinkResult:
    """The master person a record is about (None: nobody), the decision, and why."""

    record_id: str
    person_id: str | None
    decision: str  # "match" / "review" / "new"
    match_probability: float
    match_weight: float | None
    explanation: dict[str, Any]
    master: dict[str, Any] | None = None
    # The explanation as the linker wrote it, stored without encoding it again. Not an argument:
    # dataclasses.replace() leaves it None, so an explanation changed by replace() is never shadowed.
    explanation_json: str | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def from_linker(
        cls,
        record_id: str,
        person_id: str | None,
        decision: str,
        match_probability: float,
        match_weight: float | None,
        explanation_json: str,
        master: dict[str, Any] | None,
    ) -> LinkResult:
        """A result the batch linker explained, its explanation decoded from the linker's JSON
        when first read: `process` reads it for the few events it routes by it (reviews, someone
        new) and stores the text of the rest, where decoding every one was about 5% of a county's run.
        The text is the linker's own JSON (polars writes it); anything else is refused here."""
        if not isinstance(explanation_json, str) or not explanation_json.startswith("{"):
            raise TypeError(f"a linker's explanation is a JSON object's text, not {explanation_json!r:.80}")
        result = cls.__new__(cls)
        # Frozen: set through the instance's dict, once (`explanation` is left to __getattr__).
        result.__dict__.update(
            record_id=record_id,
            person_id=person_id,
            decision=decision,
            match_probability=match_probability,
            match_weight=match_weight,
            master=master,
            explanation_json=explanation_json,
        )
        return result

    def __getattr__(self, name: str) -> Any:
        """Only for an attribute not set: the explanation of a `from_linker` result, on first read."""
        text = self.__dict__.get("explanation_json")
        if name != "explanation" or text is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        explanation = json.loads(text)
        object.__setattr__(self, "explanation", explanation)
        return explanation


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
        conn.execute(
            delete(table).where(table.c.key == bindparam("k"), table.c.person_id == bindparam("p")),
            [{"k": k, "p": p} for k, p in gone.iter_rows()],
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


def candidate_keys(conn: Connection, keys: list[str], max_block: int) -> list[tuple[str, str]]:
    """(key, person_id) for people sharing any of these keys, skipping key values shared by more
    than `max_block` people (as batch blocking does). One statement per chunk of keys, through the
    driver: a look-up's large block is a thousand rows, which SQLAlchemy fetched one call each."""
    found: list[tuple[str, str]] = []
    for start in range(0, len(keys), KEY_CHUNK):
        sql, params = _candidates_sql(
            conn, keys[start : start + KEY_CHUNK], max_block, "l.key, l.person_id", True
        )
        found += [(k, p) for k, p in driver_fetch(conn, sql, params)]
    return found


def candidate_ids(conn: Connection, keys: list[str], max_block: int) -> tuple[list[str], set[str]]:
    """(people sharing any of these keys, the keys usable for it): key values shared by more than
    `max_block` people in master are not usable. Each person once (a chunk of events shares most
    of its candidates' keys many times over)."""
    found: set[str] = set()
    usable: set[str] = set()
    for start in range(0, len(keys), KEY_CHUNK):
        chunk = keys[start : start + KEY_CHUNK]
        statement, params = _candidates_statement(conn, chunk, max_block, "DISTINCT l.person_id")
        found.update(conn.execute(statement, params).scalars())
        statement, params = _candidates_statement(conn, chunk, max_block, None)
        usable.update(conn.execute(statement, params).scalars())
    return sorted(found), usable


def _candidates_statement(
    conn: Connection, keys: list[str], max_block: int, columns: str | None
) -> tuple[Any, dict[str, Any]]:
    """The candidate look-up for one chunk of keys, the keys passed as one parameter (a JSON array
    on SQLite, an array on PostgreSQL); `columns` None selects the usable keys themselves."""
    sql, params = _candidates_sql(conn, keys, max_block, columns, False)
    return text(sql), params


def _candidates_sql(
    conn: Connection, keys: list[str], max_block: int, columns: str | None, driver: bool
) -> tuple[str, dict[str, Any]]:
    """`_candidates_statement`'s text, its parameters named as SQLAlchemy's text() or, with
    `driver`, as the driver's own cursor names them (psycopg's %(name)s, sqlite3's :name)."""
    server = conn.dialect.name == "postgresql"

    def mark(name: str) -> str:
        return f"%({name})s" if driver and server else f":{name}"

    param: Any
    if server:
        wanted, param = f"SELECT unnest(CAST({mark('keys')} AS text[])) AS key", keys
    else:
        wanted, param = (
            f"SELECT value AS key FROM json_each({mark('keys')})",
            json.dumps(keys, ensure_ascii=False),
        )
    sql = (
        f"WITH wanted AS ({wanted}), "
        "usable AS (SELECT l.key FROM linkkey l JOIN wanted w ON l.key = w.key "
        f"GROUP BY l.key HAVING count(*) <= {mark('max')}) "
        + (
            f"SELECT {columns} FROM linkkey l JOIN usable u ON l.key = u.key"
            if columns
            else "SELECT key FROM usable"
        )
    )
    return sql, {"keys": param, "max": max_block}


def link_against_master(
    master: Engine,
    records: pl.DataFrame,
    rules: MatchingRules,
    model: LinkModel | Callable[[], LinkModel],
    *,
    id_column: str = "event_id",
    today: dt.date | None = None,
    address_hint: str | None = None,
    exclude: Collection[str] = (),
    features: FeatureCache | None = None,
) -> list[LinkResult]:
    """Link records (standard fields as written) against the master store through its link keys.
    `model` may be a factory, called only when some record has candidates. People in `exclude`
    are never candidates (a split said these records are not about them). A large run passes a
    `features` cache holding every person (FeatureCache.load_everyone): each chunk is then blocked
    against all of master in memory instead of looking its candidates up by key."""
    ensure_link_keys(master, rules)
    with master.connect() as conn:
        links, people = linked_frames(
            conn,
            records,
            rules,
            model,
            id_column=id_column,
            today=today,
            address_hint=address_hint,
            exclude=exclude,
            features=features,
        )
    return link_results(links, people)


LINK_COLUMNS = ("rid", "person_id", "decision", "match_probability", "match_weight", "explanation")


def linked_frames(
    conn: Connection,
    records: pl.DataFrame,
    rules: MatchingRules,
    model: LinkModel | Callable[[], LinkModel],
    *,
    id_column: str = "event_id",
    today: dt.date | None = None,
    address_hint: str | None = None,
    exclude: Collection[str] = (),
    features: FeatureCache | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """`link_against_master`'s work as frames (`LINK_COLUMNS`, the chosen people's master rows),
    which a linking process hands back whole (govdb.link.worker)."""
    left = prepare(records, id_column=id_column, today=today, address_hint=address_hint, source="record")
    skip: list[str] = []
    if features is not None and features.everyone and not exclude:
        right = features.all()  # blocking against everyone finds the pairs the key look-up would
    else:
        keys = key_strings(left, rules).get_column("key").unique().to_list()
        candidates, usable = candidate_ids(conn, keys, rules.blocking.max_block)
        if exclude:
            candidates = [c for c in candidates if c not in set(exclude)]
        right = read_features(conn, candidates)
        # Keys held by too many people in master pair nobody, even people who are candidates
        # through another key: as blocking against everyone would (chunk-independent).
        skip = sorted(set(keys) - usable)
    if right.height == 0:  # nobody to compare with: every record is someone new
        nobody = left.select(
            pl.col("rid"),
            pl.lit(None, pl.String).alias("person_id"),
            pl.lit("new").alias("decision"),
            pl.lit(0.0).alias("match_probability"),
            pl.lit(None, pl.Float64).alias("match_weight"),
            pl.lit('{"candidates": 0}').alias("explanation"),
        )
        return nobody, None
    if not isinstance(model, LinkModel):
        model = model()
    out = link_prepared(
        left,
        right,
        rules,
        model=model,
        left_id="rid",
        right_id="person_id",
        skip_keys=skip,
        all_candidates=False,
    )
    chosen = [p for p in out.links.get_column("person_id").unique().to_list() if p]
    held = features if features is not None and features.everyone else None
    people = held.people(conn, chosen) if held else read_people(conn, chosen)
    return out.links.select(LINK_COLUMNS), people


def link_results(links: pl.DataFrame, people: pl.DataFrame | None) -> list[LinkResult]:
    """The results of `linked_frames`, each with its person's master row."""
    by_id = {row["person_id"]: row for row in people.to_dicts()} if people is not None else {}
    return [
        LinkResult.from_linker(rid, person, decision, p, w, why, by_id.get(person) if person else None)
        for rid, person, decision, p, w, why in links.select(LINK_COLUMNS).iter_rows()
    ]


def link_one(
    master: Engine,
    record: Mapping[str, Any],
    rules: MatchingRules,
    model: LinkModel,
    *,
    today: dt.date | None = None,
    address_hint: str | None = None,
    conn: Connection | None = None,
) -> LinkResult:
    """One record (name, id_number, birth_date, gender, phone, address as written) -> its link.

    Runs the one-record twins of the batch steps (govdb.link.record): the same features, levels,
    weights, ranking and bands, without a polars pipeline per call. `conn`: a connection of the
    caller's outside a transaction (`store.locks.reading`) to read on, one checkout fewer."""
    methods = {c.method for c in rules.comparisons}
    if rules.entity != "person" or not methods <= one.ONE_RECORD_METHODS:
        raise ConfigError(
            f"link_one links people against the master store with the comparisons "
            f"{sorted(one.ONE_RECORD_METHODS)}; these {rules.entity} rules use {sorted(methods)}"
        )
    feats = one.features(record, today=today or dt.date.today(), address_hint=address_hint)
    keys: dict[str, str] = {}  # key -> the blocking rule it belongs to, first rule first
    for keys_of_rule in rules.blocking.rules:
        values = [feats.get(k) for k in keys_of_rule]
        if all(v is not None for v in values):
            text = "|".join(v.isoformat() if isinstance(v, dt.date) else str(v) for v in values)
            keys.setdefault(f"{rule_name(keys_of_rule)}={text}", rule_name(keys_of_rule))
    # Keys current (the usual case): one connection for all, outside a transaction (`reading`).
    with nullcontext(conn) if conn is not None else reading(master) as reads:
        found = _look_up(reads, feats, keys, rules, model) if link_keys_current(reads, rules) else None
    if found is None:
        ensure_link_keys(master, rules)
        with reading(master) as reads:
            found = _look_up(reads, feats, keys, rules, model)
    result, people = found
    return LinkResult(
        feats["rid"],
        result["person_id"],
        result["decision"],
        result["match_probability"],
        result["match_weight"],
        result["explanation"],
        people[0] if people else None,
    )


def _look_up(
    conn: Connection, feats: dict[str, Any], keys: dict[str, str], rules: MatchingRules, model: LinkModel
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """link_one's reading and choosing: candidates through the keys, their features, the best."""
    found = candidate_keys(conn, list(keys), rules.blocking.max_block)
    rule_of: dict[str, str] = {}
    order = {rule_name(r): i for i, r in enumerate(rules.blocking.rules)}
    for key, person_id in found:
        rule = keys[key]
        if person_id not in rule_of or order[rule] < order[rule_of[person_id]]:
            rule_of[person_id] = rule
    # Under `different_valid_ids`, candidates with another ID number can never be chosen.
    only = feats["id_number"] if "different_valid_ids" in rules.hard_rules else None
    stored = feature_rows(conn, sorted(rule_of), id_number=only) if rule_of else []
    result = one.best_link(feats, [(c, rule_of[c["rid"]]) for c in stored], model, rules)
    return result, person_rows(conn, [result["person_id"]]) if result["person_id"] else []
