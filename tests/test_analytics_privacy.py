"""The attacks on published aggregates (invariant 7) and why they fail, on small planted facts:
differencing two overlapping windows, recovering a withheld cell from a linked table (the parent
division's table, the same groups over the whole window), and names in hot words."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from govdb.analytics import Analytics, measures
from govdb.analytics.facts import FACT_SCHEMA
from govdb.analytics.hotwords import hotwords, segment
from govdb.analytics.privacy import MAX_ROUNDS, complementary, small
from govdb.rulebook import Rulebook
from govdb.rulebook.analytics import COMPOUND_SURNAMES, HotwordRules

_ids = iter(range(1, 10**9))
GUICHENG, JIUJIANG = "440605011", "440605121"  # two streets of 南海区


def tickets(
    division: str,
    day: dt.date,
    n: int,
    *,
    content: str | None = None,
    caller: int | None = None,
    category: str = "社保",
) -> list[dict]:
    """n tickets received on `day` in `division`, each from its own caller unless one is given."""
    out = []
    for i in range(n):
        event = next(_ids)
        out.append(
            {
                "event_id": event,
                "service_code": "hotline.12345",
                "division_code": division,
                "category": category,
                "department": "人社局",
                "content": content,
                "received": dt.datetime.combine(day, dt.time(9)) + dt.timedelta(minutes=i),
                "first_response": None,
                "closed": None,
                "resolved": None,
                "satisfaction": "满意",
                "caller": caller if caller is not None else 10**6 + event,
            }
        )
    return out


def frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=FACT_SCHEMA)


def offline(rules: Rulebook, rows: list[dict], tmp_path: Path) -> Analytics:
    path = tmp_path / "facts.parquet"
    frame(rows).write_parquet(path)
    return Analytics(None, rules, facts_file=path)


def unprotected_lines(cells: pl.DataFrame, hidden: pl.Series, lines: list, min_cell: int) -> int:
    """Lines that give a withheld cell or a small withheld sum away: exactly one withheld cell, or
    withheld cells summing to 1..min_cell-1, while a shown cell could still have been withheld."""
    cells = cells.with_columns(hidden.alias("_h"), pl.col("tickets").alias("_v"))
    bad = 0
    for line in lines:
        group = list(line) or [pl.lit(0)]
        stats = cells.select(
            pl.col("_h").sum().over(group).alias("n"),
            pl.when(pl.col("_h")).then(pl.col("_v")).otherwise(0).sum().over(group).alias("s"),
            (~pl.col("_h") & (pl.col("_v") > 0)).sum().over(group).alias("left"),
        )
        needs = (pl.col("n") == 1) | ((pl.col("s") > 0) & (pl.col("s") < min_cell))
        bad += stats.filter(needs & (pl.col("left") > 0)).height
    return bad


def test_windows_widen_to_whole_periods() -> None:
    wed, thu = dt.date(2026, 3, 11), dt.date(2026, 3, 19)
    assert measures.snap(wed, thu, "day") == (wed, thu)
    assert measures.snap(wed, thu, "week") == (dt.date(2026, 3, 9), dt.date(2026, 3, 22))
    assert measures.snap(wed, thu, "month") == (dt.date(2026, 3, 1), dt.date(2026, 3, 31))
    for period in ("year", "all"):  # whole months, not whole years
        assert measures.snap(wed, dt.date(2028, 2, 3), period) == (dt.date(2026, 3, 1), dt.date(2028, 2, 29))
    assert measures.snap(None, None, "month") == (None, None)


def test_two_windows_a_day_apart_give_one_table_and_the_planted_day_stays_hidden(
    rules: Rulebook, tmp_path: Path
) -> None:
    """The old attack: kpis(D1..D2) and kpis(D1..D2+1) differed by the 3 tickets of D2+1."""
    rows = []
    for day in range(1, 21):
        rows += tickets(GUICHENG + "001", dt.date(2026, 3, day), 2)
        rows += tickets(JIUJIANG + "001", dt.date(2026, 3, day), 3)
    planted = dt.date(2026, 3, 21)
    rows += tickets(GUICHENG + "001", planted, 3)
    an = offline(rules, rows, tmp_path)
    for period in ("month", "all", "year"):
        before = an.kpis(
            by=["street"], period=period, start=dt.date(2026, 3, 2), end=planted - dt.timedelta(1)
        )
        after = an.kpis(by=["street"], period=period, start=dt.date(2026, 3, 2), end=planted)
        assert before.equals(after), period
        assert set(before.get_column("window_start")) == {dt.date(2026, 3, 1)}
        assert set(before.get_column("window_end")) == {dt.date(2026, 3, 31)}
        difference = after.get_column("tickets") - before.get_column("tickets")
        assert difference.to_list() == [0, 0]
        assert before.filter(pl.col("street") == GUICHENG).item(0, "tickets") == 43  # the 3 included
    # the same for weeks (Monday..Sunday), rankings, quadrants, changes and hot words
    week = [
        an.kpis(by=["street"], period="week", start=planted - dt.timedelta(d), end=planted) for d in (0, 1)
    ]
    assert week[0].equals(week[1]) and week[0].item(0, "window_start") == dt.date(2026, 3, 16)
    for view in (an.ranking, an.quadrant):
        one = view(by="street", start=dt.date(2026, 3, 2), end=planted - dt.timedelta(1))  # type: ignore[operator]
        two = view(by="street", start=dt.date(2026, 3, 2), end=planted)  # type: ignore[operator]
        assert one.equals(two)
    one = an.changes(by=["street"], period="month", start=dt.date(2026, 3, 5), end=dt.date(2026, 3, 20))
    assert one.equals(an.changes(by=["street"], period="month", start=dt.date(2026, 3, 1), end=planted))


def test_a_lone_small_village_takes_a_second_village_of_its_own_street(rules: Rulebook) -> None:
    """Before, the village table hid the smallest other village anywhere (here in 九江镇), and the
    street table minus 桂城's shown villages gave the 3 away."""
    march = dt.date(2026, 3, 10)
    rows = [
        *tickets(GUICHENG + "001", march, 3),
        *tickets(GUICHENG + "004", march, 50),
        *tickets(GUICHENG + "005", march, 60),
        *tickets(JIUJIANG + "001", march, 20),
        *tickets(JIUJIANG + "004", march, 70),
    ]
    assert rules.analytics is not None
    villages = measures.kpis(frame(rows), rules.analytics, by=["village"], period="month")
    assert villages.columns[:3] == ["period", "street", "village"]  # each village with its street
    hidden = villages.filter(pl.col("tickets").is_null())
    assert sorted(hidden.get_column("village")) == [GUICHENG + "001", GUICHENG + "004"]
    streets = measures.kpis(frame(rows), rules.analytics, by=["street"], period="month")
    total = streets.filter(pl.col("street") == GUICHENG).item(0, "tickets")
    shown = villages.filter(pl.col("street") == GUICHENG).get_column("tickets").drop_nulls().sum()
    assert total - shown == 53  # two villages together, never the 3
    # shown cells are exact
    exact = dict(zip(villages.get_column("village"), villages.get_column("tickets"), strict=True))
    assert exact[GUICHENG + "005"] == 60 and exact[JIUJIANG + "001"] == 20 and exact[JIUJIANG + "004"] == 70
    # the same one level up: a lone small street takes a second street of its own county
    rows = [
        *tickets(GUICHENG + "001", march, 4),
        *tickets(JIUJIANG + "001", march, 50),
        *tickets("440605122001", march, 60),
        *tickets("440604010001", march, 20),  # 禅城区: another county
        *tickets("440604011001", march, 70),
    ]
    streets = measures.kpis(frame(rows), rules.analytics, by=["street"], period="all")
    assert "county" in streets.columns
    hidden = streets.filter(pl.col("tickets").is_null()).get_column("street")
    assert sorted(hidden) == [GUICHENG, JIUJIANG]


