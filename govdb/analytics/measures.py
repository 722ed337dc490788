"""Hotline KPIs (seed 002): response, resolution, satisfaction, time to close, repeats, complaints.

Definitions come from rules/analytics/measures.yaml (see AnalyticsRules). Everything is computed on
whole columns of the fact frame; published frames go through small-cell suppression
(analytics/privacy.py) and carry the unverified-data label in every row.

Windows: every published table widens the window asked for to whole reporting periods (`snap`:
day: whole days; week: Monday..Sunday; month: the 1st to the last day; year and all: whole months)
and names the window it used (`window_start`, `window_end`), so two windows that differ inside a
period give the same table and subtracting them reveals nothing. A cell's values do not depend on
the window either: repeats are marked on the tickets before the window is cut.

Tables nest: a table by village (or street) also carries each unit's street (or county), so its
未定位 rows are per parent and complementary suppression runs within each parent's units.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import polars as pl
from polars.expr.whenthen import ChainedThen, Then

from govdb.analytics.facts import UNPLACED, UNVERIFIED
from govdb.analytics.privacy import Line, suppress
from govdb.errors import ConfigError
from govdb.rulebook.analytics import AnalyticsRules
from govdb.standards.divisions import division_table

Facts = pl.DataFrame | pl.LazyFrame
DIMENSIONS = ("county", "street", "village", "department", "category")
PERIODS = ("day", "week", "month", "year", "all")
COUNTS = ("responded", "closed", "resolved", "rated", "satisfied", "repeats", "complaints")
RATES = {
    "response_rate": ("responded", "tickets"),
    "resolution_rate": ("resolved", "closed"),
    "satisfaction_rate": ("satisfied", "rated"),
    "repeat_rate": ("repeats", "tickets"),
    "complaint_rate": ("complaints", "tickets"),
}
# each count and the count holding it: what it leaves out (open, late, unrated, ...) is protected too
PARTS = {
    "responded": "tickets",
    "closed": "tickets",
    "resolved": "closed",
    "rated": "tickets",
    "satisfied": "rated",
    "repeats": "tickets",
    "complaints": "tickets",
}
_LEVEL_WIDTH = {"county": 6, "street": 9, "village": 12}
_PARENT = {"village": "street", "street": "county"}
# the coarser periods a group's periods add up within ("": the whole window)
_TIME_LINES: dict[str, tuple[str, ...]] = {
    "day": ("1w", "1mo"),
    "week": ("",),
    "month": ("1y",),
    "year": ("",),
    "all": (),
}


def check_dimensions(by: Sequence[str], period: str) -> None:
    bad = [b for b in by if b not in DIMENSIONS]
    if bad:
        raise ConfigError(f"cannot group by {bad}; choose from {list(DIMENSIONS)} (e.g. --by street)")
    if period not in PERIODS:
        raise ConfigError(f"unknown period {period!r}; choose from {list(PERIODS)}")


def period_start(when: pl.Expr, period: str) -> pl.Expr:
    """The first local day of the period holding `when` (weeks start on Monday)."""
    day = when.dt.date()
    if period == "day":
        return day
    if period == "week":
        return day.dt.truncate("1w")
    if period == "month":
        return day.dt.truncate("1mo")
    if period == "year":
        return day.dt.truncate("1y")
    return pl.lit(None, pl.Date)


def _month_end(day: dt.date) -> dt.date:
    return (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)


def snap(start: dt.date | None, end: dt.date | None, period: str) -> tuple[dt.date | None, dt.date | None]:
    """The window of whole reporting periods holding `start`..`end` (an open side stays open): days
    are whole already; a week runs Monday..Sunday; a month, a year and `all` run over whole months.
    Widened outward, so two windows that differ inside a period give one table."""
    if period == "day":
        return start, end
    if period == "week":
        first = start - dt.timedelta(days=start.weekday()) if start else None
        return first, end + dt.timedelta(days=6 - end.weekday()) if end else None
    return (start.replace(day=1) if start else None), (_month_end(end) if end else None)


def year_before(day: dt.date, period: str) -> dt.date:
    """The start of the period a year (52 weeks for weeks) before `day`, for 同比."""
    if period == "week":
        return day - dt.timedelta(weeks=52)
    return day.replace(year=day.year - 1, day=min(day.day, 28) if day.month == 2 else day.day)


def table_keys(by: Sequence[str]) -> list[str]:
    """`by` with the parent of its finest division level put before it when missing (village: its
    street; street: its county), so each unit's cells sit inside its parent's, 未定位 included."""
    levels = [b for b in by if b in _LEVEL_WIDTH]
    if not levels:
        return list(by)
    finest = max(levels, key=_LEVEL_WIDTH.__getitem__)
    parent = _PARENT.get(finest)
    if parent is None or parent in by:
        return list(by)
    at = list(by).index(finest)
    return [*by[:at], parent, *by[at:]]


def lines(by: Sequence[str], period: str) -> list[Line]:
    """Where a table's cells add up to a total another table may publish (see privacy.py): each
    dimension's values within one period and one value of every other key (a division level within
    its parent; the finest level stands for the coarser ones, which nest), and each group's periods
    within each coarser period (days in weeks and months, months in years, else the window)."""
    keys = table_keys(by)
    levels = [b for b in keys if b in _LEVEL_WIDTH]
    finest = [max(levels, key=_LEVEL_WIDTH.__getitem__)] if levels else []
    across = [b for b in by if b not in _LEVEL_WIDTH] + finest
    out: list[Line] = [["period", *(k for k in keys if k != d)] for d in across]
    for coarser in _TIME_LINES[period]:
        out.append([*keys, *([pl.col("period").dt.truncate(coarser)] if coarser else [])])
    return out


def dimension(level: str) -> pl.Expr:
    """The county / street / village code from the event's division code (a shorter code places
    higher levels only); an event without a place counts as 未定位."""
    code, width = pl.col("division_code"), _LEVEL_WIDTH[level]
    return pl.when(code.str.len_chars() >= width).then(code.str.slice(0, width)).otherwise(pl.lit(UNPLACED))


def with_dimensions(facts: pl.DataFrame, levels: Sequence[str] = tuple(_LEVEL_WIDTH)) -> pl.DataFrame:
    return facts.with_columns(dimension(level).alias(level) for level in levels)


def mark_repeats(facts: pl.DataFrame, rules: AnalyticsRules) -> pl.DataFrame:
    """`repeat`: the same caller called about the same category within `repeat_days` before.

    Sorted by caller, category and time, a ticket's earlier one is the row before it when that row
    has the same caller and category: one sort (on the category's integer code, not its text) and
    one pass, no per-group window over a million callers. A facts export carries the column, so
    repeated aggregation skips the sort."""
    if "repeat" in facts.columns:
        return facts
    # Only the numeric keys are sorted (moving the text columns would cost more than the sort).
    keys = facts.select(
        pl.int_range(pl.len(), dtype=pl.UInt32).alias("_i"),
        "caller",
        pl.col("category").cast(pl.Categorical).to_physical().alias("_cat"),
        pl.col("received").dt.epoch("s").alias("_t"),
    ).sort("caller", "_cat", "_t", nulls_last=True)
    same = (pl.col("caller") == pl.col("caller").shift(1)) & (pl.col("_cat") == pl.col("_cat").shift(1))
    within = (pl.col("_t") - pl.col("_t").shift(1)) <= rules.repeat_days * 86400
    repeat = pl.col("caller").is_not_null() & same.fill_null(False) & within.fill_null(False)
    marked = keys.select("_i", repeat.alias("repeat"))
    flag = np.zeros(facts.height, dtype=bool)
    flag[marked.get_column("_i").to_numpy()] = marked.get_column("repeat").to_numpy()
    return facts.with_columns(pl.Series("repeat", flag))


def _counted(rules: AnalyticsRules) -> list[pl.Expr]:
    """The aggregations of one KPI cell, straight from the ticket columns (nothing materialised)."""
    response = (pl.col("first_response") - pl.col("received")).dt.total_seconds() / 3600.0
    rated = pl.col("satisfaction").is_in(rules.rated)
    closed = pl.col("closed").is_not_null()
    return [
        pl.len().cast(pl.Int64).alias("tickets"),
        (response.is_not_null() & (response <= rules.response_hours) & (response >= 0))
        .sum()
        .alias("responded"),
        closed.sum().alias("closed"),
        (closed & pl.col("resolved").fill_null(False)).sum().alias("resolved"),
        rated.sum().alias("rated"),
        (rated & pl.col("satisfaction").is_in(rules.satisfied)).sum().alias("satisfied"),
        pl.col("repeat").sum().alias("repeats"),
        pl.col("category").is_in(rules.quadrant.complaint_categories).sum().alias("complaints"),
        # a ticket not closed has no duration (null), which the median skips
        ((pl.col("closed") - pl.col("received")).dt.total_milliseconds().median() / 3_600_000.0).alias(
            "median_hours_to_close"
        ),
    ]


def _numeric_dimension(level: str) -> pl.Expr:
    """`dimension` as an integer (12-digit codes fit in Int64): dividing is far cheaper than slicing
    ten million strings, and integer keys group faster. Null where the code does not reach the level."""
    width = _LEVEL_WIDTH[level]
    size = pl.col("division_code").str.len_bytes()
    number = pl.col("division_code").cast(pl.Int64, strict=False)
    out: Then | ChainedThen = pl.when(size == 12).then(number // 10 ** (12 - width))
    if width <= 9:
        out = out.when(size == 9).then(number // 10 ** (9 - width))
    if width == 6:
        out = out.when(size == 6).then(number)
    return out.otherwise(None)


def raw_kpis(
    facts: pl.DataFrame | pl.LazyFrame, rules: AnalyticsRules, by: Sequence[str], period: str
) -> pl.DataFrame:
    """Unsuppressed KPI cells keyed by `table_keys(by)` (internal, never published as is), with
    each cell's first and last counted day (`_first`, `_last`: the data's extent, dropped on
    publishing).

    One lazy pass: only the columns the cells need are read (a Parquet scan reads no others) and
    only the grouping columns asked for are derived."""
    check_dimensions(by, period)
    lazy, keys = _keyed(_marked(facts, rules).lazy(), rules, by, period)
    when = pl.col(rules.count_in)
    counts = ["tickets", *COUNTS]
    extent = [when.min().dt.date().alias("_first"), when.max().dt.date().alias("_last")]
    out = lazy.group_by(keys).agg(*_counted(rules), *extent).with_columns(pl.col(counts).cast(pl.Int64))
    rates = [
        pl.when(pl.col(den) > 0).then(pl.col(num) / pl.col(den)).otherwise(None).alias(rate)
        for rate, (num, den) in RATES.items()
    ]
    return _placed(out, keys).with_columns(rates).sort(keys, nulls_last=True).collect()


def ticket_cells(
    facts: pl.DataFrame | pl.LazyFrame, rules: AnalyticsRules, by: Sequence[str], period: str
) -> pl.DataFrame:
    """Only the ticket count of each cell of the KPI table by `by`, keyed as `raw_kpis` keys it:
    enough to know which cells that table withholds (`withheld_tickets`) at a fraction of the cost."""
    check_dimensions(by, period)
    lazy, keys = _keyed(facts.lazy(), rules, by, period)
    out = lazy.group_by(keys).agg(pl.len().cast(pl.Int64).alias("tickets"))
    return _placed(out, keys).sort(keys, nulls_last=True).collect()


def withheld_tickets(cells: pl.DataFrame, rules: AnalyticsRules, by: Sequence[str], period: str) -> pl.Series:
    """Whether the published KPI table withholds each cell's ticket count. The ticket count's own
    suppression depends on no other count (other counts are withheld inside it, never it for
    them), so the ticket counts alone decide it (tests/test_analytics_privacy.py checks this
    against `publish`)."""
    out = suppress(
        cells, total="tickets", counts=(), rates={}, lines=lines(by, period), min_cell=rules.min_cell
    )
    return out.get_column("tickets").is_null()


def _keyed(
    lazy: pl.LazyFrame, rules: AnalyticsRules, by: Sequence[str], period: str
) -> tuple[pl.LazyFrame, list[str]]:
    """The tickets with the table's keys (period, division codes as integers): the one place the
    KPI tables' cells are defined."""
    when = pl.col(rules.count_in)  # received or closed: the time a ticket counts at
    if rules.count_in == "closed":
        lazy = lazy.filter(pl.col("closed").is_not_null())
    keys = ["period", *table_keys(by)]
    levels = [b for b in keys if b in _LEVEL_WIDTH]
    lazy = lazy.with_columns(
        period_start(when, period).alias("period"), *(_numeric_dimension(b).alias(b) for b in levels)
    )
    return lazy, keys


