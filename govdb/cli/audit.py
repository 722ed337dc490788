"""Commands of the audit log: verify the chain, who read a person's data, the PostgreSQL role."""

from __future__ import annotations

from typing import Annotated

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
from govdb.cli._common import print_json as _json

audit_app = typer.Typer(no_args_is_help=True, help="The audit log of personal data reads.")

# The fields of govdb.access.audit.ReadRecord, in order: the columns of `who-read --csv`.
READ_KEYS = [
    "seq",
    "at",
    "actor_id",
    "unit_id",
    "department",
    "purpose",
    "action",
    "outcome",
    "fields",
    "masked",
]


@audit_app.command("verify")
@reports_errors
def audit_verify(
    ctx: typer.Context,
    as_json: JsonOption = False,
    home: HomeOption = None,
) -> None:
    """Walk the whole audit chain against its head and the event store's checkpoints.

    A good chain is checkpointed again (run this on a schedule); a broken one exits with code 1
    and names the first broken entry.

    Example: govdb audit verify
    """
    with options(ctx, home).open(check_rules=False) as db:  # the log is checked whatever the rules
        result = db.verify_audit()
    if as_json:
        _json(result)
    else:
        _render.facts(
            "audit chain",
            {
                "status": "ok" if result.ok else "BROKEN",
                "entries": result.entries,
                "head": f"{result.head_seq} ({result.head_hash})",
                "checkpoints": result.checkpoints,
                "checkpoint written now": "yes" if result.checkpoint_written else "no",
            },
        )
    if not result.ok:
        where = f"at entry {result.first_broken}" if result.first_broken is not None else "(the whole log)"
        _render.error(f"the audit chain is broken {where}: {result.problem}")
        raise typer.Exit(1)


@audit_app.command("who-read")
@reports_errors
def audit_who_read(
    ctx: typer.Context,
    id_number: Annotated[str, typer.Argument(metavar="ID", help="The person's resident ID number.")],
    actor: Annotated[
        str, typer.Option(help="ACTOR@UNIT answering the request, e.g. chen@department:service_hall:440605.")
    ] = "",
    purpose: Annotated[str, typer.Option(help="Why you ask (asking is itself an audited read).")] = (
        "data_subject_request"
    ),
    as_json: JsonOption = False,
    as_csv: CsvOption = False,
    home: HomeOption = None,
) -> None:
    """Every read of one person's data: when, which department, unit and actor, for what purpose,
    which fields; refused and failed look-ups of their ID number included.

    --json prints one JSON object a line (an audit entry), --csv one CSV row an entry.

    Example: govdb audit who-read 440605196001011234 --actor chen@department:service_hall:440605
    """
    fmt = output_format(as_json, as_csv)
    if not actor:
        raise typer.BadParameter("who asks: ACTOR@UNIT", param_hint="--actor")
    who = parse_actor(actor)
    with options(ctx, home).open() as db:
        records = db.who_read(id_number=id_number, actor=who, purpose=purpose)
    if fmt != "text":
        rows = [_render.jsonable(r) for r in records]
        _render.rows(fmt, "", {}, rows, keys=READ_KEYS)
        return
    _render.table(
        f"reads of {id_number}",
        ["when", "department", "unit", "actor", "purpose", "action", "outcome", "fields"],
        [
            (
                f"{r.at:%Y-%m-%d %H:%M:%S}",
                r.department,
                r.unit_id,
                r.actor_id,
                r.purpose,
                r.action,
                r.outcome,
                _fields(r.fields, r.masked),
            )
            for r in records
        ],
    )
    _render.line(f"{len(records)} audit entries (this request was recorded too)")


def _fields(fields: list[str], masked: list[str]) -> str:
    shown = ", ".join(fields)
    if masked:
        shown += ("; " if shown else "") + "masked: " + ", ".join(masked)
    return shown


@audit_app.command("role-sql")
@reports_errors
def audit_role_sql(
    role: Annotated[str, typer.Argument(help="The PostgreSQL role govdb connects as (not the owner).")],
    schema: Annotated[str, typer.Option(help="The schema holding the stores' tables.")] = "public",
    store: Annotated[
        str, typer.Option(help="Which store that schema holds: master, events or both.")
    ] = "both",
) -> None:
    """Print the GRANT/REVOKE statements for an application role that can append to the audit
    tables but never change or remove entries. Run them as the tables' owner.

    Example: govdb audit role-sql govdb_app --schema public | psql -U owner govdb
    """
    from govdb.store.append_only import audit_role_sql as statements

    try:
        sql = statements(role, schema, store)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    for statement in sql:
        _render.line(statement.rstrip(";") + ";")
