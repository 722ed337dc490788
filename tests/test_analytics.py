"""Analytics over the event store, driven by the seeded hotline with planted truth
(benchmarks/hotlinegen.py): KPIs equal the truth, the planted surge alerts in its first period and
the seasonal control does not, the burst word ranks first, small cells are withheld, nothing
personal comes out, every output is labelled unverified."""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from govdb.analytics import UNVERIFIED, Analytics
from govdb.analytics.alerts import upper_tail
from govdb.analytics.privacy import suppress
from govdb.errors import ConfigError
from govdb.rulebook import Rulebook

from .conftest import BACKENDS, TODAY, open_backend

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import hotlinegen


@pytest.fixture(scope="module")
def planted() -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    return hotlinegen.generate(seed=13)


@pytest.fixture(scope="module", params=BACKENDS)
def an(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, rules: Rulebook, planted
) -> Iterator[Analytics]:
    """The planted hotline ingested like any source, processed (placed by code or address)."""
    hotline, school, _ = planted
    with open_backend(request.param, tmp_path_factory.mktemp("an") / "home", rules) as db:
        db.serve_district("440605")
        db.ingest_frame(
            hotline,
            source="hotline",
            key_column="工单编号",
            occurred_at_column="来电时间",
            service_code="hotline.12345",
        )
        db.ingest_frame(
            school,
            source="school_places",
            key_column="受理编号",
            occurred_at_column="申请时间",
            service_code="hall.school_place",
        )
        db.process(today=TODAY)
        yield db.analytics


def test_kpis_equal_the_planted_truth(an: Analytics, planted) -> None:
    truth = planted[2]
    kpis = an.kpis(by=["street"], period="month")
    assert set(kpis.get_column("data_status")) == {UNVERIFIED}
    got = {(r["street"], r["period"].strftime("%Y-%m")): r for r in kpis.iter_rows(named=True)}
    assert set(got) == set(truth)  # every ticket placed in its street (by code or by address)
    for key, want in truth.items():
        row = got[key]
        assert row["suppressed"] == "", key
        for name in (
            "tickets",
            "responded",
            "closed",
            "resolved",
            "rated",
            "satisfied",
            "repeats",
            "complaints",
        ):
            assert row[name] == want[name], (key, name)
        assert row["median_hours_to_close"] == pytest.approx(want["median_hours_to_close"])
        assert row["response_rate"] == pytest.approx(want["responded"] / want["tickets"])
        assert row["resolution_rate"] == pytest.approx(want["resolved"] / want["closed"])
        assert row["satisfaction_rate"] == pytest.approx(want["satisfied"] / want["rated"])
        assert row["repeat_rate"] == pytest.approx(want["repeats"] / want["tickets"])
    # the planted differences show: 桂城 answers everything in time, 里水镇 (street 6) 60 % late
    jan = {
        r["street"]: r["response_rate"]
        for r in kpis.filter(pl.col("period") == dt.date(2026, 1, 1)).iter_rows(named=True)
    }
    assert jan["440605011"] > 0.95 > 0.5 > jan["440605126"]
    assert kpis.get_column("street_name").to_list()[0] == "桂城街道"


def test_kpis_by_department_category_week_and_window(an: Analytics) -> None:
    week = an.kpis(
        by=["department", "category"], period="week", start=dt.date(2026, 3, 2), end=dt.date(2026, 3, 8)
    )
    assert set(week.get_column("period")) == {dt.date(2026, 3, 2)}
    cats = dict(zip(week.get_column("category"), week.get_column("department"), strict=True))
    assert cats["噪音扰民"] == "生态环境局" and cats["投诉"] == "住建局"
    total = an.kpis(by=["county"], period="all").row(0, named=True)
    assert total["county"] == "440605"
    assert total["tickets"] == sum(v["tickets"] for v in an_truth_cache(an))
    with pytest.raises(ConfigError, match="cannot group by"):
        an.kpis(by=["phone"])


def an_truth_cache(an: Analytics) -> list[dict]:
    return an.kpis(by=["street"], period="all").to_dicts()


