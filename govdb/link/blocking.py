"""Blocking: candidate pairs from equi-joins on keys, so only plausible pairs are compared.

Each blocking rule is a list of key columns that must be equal on both sides (ID number; region
+ birth date; surname pinyin + birth date; ...). The pairs of all rules are unioned and
deduplicated, each pair remembering the first rule that found it. A key value shared by too many
records on either side (a hall's default phone number, a blank-looking placeholder) would explode
the join, so values above `max_block` are skipped and reported, never silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import polars as pl

from govdb.errors import ConfigError


@dataclass(frozen=True)
class SkippedKey:
    """A key value too common to block on: the rule, the value, and how many rows carried it."""

    rule: str
    value: str
    left_rows: int
    right_rows: int


@dataclass
class Blocking:
    """Candidate pairs (left_id, right_id, rule) and the key values skipped as too common."""

    pairs: pl.DataFrame
    skipped: list[SkippedKey] = field(default_factory=list)


def _usable(frame: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """Rows whose keys are all present (an empty text is no key)."""
    frame = frame.drop_nulls(keys)
    texts = [k for k in keys if frame.schema[k] == pl.String]
    return frame.filter(pl.all_horizontal(pl.col(k) != "" for k in texts)) if texts else frame


def rule_name(keys: Sequence[str]) -> str:
    return "+".join(keys)


def block(
    left: pl.DataFrame,
    right: pl.DataFrame,
    rules: Sequence[Sequence[str]],
    *,
    left_id: str,
    right_id: str,
    max_block: int = 1000,
) -> Blocking:
    """Candidate pairs between `left` and `right` under every rule, deduplicated."""
    parts: list[pl.DataFrame] = []
    skipped: list[SkippedKey] = []
    for order, keys in enumerate(rules):
        keys = list(keys)
        name = rule_name(keys)
        missing = [k for k in keys if k not in left.columns or k not in right.columns]
        if missing:
            raise ConfigError(
                f"blocking rule {name!r} needs columns {missing} on both sides; standardize the files first "
                "or drop the rule"
            )
        lhs = _usable(left.select(left_id, *keys), keys)
        rhs = _usable(right.select(right_id, *keys), keys)
        sizes = (
            lhs.group_by(keys)
            .len("left_rows")
            .join(rhs.group_by(keys).len("right_rows"), on=keys, how="inner")
        )
        common = sizes.filter((pl.col("left_rows") > max_block) | (pl.col("right_rows") > max_block))
        for row in common.iter_rows(named=True):
            value = "|".join(str(row[k]) for k in keys)
            skipped.append(SkippedKey(name, value, row["left_rows"], row["right_rows"]))
        if common.height:
            lhs = lhs.join(common.select(keys), on=keys, how="anti")
        pairs = lhs.join(rhs, on=keys, how="inner", suffix="_r").select(
            pl.col(left_id).alias("left_id"),
            pl.col(right_id if right_id != left_id else f"{right_id}_r").alias("right_id"),
            pl.lit(order, pl.UInt16).alias("rule_order"),
        )
        parts.append(pairs)
    if not parts:
        return Blocking(pl.DataFrame(schema={"left_id": pl.String, "right_id": pl.String, "rule": pl.String}))
    names = pl.DataFrame(
        {"rule_order": list(range(len(rules))), "rule": [rule_name(r) for r in rules]}
    ).with_columns(pl.col("rule_order").cast(pl.UInt16))
    union = (
        pl.concat(parts)
        .sort("rule_order")
        .unique(["left_id", "right_id"], keep="first", maintain_order=True)
        .join(names, on="rule_order")
        .drop("rule_order")
    )
    return Blocking(union, skipped)
