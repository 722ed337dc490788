"""Commands of verification and of authoritative loads: tasks (list, decide one or a batch),
source tokens, register loads."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from govdb.cli import _render
from govdb.cli._common import HomeOption, options, parse_actor, parse_mapping, reports_errors

tasks_app = typer.Typer(no_args_is_help=True, help="Verification tasks: list and decide.")
load_app = typer.Typer(no_args_is_help=True, help="Authoritative loads of registers into master.")
sources_app = typer.Typer(no_args_is_help=True, help="Registered sources: issue the tokens that prove them.")


@tasks_app.command("list")
@reports_errors
def tasks_list(
    ctx: typer.Context,
    unit: Annotated[str | None, typer.Option(help="Only this unit's tasks.")] = None,
    state: Annotated[str, typer.Option(help="open, waiting, approved, rejected, returned, or all.")] = "open",
    limit: Annotated[int, typer.Option(min=1)] = 50,
    home: HomeOption = None,
) -> None:
    """List verification tasks (open ones by default), oldest first.

    Example: govdb tasks list --unit village:440605011001
    """
    with options(ctx, home).open() as db:
        tasks = db.tasks(unit_id=unit, state=None if state == "all" else state, limit=limit)
    _render.table(
        "tasks",
        ["task", "level", "unit", "state", "change", "division", "name", "id number"],
        [
            (
                t.task_id,
                t.level,
                t.unit_id,
                t.state,
                t.change,
                t.division_code,
                t.payload.get("name"),
                t.payload.get("id_number"),
            )
            for t in tasks
        ],
    )


@tasks_app.command("decide")
@reports_errors
def tasks_decide(
    ctx: typer.Context,
    task: Annotated[int | None, typer.Argument(help="Task number from `govdb tasks list`.")] = None,
    outcome: Annotated[str | None, typer.Argument(help="approve, reject, amend or return.")] = None,
    actor: Annotated[str, typer.Option(help="ACTOR@UNIT, e.g. li.ming@village:440605011001.")] = "",
    reason: Annotated[str | None, typer.Option(help="Why (required to reject or return).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="field=value, to amend.")] = None,
    from_: Annotated[
        Path | None,
        typer.Option("--from", help="A file of decisions (task_id, outcome, reason, amendments): one batch."),
    ] = None,
    allow_refusals: Annotated[
        bool, typer.Option(help="With --from: record the acceptable decisions and list the refused ones.")
    ] = False,
    home: HomeOption = None,
) -> None:
    """Decide one open task, or a batch from a file in one transaction; refused outside the
    actor's jurisdiction or when a task was decided meanwhile.

    Example: govdb tasks decide 12 reject --actor zhao@street:440605011 --reason "查无此人"
    Example: govdb tasks decide --from village_batch.csv --actor li@village:440605011001
    """
    if not actor:
        raise typer.BadParameter("who decides: ACTOR@UNIT", param_hint="--actor")
    if from_ is not None:
        if task is not None or outcome is not None or set_ or reason:
            raise typer.BadParameter("give either --from FILE or TASK OUTCOME, not both", param_hint="--from")
        from govdb.verify.decision_files import read_decisions

        decisions, lines = read_decisions(from_)
        with options(ctx, home).open() as db:
            report = db.decide_many(parse_actor(actor), decisions, allow_refusals=allow_refusals)
        _render.facts(
            f"decisions from {from_}",
            {
                "decided": len(report.decided),
                "refused": len(report.refused),
                "passed automatically": report.auto_passed,
            },
        )
        if report.refused:
            _render.table(
                "refused decisions",
                ["line", "task", "why"],
                [(lines[r.index - 1], r.task_id, r.error) for r in report.refused[:200]],
            )
        return
    if task is None or outcome is None:
        raise typer.BadParameter("give TASK and OUTCOME, or --from FILE", param_hint="TASK OUTCOME")
    amendments = {}
    for item in set_ or []:
        name, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"{item!r} is not field=value", param_hint="--set")
        amendments[name] = value
    with options(ctx, home).open() as db:
        result = db.decide(task, parse_actor(actor), outcome, reason=reason, amendments=amendments or None)
    _render.facts(
        f"task {task}",
        {
            "outcome": result.outcome,
            "task": result.task_state,
            "proposal": f"{result.proposal_id} ({result.proposal_state})",
            "next task": result.next_task_id,
        },
    )


@sources_app.command("register")
@reports_errors
def sources_register(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A source named under `sources:` in the verification rules.")],
    home: HomeOption = None,
) -> None:
    """Issue a new token for a registered source and print it once (the previous one stops working).

    Give it to that source's ingest job as GOVDB_SOURCE_TOKEN; only its events can pass a step
    automatically. Example: govdb sources register cdpf_system
    """
    with options(ctx, home).open() as db:
        token = db.register_source(name)
    _render.facts(f"source {name}", {"token (shown once; keep it secret)": token})


@load_app.command("people")
@reports_errors
def load_people(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="The register: CSV, TSV, XLSX, Parquet or JSON Lines.")],
    source: Annotated[str, typer.Option(help="The authority the register comes from, e.g. public_security.")],
    valid_from: Annotated[
        str | None,
        typer.Option(help="Date the register's values hold from (YYYY-MM-DD); unknown if left out."),
    ] = None,
    map_: Annotated[
        list[str] | None, typer.Option("--map", help="HEADER=field for a header the rules do not know.")
    ] = None,
    home: HomeOption = None,
) -> None:
    """Load people from an authoritative register into master (standardized, with lineage);
    rows without a valid ID number or name are refused and listed, known ID numbers skipped.

    Example: govdb load people register.csv --source public_security --valid-from 2026-11-01
    """
    since = None
    if valid_from:
        try:
            since = dt.date.fromisoformat(valid_from)
        except ValueError:
            raise typer.BadParameter(
                f"{valid_from!r} is not a date like 2026-11-01", param_hint="--valid-from"
            ) from None
    with options(ctx, home).open() as db, _render.err.status(f"loading {file.name}..."):
        report = db.load_people_file(file, source=source, valid_from=since, mapping=parse_mapping(map_))
    _render.facts(
        f"load {file}",
        {
            "read": report.read,
            "loaded": report.loaded,
            "already in master": report.already_known,
            "refused": report.refused_rows,
            "load id": report.load_id,
        },
    )
    if report.refused.height:
        _render.table("refused rows", ["line", "field", "reason", "value"], report.refused.head(50).rows())