def test_small_cells_withheld_with_complementary_suppression(an: Analytics) -> None:
    villages = an.kpis(by=["street", "village"], period="all")
    tiny = villages.filter(pl.col("village") == hotlinegen.TINY_VILLAGE).row(0, named=True)
    assert tiny["tickets"] is None and "tickets" in tiny["suppressed"] and tiny["response_rate"] is None
    # its street's other villages: one more is withheld, so the street total cannot reveal the 5
    jiujiang = villages.filter(pl.col("street") == "440605121")
    assert jiujiang.get_column("tickets").null_count() == 2
    street_total = an.kpis(by=["street"], period="all").filter(pl.col("street") == "440605121")
    shown = jiujiang.get_column("tickets").drop_nulls().sum()
    assert street_total.item(0, "tickets") - shown >= 10  # what is withheld is not one small cell
    # a count whose left-out count is small is withheld with its rate (100 and 97 reveal 3) ...
    frame = pl.DataFrame(
        {"g": ["a", "b"], "tickets": [100, 100], "responded": [97, 50], "response_rate": [0.97, 0.5]}
    )
    kwargs = {
        "total": "tickets",
        "counts": ["responded"],
        "rates": {"response_rate": ("responded", "tickets")},
    }
    out = suppress(frame, **kwargs, lines=[], min_cell=10)  # type: ignore[arg-type]
    assert out.get_column("suppressed").to_list() == ["responded,response_rate", ""]
    # ... and where a and b add up to a published total, b's count goes too (else 147 - 50 = 97)
    out = suppress(frame, **kwargs, lines=[[]], min_cell=10)  # type: ignore[arg-type]
    assert out.get_column("suppressed").to_list() == ["responded,response_rate"] * 2
    assert out.get_column("tickets").to_list() == [100, 100]


def test_surge_alerts_in_its_first_period_and_the_seasonal_control_does_not(an: Analytics) -> None:
    alerts = an.alerts()
    assert set(alerts.get_column("data_status")) == {UNVERIFIED}
    cap = alerts.filter(pl.col("kind") == "capacity")
    assert cap.select("what", "where", "when", "observed", "expected", "first").rows() == [
        ("积分入学", hotlinegen.SURGE_STREET, dt.date(2026, 4, 1), 1700, 800.0, True)
    ]
    history = alerts.filter(pl.col("kind") == "history")
    first = history.filter(pl.col("first"))
    surge = first.filter(pl.col("what") == "积分入学", pl.col("where") == hotlinegen.SURGE_STREET)
    assert surge.get_column("when").min() == hotlinegen.SURGE_DAY
    row = surge.row(0, named=True)
    assert row["observed"] == 70 and row["expected"] == pytest.approx(5.0) and row["threshold"] < 70
    assert "negative-binomial" in row["rule"]
    # nothing before the surge alerts, and never the control with its large Monday peaks
    assert history.filter(pl.col("when") < hotlinegen.SURGE_DAY).is_empty()
    control = history.filter(
        pl.col("what") == hotlinegen.CONTROL[0], pl.col("where") == hotlinegen.CONTROL[1]
    )
    assert control.is_empty()
    assert set(history.get_column("what")) == {"积分入学"}
    # alerts from a start date read the baseline weeks before it
    late = an.alerts(start=dt.date(2026, 4, 1), end=dt.date(2026, 4, 2))
    assert late.filter(pl.col("kind") == "history").get_column("when").min() == hotlinegen.SURGE_DAY


def test_negative_binomial_tail() -> None:
    """The tail against the textbook pmfs (math.gamma), Poisson and over-dispersed."""
    import math

    import numpy as np

    poisson = 1 - sum(math.exp(-5) * 5**k / math.factorial(k) for k in range(14))
    r = 25 / 15  # mean 5, variance 20
    p = r / (r + 5)
    nb = 1 - sum(
        math.gamma(k + r) / (math.gamma(r) * math.factorial(k)) * p**r * (1 - p) ** k for k in range(14)
    )
    got = upper_tail(np.array([14, 14]), np.array([5.0, 5.0]), np.array([5.0, 20.0]))
    assert got[0] == pytest.approx(poisson, rel=1e-9) and got[1] == pytest.approx(nb, rel=1e-9)
    assert got[1] > got[0]


