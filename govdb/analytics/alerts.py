"""Surge alerts: demand against declared capacity, and counts against their seasonal history.

Against history the rule is a seasonal negative-binomial upper bound: a (service, division, day)
count is compared with the same weekday of the previous `baseline_weeks` weeks (so a Monday is
compared with Mondays and the normal Monday peak is expected, not an alert). The baseline's mean
and variance fit a negative binomial (method of moments; Poisson when the weeks vary less than a
Poisson would), and the count alerts when P(X >= count) < 1 - quantile. Why this rule: hotline
counts are over-dispersed counts with a strong weekly cycle; a same-weekday baseline removes the
cycle without a model to fit, the negative binomial keeps a noisy service from alerting on its
ordinary swings, and the test looks at one period alone, so a surge alerts on its first day (an
EWMA would need several periods to build up). It is the core of the Farrington approach
(a baseline from comparable past periods, an upper quantile of an over-dispersed count) without
its trend and reweighting terms, which need years of data a county rarely has.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl

from govdb.analytics import measures
from govdb.analytics.facts import UNVERIFIED, within
from govdb.analytics.measures import division_names, period_start, with_dimensions
from govdb.rulebook.analytics import AnalyticsRules, CapacityRules

ALERT_SCHEMA = {
    "kind": pl.String,
    "what": pl.String,
    "where": pl.String,
    "where_name": pl.String,
    "period": pl.String,
    "when": pl.Date,
    "observed": pl.Int64,
    "expected": pl.Float64,
    "threshold": pl.Float64,
    "first": pl.Boolean,
    "rule": pl.String,
    "note": pl.String,
    "data_status": pl.String,
}
_LEVEL = {6: "county", 9: "street", 12: "village"}
WITHHELD_NOTE = "figures withheld: the published tables withhold this cell's count (small or its complement)"
SMALL_BASELINE_NOTE = (
    "expected and threshold withheld: the baseline's count, or the sum of its cells the published "
    "tables withhold, is below min_cell"
)


def withheld_cells(
    facts: pl.DataFrame,
    rules: AnalyticsRules,
    by: list[str],
    period: str,
    start: dt.date | None,
    end: dt.date | None = None,
) -> pl.DataFrame:
    """The (period, *by) cells whose ticket count the published table by `by` and `period` over the
    same `start`..`end` (widened to whole periods, as `kpis` widens it) withholds, counted by
    receipt, through the KPI tables' own suppression: the hotline's tickets as the KPI table
    counts them, the demand services' as a table of their own; a cell withheld in either is
    withheld."""
    received = rules.model_copy(update={"count_in": "received"})
    first, last = measures.snap(start, end, period)
    parts = []
    for services in (rules.hotline_services, rules.demand_services):
        part = within(facts.filter(pl.col("service_code").is_in(services)), first, last)
        if part.is_empty():
            continue
        cells = measures.ticket_cells(part, received, by, period)
        hidden = measures.withheld_tickets(cells, received, by, period)
        parts.append(cells.filter(hidden).select("period", *by))
    if not parts:
        return pl.DataFrame(schema={"period": pl.Date, **dict.fromkeys(by, pl.String)})
    return pl.concat(parts).unique()


def capacity_alerts(
    facts: pl.DataFrame,
    capacities: CapacityRules | None,
    rules: AnalyticsRules,
    *,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> pl.DataFrame:
    """One alert per declared capacity and period in which demand exceeded it; its figures are
    withheld where the published tables by the capacity's level x service withhold the cell."""
    if capacities is None or not capacities.capacities or facts.is_empty():
        return pl.DataFrame(schema=ALERT_SCHEMA)
    names = division_names([c.division for c in capacities.capacities])
    parts = []
    for i, cap in enumerate(capacities.capacities):
        matched = (pl.col("category") == cap.service) | (pl.col("service_code") == cap.service)
        if cap.valid_from:
            matched = matched & (pl.col("received").dt.date() >= cap.valid_from)
        if cap.valid_to:
            matched = matched & (pl.col("received").dt.date() <= cap.valid_to)
        # the service as a category, so the cell is one of a level x category table
        tagged = facts.with_columns(
            pl.when(matched).then(pl.lit(cap.service)).otherwise(pl.col("category")).alias("category")
        )
        level = _LEVEL[len(cap.division)]
        hidden = withheld_cells(tagged, rules, [level, "category"], cap.period, start, end).filter(
            (pl.col(level) == cap.division) & (pl.col("category") == cap.service)
        )
        demand = facts.filter(matched & pl.col("division_code").str.starts_with(cap.division))
        counts = (
            demand.group_by(period_start(pl.col("received"), cap.period).alias("when"))
            .len()
            .sort("when")
            .with_columns(pl.col("len").cast(pl.Int64).alias("observed"))
        )
        over = counts.with_columns((pl.col("observed") > cap.capacity).alias("_over")).with_columns(
            (~pl.col("_over").shift(1).fill_null(False)).alias("first")
        )
        over = over.filter(pl.col("_over"))
        withheld = pl.col("when").is_in(hidden.get_column("period").implode())
        parts.append(
            over.select(
                pl.lit("capacity").alias("kind"),
                pl.lit(cap.service).alias("what"),
                pl.lit(cap.division).alias("where"),
                pl.lit(names.get(cap.division, cap.division)).alias("where_name"),
                pl.lit(cap.period).alias("period"),
                "when",
                *(
                    pl.when(withheld).then(None).otherwise(value).alias(name)
                    for name, value in (
                        ("observed", pl.col("observed")),
                        ("expected", pl.lit(float(cap.capacity))),
                        ("threshold", pl.lit(float(cap.capacity))),
                    )
                ),
                "first",
                pl.lit(
                    f"capacities[{i}]: demand > capacity {cap.capacity} per {cap.period}"
                    + (f" ({cap.note})" if cap.note else "")
                ).alias("rule"),
                pl.when(withheld).then(pl.lit(WITHHELD_NOTE)).otherwise(None).alias("note"),
            )
        )
    out = pl.concat(parts) if parts else pl.DataFrame(schema=ALERT_SCHEMA)
    return out.with_columns(pl.lit(UNVERIFIED).alias("data_status")).cast(ALERT_SCHEMA)  # type: ignore[arg-type]


