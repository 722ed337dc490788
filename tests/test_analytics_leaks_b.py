"""What a count leaves out (open, unrated, late, ...) is protected like a count (invariant 7), and
the analytics CLI refuses an empty or ambiguous --by and names the window of an empty result."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from govdb import GovDB
from govdb.analytics import UNVERIFIED, measures
from govdb.analytics.facts import FACT_SCHEMA
from govdb.cli import app
from govdb.rulebook import Rulebook

from .test_analytics_privacy import GUICHENG, JIUJIANG, frame, tickets, unprotected_lines

MAY = dt.date(2026, 5, 4)
# every count with every count holding it: what the first leaves out of the second is a count too
PAIRS = [
    ("responded", "tickets"),
    ("closed", "tickets"),
    ("resolved", "closed"),
    ("resolved", "tickets"),
    ("rated", "tickets"),
    ("satisfied", "rated"),
    ("satisfied", "tickets"),
    ("repeats", "tickets"),
    ("complaints", "tickets"),
]
# three tickets of 100 left out of a count (repeats: 98 calls of one caller, 97 of them repeats)
LEAVE_OUT = {
    "responded": {"first_response": None},
    "closed": {"closed": None, "resolved": None},
    "resolved": {"resolved": False},
    "rated": {"satisfaction": None},
    "satisfied": {"satisfaction": "不满意"},
    "complaints": {"category": "社保"},
    "repeats": {},
}


def hotline(
    division: str,
    n: int,
    *,
    closed: bool = True,
    rated: bool = True,
    late: bool = False,
    category: str = "社保",
) -> list[dict]:
    """n tickets of `division` in the week of MAY: answered within the hour (48 hours when `late`),
    closed and resolved, rated 满意, unless told otherwise."""
    rows = tickets(division, MAY, n, category=category)
    for row in rows:
        row["first_response"] = row["received"] + dt.timedelta(hours=48 if late else 1)
        row["closed"] = row["received"] + dt.timedelta(hours=5) if closed else None
        row["resolved"] = True if closed else None
        row["satisfaction"] = "满意" if rated else None
    return rows


def left_out_shown(table: pl.DataFrame) -> list[tuple[str, str, int]]:
    """(part, whole, whole - part) for each row's shown pair leaving out 1..9: given away."""
    found = []
    for part, whole in PAIRS:
        gap = table.filter(pl.col(part).is_not_null() & pl.col(whole).is_not_null()).select(
            pl.col(whole) - pl.col(part)
        )
        found += [(part, whole, g) for g in gap.to_series() if 0 < g < 10]
    return found


def test_what_a_count_leaves_out_of_its_row_is_checked_for_every_pair(rules: Rulebook) -> None:
    """100 tickets, 97 closed and 97 rated published together gave '3 open, 3 unrated' away."""
    assert rules.analytics is not None
    rows = hotline(GUICHENG, 97) + hotline(GUICHENG, 3, closed=False, rated=False) + hotline(JIUJIANG, 50)
    streets = measures.kpis(frame(rows), rules.analytics, by=["street"], period="month")
    gui = streets.filter(pl.col("street") == GUICHENG).row(0, named=True)
    assert gui["tickets"] == 100 and gui["responded"] == 100  # exact where nothing is left out
    for name in ("closed", "resolved", "rated", "satisfied", "resolution_rate", "satisfaction_rate"):
        assert gui[name] is None and name in gui["suppressed"], name
    assert gui["median_hours_to_close"] is None  # withheld with closed
    assert left_out_shown(streets) == []
    # each count three short of every count holding it is withheld (with the counts part of it)
    for part, change in LEAVE_OUT.items():
        rows = hotline(GUICHENG, 100, category="投诉")
        for row in rows[:3]:
            row.update(change)
        for row in rows[2:] if part == "repeats" else []:
            row["caller"] = 7
        rows += hotline(JIUJIANG, 200, category="投诉")
        gui = measures.kpis(frame(rows), rules.analytics, by=["street"], period="month").row(0, named=True)
        short = {part, *(p for p, whole in PAIRS if whole == part)}
        assert gui["tickets"] == 100, part
        for name in measures.COUNTS:
            assert (gui[name] is None) == (name in short), (part, name, gui[name])


