"""Leaks found by an attacker's review of the published aggregates (invariant 7), each planted and
shown closed: alerts against the KPI tables, an alert's expected from a small baseline, hot words'
ticket counts and demand events, names jieba tags as places, and free-text labels of one caller."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import polars as pl
import pytest

from govdb.analytics import Analytics
from govdb.analytics.alerts import SMALL_BASELINE_NOTE, WITHHELD_NOTE
from govdb.analytics.facts import OTHER, recode_rare_labels
from govdb.analytics.hotwords import segment
from govdb.rulebook import Rulebook
from govdb.rulebook.analytics import SINGLE_SURNAMES, Capacity, CapacityRules, HotwordRules, UserWord
from tests.test_analytics_privacy import GUICHENG, JIUJIANG, frame, offline, tickets

MONDAY = dt.date(2026, 5, 11)
LISHUI = "440605010"  # a third street of 南海区


def _surge_of_a_small_street(rules: Rulebook, tmp_path: Path) -> Analytics:
    """Street GUICHENG: 3 tickets of 社保 (small) and a surge of 15 of 供水 on MONDAY; its street
    total (18) is published, so the KPI table by street x category withholds the 15 as the 3's
    complement."""
    rows = []
    for week in range(1, 9):
        rows += tickets(LISHUI, MONDAY - dt.timedelta(weeks=week), 12)
    rows += tickets(GUICHENG, MONDAY, 3) + tickets(GUICHENG, MONDAY, 15, category="供水")
    rows += tickets(JIUJIANG, MONDAY, 20) + tickets(JIUJIANG, MONDAY, 20, category="供水")
    rows += tickets(LISHUI, MONDAY, 25) + tickets(LISHUI, MONDAY, 25, category="供水")
    return offline(rules, rows, tmp_path)


def test_an_alert_publishes_no_figure_the_kpi_table_withholds(rules: Rulebook, tmp_path: Path) -> None:
    an = _surge_of_a_small_street(rules, tmp_path)
    cells = an.kpis(by=["street", "category"], period="day", start=MONDAY, end=MONDAY)
    streets = an.kpis(by=["street"], period="day", start=MONDAY, end=MONDAY)
    assert streets.filter(pl.col("street") == GUICHENG).item(0, "tickets") == 18
    alerts = an.alerts(start=MONDAY, end=MONDAY)
    surge = alerts.filter(pl.col("where") == GUICHENG, pl.col("what") == "供水").row(0, named=True)
    # the surge is still reported, without its figures (18 - 15 would give the 3 away)
    assert surge["observed"] is None and surge["expected"] is None and surge["threshold"] is None
    assert surge["note"] == WITHHELD_NOTE
    # every figure an alert shows is the KPI table's own
    shown = {(r["street"], r["category"]): r["tickets"] for r in cells.iter_rows(named=True)}
    for row in alerts.filter(pl.col("observed").is_not_null()).iter_rows(named=True):
        assert shown[(row["where"], row["what"])] == row["observed"]


def test_a_capacity_alert_withholds_a_withheld_cell(rules: Rulebook, tmp_path: Path) -> None:
    an = _surge_of_a_small_street(rules, tmp_path)
    an.capacities = CapacityRules(
        kind="capacities",
        version=1,
        capacities=[Capacity(service="供水", division=GUICHENG, period="day", capacity=10)],
    )
    cap = an.alerts(start=MONDAY, end=MONDAY).filter(pl.col("kind") == "capacity").row(0, named=True)
    assert cap["what"] == "供水" and cap["where"] == GUICHENG and cap["when"] == MONDAY
    assert cap["observed"] is None and cap["expected"] is None and cap["note"] == WITHHELD_NOTE


def _small_baseline(rules: Rulebook, tmp_path: Path) -> Analytics:
    rows = []
    for week in range(1, 10):
        rows += tickets(LISHUI, MONDAY - dt.timedelta(weeks=week), 12)
    rows += tickets(GUICHENG, MONDAY - dt.timedelta(weeks=5), 3, category="供水")  # the small cell
    # twelve callers about 供水 elsewhere that month: the label is kept in it (not recoded to 其他)
    rows += tickets(LISHUI, MONDAY - dt.timedelta(weeks=5) + dt.timedelta(days=1), 12, category="供水")
    rows += tickets(GUICHENG, MONDAY, 15, category="供水")
    return offline(rules, rows, tmp_path)


def test_expected_and_threshold_are_withheld_over_a_small_baseline(rules: Rulebook, tmp_path: Path) -> None:
    """expected is the baseline's mean: times its 8 weeks, the withheld 3 of five Mondays back."""
    an = _small_baseline(rules, tmp_path)
    alert = an.alerts(start=MONDAY, end=MONDAY).row(0, named=True)
    assert alert["what"] == "供水" and alert["observed"] == 15
    assert alert["expected"] is None and alert["threshold"] is None
    assert alert["note"] == SMALL_BASELINE_NOTE
    page = an.heatmap(tmp_path / "heat.html", start=MONDAY - dt.timedelta(weeks=8), end=MONDAY)
    tips = [t for t in re.findall(r"<title>([^<]*)</title>", page.read_text("utf-8")) if "实际 15" in t]
    assert tips and all("预期 已隐藏" in t and "阈值 已隐藏" in t for t in tips)
    assert not any("0.38" in t for t in tips)