def _placed(cells: pl.LazyFrame, keys: Sequence[str]) -> pl.LazyFrame:
    """Division keys back as codes (未定位 where a ticket does not reach the level)."""
    return cells.with_columns(
        pl.col(b).cast(pl.String).fill_null(pl.lit(UNPLACED)) for b in keys if b in _LEVEL_WIDTH
    )


def _marked(facts: Facts, rules: AnalyticsRules) -> Facts:
    """Facts with the repeat flag (kept when a facts export carries it)."""
    names = facts.collect_schema().names() if isinstance(facts, pl.LazyFrame) else facts.columns
    if "repeat" in names:
        return facts
    return mark_repeats(facts.collect() if isinstance(facts, pl.LazyFrame) else facts, rules)


def _in_window(facts: Facts, rules: AnalyticsRules, first: dt.date | None, last: dt.date | None) -> Facts:
    """The tickets counted from `first` to `last` (local days, inclusive, by the rules' count_in)."""
    day = pl.col(rules.count_in).dt.date()
    if first is not None:
        facts = facts.filter(day >= first)
    if last is not None:
        facts = facts.filter(day <= last)
    return facts


@lru_cache(maxsize=1)
def _names_frame() -> pl.DataFrame:
    table = division_table().filter(pl.col("scheme") == "nbs")
    return table.select("code", "name").unique("code")