def upper_tail(observed: np.ndarray, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    """P(X >= observed) for X negative binomial with this mean and variance (Poisson if var <= mean),
    vectorised: the pmf by its recurrence in log space, summed up to observed - 1."""
    mean = np.maximum(mean, 0.5)  # a baseline of zeros still expects the odd ticket
    nb = var > mean * 1.0001
    r = np.where(nb, mean**2 / np.where(nb, var - mean, 1.0), np.inf)
    q = np.where(nb, mean / (r + mean), 0.0)  # 1 - p: the "success" probability per step
    with np.errstate(divide="ignore", invalid="ignore"):
        log_p0 = np.where(nb, r * np.log1p(-q), -mean)
    log_pmf = log_p0.copy()
    cdf = np.zeros_like(mean)
    top = int(observed.max()) if observed.size else 0
    for k in range(top):
        cdf += np.where(k < observed, np.exp(log_pmf), 0.0)
        step = np.where(nb, np.log((k + r) / (k + 1)) + np.log(np.where(nb, q, 1.0)), np.log(mean / (k + 1)))
        log_pmf = log_pmf + step
    return np.clip(1.0 - cdf, 0.0, 1.0)


def history_alerts(
    facts: pl.DataFrame,
    rules: AnalyticsRules,
    *,
    level: str = "street",
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> pl.DataFrame:
    """Seasonal negative-binomial alerts per category x division x day (or week), from `start` on
    (earlier periods serve as baseline only)."""
    h = rules.history
    if facts.is_empty():
        return pl.DataFrame(schema=ALERT_SCHEMA)
    placed = with_dimensions(facts, [level]).with_columns(
        period_start(pl.col("received"), h.period).alias("when")
    )
    counts = placed.group_by("category", level, "when").len().rename({"len": "observed"})
    step = "1d" if h.period == "day" else "1w"
    season = 7 if h.period == "day" else 52  # same weekday a week back; same week a year back
    first, last = counts["when"].min(), counts["when"].max()
    assert isinstance(first, dt.date) and isinstance(last, dt.date)  # not empty: facts has tickets
    days = pl.date_range(first, last, step, eager=True).alias("when")
    cells = counts.select("category", level).unique()
    grid = (
        cells.join(pl.DataFrame(days), how="cross")
        .join(counts, on=["category", level, "when"], how="left")
        .with_columns(pl.col("observed").fill_null(0).cast(pl.Int64))
        .sort("category", level, "when")
    )
    lags = [
        pl.col("observed").shift(season * (h.guard_weeks + k)).over("category", level)
        for k in range(1, h.baseline_weeks + 1)
    ]
    # A baseline day the published day table withholds would come back from expected x weeks minus
    # the published days: expected and threshold are then withheld too.
    hidden_base = withheld_cells(facts, rules, [level, "category"], h.period, None)
    grid = grid.join(
        hidden_base.rename({"period": "when"}).with_columns(pl.lit(True).alias("_hidden")),
        on=["when", level, "category"],
        how="left",
        maintain_order="left",
    ).with_columns(pl.col("_hidden").fill_null(False))
    # (only a small sum of withheld baseline cells is given away: a larger one is what the tables'
    # own lines allow)
    hidden_lags = [
        pl.when(pl.col("_hidden").shift(season * (h.guard_weeks + k)).over("category", level))
        .then(lag)
        .otherwise(0)
        for k, lag in enumerate(lags, start=1)
    ]
    withheld_sum = pl.sum_horizontal(hidden_lags)
    base = grid.with_columns(
        pl.concat_list(lags).alias("_base"),
        ((withheld_sum > 0) & (withheld_sum < rules.min_cell)).alias("_base_hidden"),
    ).with_columns(pl.col("_base").list.drop_nulls().alias("_base"))
    base = base.with_columns(
        pl.col("_base").list.len().alias("_n"),
        pl.col("_base").list.mean().alias("expected"),
        pl.col("_base").list.var(ddof=1).alias("_var"),
    )
    floor = max(h.min_observed, rules.min_cell)
    cand = base.filter(
        (pl.col("_n") >= 3) & (pl.col("observed") >= floor) & (pl.col("observed") > pl.col("expected"))
    )
    if start is not None:
        cand = cand.filter(pl.col("when") >= start)
    if cand.is_empty():
        return pl.DataFrame(schema=ALERT_SCHEMA)
    obs = cand.get_column("observed").to_numpy().astype(np.int64)
    mean = cand.get_column("expected").to_numpy().astype(float)
    var = cand.get_column("_var").fill_null(0.0).to_numpy().astype(float)
    tail = upper_tail(obs, mean, var)
    alpha = 1.0 - h.quantile
    fired = cand.with_columns(pl.Series("_tail", tail)).filter(pl.col("_tail") < alpha)
    # the threshold shown: the smallest count that would have alerted (searched on the same tail)
    thresholds = _thresholds(
        fired.get_column("expected").to_numpy(), fired.get_column("_var").fill_null(0.0).to_numpy(), alpha
    )
    fired = fired.with_columns(pl.Series("threshold", thresholds, dtype=pl.Float64)).sort(
        "category", level, "when"
    )
    prev_day = pl.col("when").dt.offset_by("-" + step)
    fired = _first_flags(fired, level, prev_day)
    # The alert is reported whatever its cell; its figures only where the published tables show
    # the cell's count, and expected and threshold (the baseline's mean, and a function of its
    # variance) only where the baseline's count is not small.
    hidden = withheld_cells(facts, rules, [level, "category"], h.period, start, end)
    fired = fired.join(
        hidden.rename({"period": "when"}).with_columns(pl.lit(True).alias("_withheld")),
        on=["when", level, "category"],
        how="left",
    ).with_columns(pl.col("_withheld").fill_null(False))
    base_sum = pl.col("_base").list.sum()
    small_base = (base_sum > 0) & (base_sum < rules.min_cell) | pl.col("_base_hidden")
    no_figures = pl.col("_withheld") | small_base
    names = division_names(fired.get_column(level).unique().to_list())
    rule = (
        f"history: {h.period} count > negative-binomial {h.quantile:g} quantile of the same "
        f"{'weekday' if h.period == 'day' else 'week'} over {h.baseline_weeks} weeks"
    )
    out = fired.select(
        pl.lit("history").alias("kind"),
        pl.col("category").alias("what"),
        pl.col(level).alias("where"),
        pl.col(level)
        .replace_strict(names, default=pl.col(level), return_dtype=pl.String)
        .alias("where_name"),
        pl.lit(h.period).alias("period"),
        "when",
        pl.when(pl.col("_withheld")).then(None).otherwise(pl.col("observed")).alias("observed"),
        pl.when(no_figures).then(None).otherwise(pl.col("expected").round(2)).alias("expected"),
        pl.when(no_figures).then(None).otherwise(pl.col("threshold")).alias("threshold"),
        "first",
        pl.lit(rule).alias("rule"),
        pl.when(pl.col("_withheld"))
        .then(pl.lit(WITHHELD_NOTE))
        .when(small_base)
        .then(pl.lit(SMALL_BASELINE_NOTE))
        .otherwise(None)
        .alias("note"),
        pl.lit(UNVERIFIED).alias("data_status"),
    )
    return out.cast(ALERT_SCHEMA)  # type: ignore[arg-type]


def _first_flags(fired: pl.DataFrame, level: str, prev_day: pl.Expr) -> pl.DataFrame:
    """`first`: the period before did not alert for the same cell (the surge starts here)."""
    seen = fired.select("category", level, pl.col("when").alias("_prev"), pl.lit(True).alias("_had"))
    return (
        fired.with_columns(prev_day.alias("_prev"))
        .join(seen, on=["category", level, "_prev"], how="left", nulls_equal=True)
        .with_columns(pl.col("_had").is_null().alias("first"))
        .drop("_prev", "_had")
    )


def _thresholds(mean: np.ndarray, var: np.ndarray, alpha: float) -> np.ndarray:
    """The smallest count whose upper tail is below alpha, per cell (bisection on the count)."""
    lo = np.zeros_like(mean, dtype=np.int64)
    hi = np.maximum(np.ceil(np.maximum(mean, 1) * 20 + 50), 1).astype(np.int64)
    for _ in range(int(math.log2(max(int(hi.max()), 2))) + 2):
        mid = (lo + hi) // 2
        below = upper_tail(mid, mean, var) < alpha
        hi = np.where(below, mid, hi)
        lo = np.where(below, lo, mid + 1)
    return hi.astype(float)


def alerts(
    facts: pl.DataFrame,
    rules: AnalyticsRules,
    capacities: CapacityRules | None,
    *,
    level: str = "street",
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> pl.DataFrame:
    """Every alert, capacity first, then history, each with what, where, when, expected vs observed
    and its rule; its figures checked against the published tables over the same `start`..`end`."""
    cap = capacity_alerts(facts, capacities, rules, start=start, end=end)
    if start is not None:
        cap = cap.filter(pl.col("when") >= start)
    hist = history_alerts(facts, rules, level=level, start=start, end=end)
    return pl.concat([cap, hist]).sort("when", "kind", "where")
