"""Reading master people and their stored linkage features: by id for a chunk's candidates and a
look-up's handful, or everyone's for a `process` run that links a county in memory."""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import polars as pl
from sqlalchemy import Connection, Dialect, func, select, text

from govdb.errors import StateError
from govdb.link.features import FEATURE_SCHEMA, PERSON_FIELDS
from govdb.store.bulk import driver_cursor, driver_fetch, id_chunks, read_frame
from govdb.store.master import (
    FEATURE_ID_NUMBER,
    FEATURE_ID_PREFIX,
    LinkFeatures,
    LinkKey,
    MasterChange,
    Person,
)

MASTER_COLUMNS = ("person_id", *PERSON_FIELDS, "division_code")
# Rows per slice when reading many: the driver's strings of one slice are decoded and dropped
# before the next is fetched, so a county's million JSON texts are never held at once (they
# took 4 GB of a 5 GB peak, for a 216 MB frame).
SLICE = 50_000


def read_people(
    conn: Connection, person_ids: Iterable[str] | None = None, *, without_keys: bool = False
) -> pl.DataFrame:
    """Master people (the columns linkage reads): all of them, these ids, or those without link keys."""
    table = Person.__table__  # type: ignore[attr-defined]
    schema = {c: (pl.Date if c == "birth_date" else pl.String) for c in MASTER_COLUMNS}
    columns = ", ".join(MASTER_COLUMNS)
    if person_ids is None and without_keys:
        keyed = LinkKey.__table__.c.person_id  # type: ignore[attr-defined]
        query = select(*(table.c[c] for c in MASTER_COLUMNS)).where(~table.c.person_id.in_(select(keyed)))
        return read_frame(conn, query, schema)  # plain tuples, not row objects
    statement = f"SELECT {columns} FROM person"
    # Everyone a slice at a time, as features are: a county's million rows of tuples at once cost
    # more than half a gigabyte beside the frame they make.
    slices = _all_rows(conn, statement) if person_ids is None else _rows_of(conn, statement, list(person_ids))
    raw = {c: pl.String for c in MASTER_COLUMNS} if conn.dialect.name == "sqlite" else schema
    frames = [pl.DataFrame(rows, schema=raw, orient="row") for rows in slices]
    people = pl.concat(frames) if frames else pl.DataFrame(schema=raw)
    if conn.dialect.name == "sqlite":  # dates come as ISO text
        people = people.with_columns(pl.col("birth_date").str.to_date("%Y-%m-%d"))
    return people


def stored_keys(conn: Connection, person_ids: list[str]) -> pl.DataFrame:
    """These people's stored link keys (key, person_id), read through the driver a slice at a time."""
    statement = f'SELECT "key", person_id FROM {LinkKey.__table__.name}'  # type: ignore[attr-defined]
    rows = [r for part in _rows_of(conn, statement, person_ids) for r in part]
    return pl.DataFrame(rows, schema={"key": pl.String, "person_id": pl.String}, orient="row")


def _rows_of(
    conn: Connection,
    select_from: str,
    person_ids: Iterable[Any],
    also: str = "",
) -> Iterator[list[Any]]:
    """The rows of `select_from` for these people (and the condition `also`, which binds nothing),
    about a slice at a time, through the driver's cursor
    (SQLAlchemy compiling an IN list of hundreds cost twice SQLite's reading of the rows): an array
    parameter on PostgreSQL, bound values on SQLite. Each person once, however often asked for;
    ids are person ids as text."""
    ids = list(dict.fromkeys(str(i) for i in person_ids))
    if conn.dialect.name == "postgresql":  # its text holds no NUL: no person has such an id
        ids = [i for i in ids if "\x00" not in i]
    for start in range(0, len(ids), SLICE):
        part = ids[start : start + SLICE]
        if conn.dialect.name == "postgresql":
            yield driver_fetch(conn, f"{select_from} WHERE person_id = ANY(%s){also}", (part,))
            continue
        rows: list[Any] = []
        for chunk in id_chunks(conn, part):
            marks = ",".join("?" * len(chunk))
            statement = f"{select_from} WHERE person_id IN ({marks}){also}"
            rows += driver_fetch(conn, statement, tuple(chunk))
        yield rows


def _features_select(conn: Connection) -> str:
    if conn.dialect.name == "postgresql":
        return "SELECT features::text FROM linkfeatures"
    return "SELECT CAST(features AS TEXT) FROM linkfeatures"  # text, however a writer bound it


