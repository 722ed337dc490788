"""`govdb analytics` on a SQLite home holding the planted hotline, and the heat map as a picture:
a real headless Chromium (Debian's /usr/bin/chromium through Playwright) screenshots the page."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import sys
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from govdb import GovDB
from govdb.analytics import UNVERIFIED
from govdb.analytics.heatmap import heat_colour
from govdb.cli import app
from govdb.rulebook import Rulebook

from .conftest import TODAY

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import hotlinegen

CHROMIUM = Path("/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed")
runner = CliRunner()


def run(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, rules: Rulebook) -> Path:
    home = tmp_path_factory.mktemp("an-cli") / "home"
    hotline, school, _ = hotlinegen.generate(seed=13)
    with GovDB.open(home, rules=rules) as db:
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
    return home


def test_cli_kpis_csv_json_and_views(home: Path) -> None:
    result = run(
        "analytics",
        "kpis",
        "--home",
        str(home),
        "--by",
        "street",
        "--period",
        "month",
        "--csv",
        "--from",
        "2026-02-01",
        "--to",
        "2026-02-28",
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 7 and {r["period"] for r in rows} == {"2026-02-01"}
    assert {r["data_status"] for r in rows} == {UNVERIFIED}
    assert {(r["window_start"], r["window_end"]) for r in rows} == {("2026-02-01", "2026-02-28")}
    # a window inside the month gives the same table, and the text output says which window it used
    inside = ("--from", "2026-02-03", "--to", "2026-02-20")
    same = run("analytics", "kpis", "--home", str(home), "--by", "street", "--csv", *inside)
    assert same.stdout == result.stdout
    text = run("analytics", "kpis", "--home", str(home), "--by", "street", *inside)
    assert "window: 2026-02-01 .. 2026-02-28" in text.stdout
    assert "whole periods" in run("analytics", "kpis", "--help").stdout
    result = run("analytics", "kpis", "--home", str(home), "--view", "quadrant", "--json")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 7 and all(r["quadrant"] in ("亮点", "难点", "堵点", "拐点") for r in lines)
    result = run("analytics", "kpis", "--home", str(home), "--by", "phone")
    assert result.exit_code != 0 and "cannot group by" in result.output and "Traceback" not in result.output
    result = run("analytics", "kpis", "--home", str(home), "--from", "2026-13-01")
    assert result.exit_code == 2 and "YYYY-MM-DD" in result.output


def test_cli_alerts_and_hotwords(home: Path) -> None:
    result = run(
        "analytics", "alerts", "--home", str(home), "--json", "--from", "2026-04-01", "--to", "2026-04-01"
    )
    alerts = [json.loads(line) for line in result.stdout.splitlines()]
    kinds = {(a["kind"], a["what"], a["where"], a["when"], a["first"]) for a in alerts}
    assert ("capacity", "积分入学", "440605011", "2026-04-01", True) in kinds
    assert ("history", "积分入学", "440605011", "2026-04-01", True) in kinds
    result = run(
        "analytics", "hotwords", "--home", str(home), "--csv", "--from", "2026-05-11", "--to", "2026-05-17"
    )
    rows = [r for r in csv.DictReader(io.StringIO(result.stdout)) if r["street"] == hotlinegen.BURST_STREET]
    assert rows[0]["word"] == hotlinegen.BURST_WORD and rows[0]["rank"] == "1"
    result = run(
        "analytics", "hotwords", "--home", str(home), "--json", "--from", "2026-05-11", "--to", "2026-05-17"
    )
    words = [json.loads(line) for line in result.stdout.splitlines()]
    mine = [w for w in words if w["street"] == hotlinegen.BURST_STREET]
    assert mine[0]["word"] == hotlinegen.BURST_WORD and int(mine[0]["rank"]) == 1


def test_cli_heatmap_reports_as_json(home: Path, tmp_path: Path) -> None:
    page = tmp_path / "heat.html"
    result = run("analytics", "heatmap", "--home", str(home), "--out", str(page), "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert (
        document["html"] == str(page) and document["png"] is None and "unverified" in document["data_status"]
    )
    assert "未核实" in page.read_text(encoding="utf-8")


def _colours(png: bytes) -> dict[str, int]:
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    return {"#{:02x}{:02x}{:02x}".format(*rgb): n for n, rgb in image.getcolors(maxcolors=1 << 24)}


@needs_chromium
def test_heatmap_renders_in_a_real_browser(home: Path, tmp_path: Path) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    page_path, png_path = tmp_path / "heat.html", tmp_path / "heat.png"
    start, end = dt.date(2026, 3, 2), dt.date(2026, 5, 31)
    result = run(
        "analytics",
        "heatmap",
        "--home",
        str(home),
        "--out",
        str(page_path),
        "--png",
        str(png_path),
        "--from",
        str(start),
        "--to",
        str(end),
    )
    assert result.exit_code == 0, result.output
    page = page_path.read_text(encoding="utf-8")
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in page
    assert "<script" not in page and "未核实" in page and "桂城街道" in page
    # the data: two street-weeks with different counts must get different colours on screen
    with GovDB.open(home) as db:
        demand = db.analytics.kpis(by=["street"], period="week", start=start, end=end)
    top = demand.get_column("tickets").max()
    low = demand.sort("tickets").row(0, named=True)
    high = demand.sort("tickets").row(-1, named=True)
    assert low["tickets"] < high["tickets"]
    low_colour, high_colour = heat_colour(low["tickets"], top), heat_colour(high["tickets"], top)
    assert low_colour != high_colour
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            tab = browser.new_page(viewport={"width": 1200, "height": 1400})
            tab.goto(page_path.as_uri())
            shot = tab.screenshot(full_page=True)
            cells = tab.locator("rect.cell").count()
        finally:
            browser.close()
    weeks = demand.get_column("period").n_unique()
    assert cells == 7 * weeks
    colours = _colours(shot)
    white = colours.get("#ffffff", 0)
    assert sum(colours.values()) - white > 50_000  # not blank
    # each heat cell is 25 x 23 pixels of one colour
    assert colours.get(low_colour, 0) >= 25 * 23 and colours.get(high_colour, 0) >= 25 * 23
    # the PNG written for reports is a real picture of the same page
    png = _colours(png_path.read_bytes())
    assert png.get(high_colour, 0) >= 25 * 23 and sum(png.values()) - png.get("#ffffff", 0) > 50_000


def test_api_facade_and_label(home: Path) -> None:
    with GovDB.open(home) as db:
        frame = db.analytics.kpis(by=["category"], period="all")
    assert isinstance(frame, pl.DataFrame) and set(frame.get_column("data_status")) == {UNVERIFIED}
    assert set(frame.get_column("category")) == set(hotlinegen.CATEGORIES)
