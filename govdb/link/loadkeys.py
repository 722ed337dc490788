"""The link keys of a bulk load's people, written inside the load's own transaction.

A register load used to commit its people, then read them all back to key them in a second
transaction. The load now hands the people it inserts to `LoadKeys`: their features and keys are
computed in a thread while the load writes people and lineage (polars works outside the GIL, and
SQLite's writes release it), then written before the load commits. The people and their keys
commit together (a failure leaves neither), and nothing is read back from the store.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import polars as pl
from sqlalchemy import Connection, Engine, func, select

from govdb.link.keys import ensure_link_keys, link_keys_current, prepare_keys, refresh_link_keys, write_keys
from govdb.link.reads import MASTER_COLUMNS
from govdb.rulebook.models import MatchingRules
from govdb.store.locks import xact_lock
from govdb.store.master import LinkFeatures, Person, served_county

T = TypeVar("T")
Prepared = tuple[pl.DataFrame, pl.DataFrame]  # keys, features (keys.prepare_keys)
PREPARE_SLICE = 250_000  # people prepared at once


class LoadKeys:
    """The key writer of one load (govdb.load.KeyWriter): `start` with the people the load is
    about to insert, then called once they and their lineage are written. Keys nothing when
    master's keys follow other rules: `keyed_load` then refreshes (or refuses) after the load."""

    def __init__(self, rules: MatchingRules) -> None:
        self.rules = rules
        self.written: int | None = None  # key rows written; None: not keyed in the load
        self._ahead: tuple[str | None, Future[Prepared]] | None = None

    def start(self, conn: Connection, people: pl.DataFrame) -> None:
        if people.height == 0:
            return
        hint = served_county(conn)
        pool = ThreadPoolExecutor(1, thread_name_prefix="govdb-load-keys")
        try:
            self._ahead = (hint, pool.submit(prepare_in_slices, self.rules, people, hint))
        finally:
            pool.shutdown(wait=False)  # the thread ends with its one task

    def __call__(self, conn: Connection, people: pl.DataFrame) -> None:
        ahead, self._ahead = self._ahead, None
        xact_lock(conn, "link_keys")  # as refresh_link_keys: one writer of keys at a time
        if not link_keys_current(conn, self.rules):
            return  # refresh_link_keys after the load refuses, or keys everyone, as for any writer
        if people.height == 0:
            self.written = 0
            return
        hint = served_county(conn)
        if ahead is not None and ahead[0] == hint:  # prepared for the county master serves now
            keys, features = ahead[1].result()
        else:
            keys, features = prepare_in_slices(self.rules, people, hint)
        # New ids (the load checked) have no stored features to replace: a person's keys and
        # features are deleted with the person (correct.revert), so none are left behind.
        self.written = write_keys(conn, keys, features, replace=False)


def keyed_load(master: Engine, rules: MatchingRules, load: Callable[[LoadKeys], T]) -> T:
    """Run a bulk load of people with a `LoadKeys` for its transaction. Only if it could not key
    them there, or master holds people without keys (left by an older version's load cut short
    between its two transactions), are the people without keys read and keyed after it."""
    ensure_link_keys(master, rules)
    keys = LoadKeys(rules)
    loaded = load(keys)
    if keys.written is None or _anyone_unkeyed(master):
        refresh_link_keys(master, rules, missing_only=True)
    return loaded


def prepare_in_slices(rules: MatchingRules, people: pl.DataFrame, hint: str | None) -> Prepared:
    """`prepare_keys` of the people a slice at a time, keys and features in their primary keys'
    order as if prepared at once (features are per person; keys sorted once, at the end). Its
    working columns for a county's million people at once were a gigabyte more than the load's
    peak without them."""
    keys, features = [], []
    for start in range(0, max(people.height, 1), PREPARE_SLICE):  # an empty frame once
        part = prepare_keys(rules, master_people(people.slice(start, PREPARE_SLICE)), hint, ordered=False)
        keys.append(part[0])
        features.append(part[1])
    everyone = pl.concat(features)
    if not everyone.get_column("person_id").is_sorted():  # a load's people come in id order
        everyone = everyone.sort("person_id")
    return pl.concat(keys).sort("key", "person_id"), everyone


def master_people(people: pl.DataFrame) -> pl.DataFrame:
    """People as master stores them and `read_people` reads them back: its columns (absent ones
    null), birth dates as dates (ISO text parsed), every other value as text."""

    def column(name: str) -> pl.Expr:
        if name not in people.columns:
            return pl.lit(None, pl.Date if name == "birth_date" else pl.String).alias(name)
        if name != "birth_date":
            return pl.col(name).cast(pl.String)
        if people.schema[name] == pl.String:
            return pl.col(name).str.to_date("%Y-%m-%d")
        return pl.col(name).cast(pl.Date)

    return people.select(column(c) for c in MASTER_COLUMNS)


def _anyone_unkeyed(master: Engine) -> bool:
    """Whether some master person has no features (so no keys: both are written and deleted
    together). Counted, not joined: probing the keys for each of a county's million people took
    2.3 s after every load; two counts read two small indexes."""
    person, features = Person.__table__, LinkFeatures.__table__  # type: ignore[attr-defined]
    with master.connect() as conn:
        people = conn.execute(select(func.count()).select_from(person)).scalar_one()
        return people > conn.execute(select(func.count()).select_from(features)).scalar_one()