def read_features(conn: Connection, person_ids: list[str] | None = None) -> pl.DataFrame:
    """Stored linkage features of these people, or of everyone (the frame `prepare` made when they
    were keyed). Read as JSON text and decoded by polars a slice at a time: a chunk of events has
    hundreds of thousands of candidates, too many to decode one JSON document at a time, and a
    county's texts at once are many times the frame they make."""
    select_from = _features_select(conn)
    slices = _all_rows(conn, select_from) if person_ids is None else _rows_of(conn, select_from, person_ids)
    frames = [_decoded([t for (t,) in rows]) for rows in slices if rows]
    if not frames:
        return _decoded([])
    return pl.concat(frames).rechunk()


def _all_rows(conn: Connection, statement: str) -> Iterator[list[Any]]:
    with driver_cursor(conn, statement) as cursor:
        cursor.execute(statement)
        while rows := cursor.fetchmany(SLICE):
            yield rows


def _decoded(texts: list[str]) -> pl.DataFrame:
    schema = {k: (pl.String() if k == "birth_date" else v) for k, v in FEATURE_SCHEMA.items()}
    if not texts:
        return pl.DataFrame(schema=schema).with_columns(pl.col("birth_date").str.to_date())
    decoded = pl.Series("f", texts, dtype=pl.String).str.json_decode(pl.Struct(schema))
    return decoded.struct.unnest().with_columns(pl.col("birth_date").str.to_date())


_DECODER = json.JSONDecoder()  # json.loads' own (no hooks): the same objects, one call less a text
_FEATURE_KEYS = frozenset(FEATURE_SCHEMA)


def feature_rows(
    conn: Connection, person_ids: list[str], *, id_number: str | None = None
) -> list[dict[str, Any]]:
    """The stored features of a few people as dicts (what `read_features(...).to_dicts()` gives):
    `link_one` reads a handful per call, where a polars decode costs a millisecond whatever the size.

    With `id_number`, only people whose features hold no ID number or that one: under the
    `different_valid_ids` hard rule `best_link` skips every other candidate, and a large block
    (a common given name in a village) is hundreds of them, each row at a random place, read and
    decoded for nothing. Which of them qualify comes from an index (`_choosable`)."""
    if id_number is not None:
        person_ids = _choosable(conn, person_ids, id_number)
    slices = _rows_of(conn, _features_select(conn), person_ids)
    texts = [features for rows in slices for (features,) in rows]
    rows = []
    # A large block is hundreds of texts: the decoder itself (what json.loads calls), and a dict
    # built again only when the stored one lacks or adds a field (a store written before them).
    for decoded in map(_DECODER.decode, texts):
        row = decoded if decoded.keys() == _FEATURE_KEYS else {k: decoded.get(k) for k in FEATURE_SCHEMA}
        if id_number is not None and row["id_number"] not in (None, id_number):
            continue  # beyond the prefix PostgreSQL indexes, another number
        if row["birth_date"] is not None:
            row["birth_date"] = dt.date.fromisoformat(row["birth_date"])
        rows.append(row)
    return rows


def _choosable(conn: Connection, person_ids: list[str], id_number: str) -> list[str]:
    """Those of these people whose features may hold `id_number` or no ID number: read from
    master_0012's index on (the number, person_id), never from the candidates' rows. A
    superset where PostgreSQL indexes only a prefix of the number: `feature_rows` compares whole
    numbers once the few rows are read."""
    ids = list(dict.fromkeys(str(i) for i in person_ids))
    if not ids:
        return []
    found = FEATURE_ID_NUMBER[conn.dialect.name]
    server = conn.dialect.name == "postgresql"
    wanted = id_number[:FEATURE_ID_PREFIX] if server else id_number
    # SQLite's planner prefers the primary key for the candidates, then reads each row to test
    # it: told the index, it probes (no number, person) for each candidate in the index alone.
    statement = "SELECT person_id FROM linkfeatures" + (
        "" if server else " INDEXED BY ix_linkfeatures_id_number"
    )
    holders = driver_fetch(conn, f"{statement} WHERE {found} = {'%s' if server else '?'}", (wanted,))
    choosable = {p for (p,) in holders}
    without = _rows_of(conn, statement, ids, f" AND {found} IS NULL")
    choosable.update(p for rows in without for (p,) in rows)
    return [p for p in ids if p in choosable]