def test_hot_words_publish_no_ticket_count_nor_what_solves_it(rules: Rulebook, tmp_path: Path) -> None:
    """Street JIUJIANG's 12 tickets are withheld by the KPI table (as the complement of GUICHENG's 4):
    its hot words show neither tickets nor score, ratio and z (ratio gives tickets over the
    baseline's, score then tickets)."""
    rows = tickets(GUICHENG, MONDAY, 4, content="社保缴费问题")
    rows += tickets(JIUJIANG, MONDAY, 12, content="楼下酒吧噪音扰民严重")
    rows += tickets(LISHUI, MONDAY, 50, content="社保缴费问题")
    rows += tickets("440605012", MONDAY, 60, content="社保缴费问题")
    an = offline(rules, rows, tmp_path)
    streets = an.kpis(by=["street"], period="week", start=MONDAY, end=MONDAY)
    assert streets.filter(pl.col("street") == JIUJIANG).item(0, "tickets") is None
    words = an.hotwords(by="street", period="week", start=MONDAY, end=MONDAY)
    assert "tickets" not in words.columns
    noise = words.filter(pl.col("street") == JIUJIANG)
    assert "噪音扰民" in noise.get_column("word").to_list()
    assert noise.select("score", "ratio", "z").null_count().row(0) == (noise.height,) * 3
    shown = words.filter(pl.col("street") == LISHUI)
    assert shown.get_column("score").null_count() == 0  # a published cell keeps its scores


def test_hot_words_count_hotline_tickets_only(rules: Rulebook, tmp_path: Path) -> None:
    village = GUICHENG + "001"
    rows = tickets(village, MONDAY, 12, content="小区噪音扰民严重")
    demand = tickets(village, MONDAY, 3, content="小区噪音扰民严重", category="积分入学")
    rows += [{**r, "service_code": "hall.school_place"} for r in demand]
    an = offline(rules, rows, tmp_path)
    words = an.hotwords(by="village", period="day", start=MONDAY, end=MONDAY)
    assert words.filter(pl.col("word") == "噪音扰民").item(0, "df") == 12


def test_names_jieba_tags_as_places_or_nicknames_are_never_hot(rules: Rulebook, tmp_path: Path) -> None:
    assert rules.hotwords is not None
    hw = rules.hotwords
    for text, name in (
        ("物业经理马建国乱收费", "马建国"),
        ("保安于洋打人", "于洋"),
        ("投诉黄洋态度恶劣", "黄洋"),
        ("前台小张态度差", "小张"),
        ("老王拖欠工资", "老王"),
        ("投诉张德华态度恶劣", "德华"),
    ):
        assert name not in segment([text], hw)[0], text
    for text, word in (("小区物业乱收费", "小区"), ("小学门口堵车", "小学"), ("老人看病难", "老人")):
        assert word in segment([text], hw)[0], text
    listed = hw.model_copy(
        update={"user_words": [*hw.user_words, UserWord(word="小张", freq=20000, tag="n")]}
    )
    assert "小张" in segment(["前台小张态度差"], listed)[0]  # a listed word is published
    W = MONDAY
    rows = tickets(GUICHENG, W, 12, content="物业经理马建国乱收费") + tickets(
        GUICHENG, W, 12, content="保安于洋打人"
    )
    rows += tickets(GUICHENG, W, 12, content="前台小张态度差")
    words = offline(rules, rows, tmp_path).hotwords(by="street", period="week", start=W, end=W)
    assert not {"马建国", "于洋", "小张"} & set(words.get_column("word"))


