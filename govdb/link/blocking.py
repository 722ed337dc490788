"""Blocking: candidate pairs from equi-joins on keys, so only plausible pairs are compared.

Each blocking rule is a list of key columns that must be equal on both sides (ID number; region
+ birth date; surname pinyin + birth date; ...). The pairs of all rules are unioned and
deduplicated, each pair remembering the first rule that found it. A key value shared by too many
records on either side (a hall's default phone number, a blank-looking placeholder) would explode
the join, so values above `max_block` are skipped and reported, never silently.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
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


def _usable(
    frame: pl.DataFrame, id_column: str, keys: Sequence[str], carried: Sequence[str] = ()
) -> pl.LazyFrame:
    """The id, keys (and `carried` columns) of rows whose keys are all present (an empty text is
    no key)."""
    rows = frame.lazy().select(id_column, *keys, *carried).drop_nulls(keys)
    texts = [k for k in keys if frame.schema[k] == pl.String]
    return rows.filter(pl.all_horizontal(pl.col(k) != "" for k in texts)) if texts else rows


def _heavy_hashes(rows: pl.LazyFrame, keys: Sequence[str], max_block: int) -> pl.LazyFrame:
    """64-bit hashes of key values held by more than `max_block` rows: counting hashes is several
    times faster than grouping text keys, and the few heavy ones are then counted by their keys."""
    hashes = rows.select(pl.struct(keys).hash().alias("_h"))
    return hashes.group_by("_h").len("_n").filter(pl.col("_n") > max_block).select("_h")


def _too_common(
    lhs: pl.LazyFrame, rhs: pl.LazyFrame, keys: Sequence[str], max_block: int, suspects: pl.Series
) -> pl.DataFrame:
    """Key values on both sides and held by more than `max_block` rows on either (keys, left_rows,
    right_rows), among the rows whose key hash is a suspect."""

    def rows_of(rows: pl.LazyFrame, name: str) -> pl.LazyFrame:
        return rows.filter(pl.struct(keys).hash().is_in(suspects.implode())).group_by(keys).len(name)

    sizes = rows_of(lhs, "left_rows").join(rows_of(rhs, "right_rows"), on=keys, how="inner").collect()
    return sizes.filter((pl.col("left_rows") > max_block) | (pl.col("right_rows") > max_block))


def rule_name(keys: Sequence[str]) -> str:
    return "+".join(keys)


def key_string(keys: Sequence[str]) -> pl.Expr:
    """A rule's key as the master's link keys store it: `rule=value|value` (dates as ISO text)."""
    values = pl.concat_str([pl.col(k).cast(pl.String) for k in keys], separator="|")
    return pl.concat_str([pl.lit(rule_name(keys) + "="), values])


def block(
    left: pl.DataFrame,
    right: pl.DataFrame,
    rules: Sequence[Sequence[str]],
    *,
    left_id: str,
    right_id: str,
    max_block: int = 1000,
    skip_keys: Collection[str] = (),
    compatible: str | None = None,
) -> Blocking:
    """Candidate pairs between `left` and `right` under every rule, deduplicated.

    Every rule's heavy-value count runs in one `collect_all`, and every rule's join in another, so
    polars spreads the rules over the cores. `skip_keys` are key strings (`rule=value|value`, as
    the master's link keys are written) known to be too common where `right` is only a sample
    (the candidates of a key look-up): no pair is made through them.
    """
    rules = [list(keys) for keys in rules]
    for keys in rules:
        missing = [k for k in keys if k not in left.columns or k not in right.columns]
        if missing:
            raise ConfigError(
                f"blocking rule {rule_name(keys)!r} needs columns {missing} on both sides; standardize the "
                "files first or drop the rule"
            )
    if not rules:
        return Blocking(pl.DataFrame(schema={"left_id": pl.String, "right_id": pl.String, "rule": pl.String}))

    def carried(keys: Sequence[str]) -> list[str]:
        return [compatible] if compatible is not None and compatible not in keys else []

    sides = [
        (_usable(left, left_id, keys, carried(keys)), _usable(right, right_id, keys, carried(keys)))
        for keys in rules
    ]
    if skip_keys:
        skipped_keys = pl.Series("skip", sorted(skip_keys), dtype=pl.String).implode()
        sides = [
            (lhs.filter(~key_string(keys).is_in(skipped_keys)), rhs)
            for (lhs, rhs), keys in zip(sides, rules, strict=True)
        ]
    heavy = pl.collect_all(
        [
            _heavy_hashes(rows, keys, max_block)
            for (lhs, rhs), keys in zip(sides, rules, strict=True)
            for rows in (lhs, rhs)
        ]
    )
    skipped: list[SkippedKey] = []
    joins = []
    for order, ((lhs, rhs), keys) in enumerate(zip(sides, rules, strict=True)):
        suspects = pl.concat([heavy[2 * order], heavy[2 * order + 1]]).get_column("_h").unique()
        if suspects.len():
            common = _too_common(lhs, rhs, keys, max_block, suspects)
            for row in common.iter_rows(named=True):
                value = "|".join(str(row[k]) for k in keys)
                skipped.append(SkippedKey(rule_name(keys), value, row["left_rows"], row["right_rows"]))
            lhs = lhs.join(common.lazy().select(keys), on=keys, how="anti")
        joined = lhs.join(rhs, on=keys, how="inner", suffix="_r")
        for column in carried(keys):  # equal keys are equal values: only other rules need it
            mine, theirs = pl.col(column), pl.col(f"{column}_r")
            joined = joined.filter(mine.is_null() | theirs.is_null() | (mine == theirs))
        joins.append(
            joined.select(
                pl.col(left_id).alias("left_id"),
                pl.col(right_id if right_id != left_id else f"{right_id}_r").alias("right_id"),
                pl.lit(order, pl.UInt16).alias("rule_order"),
            )
        )
    names = pl.DataFrame(
        {"rule_order": list(range(len(rules))), "rule": [rule_name(r) for r in rules]}
    ).with_columns(pl.col("rule_order").cast(pl.UInt16))
    # The parts come in rule order: the first occurrence of a pair is the first rule that found it.
    # Joins return rows in no fixed order; sorted, the pairs (and the training sample drawn from
    # them) are the same on every run.
    union = (
        pl.concat(pl.collect_all(joins))
        .unique(["left_id", "right_id"], keep="first", maintain_order=True)
        .sort("left_id", "right_id")
        .join(names, on="rule_order", maintain_order="left")
        .drop("rule_order")
    )
    return Blocking(union, skipped)
