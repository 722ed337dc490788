"""Issuance transitions of a proactive programme's ledger, for the delivery team and its scripts."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from govdb.cli import _render
from govdb.cli._common import HomeOption, JsonOption, options, output_format, reports_errors


class IssuanceChoice(StrEnum):
    """The states an issuance can be moved to (govdb.store.states.IssuanceStatus without `offered`,
    where every ledger row starts); kept here so `govdb --help` loads no store code."""

    accepted = "accepted"
    declined = "declined"
    delivered = "delivered"


@reports_errors
def issuance_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Programme name, e.g. senior_transit_card.")],
    person_id: Annotated[str, typer.Argument(help="The person's master id (person_id of `programme run`).")],
    status: Annotated[IssuanceChoice, typer.Argument(help="The new state of their issuance.")],
    as_json: JsonOption = False,
    home: HomeOption = None,
) -> None:
    """Move a person's issuance along offered -> accepted or declined, accepted -> delivered.

    A move the ledger does not allow (delivering what was declined, accepting twice) is refused
    with exit code 1.

    Example: govdb programme issuance senior_transit_card P000123 delivered
    """
    fmt = output_format(as_json)
    with options(ctx, home).open() as db:
        db.update_issuance(name, person_id, status.value)
    done = {"programme": name, "person_id": person_id, "status": status.value}
    if fmt == "json":
        _render.document(done)
    else:
        _render.facts(f"issuance of {name}", done)
