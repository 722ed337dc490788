"""Linkage against the master store: one record (a service-hall lookup) or a batch of events.

Every master person's blocking keys live in the indexed `linkkey` table (one row per rule and
person: "name_pinyin+birth_date=zhangwei|1990-01-02") and their linkage features in `linkfeatures`,
both written when people are loaded or promoted (govdb.link.keys). A record's own keys are looked
up there and the candidates' features read by primary key. A batch of events (`govdb process`) is
then scored by the batch code; one record (`link_one`) by its plain-Python twins
(govdb.link.record), which give the same decision as `govdb link` for the same record in a few milliseconds.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Collection, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from sqlalchemy import Connection, Engine, text

from govdb.errors import ConfigError
from govdb.link import record as one
from govdb.link.batch import link_prepared
from govdb.link.blocking import rule_name
from govdb.link.features import prepare
from govdb.link.keys import ensure_link_keys, key_strings, link_keys_current
from govdb.link.model import LinkModel
from govdb.link.reads import (
    FeatureCache,
    feature_rows,
    person_rows,
    read_features,
    read_people,
)
from govdb.rulebook.models import MatchingRules
from govdb.store.bulk import driver_fetch
from govdb.store.locks import reading

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
