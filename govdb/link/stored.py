"""The person (or enterprise) model a store links with: the one trained and stored, else one
made from the rules' m and master's own u and term frequencies."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
from sqlalchemy import Engine, delete, func, insert, select

from govdb.base.clock import utcnow
from govdb.errors import StateError
from govdb.link.batch import link_frames
from govdb.link.comparisons import COMPARISONS
from govdb.link.features import prepare
from govdb.link.model import ComparisonParams, LinkModel, estimate_u, term_frequency_tables
from govdb.link.reads import read_features, read_people
from govdb.rulebook.models import MatchingRules
from govdb.store.master import LinkageModel, Person


def stored_model(master: Engine, entity_kind: str = "person") -> LinkModel | None:
    with master.connect() as conn:
        row = conn.execute(
            select(LinkageModel.__table__.c.model).where(  # type: ignore[attr-defined]
                LinkageModel.__table__.c.entity_kind == entity_kind  # type: ignore[attr-defined]
            )
        ).scalar_one_or_none()
    return None if row is None else LinkModel.from_dict(row, f"stored {entity_kind} linkage model")


def store_model(master: Engine, model: LinkModel, entity_kind: str = "person") -> None:
    table = LinkageModel.__table__  # type: ignore[attr-defined]
    with master.begin() as conn:
        conn.execute(delete(table).where(table.c.entity_kind == entity_kind))
        conn.execute(
            insert(table), [{"entity_kind": entity_kind, "trained_at": utcnow(), "model": model.to_dict()}]
        )


def train_model(
    master: Engine, rules: MatchingRules, events: pl.DataFrame, *, id_column: str, address_hint: str | None
) -> LinkModel:
    """Estimate u, m (EM) and the prior from `events` against master's people, and store the model."""
    with master.connect() as conn:
        people = read_people(conn)
    out = link_frames(events, people, rules, event_id=id_column, address_hint=address_hint)
    store_model(master, out.model)
    return out.model


def default_model(
    master: Engine,
    rules: MatchingRules,
    *,
    today: dt.date | None = None,
    address_hint: str | None = None,
    features: pl.DataFrame | None = None,
) -> LinkModel:
    """A model before any training: m from the comparisons' defaults, u and term frequencies from
    master itself, and a prior of one match per record (1 / people in master). `features` are
    every person's, when the caller holds them already (a `process` run's FeatureCache): a
    county's are not read, and held, a second time; a frame that is not one row per person in
    master (another count, a person twice) is not used."""
    person = Person.__table__  # type: ignore[attr-defined]
    with master.connect() as conn:
        people = int(conn.execute(select(func.count()).select_from(person)).scalar_one())
        # Keyed people carry their features already; standardize again only if some are not keyed.
        held = features is not None and features.height == people == features.get_column("rid").n_unique()
        prepared = features if features is not None and held else read_features(conn)
        if prepared.height != people:
            prepared = prepare(
                read_people(conn), id_column="person_id", today=today, address_hint=address_hint
            )
    if people < 2:
        raise StateError(
            f"the master store holds {people} {'person' if people == 1 else 'people'}: linking estimates"
            " how often two people agree by chance from at least two; load the population register"
            " before linking"
        )
    # u is sampled by row position: positions in person order, so every process (and every
    # backend) builds the same model whatever order the store returned the rows in (on
    # PostgreSQL, the heap's from wherever the last scan stopped), without a sorted copy.
    order = prepared.get_column("rid").arg_sort().to_numpy()
    spec = [(c.field, c.method) for c in rules.comparisons]
    u = estimate_u(
        prepared,
        prepared,
        spec,
        sample_pairs=min(rules.training.u_sample_pairs, 200_000),
        same_frame=True,
        order=order,
    )
    comparisons = [
        ComparisonParams(c.field, c.method, np.array(COMPARISONS[c.method].m_start), u[c.field], c.tf_adjust)
        for c in rules.comparisons
    ]
    tf, floors = term_frequency_tables(rules, prepared)
    trained = {
        "right_rows": people,
        "m_from_rules": [c.field for c in rules.comparisons],
        "tf_floor": floors,
    }
    return LinkModel(comparisons, prior=1.0 / people, tf=tf, trained_on=trained)
