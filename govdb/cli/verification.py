"""Commands of verification and of authoritative loads: tasks (list, decide one or a batch),
checking units, source tokens, register loads."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from govdb.cli import _render
from govdb.cli._common import (
    CsvOption,
    HomeOption,
    JsonOption,
    MapOption,
    options,
    output_format,
    parse_actor,
    parse_mapping,
    reports_errors,
)

tasks_app = typer.Typer(no_args_is_help=True, help="Verification tasks: list and decide.")
load_app = typer.Typer(no_args_is_help=True, help="Authoritative loads of registers into master.")
sources_app = typer.Typer(no_args_is_help=True, help="Registered sources: issue the tokens that prove them.")


class TaskStateChoice(StrEnum):
    """The task states of govdb.store.states.TaskState, and all (kept here so help loads fast)."""

    open = "open"
    waiting = "waiting"
    approved = "approved"
    rejected = "rejected"
    returned = "returned"
    cancelled = "cancelled"
    all = "all"


class OutcomeChoice(StrEnum):
    """The outcomes of govdb.store.states.Outcome."""

    approve = "approve"
    reject = "reject"
    amend = "amend"
    return_ = "return"


class UnitLevel(StrEnum):
    village = "village"
    street = "street"
    department = "department"


TASK_COLUMNS = {
    "task_id": "task",
    "level": "level",
    "unit_id": "unit",
    "state": "state",
    "change": "change",
    "division_code": "division",
    "name": "name",
    "id_number": "id number",
}
TASK_KEYS = [
    "task_id",
    "proposal_id",
    "step",
    "level",
    "department",
    "unit_id",
    "state",
    "change",
    "division_code",
    "name",
    "id_number",
    "created_at",
    "payload",
]


@tasks_app.command("list")
@reports_errors
def tasks_list(
    ctx: typer.Context,
    unit: Annotated[str | None, typer.Option(help="Only this unit's tasks.")] = None,
    state: Annotated[
        TaskStateChoice, typer.Option(help="Only tasks in this state, or all.")
    ] = TaskStateChoice.open,
    limit: Annotated[int, typer.Option(min=1)] = 50,
    as_json: JsonOption = False,
    as_csv: CsvOption = False,
    home: HomeOption = None,
) -> None:
    """List verification tasks (open ones by default), oldest first.

    Example: govdb tasks list --unit village:440605011001 --csv
    """
    fmt = output_format(as_json, as_csv)
    with options(ctx, home).open() as db:
        tasks = db.tasks(
            unit_id=unit, state=None if state is TaskStateChoice.all else state.value, limit=limit
        )
    records: list[dict[str, Any]] = [
        {
            **_render.jsonable(t),
            "name": t.payload.get("name"),
            "id_number": t.payload.get("id_number"),
        }
        for t in tasks
    ]
    _render.rows(fmt, "tasks", TASK_COLUMNS, [{k: r[k] for k in TASK_KEYS} for r in records], keys=TASK_KEYS)


UNIT_COLUMNS = {
    "unit_id": "unit",
    "level": "level",
    "name": "name",
    "division_code": "division",
    "department": "department",
}


@reports_errors
def units_command(
    ctx: typer.Context,
    level: Annotated[UnitLevel | None, typer.Option(help="Only units of this level.")] = None,
    as_json: JsonOption = False,
    as_csv: CsvOption = False,
    home: HomeOption = None,
) -> None:
    """The checking units registered for the district served (villages, streets, departments):
    the UNIT in ACTOR@UNIT and in `tasks list --unit`.

    Example: govdb units --level street
    """
    fmt = output_format(as_json, as_csv)
    with options(ctx, home).open() as db:
        units = db.units(level.value if level else None)
    records = [{k: getattr(u, k) for k in UNIT_COLUMNS} for u in units]
    _render.rows(fmt, "checking units", UNIT_COLUMNS, records)


@tasks_app.command("decide")
@reports_errors
def tasks_decide(
    ctx: typer.Context,
    task: Annotated[int | None, typer.Argument(help="Task number from `govdb tasks list`.")] = None,
    outcome: Annotated[OutcomeChoice | None, typer.Argument(help="approve, reject, amend or return.")] = None,
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
    as_json: JsonOption = False,
    home: HomeOption = None,
) -> None:
    """Decide one open task, or a batch from a file in one transaction; refused outside the
    actor's jurisdiction or when a task was decided meanwhile.

    --json prints the decision (or the batch: decided, refused with their lines) as one document.

    Example: govdb tasks decide 12 reject --actor zhao@street:440605011 --reason "查无此人"
    Example: govdb tasks decide --from village_batch.csv --actor li@village:440605011001
    """
    fmt = output_format(as_json)
    if not actor:
        raise typer.BadParameter("who decides: ACTOR@UNIT", param_hint="--actor")
    who = parse_actor(actor)
    if from_ is not None:
        if task is not None or outcome is not None or set_ or reason:
            raise typer.BadParameter("give either --from FILE or TASK OUTCOME, not both", param_hint="--from")
        from govdb.verify.decision_files import read_decisions

        decisions, lines = read_decisions(from_)
        with options(ctx, home).open() as db:
            report = db.decide_many(who, decisions, allow_refusals=allow_refusals)
        refused = [
            {"line": lines[r.index - 1], "task_id": r.task_id, "error": r.error} for r in report.refused
        ]
        if fmt == "json":
            _render.document(
                {
                    "file": from_,
                    "decided": report.decided,
                    "refused": refused,
                    "auto_passed": report.auto_passed,
                }
            )
            return
        _render.facts(
            f"decisions from {from_}",
            {
                "decided": len(report.decided),
                "refused": len(report.refused),
                "passed automatically": report.auto_passed,
            },
        )
        if refused:
            _render.table(
                "refused decisions", ["line", "task", "why"], [tuple(r.values()) for r in refused[:200]]
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
        result = db.decide(task, who, outcome.value, reason=reason, amendments=amendments or None)
    if fmt == "json":
        _render.document(result)
        return
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
    as_json: JsonOption = False,
    home: HomeOption = None,
) -> None:
    """Issue a new token for a registered source and print it once (the previous one stops working).

    Give it to that source's ingest job as GOVDB_SOURCE_TOKEN; only its events can pass a step
    automatically. Example: govdb sources register cdpf_system
    """
    fmt = output_format(as_json)
    with options(ctx, home).open() as db:
        token = db.register_source(name)
    if fmt == "json":
        _render.document({"source": name, "token": token})
    else:
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
    map_: MapOption = None,
    as_json: JsonOption = False,
    as_csv: Annotated[
        bool,
        typer.Option(
            "--csv",
            help="Print the refused rows as CSV (line, field, reason, value).",
            rich_help_panel="Output",
        ),
    ] = False,
    home: HomeOption = None,
) -> None:
    """Load people from an authoritative register into master (standardized, with lineage);
    rows without a valid ID number or name are refused and listed, known ID numbers skipped.

    Example: govdb load people register.csv --source public_security --valid-from 2026-11-01
    """
    fmt = output_format(as_json, as_csv)
    since = None
    if valid_from:
        try:
            since = dt.date.fromisoformat(valid_from)
        except ValueError:
            raise typer.BadParameter(
                f"{valid_from!r} is not a date like 2026-11-01", param_hint="--valid-from"
            ) from None
    mapping = parse_mapping(map_)
    with options(ctx, home).open() as db, _render.err.status(f"loading {file.name}..."):
        report = db.load_people_file(file, source=source, valid_from=since, mapping=mapping)
    refused = report.refused
    if fmt == "json":
        _render.document({"file": file, **_render.jsonable(report), "refused_rows": report.refused_rows})
        return
    if fmt == "csv":
        _render.csv_rows(refused.columns, refused.to_dicts())
        return
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
    if refused.height:
        _render.table("refused rows", ["line", "field", "reason", "value"], refused.head(50).rows())
