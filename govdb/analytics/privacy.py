"""Small-cell suppression for every published aggregate (invariant 7).

Primary: a count below `min_cell` (and not zero) is withheld. A count whose complement is small
(tickets 100, answered in time 97) is withheld too, and so is its rate, since 100 and 97 or 97 %
of 100 reveal the 3 left out: so for every count part of another of the same row (closed of
tickets, resolved of closed and of tickets, ...: a rate's pair, or `parts`). A median is withheld
with the count it is taken over.

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

What a count leaves out is protected too: where `responded` is withheld, the late tickets (tickets
- responded) are unknown, and the line's published totals give their sum over the withheld cells;
so each left-out count (late, open, unrated, unresolved, unsatisfied, ...) runs the same fixed
point over the same lines, a cell withheld for it withholding the part (and its rate) there, and
the counts and their left-out counts are grown in turn until none moves.

What it cannot do: tables over different windows or grains (weeks against months, a month table
against the all-periods table of another window) are suppressed each on their own, so their
difference can still give away a small cell or a small sum; publish one grain and one window per
release. It is a heuristic, not an audit: a combination of several lines can narrow a withheld
cell to an interval.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

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


class _Table:
    """One count over every cell, its candidates for withholding sorted once per line type (by
    line, then preference, then row), so each round is a few whole-array bincounts."""

    def __init__(self, value: np.ndarray, keys: list[np.ndarray]) -> None:
        size = value.size
        self.value, self.keys, self.shown = value, keys, value > 0
        alone = np.zeros(size, dtype=bool)
        for key in keys:
            alone |= np.bincount(key, weights=self.shown, minlength=size)[key] == 1
        order = value + np.where(alone, _LONE, 0)
        self.ranked = [np.lexsort((np.arange(size), order, key)) for key in keys]

    def grow(self, hide: np.ndarray, min_cell: int, max_rounds: int) -> int:
        """Grow `hide` (in place) to the fixed point over the lines; returns the rounds run
        (`max_rounds + 1`: still moving at the cap)."""
        value, shown, size = self.value, self.shown, self.value.size
        for rounds in range(1, max_rounds + 1):
            grown = False
            for key, sorted_cells in zip(self.keys, self.ranked, strict=True):
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


def _closure(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """(part, whole) pairs with every whole's wholes (resolved of closed of tickets: resolved of
    tickets too), so each count is checked against every count holding it."""
    out = set(pairs)
    while more := {(part, top) for part, whole in out for inner, top in out if inner == whole} - out:
        out |= more
    return sorted(out)


def complementary(
    frame: pl.DataFrame,
    names: Sequence[str],
    lines: Sequence[Line],
    min_cell: int,
    *,
    max_rounds: int = MAX_ROUNDS,
    parts: Sequence[tuple[str, str]] = (),
) -> tuple[pl.DataFrame, int]:
    """Grow the masks `_hide_<name>` to the fixed point over `lines`; also returns the most rounds
    any count ran (`max_rounds + 1` when the cap was hit: that count is withheld whole). Each count
    is its own table, so each stops on its own.

    `parts` are (part, whole) pairs of `names` (closed, tickets): what a part leaves out (whole -
    part: open, late, unrated, ...) is protected over the same lines as a count of its own, where
    it is unknown (part or whole withheld); withholding more of it withholds the part in that cell.
    The counts and what they leave out grow together until none moves (a joint fixed point)."""
    if not lines or not names or frame.is_empty():
        return frame, 0
    # each line as one integer (its first row's number), for bincount
    numbered = frame.select(pl.int_range(pl.len()).alias("_cell")).hstack(frame)
    keys = [
        numbered.select(pl.col("_cell").first().over(list(line) or [pl.lit(0)])).to_series().to_numpy()
        for line in lines
    ]
    value = {name: frame.get_column(name).fill_null(0).cast(pl.Int64).to_numpy() for name in names}
    hide = {name: frame.get_column(_mask(name)).to_numpy().copy() for name in names}
    tables = {name: _Table(value[name], keys) for name in names}
    left_out = {(p, w): _Table(np.clip(value[w] - value[p], 0, None), keys) for p, w in parts}
    rounds = 0
    for _ in range(max_rounds):
        before = sum(int(mask.sum()) for mask in hide.values())
        for name, table in tables.items():
            ran = table.grow(hide[name], min_cell, max_rounds)
            if ran > max_rounds:  # not reached on real tables (see the tests): never half protected
                hide[name][:] = True
            rounds = max(rounds, ran)
        for (part, whole), table in left_out.items():
            unknown = hide[part] | hide[whole]
            grown = unknown.copy()
            ran = table.grow(grown, min_cell, max_rounds)
            if ran > max_rounds:
                grown[:] = True
            rounds = max(rounds, ran)
            hide[part] |= grown & ~unknown
        if not left_out or sum(int(mask.sum()) for mask in hide.values()) == before:
            break
    else:  # the counts and their complements still moving at the cap: withheld whole
        for mask in hide.values():
            mask[:] = True
        rounds = max_rounds + 1
    return frame.with_columns(pl.Series(_mask(name), mask) for name, mask in hide.items()), rounds


def suppress(
    frame: pl.DataFrame,
    *,
    total: str,
    counts: Sequence[str],
    rates: dict[str, tuple[str, str]],
    lines: Sequence[Line],
    min_cell: int,
    extra: dict[str, str] | None = None,
    parts: Mapping[str, str] | None = None,
    withheld: Mapping[str, pl.Series] | None = None,
) -> pl.DataFrame:
    """Withhold small cells of `frame`, and enough others that no line gives one away.

    `total` is the row's count of tickets (each row is one cell of the table; a withheld total
    withholds the whole row); `counts` are further counts; `rates` maps a rate column to its
    (numerator, denominator); `lines` lists the partitions whose rows add up to a total that may be
    published (see the module docstring); `extra` maps a value (a median) to the count it is taken
    over, and is withheld with it; `parts` maps a count to the count holding it (closed: tickets;
    a rate's numerator is part of its denominator already). A count is withheld where what it
    leaves out of any count holding it is small, and what it leaves out is protected along the
    lines like a count. `withheld` (a count -> a mask in row order) are cells that stay withheld
    whatever their size: a table at a raised floor starts from the default floor's cells, so that
    comparing the two tables gives nothing away. Withheld values are null and named in `suppressed`.
    """
    if frame.is_empty():
        return frame.with_columns(pl.lit("").alias(SUPPRESSED))
    known = {total, *counts}
    pairs = [p for p in _closure([*rates.values(), *(parts or {}).items()]) if set(p) <= known]
    kept = {name: mask.alias(f"_kept_{name}") for name, mask in (withheld or {}).items()}
    frame = frame.with_columns(kept.values())

    def already(name: str) -> pl.Expr:
        return pl.col(f"_kept_{name}") if name in kept else pl.lit(False)

    frame = frame.with_columns((small(pl.col(total), min_cell) | already(total)).alias(_mask(total)))
    frame, _ = complementary(frame, [total], lines, min_cell)
    row = pl.col(_mask(total))
    primary = []
    for name in counts:
        left_out = [small(pl.col(whole) - pl.col(name), min_cell) for part, whole in pairs if part == name]
        primary.append(
            pl.any_horizontal(row, small(pl.col(name), min_cell), already(name), *left_out).alias(_mask(name))
        )
    frame, _ = complementary(frame.with_columns(primary), [total, *counts], lines, min_cell, parts=pairs)
    hidden: dict[str, pl.Expr] = {total: row, **{name: pl.col(_mask(name)) for name in counts}}
    for rate, (num, den) in rates.items():
        hidden[rate] = hidden[num] | hidden[den] | small(pl.col(den) - pl.col(num), min_cell)
    for name, base in (extra or {}).items():
        hidden[name] = hidden[base]
    names = [pl.when(h).then(pl.lit(name)).otherwise(None) for name, h in hidden.items()]
    updates = [pl.when(h).then(None).otherwise(pl.col(name)).alias(name) for name, h in hidden.items()]
    out = frame.with_columns(pl.concat_str(names, separator=",", ignore_nulls=True).alias(SUPPRESSED))
    masks = [_mask(n) for n in (total, *counts)] + [f"_kept_{name}" for name in kept]
    return out.with_columns(updates).drop(masks)
