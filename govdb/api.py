"""GovDB: one object holding both stores and the rulebook; each method delegates to one stage.

from govdb import open_db, Actor
db = open_db("govdb-data")                 # two SQLite files, or GOVDB_MASTER_URL/GOVDB_EVENTS_URL
db.serve_district("440605")                # divisions and checking units of 南海区
db.ingest("hall.csv", source="hall", service_code="hall.resident_registration")
db.process()                               # standardize, validate, link, propose, open tasks
db.decide(task_id, Actor("li", "village:440605011001"), "approve")
db.promote()
db.prefill("senior_transit_card", id_number="...", actor=Actor("wang", "department:transport:440605"))
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import polars as pl
from sqlalchemy import Engine
from sqlmodel import Session

from govdb import ingest as ingest_stage
from govdb import link as link_stage
from govdb import load as load_stage
from govdb import promote as promote_stage
from govdb import validate as validate_stage
from govdb.access import audit as audit_stage
from govdb.access import governance
from govdb.access.audit import AuditVerification, ReadRecord, load_key
from govdb.access.guard import AuditContext
from govdb.correct import conflicts as conflict_stage
from govdb.correct import revert as revert_stage
from govdb.correct.conflicts import ConflictView
from govdb.errors import StateError
from govdb.link.loadkeys import keyed_load
from govdb.rulebook import Rulebook, load_rulebook
from govdb.serve import asof as asof_stage
from govdb.serve import enterprise as serve_enterprise
from govdb.serve import issuance as issuance_stage
from govdb.serve import lookup as serve_lookup
from govdb.serve import profile as profile_stage
from govdb.serve import programmes as programme_stage
from govdb.serve.prefill import PrefillResult, prefill_form
from govdb.store.counts import table_counts
from govdb.store.engine import StoreConfig, checkpoint_in_background, make_engine, migrate, refresh_statistics
from govdb.store.feed import ChangePage, read_changes
from govdb.store.locks import reading
from govdb.store.master import OrgUnit, served_county
from govdb.store.states import Outcome
from govdb.verify import (
    Actor,
    BatchDecisionReport,
    DecisionInput,
    DecisionResult,
    TaskView,
    UnitIndex,
    list_tasks,
)
from govdb.verify import sources as source_stage
from govdb.verify import units as units_stage
from govdb.verify.decisions import decide_as
from govdb.verify.pipeline import ProcessReport, process_events
from govdb.verify.units import DistrictReport

# Master tables that bulk loads and promotions grow, whose planner statistics must follow.
T = TypeVar("T")
MASTER_GROWN = ("person", "linkkey", "linkfeatures", "fieldhistory", "credential", "promotion")


class GovDB:
    """The master store, the event store and the rules, with one method per stage."""

    def __init__(
        self,
        config: StoreConfig,
        rules: Rulebook,
        *,
        create: bool = True,
        audit_key: str | None = None,
        check_rules: bool = True,
    ) -> None:
        self.config = config
        self.rules = rules
        self.audit = AuditContext(load_key(audit_key, config.key_folder()), rules, rules.fingerprint())
        self.master: Engine = make_engine(config.master_url)
        self.events: Engine = make_engine(config.events_url)
        self._model: link_stage.LinkModel | None = None
        self._units: UnitIndex | None = None
        self._county: tuple[str | None] | None = None  # (served county,) once read
        if create:
            self.init()
        self._checkpointers = checkpoint_in_background(self, self.master, self.events)  # off the request path
        if check_rules:
            governance.ensure_applied(self.master, self.audit)
            if create:  # keyed now, not in a look-up, if master never recorded its keys' blocking rules
                link_stage.key_unrecorded_store(self.master, rules.matching["person"])
        else:  # opened to inspect or apply these rules: work under them waits until they are applied
            self.audit = dataclasses.replace(
                self.audit, applied=governance.rules_applied(self.master, self.audit)
            )

    @classmethod
    def open(
        cls,
        home: str | Path | None = None,
        *,
        master_url: str | None = None,
        events_url: str | None = None,
        rules: str | Path | Rulebook | None = None,
        create: bool = True,
        audit_key: str | None = None,
        check_rules: bool = True,
    ) -> GovDB:
        """Open (and by default create or migrate) both stores.

        Rules default to GOVDB_RULES, else the shipped ones. Their access policies and routes
        must be the ones last applied to these stores (the first open applies them; a change
        needs `apply_rules`); `check_rules=False` opens anyway, to apply them. The audit key
        defaults to GOVDB_AUDIT_KEY, else a key file made in the home folder.
        """
        config = StoreConfig.resolve(home, master_url=master_url, events_url=events_url)
        book = rules if isinstance(rules, Rulebook) else load_rulebook(rules)
        return cls(config, book, create=create, audit_key=audit_key, check_rules=check_rules)

    def init(self) -> None:
        """Create or migrate both stores to the newest schema."""
        migrate(self.master, "master")
        migrate(self.events, "events")

    def close(self) -> None:
        for checkpointer in self._checkpointers:
            checkpointer.stop()
        self.master.dispose()
        self.events.dispose()

    def __enter__(self) -> GovDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- reference data ----------------------------------------------------------------------

    def serve_district(self, county_code: str) -> DistrictReport:
        """Register a county: its divisions (shipped table; a rerun replaces them), its checking units
        (govdb.verify.units; a rerun adds missing ones), master's link keys made for its addresses."""
        report = units_stage.serve_district(self.master, self.rules, county_code)
        link_stage.ensure_link_keys(self.master, self.rules.matching["person"], rekey=True)
        self._units = None
        self._county = None
        return report

    def _unit_index(self, ms: Session) -> UnitIndex:
        """The checking units, read once per GovDB (serve_district reads them again)."""
        if self._units is None:
            self._units = UnitIndex(ms)
        return self._units

    def served_county(self) -> str | None:
        """The county this deployment serves, when it serves exactly one (a hint for addresses).
        Read once per GovDB, like the units: every look-up and prefill needs it; serve_district
        reads it again."""
        if self._county is None:
            with self.master.connect() as conn:
                self._county = (served_county(conn),)
        return self._county[0]

    def units(self, level: str | None = None) -> list[OrgUnit]:
        """Registered checking units (optionally of one level), by id."""
        return units_stage.registered_units(self.master, level)

    def load_people(self, people: pl.DataFrame, *, source: str, valid_from: dt.date | None = None) -> str:
        """Authoritative bulk load of people (e.g. the population register); returns the load id.
        A `person_id` column keeps the register's ids; `valid_from` is the date its values hold
        from (unknown by default). The new people's blocking keys are indexed for linkage."""
        return self._keyed_load(load_stage.bulk_load_people, people, source=source, valid_from=valid_from)

    def load_people_file(
        self,
        path: str | Path,
        *,
        source: str,
        valid_from: dt.date | None = None,
        mapping: dict[str, str] | None = None,
    ) -> load_stage.LoadReport:
        """Load a register file (CSV/TSV, XLSX, Parquet, JSON Lines) of people: headers through the
        rules' aliases (and `mapping`), values standardized, rows without a valid ID number or name
        refused and reported; then the new people's blocking keys are indexed."""
        file, aliases = Path(path), self.rules.column_aliases()
        load = load_stage.load_people_file
        return self._keyed_load(load, file, aliases, source=source, valid_from=valid_from, mapping=mapping)

    def _keyed_load(self, load: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A load into master that keys its people as it commits; refused before it writes if master
        is keyed by other rules."""
        rules = self.rules.matching["person"]
        loaded = keyed_load(self.master, rules, lambda keys: load(self.master, *args, keys=keys, **kwargs))
        refresh_statistics(self.master, MASTER_GROWN)
        self._model = None
        return loaded

    # --- linkage -----------------------------------------------------------------------------

    def linkage_model(self, features: pl.DataFrame | None = None) -> link_stage.LinkModel:
        """The stored (trained) person model, else the rules' m and master's u (from `features`)."""
        if self._model is None:
            hint, rules = self.served_county(), self.rules.matching["person"]
            self._model = link_stage.stored_model(self.master) or link_stage.default_model(
                self.master, rules, address_hint=hint, features=features
            )
        return self._model

    def train_linker(self, events: pl.DataFrame, *, id_column: str = "event_id") -> link_stage.LinkModel:
        """Estimate u, m (EM) and the prior from these records against master, and store the model
        so `process` and `link_one` use it."""
        matching, hint = self.rules.matching["person"], self.served_county()
        self._model = link_stage.train_model(
            self.master, matching, events, id_column=id_column, address_hint=hint
        )
        return self._model

    def link_one(
        self,
        record: dict[str, Any],
        *,
        actor: Actor,
        purpose: str,
        today: dt.date | None = None,
        kind: str = "person",
    ) -> link_stage.LinkResult:
        """Link one record (standard fields as written) against master, through the indexed
        blocking keys, with the same model and rules as batch runs.

        A read of personal data: `actor`'s department must be granted `purpose`; the matched
        person's fields come back as its policy shows them (none outside its county), and the
        look-up is audited, also when it finds nobody or is refused. `kind="enterprise"` links an
        enterprise record (name, uscc, legal_representative, phone, address) the same way; the
        result's `person_id` is then the enterprise id."""
        return serve_lookup.link_one(
            self.master, self.audit, record, actor=actor, purpose=purpose,
            model=self.linkage_model, today=today, address_hint=self.served_county(), kind=kind,
        )  # fmt: skip

    # --- the data path -----------------------------------------------------------------------

    def ingest(
        self, path: str | Path, *, source: str, source_token: str | None = None, **options: Any
    ) -> ingest_stage.IngestReport:
        """Ingest a file into the event store (see govdb.ingest.ingest_records for options).

        With `source_token` (issued by `register_source`) the ingest proves it is that registered
        source; a wrong token is refused. Without one the events are unauthenticated and earn no
        automatic pass, whatever `department` the caller names."""
        options["authenticated_source"] = source_stage.ingest_source(
            self.master, self.rules, source, source_token, options
        )
        options.setdefault("aliases", self.rules.column_aliases())  # to warn of a file without them
        return ingest_stage.ingest_file(self.events, path, source=source, **options)

    def ingest_frame(
        self, frame: pl.DataFrame, *, source: str, source_token: str | None = None, **options: Any
    ) -> ingest_stage.IngestReport:
        options["authenticated_source"] = source_stage.ingest_source(
            self.master, self.rules, source, source_token, options
        )
        options.setdefault("aliases", self.rules.column_aliases())
        return ingest_stage.ingest_frame(self.events, frame, source=source, **options)

    def process(
        self,
        *,
        today: dt.date | None = None,
        retry: validate_stage.Retry | str | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> ProcessReport:
        """Standardize and validate received events, link them, propose changes and open tasks.

        One `process` runs at a time per event store (others wait, then find nothing left), so no
        event is proposed twice. `retry="invalid"` first moves the events marked invalid back to
        received (after their data or the rules were fixed), so they are validated again.
        """
        self._require_applied()
        # A subclass's own model is built here; the stored or default one (or the one this GovDB
        # holds) where the features are: a large run's linking process.
        own_model = type(self).linkage_model is GovDB.linkage_model
        return process_events(
            self.events,
            self.master,
            self.rules,
            lambda: self._model if own_model and self._model is not None else self.linkage_model,
            address_hint=self.served_county,
            today=today,
            retry=retry,
            progress=progress,
            stored_or_default=own_model,
        )

    def tasks(
        self, *, unit_id: str | None = None, state: str | None = "open", limit: int = 200
    ) -> list[TaskView]:
        """Tasks in `state` (open by default; None for all), oldest first, optionally of one unit."""
        with reading(self.events) as conn:
            return list_tasks(conn, unit_id=unit_id, state=state, limit=limit)

    def decide(
        self,
        task_id: int,
        actor: Actor,
        outcome: Outcome | str,
        *,
        reason: str | None = None,
        amendments: dict[str, Any] | None = None,
    ) -> DecisionResult:
        """Decide one open task as `actor` (refused outside the actor's jurisdiction, or when the
        task was decided meanwhile)."""
        decision = {"task_id": task_id, "outcome": outcome, "reason": reason, "amendments": amendments}
        return self.decide_many(actor, [decision]).decided[0]

    def decide_many(
        self,
        actor: Actor,
        decisions: Iterable[DecisionInput | dict[str, Any]],
        *,
        allow_refusals: bool = False,
    ) -> BatchDecisionReport:
        """Decide many tasks as `actor` in one transaction: each decision is checked for state,
        jurisdiction and amendments. By default one refusal refuses the batch; with
        `allow_refusals` the refused decisions are listed in the report and the rest recorded."""
        self._require_applied()
        return decide_as(
            self.events, self.master, self.rules, actor, decisions,
            units=self._unit_index, allow_refusals=allow_refusals,
        )  # fmt: skip

    def register_source(self, name: str) -> str:
        """Issue a new token for a source registered in the rules and return it (shown once; a
        token issued earlier stops working). An ingest that gives it proves it is that source."""
        self._require_applied()
        return source_stage.register(self.master, self.rules, name)

    def promote(self, *, progress: Callable[[int, int], None] | None = None) -> promote_stage.PromoteReport:
        """Apply approved proposals to master and re-index the blocking keys of the people they
        touched. One `promote` runs at a time; a run completes what a crashed one left."""
        self._require_applied()
        report = promote_stage.promote_approved(self.events, self.master, self.rules, progress=progress)
        if report.promoted:
            refresh_statistics(self.master, MASTER_GROWN)
        return report

    def prefill(
        self,
        form: str,
        *,
        id_number: str | None = None,
        actor: Actor,
        today: dt.date | None = None,
        uscc: str | None = None,
        enterprise_id: str | None = None,
    ) -> PrefillResult | serve_enterprise.EnterprisePrefill:
        """Fill `form` from master for the person with `id_number`, or for an enterprise form the
        enterprise with `uscc` or `enterprise_id`, as `actor` may see it (audited)."""
        if uscc is not None or enterprise_id is not None:
            return serve_enterprise.prefill_enterprise_form(
                self.master, self.audit, form, actor=actor, enterprise_id=enterprise_id, uscc=uscc
            )
        if id_number is None:
            raise StateError("prefill needs the person's id_number, or an enterprise's uscc or enterprise_id")
        return prefill_form(self.master, self.audit, form, id_number=id_number, actor=actor, today=today)

    def profile(
        self,
        *,
        id_number: str,
        actor: Actor,
        purpose: str,
        today: dt.date | None = None,
        recorded_at: dt.datetime | None = None,
    ) -> profile_stage.Profile:
        """Everything master knows of one person (一人一档), as `actor`'s policy shows it (audited);
        as it held on `today` and as recorded at `recorded_at` when either is given."""
        return profile_stage.person_profile(
            self.master,
            self.audit,
            id_number=id_number,
            actor=actor,
            purpose=purpose,
            today=today,
            recorded_at=recorded_at,
        )

    def as_of(
        self,
        kind: str,
        entity_id: str,
        *,
        actor: Actor,
        purpose: str,
        valid_at: dt.date | None = None,
        recorded_at: dt.datetime | None = None,
    ) -> list[asof_stage.AsOfValue]:
        """Every field of one entity as it held on `valid_at`, as master recorded it at
        `recorded_at` (bitemporal lineage; audited and masked like any read)."""
        return asof_stage.entity_as_of(
            self.master,
            self.audit,
            kind=kind,
            entity_id=entity_id,
            actor=actor,
            purpose=purpose,
            valid_at=valid_at,
            recorded_at=recorded_at,
        )

    # --- after promotion: the change feed, conflicts, reverts and splits ----------------------

    def changes(
        self, since: str | int | None = None, *, limit: int = 1000, kinds: list[str] | None = None
    ) -> ChangePage:
        """Master changes after the cursor `since`, in commit order (no values: read those through
        the audited reads); pass the returned cursor to read on."""
        return read_changes(self.master, since, limit=limit, kinds=kinds)

    def conflicts(self, *, actor: Actor, status: str = "open", limit: int = 1000) -> list[ConflictView]:
        """The conflicts (比对) the actor's department owns in its county (audited, masked)."""
        return conflict_stage.list_conflicts(self.master, self.audit, actor=actor, status=status, limit=limit)

    def resolve_conflict(
        self,
        conflict_id: int,
        resolution: str,
        *,
        actor: Actor,
        value: str | None = None,
        reason: str | None = None,
    ) -> ConflictView:
        """Resolve an open conflict once: accept the proposed value, keep master's, or amend."""
        return conflict_stage.resolve_conflict(
            *self._correcting(),
            conflict_id=conflict_id,
            resolution=resolution,
            actor=actor,
            value=value,
            reason=reason,
        )

    def revert(self, proposal_id: str, *, actor: Actor, reason: str) -> revert_stage.RevertReport:
        """Undo one promotion: restore what master held before, with lineage (audited)."""
        return revert_stage.revert_promotion(
            *self._correcting(),
            proposal_id=proposal_id,
            actor=actor,
            reason=reason,
        )

    def split(
        self, person_id: str, event_ids: Iterable[int], *, actor: Actor, reason: str
    ) -> revert_stage.SplitReport:
        """Take events wrongly merged into a person off them: revert their promotions and send
        them back to be linked again, never to this person (the next `process` links them)."""
        return revert_stage.split_person(
            *self._correcting(),
            person_id=person_id,
            event_ids=list(event_ids),
            actor=actor,
            reason=reason,
        )

    def who_read(
        self, *, id_number: str, actor: Actor, purpose: str = "data_subject_request"
    ) -> list[ReadRecord]:
        """Every read of one person's data (when, which unit and actor, purpose, fields), refused
        and failed look-ups of their ID number included. Asking is itself an audited read."""
        return profile_stage.who_read(
            self.master, self.audit, id_number=id_number, actor=actor, purpose=purpose
        )

    def run_programme(
        self, name: str, *, as_of: dt.date, actor: Actor, dry_run: bool = False
    ) -> programme_stage.ProgrammeRun:
        """Select (and unless `dry_run`, record in the ledger) everyone newly eligible, as a unit
        of the programme's department reading its own county; the run is audited with the people
        it selected, dry runs included."""
        return programme_stage.run_programme(
            self.master, self.audit, name, as_of=as_of, actor=actor, dry_run=dry_run
        )

    def update_issuance(self, ids: Iterable[int], *, to: str, actor: Actor) -> issuance_stage.IssuanceMove:
        """Move offers on (accepted, declined, delivered), all or none, as a unit of the programme's
        department in the people's county; a delivered card becomes a master credential."""
        self._require_applied()
        return issuance_stage.update_issuance(self.master, self.rules, ids, to=to, actor=actor)

    def programme_selection(
        self, name: str, *, actor: Actor, cycle: str | None = None, statuses: list[str] | None = None
    ) -> pl.DataFrame:
        """Who a programme selected and why (its ledger, one cycle or all), audited and masked."""
        return issuance_stage.selection(
            self.master, self.audit, name, actor=actor, cycle=cycle, statuses=statuses
        )

    # --- audit and governance ----------------------------------------------------------------

    def verify_audit(self, *, checkpoint: bool = True) -> AuditVerification:
        """Check the whole audit chain against its head and its checkpoints in the event store;
        the first broken entry and why, or `ok`. A good chain is checkpointed again."""
        return audit_stage.verify(self.master, self.events, self.audit.key, checkpoint=checkpoint)

    def rules_status(self) -> governance.RulesStatus:
        """The rules in use, the ones last applied to these stores, and what differs."""
        return governance.rules_status(self.master, self.audit)

    def apply_rules(self, actor: Actor) -> governance.RulesChange:
        """Record this rulebook's access policies and routes as applied (audited), so the stores
        open with it; `actor` must be allowed by the rules applied before. Master is keyed again
        when its link keys were written with other blocking rules."""
        change = governance.apply_rules(self.master, self.audit, actor)
        self.audit = dataclasses.replace(self.audit, applied=True)
        keys = link_stage.ensure_link_keys(self.master, self.rules.matching["person"], rekey=True)
        return dataclasses.replace(change, link_keys_written=keys)

    def _correcting(self) -> tuple[Engine, Engine, AuditContext, Rulebook]:
        """What every correction of master works with, once the rules in use are the applied ones."""
        self._require_applied()
        return self.events, self.master, self.audit, self.rules

    def _require_applied(self) -> None:
        governance.require_applied(self.audit, self.rules)

    # --- analytics (event store only, aggregates only) and table counts ---------------------------

    @property
    def analytics(self) -> Any:
        """KPIs, surge alerts, hot words, heat maps (govdb.analytics): unverified, small cells withheld."""
        from govdb.analytics import Analytics

        return Analytics(self.events, self.rules)

    def counts(self) -> dict[str, int]:
        return table_counts(self.master, self.events)  # row counts of the main tables of both stores


def open_db(home: str | Path | None = None, **options: Any) -> GovDB:
    """Shorthand for GovDB.open."""
    return GovDB.open(home, **options)
