"""Deduplication: clusters of records of the same person within one file.

The file is linked against itself (pairs i < j from the same blocking rules and model as batch
linkage); pairs decided `match` are edges, and the clusters are the connected components, found
by vectorised label propagation with pointer jumping (numpy, no per-record Python).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from govdb.link.batch import (
    HARD_DIFFERENT,
    HARD_SAME,
    _candidate_positions,
    compare_pairs,
    fit_prior,
    train_model,
    weigh,
)
from govdb.link.features import preparer
from govdb.link.model import LinkModel
from govdb.rulebook.models import MatchingRules


@dataclass
class DedupeOutput:
    """One row per record: its id, cluster_id (the smallest record id in it) and cluster_size;
    and the matched pairs with their probabilities."""

    clusters: pl.DataFrame
    pairs: pl.DataFrame
    model: LinkModel
    warnings: list[str] = field(default_factory=list)  # what the file's reader noticed (dedupe_file)


def connected_components(n: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Component label (smallest member position) of each of n nodes, given edges left-right."""
    label = np.arange(n)
    if len(left) == 0:
        return label
    while True:
        smaller = np.minimum(label[left], label[right])
        new = label.copy()
        np.minimum.at(new, left, smaller)
        np.minimum.at(new, right, smaller)
        new = new[new]  # pointer jumping: follow each label to its own label
        if np.array_equal(new, label):
            return label
        label = new


def dedupe_frame(
    records: pl.DataFrame,
    rules: MatchingRules,
    *,
    id_column: str = "record_id",
    mapping: Mapping[str, str] | None = None,
    model: LinkModel | None = None,
    today: dt.date | None = None,
    address_hint: str | None = None,
) -> DedupeOutput:
    """Cluster the records of one file that describe the same person."""
    frame = preparer(rules.entity)[0](
        records, id_column=id_column, today=today, address_hint=address_hint, mapping=mapping, source="file"
    )
    blocking = _candidate_positions(frame, frame, rules.blocking.rules, rules.blocking.max_block, True)
    compared = compare_pairs(frame, frame, blocking.pairs, rules)
    if model is None:
        model = train_model(frame, frame, rules, same_frame=True, compared=compared)
        fit_prior(model, compared.codes, frame.height * (frame.height - 1) / 2)
    scored = weigh(model, frame, compared)
    probability = 1.0 / (1.0 + np.exp2(-scored.get_column("match_weight").to_numpy()))
    hard = scored.get_column("hard").to_numpy()
    matched = (hard == HARD_SAME) | ((hard != HARD_DIFFERENT) & (probability >= rules.bands.match))
    edges = scored.filter(pl.Series(matched)).with_columns(
        pl.Series("match_probability", np.where(hard == HARD_SAME, 1.0, probability)[matched])
    )
    labels = connected_components(
        frame.height, edges.get_column("left_pos").to_numpy(), edges.get_column("right_pos").to_numpy()
    )
    ids = frame.get_column("rid")
    clusters = pl.DataFrame({id_column: ids, "cluster_id": ids.gather(labels)}).with_columns(
        pl.len().over("cluster_id").alias("cluster_size")
    )
    pairs = edges.select(
        pl.col("left_pos")
        .map_batches(lambda s: ids.gather(s), return_dtype=pl.String)
        .alias(f"{id_column}_l"),
        pl.col("right_pos")
        .map_batches(lambda s: ids.gather(s), return_dtype=pl.String)
        .alias(f"{id_column}_r"),
        "match_probability",
        "rule",
    )
    return DedupeOutput(clusters, pairs, model)
