"""`govdb analytics`: hotline KPIs, surge alerts, hot words and the heat-map page.

Every command reads the event store only, prints aggregates only (small cells withheld) and labels
them unverified event data; `--json` gives one object a line, `--csv` a header and rows. Tables
widen --from/--to to whole periods and say which window they used (`window_start`, `window_end`;
a line above the table in text output).

An empty result is one record of its own, so a script tells it from a failure and still learns the
window: `{"window_start": ..., "window_end": ..., "data_status": ..., "rows": []}` with `--json`,
the header `window_start,window_end,data_status,rows` and one line ending in `[]` with `--csv`
(alerts name the days asked for; a window side left open is null).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Any

import typer

from govdb.cli import _render
from govdb.cli._common import CsvOption, HomeOption, JsonOption, options, output_format, reports_errors

analytics_app = typer.Typer(
    no_args_is_help=True,
    help="What the event store tells: hotline KPIs, surge alerts, hot words, heat maps (unverified data).",
)
LABEL = "未核实的事件数据 unverified event data: for monitoring, never for administrative decisions"

FromOption = Annotated[str | None, typer.Option("--from", help="First day (YYYY-MM-DD), received time.")]
ToOption = Annotated[str | None, typer.Option("--to", help="Last day (YYYY-MM-DD), inclusive.")]
_WHOLE = (
    " Widened to whole periods (day: whole days; week: Monday..Sunday; month: 1st..last day;"
    " year, all: whole months), so windows differing inside a period give the same table."
)
WindowFrom = Annotated[
    str | None, typer.Option("--from", help="First day (YYYY-MM-DD), received time." + _WHOLE)
]
WindowTo = Annotated[str | None, typer.Option("--to", help="Last day (YYYY-MM-DD), inclusive." + _WHOLE)]
PeriodOption = Annotated[str, typer.Option("--period", help="day, week, month, year or all.")]


def _day(text: str | None, flag: str) -> dt.date | None:
    if not text:
        return None
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a date; write YYYY-MM-DD", param_hint=flag) from None
    if not dt.date(1949, 10, 1) <= day <= dt.date(2199, 12, 31):
        raise typer.BadParameter(f"{text!r} is outside 1949-10-01 .. 2199-12-31", param_hint=flag)
    return day


Window = tuple[dt.date | None, dt.date | None]


def _show(fmt: Any, title: str, frame: Any, window: Window, *, whole: bool = True) -> None:
    """`frame` in `fmt` after the label and the window (the frame's own, else `window`: what the
    library widens --from/--to to); an empty frame as the one record the module docstring names."""
    from govdb.analytics import UNVERIFIED

    if fmt == "text":  # rates to four places on a screen; scripts get them whole
        import polars as pl

        frame = frame.with_columns(pl.col(pl.Float64).round(4))
    dated = ("window_start", "window_end")
    if set(dated) <= set(frame.columns) and frame.height:
        window = frame.item(0, "window_start"), frame.item(0, "window_end")
    if fmt == "text":
        _render.line(LABEL)
        kind = "whole periods" if whole else "the days asked for"
        _render.line(f"窗口 window: {window[0] or '…'} .. {window[1] or '…'} ({kind})")
    elif not frame.height:
        empty: dict[str, Any] = {
            "window_start": window[0],
            "window_end": window[1],
            "data_status": UNVERIFIED,
            "rows": [],
        }
        _render.rows(fmt, title, {}, [empty], keys=list(empty))
        return
    columns = {c: c for c in frame.columns if c != "data_status" and (fmt != "text" or c not in dated)}
    _render.rows(fmt, title, columns, frame.to_dicts(), keys=list(frame.columns))


def _groups(by: str, view: str) -> list[str]:
    """The --by levels, each once; refused empty, and more than one for a ranking or a quadrant."""
    groups = list(dict.fromkeys(b.strip() for b in by.split(",") if b.strip()))
    if not groups:
        raise typer.BadParameter(
            "name at least one of county, street, village, department, category", param_hint="--by"
        )
    if view in ("ranking", "quadrant") and len(groups) > 1:
        raise typer.BadParameter(
            f"a {view} takes one level, not {', '.join(groups)} (e.g. --by street)", param_hint="--by"
        )
    return groups


@analytics_app.command("kpis")
@reports_errors
def kpis_command(
    ctx: typer.Context,
    by: Annotated[
        str, typer.Option("--by", help="county, street, village, department, category; comma list.")
    ] = ("street"),
    period: PeriodOption = "month",
    start: WindowFrom = None,
    end: WindowTo = None,
    view: Annotated[
        str,
        typer.Option("--view", help="table, ranking, changes (环比/同比) or quadrant (亮点/难点/堵点/拐点)."),
    ] = "table",
    measure: Annotated[str, typer.Option("--measure", help="The measure a ranking orders by.")] = (
        "satisfaction_rate"
    ),
    min_cell: Annotated[
        int | None, typer.Option("--min-cell", min=1, help="Withhold counts below this.")
    ] = None,
    as_json: JsonOption = False,
    as_csv: CsvOption = False,
    home: HomeOption = None,
) -> None:
    """Response, resolution, satisfaction, repeat and complaint rates and median hours to close.

    Example: govdb analytics kpis --by street --period month --from 2026-01-01 --to 2026-06-30
    """
    from govdb.analytics.measures import snap

    fmt = output_format(as_json, as_csv)
    groups = _groups(by, view)
    first, last = _day(start, "--from"), _day(end, "--to")
    window = {"start": first, "end": last, "min_cell": min_cell}
    with options(ctx, home).open() as db:
        an = db.analytics
        if view == "ranking":
            frame = an.ranking(by=groups[0], period=period, measure=measure, **window)
        elif view == "changes":
            frame = an.changes(by=groups, period=period, **window)
        elif view == "quadrant":
            frame = an.quadrant(by=groups[0], **window)
        elif view == "table":
            frame = an.kpis(by=groups, period=period, **window)
        else:
            raise typer.BadParameter(f"unknown view {view!r}; use table, ranking, changes or quadrant")
    _show(
        fmt, f"KPIs by {by} per {period}", frame, snap(first, last, "all" if view == "quadrant" else period)
    )


@analytics_app.command("alerts")
@reports_errors
def alerts_command(
    ctx: typer.Context,
    level: Annotated[
        str, typer.Option("--by", help="Place alerts at county, street or village level.")
    ] = "street",
    start: FromOption = None,
    end: ToOption = None,
    as_json: JsonOption = False,
    as_csv: CsvOption = False,
    home: HomeOption = None,
) -> None:
    """Surges against declared capacity and against the seasonal history, with expected vs observed.

    Capacities are declared in rules/analytics/capacities.yaml; the history rule is a
    negative-binomial bound on the same weekday of the previous weeks (rules/analytics/measures.yaml).

    Example: govdb analytics alerts --from 2026-04-01 --to 2026-04-30
    """
    fmt = output_format(as_json, as_csv)
    first, last = _day(start, "--from"), _day(end, "--to")
    with options(ctx, home).open() as db:
        frame = db.analytics.alerts(level=level, start=first, end=last)
    _show(fmt, "alerts", frame, (first, last), whole=False)


@analytics_app.command("hotwords")
@reports_errors
def hotwords_command(
    ctx: typer.Context,
    by: Annotated[str, typer.Option("--by", help="county, street, village, or none.")] = "street",
    period: Annotated[str, typer.Option("--period", help="day, week or month.")] = "week",
    start: WindowFrom = None,
    end: WindowTo = None,
    as_json: JsonOption = False,
    as_csv: CsvOption = False,
    home: HomeOption = None,
) -> None:
    """Hot and bursting words of 诉求内容 (TF-IDF against the previous periods).

    Example: govdb analytics hotwords --by street --period week --from 2026-05-11 --to 2026-05-17
    """
    from govdb.analytics.measures import snap

    fmt = output_format(as_json, as_csv)
    group = None if by == "none" else by
    first, last = _day(start, "--from"), _day(end, "--to")
    with options(ctx, home).open() as db:
        frame = db.analytics.hotwords(by=group, period=period, start=first, end=last)
    _show(fmt, "hot words", frame, snap(first, last, period))


@analytics_app.command("heatmap")
@reports_errors
def heatmap_command(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", help="The HTML page to write.")] = Path("govdb-heatmap.html"),
    png: Annotated[
        Path | None, typer.Option("--png", help="Also a PNG (rendered by a local Chromium).")
    ] = None,
    start: WindowFrom = None,
    end: WindowTo = None,
    as_json: JsonOption = False,
    home: HomeOption = None,
) -> None:
    """A self-contained page (opens offline): demand by street x week, KPIs by street, alert timeline.

    Both tables cover the whole weeks (Monday..Sunday) holding --from..--to.

    Example: govdb analytics heatmap --out heat.html --png heat.png --from 2026-01-01 --to 2026-06-30
    """
    from govdb.analytics.measures import snap

    first, last = snap(_day(start, "--from"), _day(end, "--to"), "week")
    with options(ctx, home).open() as db:
        page = db.analytics.heatmap(out, start=first, end=last, png=png)
    window = f"{first or 'first week'} .. {last or 'last week'} (whole weeks)"
    result = {"html": str(page), "png": str(png) if png else None, "window": window, "data_status": LABEL}
    if as_json:
        _render.document(result)
    else:
        _render.facts("heat map", {"page": page, "png": png or "-", "window": window, "data": LABEL})