def test_single_surnames_are_strict_data_with_a_default() -> None:
    base = {"kind": "hotwords", "version": 1}
    default = HotwordRules.model_validate(base)
    assert default.single_surnames == SINGLE_SURNAMES and "张" in SINGLE_SURNAMES
    assert "区" not in SINGLE_SURNAMES and len(SINGLE_SURNAMES) == len(set(SINGLE_SURNAMES)) >= 90
    assert HotwordRules.model_validate({**base, "single_surnames": ["张"]}).single_surnames == ["张"]
    with pytest.raises(ValueError, match="single_surnames"):
        HotwordRules.model_validate({**base, "single_surnames": ["张王"]})


def test_a_label_of_one_callers_tickets_is_never_published(rules: Rulebook, tmp_path: Path) -> None:
    """Ten tickets from ONE caller would publish their category and department as written."""
    label, handler = "张建华13800138000", "承办人李志强"
    rows = []
    for week in range(1, 9):
        rows += tickets(GUICHENG, MONDAY - dt.timedelta(weeks=week), 12)
    rows += tickets(GUICHENG, MONDAY, 30)
    rows += [{**r, "department": handler} for r in tickets(GUICHENG, MONDAY, 10, category=label, caller=42)]
    an = offline(rules, rows, tmp_path)
    tables = [
        an.kpis(by=["category", "department"], period="week", start=MONDAY, end=MONDAY),  # lazy scan
        an.alerts(start=MONDAY, end=MONDAY),  # eager facts
        an.ranking(by="category", period="week", start=MONDAY, end=MONDAY),
    ]
    for table in tables:
        text = str(table.rows())
        assert label not in text and handler not in text and "13800138000" not in text
    kpis = tables[0]
    assert kpis.filter(pl.col("category") == OTHER).item(0, "tickets") == 10
    page = an.heatmap(tmp_path / "heat.html", start=MONDAY, end=MONDAY).read_text("utf-8")
    assert label not in page and handler not in page


def test_recoding_counts_distinct_callers_eagerly_and_lazily() -> None:
    rows = tickets(GUICHENG, MONDAY, 10, category="水务")  # 10 callers: stays
    rows += tickets(GUICHENG, MONDAY, 12, category="张三", caller=7)  # one caller: 其他
    rows += [{**r, "caller": None} for r in tickets(GUICHENG, MONDAY, 15, category="无号码")]  # none
    rows += tickets(GUICHENG, MONDAY, 2, category="投诉")  # declared by the rules: stays
    facts = frame(rows)
    eager = recode_rare_labels(facts, 10, keep=["投诉"])
    lazy = recode_rare_labels(facts.lazy(), 10, keep=["投诉"]).collect()
    assert eager.equals(lazy)
    counts = dict(eager.group_by("category").len().iter_rows())
    assert counts == {"水务": 10, OTHER: 27, "投诉": 2}
    assert set(eager.get_column("department")) == {"人社局"}  # 39 callers


def test_expected_is_withheld_when_a_baseline_day_is_withheld_in_the_day_table(
    rules: Rulebook, tmp_path: Path
) -> None:
    """expected x weeks minus the published baseline Mondays would give the withheld Monday back
    (its partners in the day table's lines are Tuesdays), though the baseline's sum is not small."""
    rows = []
    for week in range(1, 10):  # GUICHENG's 供水 Mondays: 12 each, one of 3 (withheld in the day table)
        day = MONDAY - dt.timedelta(weeks=week)
        rows += tickets(GUICHENG, day, 3 if week == 4 else 12, category="供水")
        # Tuesdays of 11: the 3's partner in its week and month lines, so no other Monday is withheld
        rows += tickets(GUICHENG, day + dt.timedelta(days=1), 11, category="供水")
    rows += tickets(GUICHENG, MONDAY, 60, category="供水")
    an = offline(rules, rows, tmp_path)
    fourth = MONDAY - dt.timedelta(weeks=4)
    day_table = an.kpis(by=["street", "category"], period="day", start=fourth, end=fourth)
    assert day_table.filter(pl.col("street") == GUICHENG).item(0, "tickets") is None
    surge = an.alerts(start=MONDAY, end=MONDAY).filter(pl.col("where") == GUICHENG).row(0, named=True)
    assert surge["observed"] == 60
    assert surge["expected"] is None and surge["threshold"] is None
    assert surge["note"] == SMALL_BASELINE_NOTE