def division_names(codes: Sequence[str] | None = None) -> dict[str, str]:
    """code -> name (statistical scheme), for the given codes or all."""
    table = _names_frame()
    if codes is not None:
        table = table.filter(pl.col("code").is_in(list(codes)))
    return dict(zip(table.get_column("code"), table.get_column("name"), strict=True))


def add_names(frame: pl.DataFrame, levels: Sequence[str]) -> pl.DataFrame:
    """`<level>_name` beside each division column (the code itself where it has no name)."""
    for level in levels:
        names = _names_frame().rename({"code": level, "name": f"{level}_name"})
        frame = frame.join(names, on=level, how="left", maintain_order="left").with_columns(
            pl.col(f"{level}_name").fill_null(pl.col(level))
        )
    return frame


def _named(frame: pl.DataFrame, by: Sequence[str]) -> pl.DataFrame:
    return add_names(frame, [b for b in by if b in _LEVEL_WIDTH])


def publish(
    frame: pl.DataFrame,
    rules: AnalyticsRules,
    by: Sequence[str],
    period: str,
    min_cell: int | None,
    *,
    window: tuple[dt.date | None, dt.date | None] = (None, None),
    grain: str | None = None,
) -> pl.DataFrame:
    """Suppressed, named, labelled and dated (`window_start`, `window_end`: the window asked for,
    else the data's extent, in whole periods of `grain`): what may leave the library."""
    first, last = window
    if (first is None or last is None) and not frame.is_empty():
        seen = snap(frame.get_column("_first").min(), frame.get_column("_last").max(), grain or period)  # type: ignore[arg-type]
        first, last = first or seen[0], last or seen[1]
    cells = frame.drop("_first", "_last", strict=False)
    options: dict[str, Any] = {
        "total": "tickets",
        "counts": COUNTS,
        "rates": RATES,
        "lines": lines(by, period),
        "extra": {"median_hours_to_close": "closed"},
        "parts": PARTS,
    }
    floor = max(min_cell or 0, rules.min_cell)  # a caller may raise the floor, never lower it
    withheld = None
    if floor > rules.min_cell:  # ... and then withholds at least what the default floor does
        default = suppress(cells, min_cell=rules.min_cell, **options)
        withheld = {name: default.get_column(name).is_null() for name in ("tickets", *COUNTS)}
    out = suppress(cells, min_cell=floor, withheld=withheld, **options)
    # Categories and departments are the source's free text: the label of a withheld row could
    # itself be personal (a name, a phone typed into 诉求类型), so it is withheld with its counts.
    free_text = [c for c in ("category", "department") if c in by and c in out.columns]
    out = out.with_columns(
        pl.when(pl.col("tickets").is_null()).then(pl.lit(WITHHELD)).otherwise(pl.col(c)).alias(c)
        for c in free_text
    )
    return _named(out, table_keys(by)).with_columns(
        pl.lit(first, pl.Date).alias("window_start"),
        pl.lit(last, pl.Date).alias("window_end"),
        pl.lit(UNVERIFIED).alias("data_status"),
    )


