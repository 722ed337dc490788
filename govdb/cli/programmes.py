"""`govdb programme`: run a proactive programme, list its offers, mark them, export the selection.

Each command parses its arguments, calls one GovDB method and renders the result. Runs, offer
lists and exports read personal data: they name who reads (--actor) and are audited.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated, Any

import typer

from govdb.cli import _render
from govdb.cli._common import (
    CsvOption,
    HomeOption,
    JsonOption,
    options,
    output_format,
    parse_actor,
    reports_errors,
)

programme_app = typer.Typer(
    no_args_is_help=True, help="Proactive programmes: run over master data, move offers on, export."
)

ActorOption = Annotated[
    str,
    typer.Option(
        "--actor", help="ACTOR@UNIT of the programme's department, e.g. wang@department:transport:440605."
    ),
]
CycleOption = Annotated[
    str | None, typer.Option("--cycle", help="One cycle only: once, 2026 (yearly) or 2026-11 (monthly).")
]


class Target(StrEnum):
    """Where `programme mark` moves offers (govdb.store.states.IssuanceStatus)."""

    accepted = "accepted"
    declined = "declined"
    delivered = "delivered"


def _actor(actor: str) -> Any:
    if not actor:
        raise typer.BadParameter(
            "name who acts for the programme, e.g. wang@department:transport:440605", param_hint="--actor"
        )
    return parse_actor(actor)


SELECTED_KEYS = ["person_id", "name", "birth_date", "address", "delivery", "reasons"]


@programme_app.command("run")
@reports_errors
def programme_run(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Programme name, e.g. senior_transit_card.")],
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Date of eligibility (YYYY-MM-DD); default today.")
    ] = None,
    actor: Annotated[
        str,
        typer.Option(
            "--actor", help="ACTOR@UNIT of the programme's department, e.g. wang@department:transport:440605."
        ),
    ] = "",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Select without recording in the ledger (still audited).")
    ] = False,
    excluded: Annotated[
        bool,
        typer.Option("--excluded", help="With --csv: the people a `not` condition kept out, and why."),
    ] = False,
    as_json: JsonOption = False,
    as_csv: Annotated[
        bool,
        typer.Option(
            "--csv", help="Print everyone selected as CSV, one row a person.", rich_help_panel="Output"
        ),
    ] = False,
    home: HomeOption = None,
) -> None:
    """Select everyone newly eligible, decide delivery, and record them in the issuance ledger.

    The run reads personal data, so it names who runs it; it is audited with everyone selected.
    --json prints the run with everyone selected and everyone a `not` condition kept out (and why)
    as one document; --csv the selected people, or with --excluded the people kept out.

    Example: govdb programme run senior_transit_card --actor wang@department:transport:440605
    """
    fmt = output_format(as_json, as_csv)
    try:
        day = dt.date.fromisoformat(as_of) if as_of else dt.date.today()
    except ValueError:
        raise typer.BadParameter(f"{as_of!r} is not a date like 2026-12-31", param_hint="--as-of") from None
    if not actor:
        raise typer.BadParameter(
            "name who runs the programme, e.g. wang@department:transport:440605", param_hint="--actor"
        )
    who = parse_actor(actor)
    with options(ctx, home).open() as db:
        run = db.run_programme(name, as_of=day, actor=who, dry_run=dry_run)
    if fmt == "json":
        _render.document(run)
    elif fmt == "csv":
        people = run.excluded if excluded else run.selected
        keys = list(dict.fromkeys([*SELECTED_KEYS, *(k for s in people for k in s)]))
        _render.csv_rows([k for k in keys if not excluded or k != "delivery"], people)
    else:
        render_programme(run)


def render_programme(run: Any, limit: int = 10) -> None:
    _render.facts(
        f"programme {run.programme} as of {run.as_of}",
        {
            "eligible": run.eligible,
            "issued now": run.issued,
            "issued before": run.already_issued,
            "home deliveries": run.home_delivery,
            "excluded by a condition": len(run.excluded),
        },
    )
    home = [s for s in run.selected if s["delivery"] == "home"][:limit]
    if home:
        _render.table(
            "home deliveries",
            ["person", "name", "born", "address", "why"],
            [
                (s["person_id"], s["name"], s["birth_date"], s["address"], "; ".join(s["reasons"]))
                for s in home
            ],
        )


OFFER_COLUMNS = ["issuance_id", "cycle", "status", "delivery", "person_id", "name", "address"]


@programme_app.command("offers")
@reports_errors
def programme_offers(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Programme name, e.g. senior_transit_card.")],
    actor: ActorOption = "",
    cycle: CycleOption = None,
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status", help="Only offers in this state (repeat for more); default offered, accepted."
        ),
    ] = None,
    as_json: JsonOption = False,
    as_csv: CsvOption = False,
    home: HomeOption = None,
) -> None:
    """List a programme's offers still to act on, with the ids `programme mark` takes (audited).

    Example: govdb programme offers senior_transit_card --actor wang@department:transport:440605
    """
    fmt = output_format(as_json, as_csv)
    who = _actor(actor)
    with options(ctx, home).open() as db:
        frame = db.programme_selection(
            name, actor=who, cycle=cycle, statuses=status or ["offered", "accepted"]
        )
    rows = frame.select(OFFER_COLUMNS).to_dicts()
    if fmt == "json":
        _render.json_lines(rows)
    elif fmt == "csv":
        _render.csv_rows(OFFER_COLUMNS, rows)
    else:
        _render.table(f"offers of {name}", OFFER_COLUMNS, [[r[k] for k in OFFER_COLUMNS] for r in rows])


@programme_app.command("mark")
@reports_errors
def programme_mark(
    ctx: typer.Context,
    ids: Annotated[list[int], typer.Argument(help="Issuance ids (from `programme offers`).")],
    to: Annotated[Target, typer.Option("--to", help="The state the offers move to.", case_sensitive=True)],
    actor: ActorOption = "",
    as_json: JsonOption = False,
    home: HomeOption = None,
) -> None:
    """Move offers on, all or none: offered -> accepted / declined, accepted -> delivered.

    Only the programme's department of the people's county may; a delivered card is recorded in
    master as a credential. Example:
    govdb programme mark 12 13 --to delivered --actor wang@department:transport:440605
    """
    fmt = output_format(as_json)
    who = _actor(actor)
    with options(ctx, home).open() as db:
        result = db.update_issuance(ids, to=str(to), actor=who)
    if fmt == "json":
        _render.document(result)
    else:
        _render.facts(
            f"offers moved to {result.to}",
            {"moved": len(result.moved), "cards recorded in master": len(result.credentials)},
        )


@programme_app.command("export")
@reports_errors
def programme_export(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Programme name, e.g. elderly_allowance.")],
    actor: ActorOption = "",
    cycle: CycleOption = None,
    as_json: JsonOption = False,
    as_csv: CsvOption = False,
    home: HomeOption = None,
) -> None:
    """Who the programme selected and why (one row an issuance), masked by the department's policy
    and audited with everyone listed.

    Example: govdb programme export elderly_allowance --cycle 2026-11 --csv
    --actor zhao@department:civil_affairs:440605
    """
    fmt = output_format(as_json, as_csv)
    who = _actor(actor)
    with options(ctx, home).open() as db:
        frame = db.programme_selection(name, actor=who, cycle=cycle)
    rows = frame.to_dicts()
    if fmt == "json":
        _render.json_lines(rows)
    elif fmt == "csv":
        _render.csv_rows(frame.columns, rows)
    else:
        columns = ["issuance_id", "cycle", "status", "person_id", "name", "reasons"]
        _render.table(
            f"selected by {name}",
            columns,
            [[*(r[k] for k in columns[:-1]), "; ".join(r["reasons"])] for r in rows],
        )
