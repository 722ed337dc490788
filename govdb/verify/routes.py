"""Routes of checks: which unit checks each step (jurisdiction from master), and auto-pass rules.

Who checks a change is decided by where the record *is* in master (invariant 5): a change to a
person already in master is checked by the units of their master residence, a move also by the
destination village; only someone new is checked where the event says they register. Automatic
passes are vectorised predicates over a batch of proposals, earned only by a source that proved
itself with its registered token (invariant 9).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
from sqlmodel import Session, select

from govdb.rulebook import registry
from govdb.rulebook.loader import Rulebook
from govdb.rulebook.models import Route, Step
from govdb.standards.divisions import significant_prefix
from govdb.store.master import OrgUnit


@dataclass(frozen=True)
class AutoPassBatch:
    """What an auto-pass rule looks at: one row per proposal at one step of one route.

    `frame` has `proposal_id`, `authenticated_source` (the registered source the ingest proved
    to be, else null), `source_department` and `source_routes` (what the rules let that source
    pass); rules never see what a caller merely claimed.
    """

    frame: pl.DataFrame
    route: str
    step: Step


@registry.register("auto_pass", "from_own_system")
def from_own_system(batch: AutoPassBatch, params: object) -> pl.Series:
    """Pass a department step when the event came from that department's own registered system,
    proven by its token, and the rules let that system pass this route."""
    if batch.step.department is None:
        return pl.Series("passed", [False] * batch.frame.height, dtype=pl.Boolean)
    return batch.frame.select(
        (
            pl.col("authenticated_source").is_not_null()
            & (pl.col("source_department") == batch.step.department)
            & pl.col("source_routes").list.contains(batch.route)
        )
        .fill_null(False)
        .alias("passed")
    ).to_series()


def source_columns(rules: Rulebook, authenticated: pl.Series) -> pl.DataFrame:
    """The rules' facts about each row's authenticated source (null where none was proven)."""
    sources = rules.verification.sources
    return pl.DataFrame(
        {
            "authenticated_source": authenticated,
            "source_department": [
                sources[s].department if s in sources else None for s in authenticated.to_list()
            ],
            "source_routes": [sources[s].auto_pass if s in sources else [] for s in authenticated.to_list()],
        },
        schema={
            "authenticated_source": pl.String,
            "source_department": pl.String,
            "source_routes": pl.List(pl.String),
        },
    )


def auto_passed(rules: Rulebook, batch: AutoPassBatch) -> pl.Series:
    """The name of the first auto-pass rule of the step each row passes, else null."""
    passed = pl.Series("rule", [None] * batch.frame.height, dtype=pl.String)
    for ref in batch.step.auto_pass:
        block = registry.get("auto_pass", ref.block)
        assert block is not None  # checked when the rules were loaded
        hit = block.function(batch, block.params.model_validate(ref.params))
        passed = pl.select(
            pl.when(passed.is_null() & hit).then(pl.lit(ref.block)).otherwise(passed).alias("rule")
        ).to_series()
    return passed


@dataclass(frozen=True)
class Assignment:
    """One step of a proposal's route: its level, department, unit and the place it checks."""

    level: str
    department: str | None
    unit_id: str | None
    division_code: str | None
    route_step: int  # index into the route's steps (a move's destination check repeats the village step)


class UnitIndex:
    """Org units by level and jurisdiction, read once per processing run."""

    def __init__(self, master: Session) -> None:
        units = master.exec(select(OrgUnit)).all()
        self._village = {u.division_code: u.unit_id for u in units if u.level == "village"}
        self._street = {u.division_code: u.unit_id for u in units if u.level == "street"}
        self._department: dict[str, list[OrgUnit]] = {}
        # assign() of a run repeats for every record of a village: (route, home, destination) -> checks
        self._assigned: dict[tuple[int, str | None, str | None], tuple[Route, list[Assignment]]] = {}
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

    def assign(self, route: Route, home: str | None, destination: str | None = None) -> list[Assignment]:
        """The checks of a route for a record at `home`; a move to another village (`destination`)
        adds that village's check right after the home village's."""
        key = (id(route), home, destination)  # the route is held below, so its id is not reused
        if key not in self._assigned:
            if len(self._assigned) >= 100_000:  # a long-lived index (a hall's GovDB) stays small
                self._assigned.clear()
            self._assigned[key] = (route, self._assign(route, home, destination))
        return list(self._assigned[key][1])

    def _assign(self, route: Route, home: str | None, destination: str | None) -> list[Assignment]:
        out: list[Assignment] = []
        moving = bool(destination) and _village(destination) != _village(home)
        # The destination checks at the route's first local level: the village where there is one
        # (a person's move), else the street (an enterprise moving its registered address).
        local = next((s.level for s in route.steps if s.level in ("village", "street")), None)
        for i, step in enumerate(route.steps):
            out.append(Assignment(step.level, step.department, self.unit_for(step, home), home, i))
            if step.level == local and moving:
                there = self.unit_for(step, destination)
                if step.level == "village" or there != out[-1].unit_id:
                    out.append(Assignment(step.level, None, there, destination, i))
        return out


def _village(code: str | None) -> str | None:
    return significant_prefix(code)[:12] if code else None
