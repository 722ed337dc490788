"""Commands after promotion: the change feed, conflicts (比对), reverts, splits, as-of reads.

Each parses its arguments, calls one GovDB method and renders: a table on a terminal, plain
tab-separated text when piped, JSON (Lines, for listings) with `--json`, CSV with `--csv`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
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
    print_json,
    reports_errors,
)

conflicts_app = typer.Typer(no_args_is_help=True, help="Conflicts (比对) for their owning department.")

ActorOption = Annotated[
    str, typer.Option("--actor", help="ACTOR@UNIT acting, e.g. zhao@department:public_security:440605.")
]
ReasonOption = Annotated[
    str, typer.Option("--reason", help="Why: kept with the lineage and the audit entry.")
]

CHANGE_COLUMNS = {
    "seq": "seq",
    "at": "recorded",
    "entity_kind": "kind",
    "entity_id": "entity",
    "field": "field",
    "op": "op",
    "valid_from": "valid from",
    "cause": "cause",
    "cause_id": "cause id",
}
CONFLICT_COLUMNS = {
    "conflict_id": "id",
    "entity_kind": "kind",
    "entity_id": "entity",
    "field": "field",
    "master_value": "master value",
    "master_source": "master source",
    "proposed_value": "proposed value",
    "proposed_source": "proposed source",
    "status": "status",
    "resolution": "resolution",
}


@reports_errors
def changes_command(
    ctx: typer.Context,
    since: Annotated[
        str, typer.Option("--since", help="The cursor of the last read (0: from the start).")
    ] = "0",
    limit: Annotated[int, typer.Option("--limit", help="At most this many changes.")] = 1000,
    kind: Annotated[
        list[str] | None, typer.Option("--kind", help="Only changes of this entity kind (repeatable).")
    ] = None,
    as_json: JsonOption = False,
    as_csv: CsvOption = False,
    home: HomeOption = None,
) -> None:
    """Master changes after a cursor, in commit order (no values: read those through profile/prefill).

    With --json: one JSON line per change, then {"cursor": ..., "more": ...}; keep the cursor and
    pass it as --since next time. Text output ends with the cursor on stderr.

    Example: govdb changes --since 0 --json
    """
    fmt = output_format(as_json, as_csv)
    with options(ctx, home).open(check_rules=False) as db:
        page = db.changes(since, limit=limit, kinds=kind or None)
    records = [dataclasses.asdict(c) for c in page.changes]
    _render.rows(fmt, f"master changes after {since}", CHANGE_COLUMNS, records)
    if fmt == "json":
        _render.json_lines([{"cursor": page.cursor, "more": page.more}])
    else:
        _render.warning(f"cursor {page.cursor}" + (" (more to read)" if page.more else ""))


@conflicts_app.command("list")
@reports_errors
def conflicts_list(
    ctx: typer.Context,
    actor: ActorOption,
    status: Annotated[str, typer.Option("--status", help="open, resolved or all.")] = "open",
    limit: Annotated[int, typer.Option("--limit", help="At most this many.")] = 1000,
    as_json: JsonOption = False,
    as_csv: CsvOption = False,
    home: HomeOption = None,
) -> None:
    """The conflicts your department owns in its county (audited; values masked by your policy).

    Example: govdb conflicts list --actor zhao@department:public_security:440605
    """
    fmt = output_format(as_json, as_csv)
    who = parse_actor(actor)
    with options(ctx, home).open() as db:
        found = db.conflicts(actor=who, status=status, limit=limit)
    _render.rows(fmt, f"conflicts ({status})", CONFLICT_COLUMNS, [dataclasses.asdict(c) for c in found])


@conflicts_app.command("resolve")
@reports_errors
def conflicts_resolve(
    ctx: typer.Context,
    conflict_id: Annotated[int, typer.Argument(metavar="ID", help="The conflict's id (conflicts list).")],
    resolution: Annotated[
        str,
        typer.Argument(metavar="accept|keep|amend", help="Take the proposed value, keep master's, or amend."),
    ],
    actor: ActorOption,
    value: Annotated[
        str | None, typer.Option("--value", help="With amend: the value master should hold.")
    ] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Why, kept with the resolution.")] = None,
    as_json: JsonOption = False,
    home: HomeOption = None,
) -> None:
    """Resolve one open conflict once, as its owning department (audited, with lineage).

    Example: govdb conflicts resolve 3 accept --actor zhao@department:public_security:440605
    """
    who = parse_actor(actor)
    with options(ctx, home).open() as db:
        done = db.resolve_conflict(conflict_id, resolution, actor=who, value=value, reason=reason)
    if as_json:
        print_json(done)
        return
    _render.facts(f"conflict {done.conflict_id}", {k: getattr(done, k) for k in CONFLICT_COLUMNS})


@reports_errors
def revert_command(
    ctx: typer.Context,
    proposal_id: Annotated[str, typer.Argument(metavar="PROPOSAL", help="The promoted proposal to undo.")],
    actor: ActorOption,
    reason: ReasonOption,
    as_json: JsonOption = False,
    home: HomeOption = None,
) -> None:
    """Undo one promotion: master's earlier values come back with lineage (audited).

    Example: govdb revert 5f0c... --actor sun@department:data_bureau:440605 --reason 窗口误录
    """
    who = parse_actor(actor)
    with options(ctx, home).open() as db:
        report = db.revert(proposal_id, actor=who, reason=reason)
    if as_json:
        print_json(report)
        return
    _render.facts(
        f"reverted {report.proposal_id}",
        {
            "entity": f"{report.entity_kind} {report.entity_id}",
            "restored": ", ".join(report.restored) or "-",
            "cleared": ", ".join(report.cleared) or "-",
            "past values withdrawn": ", ".join(report.withdrawn_past) or "-",
            "entity deleted": "yes" if report.entity_deleted else "no",
            "issuances flagged": report.issuances_flagged,
        },
    )


@reports_errors
def split_command(
    ctx: typer.Context,
    person_id: Annotated[
        str, typer.Argument(metavar="PERSON", help="The person the events were merged into.")
    ],
    event: Annotated[list[int], typer.Option("--event", help="An event to take off them (repeatable).")],
    actor: ActorOption,
    reason: ReasonOption,
    as_json: JsonOption = False,
    home: HomeOption = None,
) -> None:
    """Split events wrongly merged into a person: revert their promotions, relink them.

    The events are linked again at the next `govdb process`, never to this person.

    Example: govdb split P0A1B2C3 --event 17 --actor zhao@department:public_security:440605 --reason 错并
    """
    who = parse_actor(actor)
    with options(ctx, home).open() as db:
        report = db.split(person_id, event, actor=who, reason=reason)
    if as_json:
        print_json(report)
        return
    _render.facts(
        f"split {report.person_id}",
        {
            "events sent back": ", ".join(map(str, report.event_ids)),
            "promotions reverted": len(report.reverts),
            "fields restored": ", ".join(sorted({f for r in report.reverts for f in r.restored})) or "-",
        },
    )


@reports_errors
def as_of_command(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help="person, credential, enterprise or place.")],
    entity_id: Annotated[str, typer.Argument(metavar="ID", help="The entity's master id.")],
    actor: ActorOption,
    purpose: Annotated[str, typer.Option("--purpose", help="Why you read it: a purpose you are granted.")],
    valid_at: Annotated[
        dt.datetime | None, typer.Option("--valid-at", formats=["%Y-%m-%d"], help="What held on this day.")
    ] = None,
    recorded_at: Annotated[
        dt.datetime | None,
        typer.Option(
            "--recorded-at",
            formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"],
            help="As master had recorded it by then (UTC).",
        ),
    ] = None,
    as_json: JsonOption = False,
    as_csv: CsvOption = False,
    home: HomeOption = None,
) -> None:
    """Every field of an entity on a day, as recorded at a time (bitemporal; audited, masked).

    Example: govdb as-of person P0A1B2C3 --valid-at 2026-01-01 --actor zhao@department:public_security:440605
    --purpose identity_lookup
    """
    fmt = output_format(as_json, as_csv)
    who = parse_actor(actor)
    recorded = recorded_at.replace(tzinfo=dt.UTC) if recorded_at else None
    with options(ctx, home).open() as db:
        values = db.as_of(
            kind,
            entity_id,
            actor=who,
            purpose=purpose,
            valid_at=valid_at.date() if valid_at else None,
            recorded_at=recorded,
        )
    columns = {
        "field": "field",
        "value": "value",
        "masked": "masked",
        "valid_from": "valid from",
        "valid_to": "valid to",
        "recorded_at": "recorded",
        "source": "source",
    }
    _render.rows(fmt, f"{kind} {entity_id} as of", columns, [dataclasses.asdict(v) for v in values])
