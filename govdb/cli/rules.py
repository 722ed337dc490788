"""Commands of rule governance: show the rules in force, apply changed access policies or routes."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from govdb.cli import _render
from govdb.cli._common import HomeOption, JsonOption, options, parse_actor, reports_errors
from govdb.cli._common import print_json as _json

rules_app = typer.Typer(no_args_is_help=True, help="Rules in force: show them, apply a change.")


@rules_app.command("show")
@reports_errors
def rules_show(ctx: typer.Context, as_json: JsonOption = False, home: HomeOption = None) -> None:
    """The rules in use (folder, fingerprints) and the access policies and routes last applied:
    when, by whom, and whether the rules in use differ from them.

    Example: govdb rules show
    """
    with options(ctx, home).open(check_rules=False) as db:
        status = db.rules_status()
    if as_json:
        _json({**_render.jsonable(status), "differs": status.differs})
        return
    applied = status.applied
    facts: dict[str, Any] = {
        "rules folder": status.rules_dir,
        "fingerprint": status.fingerprint,
        "governed fingerprint": status.governed_fingerprint,
    }
    if applied is None:
        facts["last applied"] = "nothing yet (the next open applies these rules)"
    else:
        facts |= {
            "last applied": f"{applied.applied_at:%Y-%m-%d %H:%M:%S} by {applied.actor_id}@{applied.unit_id}",
            "applied from": applied.rules_dir,
            "applied fingerprint": applied.fingerprint,
            "rules in use": "DIFFER from the applied ones" if status.differs else "the applied ones",
        }
    _render.facts("rules", facts)
    if status.differs:
        _render.table("changed since applied", ["part"], [(part,) for part in status.changed])
        _render.line("the stores refuse these rules until `govdb rules apply --actor NAME@UNIT` records them")


@rules_app.command("apply")
@reports_errors
def rules_apply(
    ctx: typer.Context,
    actor: Annotated[
        str, typer.Option(help="ACTOR@UNIT applying them, e.g. zhou@department:data_bureau:440605.")
    ] = "",
    as_json: JsonOption = False,
    home: HomeOption = None,
) -> None:
    """Record the access policies and routes of the rules in use as applied (an audited change),
    so the stores open with them, and key master again if its link keys were written with other
    blocking rules. Only a unit whose department the rules applied before grant
    'rules_governance' may; a refusal is audited too.

    Example: govdb --rules ./rules rules apply --actor zhou@department:data_bureau:440605
    """
    if not actor:
        raise typer.BadParameter("who applies: ACTOR@UNIT", param_hint="--actor")
    who = parse_actor(actor)
    with options(ctx, home).open(check_rules=False) as db:
        change = db.apply_rules(who)
    if as_json:
        _json(change)
        return
    _render.facts(
        "rules applied",
        {
            "governed fingerprint": change.fingerprint,
            "previous": change.previous or "none",
            "applied": f"{change.applied_at:%Y-%m-%d %H:%M:%S} by {change.actor_id}@{change.unit_id}",
            "audit entry": change.audit_seq,
            "changed": len(change.changed),
            "link keys written": change.link_keys_written,
        },
    )
    if change.changed:
        _render.table("changed", ["part"], [(part,) for part in change.changed])
    else:
        _render.line("no access policy or route changed (recorded as applied again)")
