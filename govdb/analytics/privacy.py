"""Small-cell suppression for every published aggregate (invariant 7).

Primary: a count below `min_cell` (and not zero) is withheld. A rate is withheld when its numerator
is withheld or when the count it leaves out (denominator - numerator) is small and not zero, since
a published 97 % of 100 reveals 3. Complementary: among the rows that add up to a published total
(the same period and outer groups), a single withheld row could be recovered by subtraction, so the
next smallest row is withheld too. Withheld values are null and named in `suppressed`.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

SUPPRESSED = "suppressed"


def small(count: pl.Expr, min_cell: int) -> pl.Expr:
    return (count > 0) & (count < min_cell)


def suppress(
    frame: pl.DataFrame,
    *,
    total: str,
    counts: Sequence[str],
    rates: dict[str, tuple[str, str]],
    partition: Sequence[str],
    min_cell: int,
    extra: Sequence[str] = (),
) -> pl.DataFrame:
    """Withhold small cells of `frame`.

    `total` is the row's count of tickets (each row is one cell of the table); `counts` are further
    counts; `rates` maps a rate column to its (numerator, denominator); `partition` names the columns
    whose rows sum to a published total (complementary suppression runs within each); `extra` are
    values (medians) withheld with the row's total.
    """
    if frame.is_empty():
        return frame.with_columns(pl.lit("").alias(SUPPRESSED))
    frame = frame.with_row_index("_row")
    # Complementary suppression on the row totals, within each partition.
    primary = small(pl.col(total), min_cell)
    frame = frame.with_columns(primary.alias("_hide"))
    group: list[str | pl.Expr] = list(partition) or [pl.lit(0).alias("_all")]
    ranked = frame.with_columns(
        pl.col("_hide").sum().over(group).alias("_hidden"),
        pl.when(pl.col("_hide") | (pl.col(total) == 0))
        .then(None)
        .otherwise(pl.col(total))
        .rank("ordinal")
        .over(group)
        .alias("_rank"),
    )
    frame = ranked.with_columns(
        (pl.col("_hide") | ((pl.col("_hidden") == 1) & (pl.col("_rank") == 1))).alias("_hide")
    ).drop("_hidden", "_rank")
    hide_row = pl.col("_hide")
    names: list[pl.Expr] = []
    updates: list[pl.Expr] = []
    hidden_counts: dict[str, pl.Expr] = {total: hide_row}
    for name in counts:
        hidden_counts[name] = hide_row | small(pl.col(name), min_cell)
    for rate, (num, den) in rates.items():
        hidden_counts[rate] = (
            hidden_counts.get(num, hide_row)
            | hidden_counts.get(den, hide_row)
            | small(pl.col(den) - pl.col(num), min_cell)
        )
    for name in extra:
        hidden_counts[name] = hide_row
    for name, hidden in hidden_counts.items():
        updates.append(pl.when(hidden).then(None).otherwise(pl.col(name)).alias(name))
        names.append(pl.when(hidden).then(pl.lit(name)).otherwise(None))
    out = frame.with_columns(pl.concat_str(names, separator=",", ignore_nulls=True).alias(SUPPRESSED))
    return out.with_columns(updates).sort("_row").drop("_row", "_hide")
