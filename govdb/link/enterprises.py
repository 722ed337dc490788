"""Linkage of enterprise records against the master enterprises (法人库), batch and one record.

Candidates come from master through its indexes, in a few statements per batch: the same unified
social credit code (the code as written, so a mistyped one still finds its enterprise), the same
phone or legal representative, and the name's distinctive core (华强五金 in 佛山市南海区华强五金有限公司);
a batch also takes the enterprises of its records' counties (one read and one preparation per
chunk), a single look-up never does (a few index reads and one scan of names). They are then
scored by the batch linker with the enterprise matching rules (rules/matching/enterprise.yaml): a
valid code equal on both sides is a match, two valid codes that differ never are, and without a
code the name, representative, phone and address weigh in. One record (`link_one` for
enterprises) runs the same path on a one-row frame.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import polars as pl
from sqlalchemy import Connection, Engine, String, func, or_, select

from govdb.link.batch import link_prepared
from govdb.link.comparisons import COMPARISONS
from govdb.link.features import ENTERPRISE_FIELDS, prepare_enterprises
from govdb.link.model import ComparisonParams, LinkModel, estimate_u, term_frequency_tables
from govdb.link.online import LinkResult
from govdb.link.stored import stored_model
from govdb.rulebook.models import MatchingRules
from govdb.store.bulk import among, id_chunks
from govdb.store.master import Enterprise

ENTERPRISE = Enterprise.__table__  # type: ignore[attr-defined]
ENTERPRISE_COLUMNS = (
    "enterprise_id",
    "uscc",
    "name",
    "legal_representative",
    "address",
    "phone",
    "business_scope",
    "status",
    "division_code",
)
MAX_CORES = 200  # name cores looked up with LIKE per batch; beyond that the county candidates serve
U_FALLBACK_EXACT = 0.001  # u of an exact level while master holds too few enterprises to estimate it


def read_enterprises(conn: Connection, enterprise_ids: list[str] | None = None) -> pl.DataFrame:
    """Master enterprises (every column linkage and proposals read), all or these ids."""
    columns = [ENTERPRISE.c[c] for c in ENTERPRISE_COLUMNS]
    schema = dict.fromkeys(ENTERPRISE_COLUMNS, pl.String)
    if enterprise_ids is None:
        return pl.DataFrame(conn.execute(select(*columns)).all(), schema=schema, orient="row")
    rows: list[Any] = []
    for chunk in id_chunks(conn, sorted(set(enterprise_ids))):
        rows += conn.execute(select(*columns).where(among(conn, ENTERPRISE.c.enterprise_id, chunk))).all()
    return pl.DataFrame(rows, schema=schema, orient="row")


def _values(frame: pl.DataFrame, column: str) -> list[str]:
    if column not in frame.columns:
        return []
    return sorted({v for v in frame.get_column(column).drop_nulls().to_list() if v})


def candidate_enterprises(conn: Connection, left: pl.DataFrame, *, counties: bool = True) -> list[str]:
    """Ids of the master enterprises that may be one of these prepared records (see the module);
    `counties` adds every enterprise of the records' counties."""
    found: set[str] = set()
    searches = [
        (ENTERPRISE.c.uscc, _values(left, "uscc_text") + _values(left, "uscc")),
        (ENTERPRISE.c.phone, _values(left, "phone")),
        (ENTERPRISE.c.legal_representative, _values(left, "rep_name")),
    ]
    if counties:
        searches.append(
            (func.substr(ENTERPRISE.c.division_code, 1, 6, type_=String), _values(left, "county_code"))
        )
    for column, values in searches:
        for chunk in id_chunks(conn, values):
            found.update(
                conn.execute(select(ENTERPRISE.c.enterprise_id).where(among(conn, column, chunk))).scalars()
            )
    cores = [c for c in _values(left, "name_core") if len(c) >= 2][:MAX_CORES]
    for start in range(0, len(cores), 50):
        likes = [ENTERPRISE.c.name.contains(core, autoescape=True) for core in cores[start : start + 50]]
        found.update(conn.execute(select(ENTERPRISE.c.enterprise_id).where(or_(*likes))).scalars())
    return sorted(found)