WITHHELD = "（已隐去）"


def kpis(
    facts: Facts,
    rules: AnalyticsRules,
    *,
    by: Sequence[str] = ("street",),
    period: str = "month",
    min_cell: int | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
    grain: str | None = None,
) -> pl.DataFrame:
    """KPI cells per period and group, published (small cells withheld, labelled unverified), over
    `start`..`end` widened to whole periods of `grain` (default: `period`; see `snap`)."""
    check_dimensions(by, period)
    first, last = snap(start, end, grain or period)
    # repeats are marked before the window is cut, so a cell does not depend on the window
    cells = raw_kpis(_in_window(_marked(facts, rules), rules, first, last), rules, by, period)
    return publish(cells, rules, by, period, min_cell, window=(first, last), grain=grain)


def ranking(
    facts: Facts,
    rules: AnalyticsRules,
    *,
    by: str = "street",
    period: str = "month",
    measure: str = "satisfaction_rate",
    min_cell: int | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> pl.DataFrame:
    """Units ranked by a measure within each period (1 = best; lower is better for repeat and
    complaint rates and hours to close). Withheld cells are not ranked."""
    known = (*RATES, "median_hours_to_close", "tickets")
    if measure not in known:
        raise ConfigError(f"cannot rank by {measure!r}; choose from {list(known)}")
    out = kpis(facts, rules, by=[by], period=period, min_cell=min_cell, start=start, end=end)
    descending = measure not in ("repeat_rate", "complaint_rate", "median_hours_to_close")
    return out.with_columns(
        pl.col(measure).rank("min", descending=descending).over("period").cast(pl.Int64).alias("rank")
    ).sort("period", "rank", nulls_last=True)


def changes(
    facts: Facts,
    rules: AnalyticsRules,
    *,
    by: Sequence[str] = ("street",),
    period: str = "month",
    min_cell: int | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> pl.DataFrame:
    """Each published cell of the window with its period-over-period (环比) and year-over-year (同比)
    change of tickets and rates; a change is null where either side is withheld.

    The rows are exactly the kpis table of the window; the periods before it are compared as the
    kpis table of the year before the window publishes them (`facts` must reach back that far),
    never from a table over a wider window, whose suppression would differ."""
    if period not in ("day", "week", "month"):
        raise ConfigError(f"changes need a period of day, week or month, not {period!r}")
    cur = kpis(facts, rules, by=by, period=period, min_cell=min_cell, start=start, end=end)
    first = snap(start, None, period)[0]
    source = cur
    if first is not None:
        prior = kpis(
            facts,
            rules,
            by=by,
            period=period,
            min_cell=min_cell,
            start=year_before(first, period),
            end=first - dt.timedelta(days=1),
        )
        source = pl.concat([prior, cur], how="vertical_relaxed")
    keys = ["period", *table_keys(by)]
    measures = ["tickets", *RATES]
    step = {"day": "1d", "week": "1w", "month": "1mo"}[period]
    # a year earlier: the same month or day a calendar year back; for weeks, 52 weeks back
    year_step = "52w" if period == "week" else "1y"
    shifted = [
        source.select(
            pl.col("period").dt.offset_by(shift).alias("period"),
            *keys[1:],
            *[pl.col(m).alias(f"_{k}_{m}") for m in measures],
        )
        for k, shift in (("p", step), ("y", year_step))
    ]
    out = cur.join(shifted[0], on=keys, how="left", nulls_equal=True).join(
        shifted[1], on=keys, how="left", nulls_equal=True
    )
    ratio = [
        ((pl.col("tickets") - pl.col(f"_{k}_tickets")) / pl.col(f"_{k}_tickets")).alias(f"tickets_{n}")
        for k, n in (("p", "pop"), ("y", "yoy"))
    ]
    diffs = [
        (pl.col(rate) - pl.col(f"_{k}_{rate}")).alias(f"{rate}_{n}")
        for rate in RATES
        for k, n in (("p", "pop"), ("y", "yoy"))
    ]
    return out.with_columns(*ratio, *diffs).drop(pl.selectors.starts_with("_p_", "_y_"))


QUADRANTS = {
    (False, True): "亮点",  # few complaints, high satisfaction
    (True, False): "难点",  # many complaints, low satisfaction
    (False, False): "堵点",  # few complaints, low satisfaction
    (True, True): "拐点",  # many complaints, high satisfaction
}


def quadrant(
    facts: Facts,
    rules: AnalyticsRules,
    *,
    by: str = "street",
    min_cell: int | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
    grain: str | None = None,
) -> pl.DataFrame:
    """Each unit's complaint rate against its satisfaction rate over the window (whole months, or
    whole periods of `grain`), placed in the seed's quadrant (splits from the rules, else the
    medians of the units shown)."""
    out = kpis(facts, rules, by=[by], period="all", min_cell=min_cell, start=start, end=end, grain=grain)
    out = out.drop("period")
    shown = out.filter(pl.col("complaint_rate").is_not_null() & pl.col("satisfaction_rate").is_not_null())
    q = rules.quadrant
    c_split = (
        q.complaint_split if q.complaint_split is not None else shown.get_column("complaint_rate").median()
    )
    s_split = (
        q.satisfaction_split
        if q.satisfaction_split is not None
        else shown.get_column("satisfaction_rate").median()
    )
    high_c = pl.col("complaint_rate") > pl.lit(c_split, pl.Float64)  # null splits: an empty table
    high_s = pl.col("satisfaction_rate") >= pl.lit(s_split, pl.Float64)
    label = (
        pl.when(pl.col("complaint_rate").is_null() | pl.col("satisfaction_rate").is_null())
        .then(None)
        .when(~high_c & high_s)
        .then(pl.lit(QUADRANTS[(False, True)]))
        .when(high_c & ~high_s)
        .then(pl.lit(QUADRANTS[(True, False)]))
        .when(~high_c & ~high_s)
        .then(pl.lit(QUADRANTS[(False, False)]))
        .otherwise(pl.lit(QUADRANTS[(True, True)]))
    )
    return out.with_columns(
        label.alias("quadrant"),
        pl.lit(c_split, pl.Float64).alias("complaint_split"),
        pl.lit(s_split, pl.Float64).alias("satisfaction_split"),
    )