def test_a_small_month_takes_another_month_of_its_street(rules: Rulebook) -> None:
    """A street's months add up to its row of the all-periods table over the same window."""
    rows = []
    plan = {GUICHENG: [50, 4, 30, 40], JIUJIANG: [60, 61, 62, 63], "440605122": [70, 70, 70, 70]}
    for street, counts in plan.items():
        for month, n in enumerate(counts, start=1):
            rows += tickets(street + "001", dt.date(2026, month, 10), n)
    assert rules.analytics is not None
    months = measures.kpis(frame(rows), rules.analytics, by=["street"], period="month")
    gui = months.filter(pl.col("street") == GUICHENG)
    assert gui.get_column("tickets").null_count() >= 2  # February and at least one more
    total = measures.kpis(frame(rows), rules.analytics, by=["street"], period="all")
    for street in plan:
        whole = total.filter(pl.col("street") == street).item(0, "tickets")
        shown = months.filter(pl.col("street") == street).get_column("tickets").drop_nulls().sum()
        assert whole - shown == 0 or whole - shown >= 10, street
    # the fixed point: no line of the month table is left with one withheld cell or a small sum
    raw = measures.raw_kpis(frame(rows), rules.analytics, ["street"], "month")
    lines = measures.lines(["street"], "month")
    assert unprotected_lines(raw, months.get_column("tickets").is_null(), lines, 10) == 0
    for row in months.filter(pl.col("tickets").is_not_null()).iter_rows(named=True):
        month = row["period"].month
        assert row["tickets"] == plan[row["street"]][month - 1]  # shown cells are exact


