"""Authoritative bulk loads into master (invariant 1's second door): registers such as the
public-security population register, loaded with their source and lineage, in bulk.

A register file is read by the same lossless reader as ingest, its headers mapped by the rules'
column aliases, every value standardized like an event's; rows that fail (no valid ID number or
name) are refused and reported, never loaded half-right.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl
from sqlalchemy import Connection, Engine, insert, select

from govdb.base.clock import utcnow
from govdb.base.collector import bulk_collection
from govdb.errors import InputFileError
from govdb.readers import read_records
from govdb.readers.columns import check_mapping, plan_columns
from govdb.store.bulk import among, id_chunks, indexes_deferred, insert_frame
from govdb.store.feed import record_changes
from govdb.store.locks import writing, xact_lock
from govdb.store.master import BulkLoad, FieldHistory, Person
from govdb.validate import record_place, validate_frame

PERSON_COLUMNS = ("id_number", "name", "gender", "birth_date", "phone", "address", "division_code")
PERSON = Person.__table__  # type: ignore[attr-defined]
HISTORY = FieldHistory.__table__  # type: ignore[attr-defined]
STEP = 50_000


class KeyWriter(Protocol):
    """Writes the link keys of a load's people in the load's transaction (govdb.link.loadkeys)."""

    def start(self, conn: Connection, people: pl.DataFrame) -> None:
        """The people the load will insert (person_id and the loaded columns), before it writes."""

    def __call__(self, conn: Connection, people: pl.DataFrame) -> None:
        """The same people, once they and their lineage are written."""


@dataclass(frozen=True)
class LoadReport:
    """What a register file held and what was loaded."""

    load_id: str
    read: int
    loaded: int
    already_known: int
    refused: pl.DataFrame  # line, column, reason, value: one row per problem of a row not loaded

    @property
    def refused_rows(self) -> int:
        return self.refused.get_column("line").n_unique()


def read_register(
    path: Path, aliases: dict[str, str], mapping: dict[str, str] | None = None
) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """(people with standardized columns, refused rows with their line and reason, rows read)."""
    records, _ = read_records(path)
    rows = records.payload_list()
    # the same checks of --map as every file command: known targets, headers the file has
    check_mapping(mapping or {}, {*aliases.values(), *PERSON_COLUMNS, "person_id"})
    header = records.columns or list(dict.fromkeys(k for p in rows for k in p))
    plan_columns(header, aliases, mapping or {}, where=str(path), standard=PERSON_COLUMNS, ids=("person_id",))
    names = {**aliases, **(mapping or {})}
    renamed = []
    for line, payload in zip(records.lines, rows, strict=True):
        record: dict[str, object] = {"line": line}
        for key, value in payload.items():
            target = "person_id" if key == "person_id" else names.get(str(key).strip())
            if target and value not in (None, "") and record.get(target) in (None, ""):
                record[target] = str(value)
        renamed.append(record)
    columns = sorted({k for r in renamed for k in r} - {"line"})
    frame = pl.DataFrame(renamed, schema={"line": pl.Int64, **dict.fromkeys(columns, pl.String)})
    missing = {"id_number", "name"} - set(frame.columns)
    if missing:
        raise InputFileError(
            f"{path}: a register of people needs columns for {sorted(missing)}; its header is "
            f"{records.columns}; name them with --map HEADER=field"
        )
    std, report = validate_frame(frame, required=["id_number", "name"], row_id="line")
    errors = report.failures.filter(pl.col("severity") == "error")
    unreadable = pl.DataFrame(
        [{"line": u.line, "column": "", "reason": u.reason, "value": u.text} for u in records.bad],
        schema={"line": pl.Int64, "column": pl.String, "reason": pl.String, "value": pl.String},
    )
    refused = pl.concat(
        [errors.select(pl.col("row_id").alias("line"), "column", "reason", "value"), unreadable]
    ).sort("line")
    good = std.filter(~pl.col("line").is_in(errors.get_column("row_id").implode()))
    good = good.with_columns(record_place(good).alias("_place"))
    out = good.select(
        *(["person_id"] if "person_id" in good.columns else []),
        *(
            pl.col(f"{c}_std").alias(c)
            for c in PERSON_COLUMNS
            if c != "division_code" and f"{c}_std" in good.columns
        ),
        pl.col("_place").alias("division_code"),
    )
    return out, refused, records.read


def load_people_file(
    master: Engine,
    path: Path,
    aliases: dict[str, str],
    *,
    source: str,
    valid_from: dt.date | None = None,
    mapping: dict[str, str] | None = None,
    keys: KeyWriter | None = None,
) -> LoadReport:
    """Load a register file of people: standardized, refused rows reported, known IDs skipped."""
    people, refused, read = read_register(path, aliases, mapping)
    load_id, loaded = _load(master, people, source=source, valid_from=valid_from, keys=keys)
    return LoadReport(load_id, read, loaded, people.height - loaded, refused)


@bulk_collection()
def bulk_load_people(
    master: Engine,
    people: pl.DataFrame,
    *,
    source: str,
    valid_from: dt.date | None = None,
    keys: KeyWriter | None = None,
) -> str:
    """Load people from an authoritative register (e.g. the population register), recording the source.

    Every row needs a valid id_number and a name; ID numbers already in master are skipped. A
    `person_id` column keeps the register's ids (they must be unique and new). `valid_from` is
    the date the register's values hold from; unknown (None) by default, so a later change
    reported with its own date supersedes them. Returns the bulk load id, which every field
    history row of the load carries. `keys` (govdb.link.loadkeys.LoadKeys) writes the link keys
    of the people inserted, in the load's transaction.
    """
    missing = {"id_number", "name"} - set(people.columns)
    if missing:
        raise InputFileError(
            f"a bulk load of people needs columns {sorted(missing)}; it has {people.columns}"
        )
    columns = [c for c in PERSON_COLUMNS if c in people.columns]
    keep_ids = "person_id" in people.columns
    frame = people.select(*columns, *(["person_id"] if keep_ids else [])).unique("id_number", keep="first")
    if keep_ids:
        _check_person_ids(frame)
    return _load(master, frame, source=source, valid_from=valid_from, keys=keys)[0]


def _load(
    master: Engine,
    frame: pl.DataFrame,
    *,
    source: str,
    valid_from: dt.date | None,
    keys: KeyWriter | None = None,
) -> tuple[str, int]:
    """Insert the people whose ID numbers master does not hold yet, with their lineage, in bulk."""
    load_id = str(uuid.uuid4())
    columns = [c for c in PERSON_COLUMNS if c in frame.columns]
    keep_ids = "person_id" in frame.columns
    frame = frame.unique("id_number", keep="first")
    with writing(master) as conn:
        # Loads take turns (SQLite's writer lock does this already): two registers naming the same
        # person at once would both find them new, and the second would fail on the unique index.
        xact_lock(conn, "bulk_load:person")
        # Then the keys' lock, as a promotion takes it before it reads people: whichever comes
        # second sees the other's people (the load writes its keys in this transaction too).
        xact_lock(conn, "link_keys")
        known = _existing(conn, PERSON.c.id_number, frame.get_column("id_number").to_list())
        if known:
            frame = frame.filter(~pl.col("id_number").is_in(list(known)))
        if keep_ids:
            taken = _existing(conn, PERSON.c.person_id, frame.get_column("person_id").to_list())
            if taken:
                raise InputFileError(
                    f"{len(taken)} person id(s) of the load already belong to other people in master, "
                    f"e.g. {sorted(taken)[:3]}; leave person_id out to have ids assigned"
                )
        else:
            frame = frame.with_columns(new_person_ids(frame.height))
        now = utcnow()
        conn.execute(
            insert(BulkLoad.__table__),  # type: ignore[attr-defined]
            [
                {
                    "load_id": load_id,
                    "source": source,
                    "entity_kind": "person",
                    "rows": frame.height,
                    "loaded_at": now,
                }
            ],
        )
        people = frame.select("person_id", *columns).sort("person_id")
        loaded = people.height
        del frame  # the unsorted copy is not kept through the load
        if keys is not None:
            keys.start(conn, people)
        dates = [c for c, dtype in people.schema.items() if dtype == pl.Date]
        # All of person's indexes are built after its rows when it was empty: the ID numbers come
        # in person-id order, so keeping their unique index meant a random B-tree insert per row.
        with indexes_deferred(conn, PERSON, people.height, unique=None):
            insert_frame(
                conn,
                PERSON,
                people.with_columns(pl.col(dates).dt.to_string("%Y-%m-%d")) if dates else people,
                {"created_at": now, "updated_at": now},
            )
        with indexes_deferred(conn, HISTORY, people.height * len(columns)):
            _insert_history(
                conn, people, columns, source=source, load_id=load_id, valid_from=valid_from, now=now
            )
        if keys is not None:
            keys(conn, people)

        # The feed tells of each loaded person once (field None: the whole entity inserted), not
        # of each field: a register of 1M people is 1M changes to act on, not 7M.
        record_changes(
            conn,
            people.select(
                pl.lit("person").alias("entity_kind"),
                pl.col("person_id").alias("entity_id"),
                pl.lit(None, pl.String).alias("field"),
                pl.lit("insert").alias("op"),
                pl.lit(valid_from.isoformat() if valid_from else None, pl.String).alias("valid_from"),
                pl.lit("bulk_load").alias("cause"),
                pl.lit(load_id).alias("cause_id"),
            ),
            now,
        )
    return load_id, loaded


def _insert_history(
    conn: Connection,
    people: pl.DataFrame,
    columns: list[str],
    *,
    source: str,
    load_id: str,
    valid_from: dt.date | None,
    now: dt.datetime,
) -> None:
    """One lineage row per loaded person and field, a slice of people at a time. The rows keep no
    checks of their own: the load is their check (store.master.lineage_checks)."""
    for start in range(0, people.height, STEP):
        history = (
            people.slice(start, STEP)
            .select(pl.col("person_id").alias("entity_id"), *(pl.col(c).cast(pl.String) for c in columns))
            .unpivot(index="entity_id", on=columns, variable_name="field", value_name="value")
            .drop_nulls("value")
            .sort("entity_id", "field")  # in index order: the lineage index grows by appending
        )
        insert_frame(
            conn,
            HISTORY,
            history,
            {
                "entity_kind": "person",
                "valid_from": valid_from.isoformat() if valid_from else None,
                "recorded_at": now,
                "source": source,
                "bulk_load_id": load_id,
                "event_ids": "[]",
                "checks": "[]",
            },
        )


def new_person_ids(n: int) -> pl.Series:
    """n new person ids in the form they always had: `P` and the first 15 upper-case hex digits of
    a random UUID (version 4, so the 13th digit is 4), drawn for all of them at once."""
    drawn = np.frombuffer(os.urandom(7 * n), dtype=np.uint8).reshape(n, 7)
    digits = np.frombuffer(b"0123456789ABCDEF", dtype=np.uint8)[
        np.stack([drawn >> 4, drawn & 15], axis=2).reshape(n, 14)
    ]
    ids = np.empty((n, 16), dtype=np.uint8)
    ids[:, 0], ids[:, 1:13], ids[:, 13], ids[:, 14:] = ord("P"), digits[:, :12], ord("4"), digits[:, 12:]
    return pl.Series("person_id", ids.view("S16").ravel(), dtype=pl.Binary).cast(pl.String)


def _existing(conn: Connection, column: Any, values: list[str]) -> set[str]:
    """The values master's `column` already holds."""
    found: set[str] = set()
    if not values or conn.execute(select(column).limit(1)).first() is None:
        return found  # nobody in master yet: nothing to look up
    for chunk in id_chunks(conn, values):
        found.update(conn.execute(select(column).where(among(conn, column, chunk))).scalars())
    return found


def _check_person_ids(frame: pl.DataFrame) -> None:
    ids = frame.get_column("person_id").cast(pl.String)
    bad = frame.filter(ids.is_null() | (ids.str.strip_chars() == "") | (ids.str.len_chars() > 32))
    if bad.height:
        raise InputFileError(
            f"{bad.height} row(s) have an empty person_id or one longer than 32 characters, "
            f"e.g. ID number {bad.get_column('id_number')[0]}; fix them or leave person_id out"
        )
    if ids.n_unique() != ids.len():
        dup = ids.filter(ids.is_duplicated()).unique().head(3).to_list()
        raise InputFileError(f"person ids repeat in the load, e.g. {dup}; each person needs their own id")
