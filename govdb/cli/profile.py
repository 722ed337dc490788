"""`govdb profile`: the one-person file (一人一档) as the actor's access policy shows it.

Parses the arguments, calls `GovDB.profile` once and renders the answer: rich tables on a
terminal, or one JSON document with `--json` for scripts (dates as ISO strings, Chinese kept as
it is). Fields the policy does not grant are not in the file at all; masked ones say so.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated, Any

import typer

from govdb.cli import _render
from govdb.cli._common import HomeOption, JsonOption, options, parse_actor, print_json, reports_errors

if TYPE_CHECKING:
    from govdb.serve.profile import Lineage, Profile, ProfileField


@reports_errors
def profile_command(
    ctx: typer.Context,
    id_number: Annotated[str, typer.Argument(metavar="ID", help="The person's resident ID number.")],
    actor: Annotated[
        str,
        typer.Option("--actor", help="ACTOR@UNIT reading the file, e.g. wang@department:transport:440605."),
    ],
    purpose: Annotated[
        str, typer.Option("--purpose", help="Why you read it: a purpose your department is granted.")
    ],
    as_of: Annotated[
        dt.datetime | None,
        typer.Option("--as-of", formats=["%Y-%m-%d"], help="The file as it held on this day (valid time)."),
    ] = None,
    recorded_at: Annotated[
        dt.datetime | None,
        typer.Option(
            "--recorded-at",
            formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"],
            help="As master had recorded it by this time (UTC; record time).",
        ),
    ] = None,
    home: HomeOption = None,
    json_out: JsonOption = False,
) -> None:
    """Everything the master store knows of one person, with lineage and past values (audited).

    Example: govdb profile 440605196001011234 --actor wang@department:transport:440605
    --purpose identity_lookup
    """
    who = parse_actor(actor)
    with options(ctx, home).open() as db:
        result = db.profile(
            id_number=id_number,
            actor=who,
            purpose=purpose,
            today=as_of.date() if as_of else None,
            recorded_at=recorded_at.replace(tzinfo=dt.UTC) if recorded_at else None,
        )
    if json_out:
        print_json(result)
        return
    render_profile(result)


def _value(value: Any, masked: bool) -> str:
    return ("(masked) " if masked else "") + ("" if value is None else str(value))


def _lineage(lineage: Lineage | None) -> tuple[Any, ...]:
    if lineage is None:
        return ("", "", "", "")
    return (
        lineage.source,
        "; ".join(lineage.verified_by),
        f"{lineage.valid_from or '?'} to {lineage.valid_to or 'now'}",
        f"{lineage.recorded_at:%Y-%m-%d %H:%M}",
    )


def _field_rows(
    fields: list[ProfileField], label: Any = None
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Current values and past values of `fields`, as table rows."""
    current, past = [], []
    for f in fields:
        name = label(f.name) if label else f.name
        current.append((name, _value(f.value, f.masked), *_lineage(f.lineage)))
        past += [(name, _value(p.value, p.masked), *_lineage(p.lineage)) for p in f.history]
    return current, past


LINEAGE = ["source", "verified by", "valid", "recorded"]


def render_profile(profile: Profile) -> None:
    current, past = _field_rows(profile.fields)
    _render.table(
        f"一人一档 {profile.person_id or '(id withheld)'} for {profile.purpose}, as of {profile.as_of}",
        ["field", "value", *LINEAGE],
        current,
    )
    if past:
        _render.table("past values", ["field", "value", *LINEAGE], past)
    for cred in profile.credentials:
        rows, history = _field_rows(cred.fields, label=lambda n: n.rsplit(".", 1)[-1])
        valid = f"valid {cred.valid_from or '?'} to {cred.valid_to or 'open'}"
        _render.table(
            f"credential {cred.kind} (issuer {cred.issuer or 'unknown'}, {valid})",
            ["field", "value", *LINEAGE],
            rows + [(f"{n} (past)", *rest) for n, *rest in history],
        )
    if profile.issuances:
        _render.table(
            "proactive programmes",
            ["programme", "cycle", "status", "delivery", "as of", "recorded", "updated"],
            [
                (
                    i.programme,
                    i.cycle,
                    i.status,
                    _value(i.delivery, i.delivery_masked),
                    i.as_of,
                    f"{i.created_at:%Y-%m-%d %H:%M}",
                    f"{i.updated_at:%Y-%m-%d %H:%M}",
                )
                for i in profile.issuances
            ],
        )
    if profile.conflicts:
        _render.table(
            "open conflicts (比对), for the owning department",
            ["field", "master value", "master source", "proposed value", "proposed source", "owner"],
            [
                (
                    c.field,
                    _value(c.master_value, c.masked),
                    c.master_source,
                    _value(c.proposed_value, c.masked),
                    c.proposed_source,
                    c.owner_department,
                )
                for c in profile.conflicts
            ],
        )
    _render.line(
        f"{len(profile.fields)} fields, {len(profile.credentials)} credentials, "
        f"{len(profile.issuances)} issuances, {len(profile.conflicts)} open conflicts   "
        f"(audit entry {profile.audit_seq}; fields your policy does not grant are not shown)"
    )
