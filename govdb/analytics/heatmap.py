"""Heat maps and charts as one self-contained HTML page (inline SVG and CSS, no script, no network),
and a PNG of it for reports.

The page shows demand by street x week, KPIs by street and the alert timeline, each labelled as
unverified event data, with withheld cells drawn hatched and marked "<min_cell" (an alert's withheld
figures read 已隐藏). Chinese labels
use the fonts the viewer's system has (Noto CJK on Debian: fonts-noto-cjk).

PNG: the page is rendered by a headless Chromium already installed on the machine (`chromium
--headless --screenshot`), so nothing is downloaded at run time and the picture is exactly what a
browser shows; where no Chromium is found, `render_png` raises ConfigError naming the package.
"""

from __future__ import annotations

import datetime as dt
import html
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import polars as pl

from govdb.analytics.facts import UNVERIFIED
from govdb.errors import ConfigError

LOW, HIGH = (0xF1, 0xF7, 0xFB), (0x08, 0x30, 0x6B)  # sequential blue, light to dark
HATCH = "#d9d9d9"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")


def heat_colour(value: float | None, top: float) -> str:
    """The cell colour of a count: linear from LOW (0) to HIGH (`top`); None (withheld) is grey."""
    if value is None:
        return HATCH
    t = 0.0 if top <= 0 else max(0.0, min(1.0, value / top))
    rgb = (round(a + (b - a) * t) for a, b in zip(LOW, HIGH, strict=True))
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _esc(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _demand_svg(demand: pl.DataFrame, min_cell: int) -> str:
    """Streets (rows) x weeks (columns), the colour of each cell its ticket count."""
    if demand.is_empty():
        return "<p>无数据</p>"
    weeks = sorted(set(demand.get_column("period")))
    streets = demand.select("street", "street_name").unique().sort("street").rows()
    counts = {(r["street"], r["period"]): r["tickets"] for r in demand.iter_rows(named=True)}
    top = max((v for v in counts.values() if v is not None), default=0)
    cw, ch, left, head = 26, 24, 96, 58
    width, height = left + cw * len(weeks) + 10, head + ch * len(streets) + 10
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">']
    parts.append(
        '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse">'
        f'<rect width="6" height="6" fill="{HATCH}"/><path d="M0,6 L6,0" stroke="#999" stroke-width="1"/>'
        "</pattern></defs>"
    )
    for j, week in enumerate(weeks):
        if j % 2 == 0:
            x = left + cw * j + cw / 2
            parts.append(
                f'<text x="{x}" y="{head - 6}" transform="rotate(-60 {x} {head - 6})" class="tick">'
                f"{week:%m-%d}</text>"
            )
    for i, (code, name) in enumerate(streets):
        y = head + ch * i
        parts.append(
            f'<text x="{left - 6}" y="{y + ch * 0.68}" text-anchor="end" class="lab">{_esc(name)}</text>'
        )
        for j, week in enumerate(weeks):
            value = counts.get((code, week), 0)
            fill = "url(#hatch)" if value is None else heat_colour(value, top)
            tip = f"{name} {week}: " + (f"<{min_cell}（已隐藏）" if value is None else f"{value} 件")
            parts.append(
                f'<rect class="cell" x="{left + cw * j}" y="{y}" width="{cw - 1}" height="{ch - 1}" '
                f'fill="{fill}"><title>{_esc(tip)}</title></rect>'
            )
    parts.append("</svg>")
    legend = "".join(
        f'<span class="sw" style="background:{heat_colour(top * k / 4, top)}"></span>{round(top * k / 4)}'
        for k in range(5)
    )
    return (
        "".join(parts)
        + f'<div class="legend">每周工单数：{legend}<span class="sw hatch"></span>&lt;{min_cell} 已隐藏</div>'
    )


def _bar(value: float | None, colour: str) -> str:
    if value is None:
        return '<span class="na">已隐藏</span>'
    width = round(120 * value)
    return (
        f'<svg width="124" height="14"><rect width="120" height="12" fill="#eee"/>'
        f'<rect width="{width}" height="12" fill="{colour}"/></svg> {value:.1%}'
    )


def _kpi_table(kpis: pl.DataFrame) -> str:
    rows = []
    for r in kpis.sort("street").iter_rows(named=True):
        hours = r["median_hours_to_close"]
        rows.append(
            f"<tr><td>{_esc(r['street_name'])}</td>"
            f"<td class='n'>{_esc(r['tickets'] if r['tickets'] is not None else '已隐藏')}</td>"
            f"<td>{_bar(r['response_rate'], '#2b8cbe')}</td><td>{_bar(r['resolution_rate'], '#31a354')}</td>"
            f"<td>{_bar(r['satisfaction_rate'], '#e6550d')}</td>"
            f"<td class='n'>{'已隐藏' if hours is None else f'{hours:.1f}'}</td>"
            f"<td>{_esc(r.get('quadrant') or '')}</td></tr>"
        )
    labels = ("街道/镇", "工单", "响应率", "解决率", "满意率", "办结时长中位数(小时)", "象限")
    head = "<tr>" + "".join(f"<th>{label}</th>" for label in labels) + "</tr>"
    return f"<table class='kpi'>{head}{''.join(rows)}</table>"


def _timeline_svg(alerts: pl.DataFrame, start: dt.date, end: dt.date) -> str:
    if alerts.is_empty():
        return "<p>期间无预警。</p>"
    lanes = alerts.select("kind", "what", "where_name").unique(maintain_order=True).rows()
    span = max((end - start).days, 1)
    left, width, lane_h = 220, 700, 26
    height = 30 + lane_h * len(lanes)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 20}" height="{height}" role="img">'
    ]
    for k in range(0, span + 1, max(span // 8, 1)):
        x = left + width * k / span
        day = start + dt.timedelta(days=k)
        parts.append(f'<line x1="{x}" y1="14" x2="{x}" y2="{height}" stroke="#eee"/>')
        parts.append(f'<text x="{x}" y="11" class="tick" text-anchor="middle">{day:%m-%d}</text>')
    index = {lane: i for i, lane in enumerate(lanes)}
    for lane, i in index.items():
        kind, what, where = lane
        label = f"{'容量' if kind == 'capacity' else '历史'}：{what}·{where}"
        parts.append(
            f'<text x="{left - 8}" y="{30 + lane_h * i + 4}" text-anchor="end" class="lab">'
            f"{_esc(label)}</text>"
        )
    for r in alerts.iter_rows(named=True):
        x = left + width * (r["when"] - start).days / span
        y = 30 + lane_h * index[(r["kind"], r["what"], r["where_name"])]
        colour = "#cb181d" if r["first"] else "#fc9272"
        shown = [
            "已隐藏" if r.get(name) is None else r[name] for name in ("observed", "expected", "threshold")
        ]
        tip = (
            f"{r['when']} {r['what']} {r['where_name']}: "
            f"实际 {shown[0]} / 预期 {shown[1]} / 阈值 {shown[2]}（{r['rule']}）"
            + (f"［{r['note']}］" if r.get("note") else "")
        )
        parts.append(
            f'<circle cx="{x}" cy="{y}" r="{7 if r["first"] else 4}" fill="{colour}">'
            f"<title>{_esc(tip)}</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)


CSS = """
body{font-family:"Noto Sans CJK SC","Noto Sans SC","Source Han Sans SC","Microsoft YaHei",sans-serif;
margin:20px;color:#222;background:#fff}
h1{font-size:22px;margin:0 0 6px} h2{font-size:17px;margin:22px 0 8px}
.warn{background:#fff3cd;border:1px solid #e0c36c;padding:6px 10px;display:inline-block;font-size:14px}
.tick{font-size:10px;fill:#555} .lab{font-size:12px;fill:#222}
.legend{font-size:12px;margin-top:4px} .sw{display:inline-block;width:14px;height:10px;margin:0 3px 0 8px}
.hatch{background:repeating-linear-gradient(45deg,#d9d9d9,#d9d9d9 2px,#999 2px,#999 3px)}
table.kpi{border-collapse:collapse;font-size:13px}
.kpi td,.kpi th{border-bottom:1px solid #ddd;padding:4px 8px}
.n{text-align:right} .na{color:#888} footer{margin-top:20px;font-size:12px;color:#666}
"""


def render_html(
    demand: pl.DataFrame,
    kpis: pl.DataFrame,
    alerts: pl.DataFrame,
    *,
    title: str,
    start: dt.date,
    end: dt.date,
    min_cell: int,
) -> str:
    """The page from published frames only (suppressed, labelled): demand is kpis(by=street,
    period=week); kpis is kpis(by=street, period=all) with an optional quadrant column, both over
    the one window `start`..`end` of whole weeks (so a street's weeks add up to its KPI row, a line
    the suppression keeps safe)."""
    generated = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    return (
        "<!DOCTYPE html><html lang='zh-CN'><head><meta charset='utf-8'>"
        f"<title>{_esc(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{_esc(title)}</h1>"
        f"<div class='warn'>⚠ {_esc(UNVERIFIED)}：业务动态数据，未经核验，"
        "仅供监测分析，不得作为行政决定依据。"
        f"少于 {min_cell} 件的格子已隐藏。</div>"
        f"<p>{start} 至 {end}（整周）</p>"
        f"<h2>各街道每周诉求量</h2>{_demand_svg(demand, min_cell)}"
        f"<h2>各街道指标</h2>{_kpi_table(kpis)}"
        f"<h2>预警时间线</h2>{_timeline_svg(alerts, start, end)}"
        f"<footer>govdb analytics · 生成于 {generated} · 口径见 rules/analytics/measures.yaml</footer>"
        "</body></html>"
    )


def find_chromium() -> str | None:
    """A Chromium on this machine: GOVDB_CHROMIUM, else the usual names on PATH."""
    if env := os.environ.get("GOVDB_CHROMIUM"):
        return env if Path(env).exists() else None
    for name in CHROMIUM_NAMES:
        if found := shutil.which(name):
            return found
    return None


def render_png(html_path: str | Path, png_path: str | Path, *, width: int = 1200, height: int = 1400) -> Path:
    """A screenshot of the page by a local headless Chromium (no network: the page has no links)."""
    chromium = find_chromium()
    if chromium is None:
        raise ConfigError(
            "no Chromium found to render the PNG; install it (apt-get install chromium fonts-noto-cjk) "
            "or set GOVDB_CHROMIUM to its path, or keep the HTML page"
        )
    html_path, png_path = Path(html_path).resolve(), Path(png_path).resolve()
    with tempfile.TemporaryDirectory(prefix="govdb-chromium-") as profile:
        command = [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--disable-extensions",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--screenshot={png_path}",
            html_path.as_uri(),
        ]
        try:
            done = subprocess.run(command, capture_output=True, timeout=120, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ConfigError(f"Chromium ({chromium}) could not render {html_path}: {exc}") from None
    if done.returncode != 0 or not png_path.is_file():
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise ConfigError(f"Chromium ({chromium}) did not write {png_path}: {tail[0]}")
    return png_path