def test_what_withheld_counts_leave_out_adds_up_to_nothing_small(rules: Rulebook) -> None:
    """responded withheld in villages 001 (3 late) and 002 (0 late): the street table gave the 3."""
    assert rules.analytics is not None
    village = [GUICHENG + "001", GUICHENG + "002", GUICHENG + "003"]
    rows = hotline(village[0], 47) + hotline(village[0], 3, late=True) + hotline(village[1], 40)
    rows += hotline(village[2], 80) + hotline(village[2], 20, late=True) + hotline(JIUJIANG, 60)
    villages = measures.kpis(frame(rows), rules.analytics, by=["village"], period="month")
    streets = measures.kpis(frame(rows), rules.analytics, by=["street"], period="month")
    for part, whole in PAIRS:
        for street in streets.iter_rows(named=True):
            if street[part] is None or street[whole] is None:
                continue
            mine = villages.filter(pl.col("street") == street["street"])
            known = mine.filter(pl.col(part).is_not_null() & pl.col(whole).is_not_null())
            if known.height == mine.height:
                continue
            # what the cells not shown leave out: the street's row less the shown villages
            given = street[whole] - street[part] - (known.get_column(whole) - known.get_column(part)).sum()
            assert given == 0 or given >= 10, (part, whole, street["street"], given)
    hidden = villages.filter(pl.col("responded").is_null()).get_column("village").to_list()
    assert set(village[:2]) <= set(hidden)
    assert left_out_shown(villages) == []


def _facts(rng: np.random.Generator) -> pl.DataFrame:
    """Villages x days of May 2026 with Poisson counts and every kind of ticket left out."""
    villages = [GUICHENG + "001", GUICHENG + "004", GUICHENG + "005", JIUJIANG + "001", JIUJIANG + "004"]
    cells = [(v, d) for v in villages for d in range(1, 32)]
    sizes = rng.poisson(9, len(cells))
    n = int(sizes.sum())
    received = np.repeat(
        [np.datetime64(dt.datetime(2026, 5, d, 9), "us") for _, d in cells], sizes
    ) + rng.integers(0, 600, n).astype("timedelta64[m]").astype("timedelta64[us]")
    hour = np.timedelta64(3600, "s").astype("timedelta64[us]")
    closed, rated = pl.Series(rng.random(n) < 0.8), pl.Series(rng.random(n) < 0.8)
    facts = pl.DataFrame(
        {
            "event_id": np.arange(n, dtype=np.int64),
            "service_code": "hotline.12345",
            "division_code": np.repeat([v for v, _ in cells], sizes),
            "category": np.where(rng.random(n) < 0.2, "投诉", "社保"),
            "department": "人社局",
            "received": received,
            "first_response": received + np.where(rng.random(n) < 0.75, 1, 48) * hour,
            "closed": received + 5 * hour,
            "resolved": rng.random(n) < 0.85,
            "satisfaction": np.where(rng.random(n) < 0.75, "满意", "不满意"),
            "caller": np.where(rng.random(n) < 0.1, 7, 10**6 + np.arange(n)),
        }
    )
    return facts.with_columns(
        pl.when(closed).then(pl.col("closed")),
        pl.when(closed).then(pl.col("resolved")),
        pl.when(rated).then(pl.col("satisfaction")),
        pl.lit(None, pl.String).alias("content"),
    ).select(pl.col(name).cast(dtype) for name, dtype in FACT_SCHEMA.items())