def person_rows(conn: Connection, person_ids: list[str]) -> list[dict[str, Any]]:
    """Master people as dicts of MASTER_COLUMNS (a look-up's chosen one), read through the driver:
    SQLAlchemy's building of the statement and its rows was most of the read. Values come as
    SQLAlchemy gives them: each column's own result processing (SQLite's dates are text)."""
    processors = _person_processors(conn.dialect)
    columns = ", ".join(MASTER_COLUMNS)
    out = []
    for rows in _rows_of(conn, f"SELECT {columns} FROM person", person_ids):
        for row in rows:
            values = (v if f is None else f(v) for f, v in zip(processors, row, strict=True))
            out.append(dict(zip(MASTER_COLUMNS, values, strict=True)))
    return out


@functools.lru_cache(maxsize=8)
def _person_processors(dialect: Dialect) -> list[Callable[[Any], Any] | None]:
    """What SQLAlchemy does to each of MASTER_COLUMNS' values as a row arrives, on this dialect."""
    table = Person.__table__  # type: ignore[attr-defined]
    return [table.c[c].type.dialect_impl(dialect).result_processor(dialect, None) for c in MASTER_COLUMNS]


class FeatureCache:
    """Every master person's linkage features (and master row), held for one `process` run.

    A county's worth of events links faster against the whole master in memory (the batch
    linker's equi-joins, as `govdb link` runs) than through link-key look-ups per chunk, whose
    candidates grow with the number of people per village. Master may change while the run goes
    on (a promote, a revert, a resolved conflict): before each chunk `refresh` reads the change
    feed since it last looked and reads those people's features again, at every chunk to the end
    of the run (their keys and features are rewritten just after their master write, in a
    transaction of their own), so a chunk sees what a key look-up at that moment would see.
    The people's master rows are held and refreshed alike: a chunk's linked people are taken
    from memory instead of a million look-ups by id (a tenth of a county's `process`).
    """

    def __init__(self, limit: int = 2_000_000) -> None:
        self.limit = limit
        self._frame: pl.DataFrame | None = None
        self._people: pl.DataFrame | None = None  # read_people of everyone, refreshed alike
        self._seen = 0  # the change feed's head when last looked at
        self._changed: set[str] = set()  # people master changed during the run

    @property
    def everyone(self) -> bool:
        return self._frame is not None

    def load_everyone(self, conn: Connection) -> bool:
        """Read every person's features, when master holds no more than `limit` people."""
        features = LinkFeatures.__table__  # type: ignore[attr-defined]
        if conn.execute(select(func.count()).select_from(features)).scalar_one() > self.limit:
            return False
        self._seen = _feed_head(conn)  # first: a change committed meanwhile is read again later
        self._frame = read_features(conn)
        self._people = read_people(conn)
        return True

    def refresh(self, conn: Connection) -> None:
        """Read again the features of the people master changed since the run began."""
        if self._frame is None:
            return
        head = _feed_head(conn)
        if head > self._seen:
            changes = MasterChange.__table__  # type: ignore[attr-defined]
            self._changed.update(
                conn.execute(
                    select(changes.c.entity_id)
                    .where(
                        changes.c.seq > self._seen, changes.c.seq <= head, changes.c.entity_kind == "person"
                    )
                    .distinct()
                ).scalars()
            )
            self._seen = head
        if self._changed:
            changed = pl.DataFrame({"rid": sorted(self._changed)}, schema={"rid": pl.String})
            kept = self._frame.join(changed, on="rid", how="anti")
            self._frame = pl.concat([kept, read_features(conn, sorted(self._changed))])
            if self._people is not None:
                held = self._people.join(changed.rename({"rid": "person_id"}), on="person_id", how="anti")
                self._people = pl.concat([held, read_people(conn, sorted(self._changed))])

    def people(self, conn: Connection, person_ids: list[str]) -> pl.DataFrame:
        """`read_people(conn, person_ids)`: from memory when everyone is held, each person once."""
        if self._people is None:
            return read_people(conn, person_ids)
        # As a read at this moment would find them: a promote may have committed while the chunk
        # was linked (master rows and their feed entries commit together).
        if _feed_head(conn) > self._seen:
            self.refresh(conn)
        wanted = pl.DataFrame({"person_id": list(dict.fromkeys(person_ids))}, schema={"person_id": pl.String})
        return self._people.join(wanted, on="person_id", how="semi")

    def all(self) -> pl.DataFrame:
        if self._frame is None:
            raise StateError("the features of everyone were not loaded (load_everyone)")
        return self._frame


def _feed_head(conn: Connection) -> int:
    return int(conn.execute(text("SELECT seq FROM changehead WHERE id = 1")).scalar() or 0)