def test_burst_word_ranks_first_in_its_week_and_nothing_personal(an: Analytics) -> None:
    words = an.hotwords(
        by="street",
        period="week",
        start=hotlinegen.BURST_WEEK,
        end=hotlinegen.BURST_WEEK + dt.timedelta(days=6),
    )
    assert set(words.get_column("data_status")) == {UNVERIFIED}
    top = words.filter(pl.col("street") == hotlinegen.BURST_STREET, pl.col("rank") == 1).row(0, named=True)
    assert top["word"] == hotlinegen.BURST_WORD and top["burst"]
    # the word does not burst elsewhere, nor in its street the week before
    assert words.filter(pl.col("word") == hotlinegen.BURST_WORD).height == 1
    before = an.hotwords(
        by="street",
        period="week",
        start=hotlinegen.BURST_WEEK - dt.timedelta(days=7),
        end=hotlinegen.BURST_WEEK - dt.timedelta(days=1),
    )
    assert hotlinegen.BURST_WORD not in set(before.get_column("word"))
    # user dictionary keeps 噪音扰民 whole; no digits, no names planted in the texts
    all_words = an.hotwords(by=None, period="month")
    listed = set(all_words.get_column("word"))
    assert "噪音扰民" in listed
    assert not any(ch.isdigit() for w in listed for ch in w)
    names = {n + g1 + g2 for n in hotlinegen.NAMES for g1 in hotlinegen.GIVEN for g2 in hotlinegen.GIVEN}
    assert not listed & names and "来电人" not in listed
    assert all_words.get_column("df").min() >= 10


def test_no_personal_data_in_any_output(an: Analytics, planted) -> None:
    hotline = planted[0]
    phones = set(hotline.get_column("来电号码"))
    outputs = [
        an.kpis(by=["village"], period="day"),
        an.ranking(by="street"),
        an.changes(by=["street"], period="month"),
        an.quadrant(by="street"),
        an.alerts(),
    ]
    for frame in outputs:
        assert "data_status" in frame.columns and "caller" not in frame.columns
        text = frame.write_csv()
        assert not any(p in text for p in list(phones)[:500])


def test_rankings_changes_and_quadrant(an: Analytics) -> None:
    ranked = an.ranking(by="street", measure="response_rate", period="month")
    jan = ranked.filter(pl.col("period") == dt.date(2026, 1, 1))
    assert jan.get_column("street").to_list()[0] == "440605011" and jan.get_column("rank").to_list()[0] == 1
    changes = an.changes(by=["street"], period="month", start=dt.date(2026, 2, 1))
    feb = changes.filter(pl.col("period") == dt.date(2026, 2, 1), pl.col("street") == "440605011").row(
        0, named=True
    )
    jan_row = (
        an.kpis(by=["street"], period="month")
        .filter(pl.col("period") == dt.date(2026, 1, 1), pl.col("street") == "440605011")
        .row(0, named=True)
    )
    assert feb["tickets_pop"] == pytest.approx((feb["tickets"] - jan_row["tickets"]) / jan_row["tickets"])
    assert feb["tickets_yoy"] is None  # no data a year before
    quad = an.quadrant(by="street")
    assert set(quad.get_column("quadrant")) <= {"亮点", "难点", "堵点", "拐点"}
    # each unit sits where its rates say
    for r in quad.iter_rows(named=True):
        high_c = r["complaint_rate"] > r["complaint_split"]
        high_s = r["satisfaction_rate"] >= r["satisfaction_split"]
        assert (
            r["quadrant"]
            == {(False, True): "亮点", (True, False): "难点", (False, False): "堵点", (True, True): "拐点"}[
                (high_c, high_s)
            ]
        )


def test_facts_export_gives_the_same_kpis(an: Analytics, tmp_path: Path) -> None:
    path = an.export(tmp_path / "facts.parquet")
    offline = Analytics(None, an.rulebook, facts_file=path)
    assert offline.kpis(by=["street"], period="month").equals(an.kpis(by=["street"], period="month"))
    # labels recoded by month once, when the export was written, as a query on the store recodes them
    for by in (["street", "category"], ["department"]):
        assert offline.kpis(by=by, period="month").equals(an.kpis(by=by, period="month"))
    assert offline.alerts().equals(an.alerts())


def test_analytics_rules_are_strict_and_named_on_failure(tmp_path: Path) -> None:
    import shutil

    from govdb import RuleFileError, load_rulebook

    rules = tmp_path / "rules"
    shutil.copytree(Path(__file__).resolve().parents[1] / "rules", rules)
    measures = rules / "analytics" / "measures.yaml"
    measures.write_text(measures.read_text(encoding="utf-8").replace("min_cell: 10", "min_cel: 10"), "utf-8")
    capacities = rules / "analytics" / "capacities.yaml"
    capacities.write_text(capacities.read_text(encoding="utf-8").replace('"440605011"', '"44x"'), "utf-8")
    with pytest.raises(RuleFileError) as info:
        load_rulebook(rules)
    text = str(info.value)
    assert "measures.yaml: min_cel" in text and "capacities.yaml: capacities.1.division" in text