def enterprise_model(
    master: Engine, rules: MatchingRules, right: pl.DataFrame, enterprises: int
) -> LinkModel:
    """The stored enterprise model, else one from the rules: m from the comparisons' defaults, u
    from the master candidates (fixed small u for exact levels while too few to estimate)."""
    stored = stored_model(master, "enterprise")
    if stored is not None:
        return stored
    spec = [(c.field, c.method) for c in rules.comparisons]
    if right.height >= 20:
        u = estimate_u(
            right, right, spec, sample_pairs=min(rules.training.u_sample_pairs, 100_000), same_frame=True
        )
    else:
        u = {}
        for field_name, method in spec:
            k = len(COMPARISONS[method].levels) - 1
            rest = np.linspace(1.0, 4.0, k - 1)
            u[field_name] = np.concatenate([[U_FALLBACK_EXACT], (1 - U_FALLBACK_EXACT) * rest / rest.sum()])
    comparisons = [
        ComparisonParams(c.field, c.method, np.array(COMPARISONS[c.method].m_start), u[c.field], c.tf_adjust)
        for c in rules.comparisons
    ]
    tf, floors = term_frequency_tables(rules, right) if right.height else ({}, {})
    trained = {
        "right_rows": enterprises,
        "m_from_rules": [c.field for c in rules.comparisons],
        "tf_floor": floors,
    }
    return LinkModel(comparisons, prior=1.0 / max(enterprises, 2), tf=tf, trained_on=trained)


def link_enterprises(
    master: Engine,
    records: pl.DataFrame,
    rules: MatchingRules,
    *,
    id_column: str = "event_id",
    model: LinkModel | Callable[[], LinkModel] | None = None,
    today: dt.date | None = None,
    address_hint: str | None = None,
) -> list[LinkResult]:
    """Enterprise records (name, uscc, legal_representative, phone, address as written) -> the
    master enterprise each is about (`LinkResult.person_id` holds the enterprise id) and why."""
    left = prepare_enterprises(
        records, id_column=id_column, today=today, address_hint=address_hint, source="record"
    )
    with master.connect() as conn:
        ids = candidate_enterprises(conn, left, counties=left.height > 1)
        rows = read_enterprises(conn, ids)
        total = int(conn.execute(select(func.count()).select_from(ENTERPRISE)).scalar_one())
    if rows.height == 0:
        return [LinkResult(rid, None, "new", 0.0, None, {"candidates": 0}) for rid in left.get_column("rid")]
    right = prepare_enterprises(
        rows.select(*ENTERPRISE_FIELDS, "division_code", "enterprise_id"),
        id_column="enterprise_id",
        today=today,
        address_hint=address_hint,
        source="master",
    )
    if model is None:
        model = enterprise_model(master, rules, right, total)
    elif not isinstance(model, LinkModel):
        model = model()
    out = link_prepared(left, right, rules, model=model, left_id="rid", right_id="enterprise_id")
    by_id = {r["enterprise_id"]: r for r in rows.to_dicts()}
    return [
        LinkResult(
            row["rid"],
            row["enterprise_id"],
            row["decision"],
            row["match_probability"],
            row["match_weight"],
            json.loads(row["explanation"]),
            by_id.get(row["enterprise_id"]) if row["enterprise_id"] else None,
        )
        for row in out.links.iter_rows(named=True)
    ]


def link_one_enterprise(
    master: Engine,
    record: Mapping[str, Any],
    rules: MatchingRules,
    *,
    today: dt.date | None = None,
    address_hint: str | None = None,
) -> LinkResult:
    """One enterprise record (name, uscc, legal_representative, phone, address) -> its link."""
    columns = [f for f in ENTERPRISE_FIELDS if record.get(f) not in (None, "")]
    frame = pl.DataFrame(
        {"rid": ["record"], **{f: [str(record[f])] for f in columns}},
        schema={"rid": pl.String, **dict.fromkeys(columns, pl.String)},
    )
    return link_enterprises(master, frame, rules, id_column="rid", today=today, address_hint=address_hint)[0]
