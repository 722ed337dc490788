"""Hotline KPIs (seed 002): response, resolution, satisfaction, time to close, repeats, complaints.

Definitions come from rules/analytics/measures.yaml (see AnalyticsRules). Everything is computed on
whole columns of the fact frame; published frames go through small-cell suppression and carry the
unverified-data label in every row.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import polars as pl
from polars.expr.whenthen import ChainedThen, Then

from govdb.analytics.facts import UNPLACED, UNVERIFIED
from govdb.analytics.privacy import suppress
from govdb.errors import ConfigError
from govdb.rulebook.analytics import AnalyticsRules
from govdb.standards.divisions import division_table

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
_LEVEL_WIDTH = {"county": 6, "street": 9, "village": 12}


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
    """Unsuppressed KPI cells (internal: alerts and rankings start here; never published as is).

    One lazy pass: only the columns the cells need are read (a Parquet scan reads no others) and
    only the grouping columns asked for are derived."""
    check_dimensions(by, period)
    names = facts.collect_schema().names() if isinstance(facts, pl.LazyFrame) else facts.columns
    if "repeat" in names:
        lazy = facts.lazy()
    else:
        eager = facts.collect() if isinstance(facts, pl.LazyFrame) else facts
        lazy = mark_repeats(eager, rules).lazy()
    when = pl.col("received") if rules.count_in == "received" else pl.col("closed")
    if rules.count_in == "closed":
        lazy = lazy.filter(pl.col("closed").is_not_null())
    levels = [b for b in by if b in _LEVEL_WIDTH]
    lazy = lazy.with_columns(
        period_start(when, period).alias("period"), *(_numeric_dimension(b).alias(b) for b in levels)
    )
    keys = ["period", *by]
    counts = ["tickets", *COUNTS]
    out = lazy.group_by(keys).agg(_counted(rules)).with_columns(pl.col(counts).cast(pl.Int64))
    out = out.with_columns(pl.col(b).cast(pl.String).fill_null(pl.lit(UNPLACED)) for b in levels)
    rates = [
        pl.when(pl.col(den) > 0).then(pl.col(num) / pl.col(den)).otherwise(None).alias(rate)
        for rate, (num, den) in RATES.items()
    ]
    return out.with_columns(rates).sort(keys, nulls_last=True).collect()


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
    frame: pl.DataFrame, rules: AnalyticsRules, by: Sequence[str], min_cell: int | None
) -> pl.DataFrame:
    """Suppressed, named and labelled: what may leave the library."""
    out = suppress(
        frame,
        total="tickets",
        counts=COUNTS,
        rates=RATES,
        partition=["period", *by[:-1]],
        min_cell=max(min_cell or 0, rules.min_cell),  # a caller may raise the floor, never lower it
        extra=("median_hours_to_close",),
    )
    # Categories and departments are the source's free text: the label of a withheld row could
    # itself be personal (a name, a phone typed into 诉求类型), so it is withheld with its counts.
    free_text = [c for c in ("category", "department") if c in by and c in out.columns]
    out = out.with_columns(
        pl.when(pl.col("tickets").is_null()).then(pl.lit(WITHHELD)).otherwise(pl.col(c)).alias(c)
        for c in free_text
    )
    return _named(out, by).with_columns(pl.lit(UNVERIFIED).alias("data_status"))


WITHHELD = "（已隐去）"


def kpis(
    facts: pl.DataFrame | pl.LazyFrame,
    rules: AnalyticsRules,
    *,
    by: Sequence[str] = ("street",),
    period: str = "month",
    min_cell: int | None = None,
) -> pl.DataFrame:
    """KPI cells per period and group, published (small cells withheld, labelled unverified)."""
    return publish(raw_kpis(facts, rules, by, period), rules, by, min_cell)


def ranking(
    facts: pl.DataFrame,
    rules: AnalyticsRules,
    *,
    by: str = "street",
    period: str = "month",
    measure: str = "satisfaction_rate",
    min_cell: int | None = None,
) -> pl.DataFrame:
    """Units ranked by a measure within each period (1 = best; lower is better for repeat and
    complaint rates and hours to close). Withheld cells are not ranked."""
    known = (*RATES, "median_hours_to_close", "tickets")
    if measure not in known:
        raise ConfigError(f"cannot rank by {measure!r}; choose from {list(known)}")
    out = kpis(facts, rules, by=[by], period=period, min_cell=min_cell)
    descending = measure not in ("repeat_rate", "complaint_rate", "median_hours_to_close")
    return out.with_columns(
        pl.col(measure).rank("min", descending=descending).over("period").cast(pl.Int64).alias("rank")
    ).sort("period", "rank", nulls_last=True)


def changes(
    facts: pl.DataFrame,
    rules: AnalyticsRules,
    *,
    by: Sequence[str] = ("street",),
    period: str = "month",
    min_cell: int | None = None,
) -> pl.DataFrame:
    """Each published cell with its period-over-period (环比) and year-over-year (同比) change of
    tickets and rates; a change is null where either side is withheld."""
    if period not in ("day", "week", "month"):
        raise ConfigError(f"changes need a period of day, week or month, not {period!r}")
    cur = kpis(facts, rules, by=by, period=period, min_cell=min_cell)
    measures = ["tickets", *RATES]
    step = {"day": "1d", "week": "1w", "month": "1mo"}[period]
    prev = cur.select(
        pl.col("period").dt.offset_by(step).alias("period"),
        *by,
        *[pl.col(m).alias(f"_p_{m}") for m in measures],
    )
    # a year earlier: the same month or day a calendar year back; for weeks, 52 weeks back
    year_step = "52w" if period == "week" else "1y"
    year = cur.select(
        pl.col("period").dt.offset_by(year_step).alias("period"),
        *by,
        *[pl.col(m).alias(f"_y_{m}") for m in measures],
    )
    keys = ["period", *by]
    out = cur.join(prev, on=keys, how="left", nulls_equal=True).join(
        year, on=keys, how="left", nulls_equal=True
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
    facts: pl.DataFrame,
    rules: AnalyticsRules,
    *,
    by: str = "street",
    min_cell: int | None = None,
) -> pl.DataFrame:
    """Each unit's complaint rate against its satisfaction rate over the whole span, placed in the
    seed's quadrant (splits from the rules, else the medians of the units shown)."""
    out = kpis(facts, rules, by=[by], period="all", min_cell=min_cell).drop("period")
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
    high_c = pl.col("complaint_rate") > c_split
    high_s = pl.col("satisfaction_rate") >= s_split
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
