"""Small-cell suppression for every published aggregate (invariant 7).

Primary: a count below `min_cell` (and not zero) is withheld. A count whose complement is small
(tickets 100, answered in time 97) is withheld too, and so is its rate, since 100 and 97 or 97 %
of 100 reveal the 3 left out. A median is withheld with the count it is taken over.

Complementary: a table's cells add up along *lines* whose totals are, or could be, published by
another table: the units of one parent in one period (a street's villages add up to the street
table), the categories of one unit, the periods of one group inside a coarser period (the months of
a year add up to the year table over the same window). A line holding exactly one withheld cell
gives it away by subtraction, and a line whose withheld cells sum to less than `min_cell` gives
away a small sum; so the smallest shown cell of such a line is withheld too (preferring a cell not
alone in another line, whose value that line would give away), line type after line type, round
after round, until no line needs more: a fixed point. Each round withholds at least one more cell,
so it ends; `MAX_ROUNDS` bounds the time, and a count still moving then is withheld whole rather
than published unprotected. This runs for the ticket count and for each further count, on whole
columns (numpy bincount over integer line numbers, as measures.mark_repeats: no per-row Python).

What it cannot do: tables over different windows or grains (weeks against months, a month table
against the all-periods table of another window) are suppressed each on their own, so their
difference can still give away a small cell or a small sum; publish one grain and one window per
release. It is a heuristic, not an audit: a combination of several lines can narrow a withheld
cell to an interval.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

SUPPRESSED = "suppressed"
MAX_ROUNDS = 50
Line = Sequence[str | pl.Expr]  # the columns (or expressions) whose rows share one line
_LONE = 1 << 40  # sorts a cell alone in some line after every other candidate


def small(count: pl.Expr, min_cell: int) -> pl.Expr:
    return (count > 0) & (count < min_cell)


def _mask(name: str) -> str:
    return f"_hide_{name}"


def _fixed_point(
    value: np.ndarray, hide: np.ndarray, keys: list[np.ndarray], min_cell: int, max_rounds: int
) -> int:
    """Grow `hide` (in place) for one count over the lines `keys` (a line number per cell); returns
    the rounds run. Whole-array numpy: per-line sums by bincount, and the smallest shown cell of each
    line that needs one from the cells sorted once by (line, preference, row)."""
    size = value.size
    cells = np.arange(size)
    shown = value > 0
    alone = np.zeros(size, dtype=bool)
    for key in keys:
        alone |= np.bincount(key, weights=shown, minlength=size)[key] == 1
    order = value + np.where(alone, _LONE, 0)
    ranked = [np.lexsort((cells, order, key)) for key in keys]
    for rounds in range(1, max_rounds + 1):
        grown = False
        for key, sorted_cells in zip(keys, ranked, strict=True):
            withheld = np.bincount(key, weights=hide, minlength=size)
            withheld_sum = np.bincount(key, weights=np.where(hide, value, 0), minlength=size)
            needs = (withheld == 1) | ((withheld_sum > 0) & (withheld_sum < min_cell))
            pick = sorted_cells[~hide[sorted_cells] & shown[sorted_cells] & needs[key[sorted_cells]]]
            if pick.size:  # the first candidate of each line (cells are sorted by line)
                hide[pick[np.unique(key[pick], return_index=True)[1]]] = True
                grown = True
        if not grown:
            return rounds
    return max_rounds + 1


def complementary(
    frame: pl.DataFrame,
    names: Sequence[str],
    lines: Sequence[Line],
    min_cell: int,
    *,
    max_rounds: int = MAX_ROUNDS,
) -> tuple[pl.DataFrame, int]:
    """Grow the masks `_hide_<name>` to the fixed point over `lines`; also returns the most rounds
    any count ran (`max_rounds + 1` when the cap was hit: that count is withheld whole). Each count
    is its own table, so each stops on its own."""
    if not lines or not names or frame.is_empty():
        return frame, 0
    # each line as one integer (its first row's number), for bincount
    numbered = frame.select(pl.int_range(pl.len()).alias("_cell")).hstack(frame)
    keys = [
        numbered.select(pl.col("_cell").first().over(list(line) or [pl.lit(0)])).to_series().to_numpy()
        for line in lines
    ]
    rounds, masks = 0, []
    for name in names:
        hide = frame.get_column(_mask(name)).to_numpy().copy()
        value = frame.get_column(name).fill_null(0).cast(pl.Int64).to_numpy()
        ran = _fixed_point(value, hide, keys, min_cell, max_rounds)
        if ran > max_rounds:  # not reached on real tables (see the tests): never half protected
            hide[:] = True
        rounds = max(rounds, ran)
        masks.append(pl.Series(_mask(name), hide))
    return frame.with_columns(masks), rounds


def suppress(
    frame: pl.DataFrame,
    *,
    total: str,
    counts: Sequence[str],
    rates: dict[str, tuple[str, str]],
    lines: Sequence[Line],
    min_cell: int,
    extra: dict[str, str] | None = None,
) -> pl.DataFrame:
    """Withhold small cells of `frame`, and enough others that no line gives one away.

    `total` is the row's count of tickets (each row is one cell of the table; a withheld total
    withholds the whole row); `counts` are further counts; `rates` maps a rate column to its
    (numerator, denominator); `lines` lists the partitions whose rows add up to a total that may be
    published (see the module docstring); `extra` maps a value (a median) to the count it is taken
    over, and is withheld with it. Withheld values are null and named in `suppressed`.
    """
    if frame.is_empty():
        return frame.with_columns(pl.lit("").alias(SUPPRESSED))
    frame = frame.with_columns(small(pl.col(total), min_cell).alias(_mask(total)))
    frame, _ = complementary(frame, [total], lines, min_cell)
    row = pl.col(_mask(total))
    primary = []
    for name in counts:
        left_out = [small(pl.col(den) - pl.col(num), min_cell) for num, den in rates.values() if num == name]
        primary.append(pl.any_horizontal(row, small(pl.col(name), min_cell), *left_out).alias(_mask(name)))
    frame, _ = complementary(frame.with_columns(primary), counts, lines, min_cell)
    hidden: dict[str, pl.Expr] = {total: row, **{name: pl.col(_mask(name)) for name in counts}}
    for rate, (num, den) in rates.items():
        hidden[rate] = hidden[num] | hidden[den] | small(pl.col(den) - pl.col(num), min_cell)
    for name, base in (extra or {}).items():
        hidden[name] = hidden[base]
    names = [pl.when(h).then(pl.lit(name)).otherwise(None) for name, h in hidden.items()]
    updates = [pl.when(h).then(None).otherwise(pl.col(name)).alias(name) for name, h in hidden.items()]
    out = frame.with_columns(pl.concat_str(names, separator=",", ignore_nulls=True).alias(SUPPRESSED))
    masks = [_mask(n) for n in (total, *counts)]
    return out.with_columns(updates).drop(masks)