def test_complementary_suppression_converges_on_random_tables() -> None:
    rng = random.Random(7)
    for trial in range(40):
        rows = rng.randint(5, 400)
        cells = pl.DataFrame(
            {
                "a": [rng.randint(0, 6) for _ in range(rows)],
                "b": [rng.randint(0, 4) for _ in range(rows)],
                "p": [rng.randint(0, 5) for _ in range(rows)],
                "tickets": [rng.choice((1, 2, 3, 5, 9, 10, 12, 30, 200)) for _ in range(rows)],
            }
        )
        lines = [["p", "a"], ["p", "b"], ["a", "b"], ["a", "b", pl.col("p") // 2]]
        start = cells.with_columns(small(pl.col("tickets"), 10).alias("_hide_tickets"))
        out, rounds = complementary(start, ["tickets"], lines, 10)
        assert 1 <= rounds < 20, trial
        hidden = out.get_column("_hide_tickets")
        assert hidden.sum() >= start.get_column("_hide_tickets").sum()
        assert unprotected_lines(cells, hidden, lines, 10) == 0, trial
    # the cap: a table still moving when it is reached is withheld whole
    cells = pl.DataFrame(
        {"p": [0, 0, 1, 1, 2, 2], "a": [0, 1, 0, 1, 0, 1], "tickets": [3, 50, 60, 70, 80, 90]}
    )
    start = cells.with_columns(small(pl.col("tickets"), 10).alias("_hide_tickets"))
    out, rounds = complementary(start, ["tickets"], [["p"], ["a"]], 10, max_rounds=1)
    assert rounds == 2 and out.get_column("_hide_tickets").all()
    out, rounds = complementary(start, ["tickets"], [["p"], ["a"]], 10)
    assert rounds < MAX_ROUNDS and out.get_column("_hide_tickets").sum() == 4  # a rectangle


def test_kpi_tables_by_village_and_category_per_day_are_protected(rules: Rulebook) -> None:
    """Every line of a two-dimensional day table (places within streets, categories within a
    place, days within weeks and months) holds no lone withheld cell and no small withheld sum."""
    rng = np.random.default_rng(3)
    villages = [GUICHENG + "001", GUICHENG + "004", GUICHENG + "005", JIUJIANG + "001", JIUJIANG + "004"]
    rows = []
    for day in range(1, 29):
        for village in villages:
            for category in ("社保", "投诉"):
                rows += tickets(village, dt.date(2026, 2, day), int(rng.poisson(8)), category=category)
    assert rules.analytics is not None
    by = ["village", "category"]
    published = measures.kpis(frame(rows), rules.analytics, by=by, period="day")
    raw = measures.raw_kpis(frame(rows), rules.analytics, by, "day")
    assert published.height == raw.height
    hidden = published.get_column("tickets").is_null()
    assert 0 < hidden.sum() < raw.height
    assert unprotected_lines(raw, hidden, measures.lines(by, "day"), 10) == 0
    shown = published.filter(pl.col("tickets").is_not_null())
    assert shown.get_column("tickets").min() >= 10  # type: ignore[operator]


# --- hot words ---------------------------------------------------------------------------------


def _week(rules: Rulebook, rows: list[dict]) -> set[str]:
    assert rules.hotwords is not None
    words = hotwords(frame(rows), rules.hotwords, min_cell=10, by="street", period="week")
    assert set(words.get_column("window_start")) <= {dt.date(2026, 3, 9)}
    return set(words.get_column("word"))


def test_a_caller_repeating_his_name_does_not_make_it_a_hot_word(rules: Rulebook) -> None:
    monday = dt.date(2026, 3, 9)
    rows = tickets(GUICHENG + "001", monday, 12, content="建华反映路灯不亮", caller=42)
    for k in range(12):  # twelve callers about the same lamp
        rows += tickets(GUICHENG + "001", monday + dt.timedelta(k % 5), 1, content="反映路灯不亮")
    words = _week(rules, rows)
    assert "路灯" in words and "建华" not in words  # 12 tickets, 1 caller
    # tickets without a caller count for no caller
    anonymous = [{**r, "caller": None} for r in tickets(GUICHENG + "001", monday, 12, content="井盖丢失")]
    assert "井盖" not in _week(rules, rows + anonymous)


def test_compound_surname_names_and_hmm_words_never_come_out(rules: Rulebook) -> None:
    assert rules.hotwords is not None
    texts = [
        "欧阳建华反映噪音扰民",
        "市民欧阳娜娜表示路灯不亮",
        "夏侯惇来电投诉",
        "长孙无忌投诉物业",
        "网约车司机绕路",
    ]
    words = {w for text in segment(texts, rules.hotwords) for w in text}
    assert not any(w.startswith(tuple(COMPOUND_SURNAMES)) for w in words)
    assert "建华" not in words and "娜娜" not in words  # the given name after the surname
    assert "网约" not in words  # only jieba's HMM makes this word; it is off
    assert {"噪音扰民", "路灯", "司机"} <= words
    # twelve distinct callers saying each text: the names and the HMM word are still not published
    monday = dt.date(2026, 3, 9)
    rows = [r for text in texts for r in tickets(GUICHENG + "001", monday, 12, content=text)]
    published = _week(rules, rows)
    assert not any(w.startswith(tuple(COMPOUND_SURNAMES)) for w in published)
    assert "网约" not in published and "建华" not in published and "娜娜" not in published
    assert {"噪音扰民", "路灯", "司机"} <= published
    # a listed word is published even when it starts with a compound surname
    settings = rules.hotwords.model_dump()
    settings["user_words"].append({"word": "东方红", "freq": 20000, "tag": "n"})
    assert segment(["东方红"], HotwordRules.model_validate(settings)) == [["东方红"]]


def test_hotword_rules_hold_the_surnames_strictly_with_defaults() -> None:
    old = HotwordRules.model_validate({"kind": "hotwords", "version": 1})
    assert old.compound_surnames == COMPOUND_SURNAMES and "欧阳" in old.compound_surnames
    with pytest.raises(ValueError, match="compound_surnames"):
        HotwordRules.model_validate({"kind": "hotwords", "version": 1, "compound_surnames": ["O"]})
    with pytest.raises(ValueError, match="surnames"):
        HotwordRules.model_validate({"kind": "hotwords", "version": 1, "surnames": ["欧阳"]})


def test_a_small_baseline_is_not_given_away_by_score_ratio_or_z(rules: Rulebook) -> None:
    """df, tickets, ratio and z together would solve for the baseline's word count (3 here)."""
    assert rules.hotwords is not None
    monday = dt.date(2026, 3, 9)
    rows = []
    for week in range(1, 5):  # four baseline weeks: 20 tickets each, the word in 3 of them in all
        day = monday - dt.timedelta(weeks=week)
        rows += tickets(GUICHENG + "001", day, 19, content="反映社保卡办理")
        rows += tickets(GUICHENG + "001", day, 1, content="积分入学咨询" if week < 4 else "反映社保卡办理")
    rows[:2] = [{**r, "content": "积分入学咨询"} for r in rows[:2]]
    rows += tickets(GUICHENG + "001", monday, 30, content="积分入学咨询")  # the burst week
    rows += tickets(GUICHENG + "001", monday, 20, content="反映社保卡办理")
    words = hotwords(frame(rows), rules.hotwords, min_cell=10, by="street", period="week", start=monday)
    burst = words.filter(pl.col("word") == "积分入学").row(0, named=True)
    assert burst["df"] == 30 and burst["burst"] is True
    assert burst["score"] is None and burst["ratio"] is None and burst["z"] is None
    steady = words.filter(pl.col("word") == "社保卡").row(0, named=True)
    assert steady["ratio"] is not None and steady["z"] is not None  # its baseline is not small


def test_the_ticket_counts_alone_decide_which_cells_the_kpi_table_withholds(rules: Rulebook) -> None:
    """Alerts ask `withheld_tickets` (ticket counts only) which cells the KPI table hides; on random
    tables it must agree with the full `publish` of every measure."""
    from govdb.analytics import measures

    assert rules.analytics is not None
    rng = np.random.default_rng(11)
    villages = [GUICHENG + f"{v:03d}" for v in range(1, 7)] + [JIUJIANG + f"{v:03d}" for v in range(1, 5)]
    rows = []
    for village in villages:
        for day in range(28):
            n = int(rng.choice([0, 1, 3, 8, 12, 30]))
            for r in tickets(
                village, dt.date(2026, 3, 1) + dt.timedelta(day), n, category=["社保", "供水"][day % 2]
            ):
                late = rng.random() < 0.1
                r["first_response"] = r["received"] + dt.timedelta(hours=30 if late else 2)
                r["closed"] = r["received"] + dt.timedelta(hours=40) if rng.random() < 0.9 else None
                rows.append(r)
    facts, withheld = frame(rows), 0
    for by, period in (
        (["village"], "week"),
        (["street", "category"], "day"),
        (["village", "category"], "month"),
    ):
        full = measures.publish(
            measures.raw_kpis(facts, rules.analytics, by, period), rules.analytics, by, period, None
        )
        cells = measures.ticket_cells(facts, rules.analytics, by, period)
        hidden = measures.withheld_tickets(cells, rules.analytics, by, period)
        assert cells.height == full.height
        withheld += int(hidden.sum())
        assert hidden.to_list() == full.get_column("tickets").is_null().to_list(), (by, period)
    assert withheld > 0  # the tables do withhold cells, so the comparison means something


def test_a_label_is_recoded_by_its_month_whatever_the_window(rules: Rulebook, tmp_path: Path) -> None:
    """A label of 3 callers in January and 7 in February: counted over the window read, it was kept
    in a Jan..Feb table and folded into 其他 in a January one, so 其他 differed by the 3 (an attack's
    recovery). Counted per month, it is 其他 in both months of both tables."""
    a, b = GUICHENG, JIUJIANG
    jan, feb = dt.date(2026, 1, 12), dt.date(2026, 2, 9)
    rows = tickets(a, jan, 3, category="群租房隐患") + tickets(b, feb, 7, category="群租房隐患")
    for i in range(20):  # one-off labels: 其他 in any window
        rows += tickets(a, jan, 1, category=f"杂项{i}")
    rows += tickets(a, jan, 12, category="供水") + tickets(a, jan, 50)
    rows += tickets(b, jan, 40) + tickets(b, feb, 40) + tickets(a, feb, 40)
    an = offline(rules, rows, tmp_path)
    by = ["street", "category"]
    both = an.kpis(by=by, period="month", start=jan, end=feb).filter(pl.col("period") == dt.date(2026, 1, 1))
    january = an.kpis(by=by, period="month", start=jan, end=jan)
    other = pl.col("category") == "其他"
    assert both.filter(other).get_column("tickets").to_list() == [23]  # the 20 one-offs and the 3
    assert january.filter(other).get_column("tickets").to_list() == [23]
    assert "群租房隐患" not in set(both.get_column("category"))


def test_a_raised_floor_withholds_at_least_what_the_default_withholds(
    rules: Rulebook, tmp_path: Path
) -> None:
    """Suppression is not monotone in min_cell by itself: at 11 an attack's table showed 路灯 (12),
    which the table at 10 hid, and the tables together gave a 2 away. A raised floor starts from
    the default's withheld cells."""
    day = dt.date(2026, 5, 11)
    rnd = random.Random(6)
    rows = []
    for street in (GUICHENG, JIUJIANG, "440605010", "440605012"):
        for category in ("社保", "供水", "路灯", "噪音", "物业"):
            rows += tickets(
                street,
                day,
                rnd.choice([0, 2, 3, 5, 9, 10, 11, 12, 13, 14, 16, 20, 30, 40]),
                category=category,
            )
    an = offline(rules, rows, tmp_path)
    by = ["street", "category"]
    default = an.kpis(by=by, period="week", start=day, end=day)
    hidden = {(r["street"], r["category"]) for r in default.iter_rows(named=True) if r["tickets"] is None}
    order = [(r["street"], r["category"]) for r in default.iter_rows(named=True)]
    assert hidden
    for floor in (11, 12, 13, 15, 20):
        raised = an.kpis(by=by, period="week", start=day, end=day, min_cell=floor)
        shown = {cell for cell, t in zip(order, raised.get_column("tickets"), strict=True) if t is not None}
        assert not hidden & shown, floor


def test_an_alert_shows_only_counts_the_same_window_table_shows(rules: Rulebook, tmp_path: Path) -> None:
    """Alerts were checked against a table over the whole month: an attack found one showing a
    count the day table over the same --from/--to hid, and recovered two cells with it."""
    day = dt.date(2026, 5, 11)
    rnd = random.Random(2)
    rows = []
    for week in range(1, 12):
        rows += tickets("440605999", day - dt.timedelta(weeks=week), 12)
    for street in (GUICHENG, JIUJIANG, "440605010"):
        for category in ("社保", "供水", "路灯", "噪音"):
            for d in range(4, 18):
                if rnd.random() < 0.25 or d == 11:
                    n = rnd.choice([0, 0, 2, 3, 5, 10, 11, 12, 14, 20, 30])
                    rows += tickets(street, dt.date(2026, 5, d), n, category=category)
    an = offline(rules, rows, tmp_path)
    table = an.kpis(by=["street", "category"], period="day", start=day, end=day)
    shown = {(r["street"], r["category"]): r["tickets"] for r in table.iter_rows(named=True)}
    alerts = an.alerts(start=day, end=day).filter(pl.col("observed").is_not_null())
    assert alerts.height > 0
    for alert in alerts.iter_rows(named=True):
        assert shown.get((alert["where"], alert["what"])) == alert["observed"], alert