def test_analytics_never_touches_the_master_store() -> None:
    """Invariant 7: analytics imports nothing that reads master, and its SQL names only `event`."""
    import ast
    import re

    package = Path(__file__).resolve().parents[1] / "govdb" / "analytics"
    forbidden = (
        "govdb.store.master",
        "govdb.serve",
        "govdb.load",
        "govdb.promote",
        "govdb.access",
        "govdb.api",
    )
    for path in package.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith(forbidden), f"{path.name} imports {name}"
        tables = set(re.findall(r"\bFROM\s+\"?(\w+)", path.read_text(encoding="utf-8")))
        assert tables <= {"event"}, f"{path.name} reads {tables}"


def test_year_over_year_and_period_over_period(rules: Rulebook) -> None:
    """同比 and 环比 on a synthetic street: 20 tickets in 2025-03, 24 in 2026-02, 30 in 2026-03."""
    import datetime as _dt

    from govdb.analytics import measures
    from govdb.analytics.facts import FACT_SCHEMA

    def month(year: int, mon: int, n: int) -> list[dict]:
        return [
            {"event_id": year * 10000 + mon * 100 + i, "service_code": "hotline.12345",
             "division_code": "440605011001", "category": "社保", "department": "人社局", "content": None,
             "received": _dt.datetime(year, mon, 1 + i % 20, 9), "first_response": None, "closed": None,
             "resolved": None, "satisfaction": None, "caller": None}
            for i in range(n)
        ]  # fmt: skip

    facts = pl.DataFrame(month(2025, 3, 20) + month(2026, 2, 24) + month(2026, 3, 30), schema=FACT_SCHEMA)
    assert rules.analytics is not None
    out = measures.changes(facts, rules.analytics, by=["street"], period="month")
    march = out.filter(pl.col("period") == _dt.date(2026, 3, 1)).row(0, named=True)
    assert march["tickets_yoy"] == pytest.approx(0.5) and march["tickets_pop"] == pytest.approx(0.25)
    assert out.filter(pl.col("period") == _dt.date(2025, 3, 1)).item(0, "tickets_yoy") is None


def test_free_text_labels_of_withheld_cells_are_withheld_and_the_floor_holds(
    tmp_path: Path, rules: Rulebook
) -> None:
    """A name and phone typed into 诉求类型 / 承办部门 of one ticket: its row is withheld, label
    included; asking for a lower min_cell does not lower the rules' floor."""
    with open_backend("sqlite", tmp_path, rules) as db:
        db.serve_district("440605")
        rows = []
        for i in range(25):
            rows.append(
                {
                    "工单编号": f"GD{i:06d}",
                    "来电时间": f"2026-05-{1 + i % 20:02d} 10:00:00",
                    "诉求类型": "投诉" if i else "投诉王小明13800138000",
                    "诉求内容": "物业管理不到位",
                    "所属街道": "桂城街道",
                    "村居代码": "440605011001",
                    "承办部门": "住建局" if i else "王小明13800138000",
                    "是否解决": "是",
                    "满意度": "满意",
                    "来电号码": f"1390000{i:04d}",
                }
            )
        db.ingest_frame(
            pl.DataFrame(rows),
            source="hotline",
            key_column="工单编号",
            occurred_at_column="来电时间",
            service_code="hotline.12345",
        )
        db.process(today=dt.date(2026, 6, 1))
        an = db.analytics
        for frame in (
            an.kpis(by=["category"], period="all"),
            an.kpis(by=["department"], period="all"),
            an.kpis(by=["village"], period="all", min_cell=1),
            an.ranking(by="category"),
        ):
            text = frame.write_csv()
            assert "13800138000" not in text and "王小明" not in text
        lowered = an.kpis(by=["category"], period="all", min_cell=1)
        assert lowered.filter(pl.col("tickets") < 10).height == 0  # the floor is the rules' 10


def test_hot_words_never_hold_a_tagged_name_or_written_out_digits(rules: Rulebook) -> None:
    from govdb.analytics.hotwords import segment

    assert rules.hotwords is not None
    (words,) = segment(["王小明投诉噪音扰民，电话一三八零零一三八零零零，车牌粤A12345"], rules.hotwords)
    assert "王小明" not in words and not any(set(w) <= set("零一二三四五六七八九") for w in words)
    assert "噪音扰民" in words and "投诉" in words
