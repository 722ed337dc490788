"""Routes of checks: open one task per step, assigned by jurisdiction; auto-pass rules."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, select

from govdb.rulebook import registry
from govdb.rulebook.models import Route, Step
from govdb.standards.divisions import significant_prefix
from govdb.store.events import Event, Proposal
from govdb.store.master import OrgUnit


@dataclass(frozen=True)
class AutoPassContext:
    """What an auto-pass rule may look at: the proposal, its event and the step."""

    proposal: Proposal
    event: Event
    step: Step


@registry.register("auto_pass", "from_own_system")
def from_own_system(ctx: AutoPassContext, params: object) -> bool:
    """Pass a department step when the event came from that department's own system."""
    return ctx.step.department is not None and ctx.event.department == ctx.step.department


class UnitIndex:
    """Org units by level and jurisdiction, read once per processing run."""

    def __init__(self, master: Session) -> None:
        units = master.exec(select(OrgUnit)).all()
        self._village = {u.division_code: u.unit_id for u in units if u.level == "village"}
        self._street = {u.division_code: u.unit_id for u in units if u.level == "street"}
        self._department: dict[str, list[OrgUnit]] = {}
        for u in units:
            if u.level == "department" and u.department:
                self._department.setdefault(u.department, []).append(u)

    def unit_for(self, step: Step, division_code: str | None) -> str | None:
        """The unit whose jurisdiction covers `division_code` at this step, if one is registered."""
        if not division_code:
            return None
        code = significant_prefix(division_code)
        if step.level == "village":
            return self._village.get(code) if len(code) == 12 else None
        if step.level == "street":
            return self._street.get(code[:9]) if len(code) >= 9 else None
        candidates = [
            u
            for u in self._department.get(step.department or "", [])
            if code.startswith(significant_prefix(u.division_code))
        ]
        # The most local unit wins (a county office before a city one).
        candidates.sort(key=lambda u: -len(significant_prefix(u.division_code)))
        return candidates[0].unit_id if candidates else None

    def route_units(self, route: Route, division_code: str | None) -> list[str | None]:
        return [self.unit_for(step, division_code) for step in route.steps]
