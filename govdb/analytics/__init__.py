"""What the event store tells decision makers: hotline KPIs, surge alerts, hot words, heat maps.

Reads the event store only, never the master store (invariant 7, held by tests/test_layers.py);
every frame it returns is an aggregate labelled unverified event data (`data_status`), with small
cells withheld and no personal data. `Analytics(engine, rulebook)` is the entry point (the GovDB
facade hands one out as `db.analytics`); each method reads the facts it needs in one statement.

Published tables (kpis, ranking, changes, quadrant, hot words, the heat map) widen `start`..`end`
to whole periods of their period (day: whole days; week: Monday..Sunday; month: 1st..last day;
year and all: whole months) and say so in `window_start`/`window_end`; alerts keep the exact days.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import polars as pl
from sqlalchemy import Engine

from govdb.analytics import alerts as alerts_stage
from govdb.analytics import hotwords as hotwords_stage
from govdb.analytics import measures
from govdb.analytics.facts import (
    LABELS,
    RECODED,
    UNVERIFIED,
    FactsT,
    export_facts,
    read_facts,
    read_facts_parquet,
    recode_rare_labels,
    scan_facts_parquet,
    within,
)
from govdb.errors import ConfigError
from govdb.rulebook.analytics import AnalyticsRules, CapacityRules, HotwordRules
from govdb.rulebook.loader import Rulebook

__all__ = ["UNVERIFIED", "Analytics"]


class Analytics:
    """Aggregates over the event store (or over a Parquet export of its facts) under the rules."""

    def __init__(
        self, engine: Engine | None, rules: Rulebook, *, facts_file: str | Path | None = None
    ) -> None:
        if rules.analytics is None:
            raise ConfigError(
                f"the rules in {rules.root} hold no file of kind 'analytics'; add "
                "rules/analytics/measures.yaml (see the shipped rules) to use analytics"
            )
        self.engine = engine
        self.rulebook = rules
        self.rules: AnalyticsRules = rules.analytics
        self.capacities: CapacityRules | None = rules.capacities
        self.hotword_rules: HotwordRules | None = rules.hotwords
        self.facts_file = Path(facts_file) if facts_file else None

    # --- facts (internal; hold a salted caller hash, so never published) -----------------------

    def facts(
        self,
        start: dt.date | None = None,
        end: dt.date | None = None,
        *,
        demand: bool = False,
        labels: Sequence[str] = LABELS,
    ) -> pl.DataFrame:
        """Tickets (hotline services; with `demand`, the demand services too) received in the span,
        their rare category and department labels recoded to 其他 (see `_labelled`): decided over
        the whole calendar months the span touches, so a ticket's label never depends on the span."""
        first, last = measures.snap(start, end, "month")
        return within(self._labelled(self._read(first, last, demand=demand), labels), start, end)

    def _read(self, start: dt.date | None, end: dt.date | None, *, demand: bool) -> pl.DataFrame:
        services = [*self.rules.hotline_services, *(self.rules.demand_services if demand else [])]
        if self.facts_file is not None:
            facts = read_facts_parquet(self.facts_file).filter(pl.col("service_code").is_in(services))
            return within(facts, start, end)
        if self.engine is None:
            raise ConfigError("analytics needs an event store or a facts file")
        return read_facts(self.engine, self.rules, start=start, end=end, services=services)

    def _labelled(self, facts: FactsT, labels: Sequence[str] = LABELS) -> FactsT:
        """Every frame of facts enters the aggregates through here: a category or department label
        met in tickets of fewer than min_cell distinct callers in a calendar month (of receipt)
        becomes 其他 in that month before anything is grouped by it (labels the rules declare
        stay). The caller reads whole months, so the answer is the same whatever the window."""
        names = facts.collect_schema().names() if isinstance(facts, pl.LazyFrame) else facts.columns
        if RECODED in names:  # an export recoded its labels when it was written
            return facts
        declared = [
            *self.rules.quadrant.complaint_categories,
            *(c.service for c in (self.capacities.capacities if self.capacities else [])),
        ]
        return recode_rare_labels(facts, self.rules.min_cell, keep=declared, labels=labels)

    def _source(
        self, start: dt.date | None = None, end: dt.date | None = None, by: Sequence[str] = LABELS
    ) -> pl.DataFrame | pl.LazyFrame:
        """The hotline tickets a KPI table over `start`..`end` needs: a lazy scan of the facts file
        (only the columns the query needs are read), else the event store's facts. Read from
        `repeat_days` before `start`, so a ticket's repeat flag does not depend on the window (with
        count_in: closed, from the beginning: a ticket closed in the window may be older). Only
        the labels the table groups by (`by`) are recoded; the repeat flag is the raw labels' (an
        export's is), so every table counts the same repeats."""
        if start is not None:
            received = self.rules.count_in == "received"
            start = start - dt.timedelta(days=self.rules.repeat_days) if received else None
        labels = [c for c in by if c in LABELS]
        first, last = measures.snap(start, end, "month")
        if self.facts_file is None:
            raw = measures.mark_repeats(self._read(first, last, demand=False), self.rules)
            return within(self._labelled(raw, labels), start, end)
        scan = scan_facts_parquet(self.facts_file).filter(
            pl.col("service_code").is_in(self.rules.hotline_services)
        )
        return within(self._labelled(within(scan, first, last), labels), start, end)

    def _windowed(
        self,
        start: dt.date | None,
        end: dt.date | None,
        period: str,
        by: Sequence[str],
        *,
        year_back: bool = False,
    ) -> tuple[pl.DataFrame | pl.LazyFrame, dt.date | None, dt.date | None]:
        """`start`..`end` widened to whole periods, and the tickets a table over it needs (with
        `year_back`, the year before it too, for 同比)."""
        first, last = measures.snap(start, end, period)
        read_from = measures.year_before(first, period) if first and year_back else first
        return self._source(read_from, last, by), first, last

    def export(self, path: str | Path, start: dt.date | None = None, end: dt.date | None = None) -> Path:
        """The facts of the span (demand services included) as Parquet, for fast repeated work (see
        `prepared`)."""
        first, last = measures.snap(start, end, "month")
        return export_facts(within(self.prepared(self._read(first, last, demand=True)), start, end), path)

    def prepared(self, facts: pl.DataFrame) -> pl.DataFrame:
        """Facts of whole calendar months made ready once for repeated queries: the repeat flag
        (under the rules' repeat_days, from the raw labels) and the labels recoded by month, marked
        so that queries on an export do not recode them again."""
        marked = measures.mark_repeats(facts, self.rules)
        return self._labelled(marked).with_columns(pl.lit(True).alias(RECODED))

    # --- published aggregates ------------------------------------------------------------------

    def kpis(
        self,
        *,
        by: Sequence[str] = ("street",),
        period: str = "month",
        start: dt.date | None = None,
        end: dt.date | None = None,
        min_cell: int | None = None,
    ) -> pl.DataFrame:
        """Response, resolution, satisfaction, repeat and complaint rates, median hours to close,
        over `start`..`end` widened to whole periods (see the module docstring)."""
        measures.check_dimensions(by, period)
        facts, first, last = self._windowed(start, end, period, by)
        return measures.kpis(
            facts, self.rules, by=by, period=period, min_cell=min_cell, start=first, end=last
        )

    def ranking(
        self,
        *,
        by: str = "street",
        period: str = "month",
        measure: str = "satisfaction_rate",
        start: dt.date | None = None,
        end: dt.date | None = None,
        min_cell: int | None = None,
    ) -> pl.DataFrame:
        measures.check_dimensions([by], period)
        facts, first, last = self._windowed(start, end, period, [by])
        return measures.ranking(
            facts, self.rules, by=by, period=period, measure=measure, min_cell=min_cell, start=first, end=last
        )

    def changes(
        self,
        *,
        by: Sequence[str] = ("street",),
        period: str = "month",
        start: dt.date | None = None,
        end: dt.date | None = None,
        min_cell: int | None = None,
    ) -> pl.DataFrame:
        """Period-over-period (环比) and year-over-year (同比) changes of the window's cells; the
        year before the window is read too, so its first periods have their comparison."""
        measures.check_dimensions(by, period)
        facts, first, last = self._windowed(start, end, period, by, year_back=True)
        return measures.changes(
            facts, self.rules, by=by, period=period, min_cell=min_cell, start=first, end=last
        )

    def quadrant(
        self,
        *,
        by: str = "street",
        start: dt.date | None = None,
        end: dt.date | None = None,
        min_cell: int | None = None,
    ) -> pl.DataFrame:
        """亮点 / 难点 / 堵点 / 拐点: complaint rate against satisfaction rate per unit (whole months)."""
        measures.check_dimensions([by], "all")
        facts, first, last = self._windowed(start, end, "all", [by])
        return measures.quadrant(facts, self.rules, by=by, min_cell=min_cell, start=first, end=last)

    def alerts(
        self,
        *,
        level: str = "street",
        start: dt.date | None = None,
        end: dt.date | None = None,
    ) -> pl.DataFrame:
        """Capacity and history alerts in the span (the baseline weeks before `start` are read too)."""
        if level not in ("county", "street", "village"):
            raise ConfigError(f"alerts place at county, street or village level, not {level!r}")
        weeks = self.rules.history.baseline_weeks + self.rules.history.guard_weeks + 1
        before = start - dt.timedelta(weeks=weeks) if start else None
        # a capacity is per day, week or month: the whole month holding `end` is read, so the
        # demand of a period that ends after `end` is counted in full
        month_end = (
            (end.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)
            if end
            else None
        )
        facts = self.facts(before, month_end, demand=True, labels=["category"])  # alerts name categories
        out = alerts_stage.alerts(facts, self.rules, self.capacities, level=level, start=start, end=end)
        return out.filter(pl.col("when") <= end) if end else out

    def hotwords(
        self,
        *,
        by: str | None = "street",
        period: str = "week",
        start: dt.date | None = None,
        end: dt.date | None = None,
        baseline_periods: int = 4,
        min_cell: int | None = None,
    ) -> pl.DataFrame:
        """Hot and bursting words of 诉求内容 per division and period, over `start`..`end` widened
        to whole periods (the baseline periods before it are read too)."""
        if self.hotword_rules is None:
            raise ConfigError(
                f"the rules in {self.rulebook.root} hold no file of kind 'hotwords'; add "
                "rules/analytics/hotwords.yaml to find hot words"
            )
        first, last = measures.snap(start, end, period)
        span = {"day": 1, "week": 7, "month": 31}.get(period, 7) * baseline_periods
        before = measures.snap(first - dt.timedelta(days=span), None, period)[0] if first else None
        facts = self.facts(before, last, labels=[])  # hotline tickets only, as the KPI tables count
        floor = max(min_cell or 0, self.rules.min_cell)  # raised by a caller, never lowered
        group = [by] if by else []
        if by is not None and by not in ("county", "street", "village"):
            group = []  # the stage names the error
        # the cells whose ticket count a KPI table (counted by receipt, as hot words) withholds
        received = self.rules.model_copy(update={"count_in": "received"})
        table = measures.kpis(facts, received, by=group, period=period, min_cell=floor)
        withheld = table.filter(pl.col("tickets").is_null()).select("period", *group)
        return hotwords_stage.hotwords(
            facts,
            self.hotword_rules,
            withheld=withheld,
            min_cell=floor,
            by=by,
            period=period,
            baseline_periods=baseline_periods,
            start=first,
            end=last,
        )

    def heatmap(
        self,
        path: str | Path,
        *,
        start: dt.date | None = None,
        end: dt.date | None = None,
        png: str | Path | None = None,
        title: str = "12345 热线诉求热力图",
    ) -> Path:
        """Write the HTML page (and a PNG of it when `png` is given); returns the HTML's path.

        Both tables of the page cover one window of whole weeks (Monday..Sunday) holding
        `start`..`end`: the week cells of a street add up to its row of the KPI table, and
        suppression keeps that line safe."""
        from govdb.analytics import heatmap as heatmap_stage

        source, first, last = self._windowed(start, end, "week", [])
        facts = source.collect() if isinstance(source, pl.LazyFrame) else source
        shown = within(facts, first, last)
        if shown.is_empty():
            raise ConfigError(
                "no tickets in the span; widen --from/--to or ingest and process the hotline first"
            )
        days = shown.select(pl.col("received").dt.date().min().alias("a"), pl.col("received").dt.date().max())
        seen_first, seen_last = measures.snap(days.item(0, 0), days.item(0, 1), "week")
        first, last = first or seen_first, last or seen_last
        assert first is not None and last is not None  # the tickets shown give both
        rules = self.rules
        demand = measures.kpis(facts, rules, by=["street"], period="week", start=first, end=last)
        by_street = measures.quadrant(facts, rules, by="street", start=first, end=last, grain="week")
        page = heatmap_stage.render_html(
            demand,
            by_street,
            self.alerts(start=first, end=last),
            title=title,
            start=first,
            end=last,
            min_cell=self.rules.min_cell,
        )
        out = Path(path)
        out.write_text(page, encoding="utf-8")
        if png is not None:
            heatmap_stage.render_png(out, png)
        return out