@pytest.mark.parametrize(("by", "period"), [(["village"], "week"), (["village"], "day")])
def test_left_out_counts_reach_the_fixed_point_on_random_tables(
    rules: Rulebook, by: list[str], period: str
) -> None:
    assert rules.analytics is not None
    facts = _facts(np.random.default_rng(11))
    raw = measures.raw_kpis(facts, rules.analytics, by, period)
    published = measures.kpis(facts, rules.analytics, by=by, period=period)
    assert published.height == raw.height
    lines = measures.lines(by, period)
    hidden = {c: published.get_column(c).is_null() for c in ("tickets", *measures.COUNTS)}
    for part, whole in PAIRS:
        gap = raw.with_columns((pl.col(whole) - pl.col(part)).alias("tickets"))
        assert unprotected_lines(gap, hidden[part] | hidden[whole], lines, 10) == 0, (part, whole)
    for name, mask in hidden.items():
        assert unprotected_lines(raw.with_columns(pl.col(name).alias("tickets")), mask, lines, 10) == 0, name
    assert left_out_shown(published) == []
    shown = published.select(pl.col("tickets", *measures.COUNTS).is_not_null().sum()).row(0)
    assert shown[0] > 0 and 0 < sum(shown[1:]) < 7 * published.height  # not all shown or withheld
    for name in ("tickets", *measures.COUNTS):  # shown cells are exact
        shown = published.get_column(name).is_not_null()
        assert published.filter(shown).get_column(name).equals(raw.filter(shown).get_column(name))


# --- the CLI -------------------------------------------------------------------------------------

runner = CliRunner()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, rules: Rulebook) -> Path:
    """A home serving 南海区 with no events: every analytics result is empty."""
    home = tmp_path_factory.mktemp("leaks-b") / "home"
    with GovDB.open(home, rules=rules) as db:
        db.serve_district("440605")
    return home


def run(home: Path, *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["analytics", *args, "--home", str(home)], catch_exceptions=False)


@pytest.mark.parametrize("view", ["table", "ranking", "changes", "quadrant"])
def test_an_empty_by_is_refused_by_name(home: Path, view: str) -> None:
    for by in ("", " , "):
        result = run(home, "kpis", "--view", view, "--by", by)
        assert result.exit_code == 2, result.output
        assert "--by" in result.output and "unexpectedly" not in result.output


@pytest.mark.parametrize("view", ["ranking", "quadrant"])
def test_a_ranking_or_quadrant_takes_one_level(home: Path, view: str) -> None:
    result = run(home, "kpis", "--view", view, "--by", "street,village")
    assert result.exit_code == 2 and "--by" in result.output and "one level" in result.output
    assert run(home, "kpis", "--view", view, "--by", "street,street", "--json").exit_code == 0


@pytest.mark.parametrize(
    ("args", "window"),
    [
        (("kpis", "--from", "2026-03-04", "--to", "2026-03-05"), ("2026-03-01", "2026-03-31")),
        (("kpis", "--view", "ranking", "--period", "week", "--from", "2026-03-04"), ("2026-03-02", None)),
        (("kpis", "--view", "changes", "--to", "2026-03-04"), (None, "2026-03-31")),
        (
            ("kpis", "--view", "quadrant", "--from", "2026-03-04", "--to", "2026-04-02"),
            ("2026-03-01", "2026-04-30"),
        ),
        (("hotwords", "--from", "2026-03-04", "--to", "2026-03-05"), ("2026-03-02", "2026-03-08")),
        (("alerts", "--from", "2026-03-04", "--to", "2026-03-05"), ("2026-03-04", "2026-03-05")),
    ],
)
def test_an_empty_result_names_its_window_and_label(
    home: Path, args: tuple[str, ...], window: tuple[str | None, str | None]
) -> None:
    want = {"window_start": window[0], "window_end": window[1], "data_status": UNVERIFIED}
    result = run(home, *args, "--json")
    assert result.exit_code == 0, result.output
    assert [json.loads(line) for line in result.stdout.splitlines()] == [{**want, "rows": []}]
    result = run(home, *args, "--csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert rows == [{**{k: v or "" for k, v in want.items()}, "rows": "[]"}]
    text = run(home, *args).stdout
    assert "unverified" in text and f"window: {window[0] or '…'} .. {window[1] or '…'}" in text
