"""Turn linked events into proposals (the change each proposes for master) and open their routes.

Set-based: events are taken in chunks, linked with the batch linker and the stored model,
compared with master after both sides are standardized (a value written differently opens no
task), routed by jurisdiction from master, auto-passed by vectorised rules, and written with bulk
inserts and checked transitions in one transaction per chunk (govdb.verify.chunk_writes, in a
thread of its own while the next chunk is linked). The caller holds the `process` job
lock, so two runs never propose one event twice (a unique proposal per event and change backs it).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from sqlalchemy import Connection, Engine, Text, cast, func, select
from sqlmodel import Session

from govdb.base.clock import utcnow
from govdb.base.collector import bulk_collection
from govdb.base.ids import uuid7_texts
from govdb.link.features import PERSON_FIELDS
from govdb.link.model import LinkModel
from govdb.link.online import LinkResult, ensure_link_keys
from govdb.link.reads import FeatureCache, read_people
from govdb.link.worker import LinkWorker
from govdb.rulebook.loader import Rulebook
from govdb.rulebook.models import Service
from govdb.standards import standardize
from govdb.standards.divisions import significant_prefix
from govdb.standards.hanzi import char_folds
from govdb.store.bulk import driver_rows, json_value
from govdb.store.engine import refresh_statistics
from govdb.store.events import Event, IngestBatch
from govdb.store.states import EventStatus, ProposalState, TaskState
from govdb.verify.chunk_writes import ChunkWork, ChunkWriter
from govdb.verify.linking import event_records, link_events, reviewed_links, submit_links
from govdb.verify.refusals import PERSON_WIDTH, Problem, column_problems, decode_records, explain, refuse
from govdb.verify.routes import UnitIndex
from govdb.verify.tasks import IDENTITY_ROUTE, Flow, StepTask, run_auto_pass

EVENT = Event.__table__  # type: ignore[attr-defined]
BATCH = IngestBatch.__table__  # type: ignore[attr-defined]
EVENTS_GROWN = ("event", "link", "proposal", "task", "decision")
CHUNK = 50_000
# From this many waiting events on, a run links against every master person held in memory
# (FeatureCache.load_everyone) rather than looking candidates up by key for each chunk.
IN_MEMORY_EVENTS = 20_000
# Such a run links in a second process while this one plans (govdb.link.worker), unless the
# store is in this process's memory or GOVDB_LINK_PROCESS=0 (a host that cannot start one).
COMPARED = (*PERSON_FIELDS, "division_code")


@dataclass
class ProposeReport:
    """What linking and proposing did to the standardized events."""

    events: int = 0
    linked: int = 0
    new_people: int = 0
    unchanged: int = 0
    unlinked: int = 0
    identity_reviews: int = 0
    proposals: int = 0
    unroutable: int = 0
    auto_approved: int = 0
    auto_passed: int = 0  # steps passed by a rule earned by an authenticated source
    new_enterprises: int = 0
    new_places: int = 0
    refused: int = 0  # a value master cannot store (a NUL, ...): not proposed
    refused_events: dict[int, str] = field(default_factory=dict)  # event id -> why (field, value)


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text if text != "" else None


def _standardized_master(masters: pl.DataFrame) -> pl.DataFrame:
    """Master values through the same standards as events, so a value written differently
    (traditional characters, another address form) compares equal: event_id and each compared
    field of `masters` as text."""
    fields = [k for k in COMPARED if k in masters.columns]
    if "birth_date" in fields:
        masters = masters.with_columns(pl.col("birth_date").cast(pl.String))
    std = standardize(masters, place_addresses=False, issues=False, pinyin=False)
    std = std.with_columns(pl.col(pl.Date).dt.to_string("%Y-%m-%d"))
    text = [pl.col(f"{k}_std" if f"{k}_std" in std.columns else k).cast(pl.String) for k in fields]
    return std.select("event_id", *(t.replace("", None).alias(k) for t, k in zip(text, fields, strict=True)))


# A standardized field read from others of the row: gender and birth date come from a valid ID.
_STANDARDIZED_FROM = {"gender": ("id_number",), "birth_date": ("id_number",)}


def _master_frame(known: list[tuple[str, dict[str, Any]]]) -> pl.DataFrame:
    """Each (event id, its linked person's master row as the linker read it), a column at a time."""
    names = ("person_id", *COMPARED)
    schema = {"event_id": pl.String, **{k: (pl.Date if k == "birth_date" else pl.String) for k in names}}
    columns = {"event_id": [e for e, _ in known], **{k: [m.get(k) for _, m in known] for k in names}}
    return pl.DataFrame(columns, schema=schema)


def _changed_fields(records: pl.DataFrame, masters: pl.DataFrame) -> dict[str, list[str]]:
    """For each record about a known person (records: event_id and the compared fields as text;
    masters: event_id and its person's master row), the fields whose value master does not hold:
    neither as stored nor standardized (both sides through the same standards), nor with
    traditional and look-alike characters folded, nor a division the master one is inside.
    Compared on whole columns; only the few values still differing are looked at one by one."""
    if records.height == 0 or masters.height == 0:
        return {}
    stored = masters.select("event_id", *(pl.col(k).cast(pl.String).alias(f"{k}__m") for k in COMPARED))
    joined = records.select("event_id", *COMPARED).join(stored, on="event_id")
    # Master's standardized values only where the value as stored differs (most of a chunk's
    # fields match as stored, and standardizing names is the costly part), a field with what it
    # is read from (the same values, row for row, as standardizing the whole row).
    differ = [
        (pl.col(k).is_not_null() & ~(pl.col(k) == pl.col(f"{k}__m")).fill_null(False)).alias(f"{k}__d")
        for k in COMPARED
    ]
    joined = joined.with_columns(differ).filter(pl.any_horizontal(f"{k}__d" for k in COMPARED))
    if joined.height == 0:
        return {}
    counts = joined.select(pl.col(f"{k}__d").sum() for k in COMPARED).row(0)
    wanted = {k for k, n in zip(COMPARED, counts, strict=True) if n}
    wanted |= {f for k in wanted for f in _STANDARDIZED_FROM.get(k, ())}
    rows = masters.select("event_id", *(k for k in COMPARED if k in wanted)).join(
        joined.select("event_id"), on="event_id", how="semi"
    )
    standard = _standardized_master(rows).rename({k: f"{k}__s" for k in wanted})
    joined = joined.join(standard, on="event_id", how="left")
    joined = joined.with_columns(
        (pl.col(f"{k}__d") & ~(pl.col(k) == pl.col(f"{k}__s")).fill_null(False)).alias(f"{k}__d")
        for k in COMPARED
        if k in wanted
    ).filter(pl.any_horizontal(f"{k}__d" for k in COMPARED))
    changed: dict[str, list[str]] = {}
    for row in joined.iter_rows(named=True):
        fields = []
        for k in COMPARED:
            if not row[f"{k}__d"]:
                continue  # the common case: master holds it already, as written or standardized
            value, held = row[k], row[f"{k}__m"]
            if k in FOLDED and _fold(value) == _fold(row.get(f"{k}__s") or held):
                continue
            if k == "division_code" and _within(held, value):
                continue
            fields.append(k)
        if fields:
            changed[row["event_id"]] = fields
    return changed


def _person_change(
    service: Service, rec: dict[str, Any], known: bool, changed: list[str]
) -> tuple[str | None, dict[str, Any]]:
    """(route, payload) for a person event: all fields when new, the `changed` ones when known."""
    # Values as text, as they are compared: a record's JSON edited in the store may hold a number.
    if not known:
        return service.route, {k: _as_text(rec[k]) for k in COMPARED if rec.get(k) not in (None, "")}
    payload = {k: _as_text(rec[k]) for k in changed}
    return (service.update_route, payload) if payload and service.update_route else (None, {})


def _within(master_code: Any, event_code: Any) -> bool:
    """Whether the event's division is the master one said less precisely (a county code for a
    village in it): that is no move."""
    if not master_code or not event_code:
        return False
    return str(master_code).startswith(significant_prefix(str(event_code)))


FOLDED = ("name", "address")  # traditional and look-alike characters compare as one


def _fold(value: Any) -> str | None:
    """Text with traditional and look-alike characters folded (張偉 -> 张伟, 南海區 -> 南海区)."""
    return None if value is None else str(value).translate(_fold_table())


@functools.cache
def _fold_table() -> dict[int, str]:
    return str.maketrans(char_folds())


def _credential_change(service: Service, rec: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": service.credential_kind,
        "number": rec.get(service.credential_number or ""),
        "attributes": {a: rec[a] for a in service.attributes if rec.get(a) not in (None, "")},
    }


def _read_chunk(conn: Connection, after: int) -> list[dict[str, Any]]:
    """The next CHUNK events waiting to be proposed, in event order, after `after`.

    One ordered index range per state, merged here: with both states in one IN list SQLite sorted
    every waiting event after `after` for each chunk (a county's million, twenty times over)."""
    columns = (
        EVENT.c.event_id,
        EVENT.c.status,
        EVENT.c.service_code,
        EVENT.c.source_system,
        EVENT.c.department,
        EVENT.c.standardized,
        EVENT.c.quality_flags,
        EVENT.c.link_round,
        BATCH.c.authenticated_source,
    )
    names = [c.name for c in columns]
    if conn.dialect.name == "postgresql":  # the record as its JSON text, scanned before decoding
        columns = (*columns[:5], cast(EVENT.c.standardized, Text), *columns[6:])
    rows: list[dict[str, Any]] = []
    for state in (EventStatus.standardized, EventStatus.identity_review):
        query = (
            select(*columns)
            .join(BATCH, BATCH.c.batch_id == EVENT.c.batch_id, isouter=True)
            .where(EVENT.c.status == state.value, EVENT.c.event_id > after)
            .order_by(EVENT.c.event_id)
            .limit(CHUNK)
        )
        # The driver's rows, JSON decoded here: SQLAlchemy's per-value processing cost more.
        rows += [
            dict(zip(names, row, strict=True))
            | {"quality_flags": [] if row[6] == "[]" else json_value(row[6])}
            for row in driver_rows(conn, query)
        ]
    rows.sort(key=lambda r: r["event_id"])
    rows = rows[:CHUNK]
    decode_records(rows)  # a record no store can hold is marked `unstorable`, and never proposed
    return rows


@bulk_collection()
def propose_events(
    events: Engine,
    master: Engine,
    rules: Rulebook,
    model: LinkModel | Callable[..., LinkModel],
    *,
    address_hint: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    stored_or_default: bool = False,
) -> ProposeReport:
    """Link every standardized event, record its link, and propose its change for verification.

    Review-band links become identity checks (route `confirm_identity`) instead; once decided, the
    next run takes the reviewer's answer as the link and proposes the event's change. The caller
    holds the `process` job lock. A `model` factory is called when first needed, with `features`
    (every person's) when the run holds them, else without arguments. `stored_or_default` says the
    factory gives the stored model, else the default one (GovDB.linkage_model): a linking process
    then builds that itself; with another factory, the run links in this process.

    Chunks go through a pipeline: chunk N+1 is read and its linking started (in a second process
    for a large run on a file or server store, `govdb.link.worker`) before chunk N is planned, and
    each planned chunk is written in a thread (`ChunkWriter`) while the next is planned."""
    report = ProposeReport()
    with Session(master) as ms:
        units = UnitIndex(ms)
    after, done, total = 0, 0, _waiting(events)
    features = FeatureCache()  # a large run: every person's features, read once
    ensure_link_keys(master, rules.matching["person"])  # before features are read: rules may have changed
    with contextlib.ExitStack() as stack:
        worker = None
        separate = isinstance(model, LinkModel) or stored_or_default
        if total >= IN_MEMORY_EVENTS and separate and LinkWorker.wanted() and LinkWorker.can_open(master):
            # Started first: it reads everyone's features while this process reads the first chunk.
            worker = stack.enter_context(LinkWorker(master, rules.matching["person"], address_hint))
        if worker is not None:
            # The linking process holds everyone's features itself: this one never reads them.
            if isinstance(model, LinkModel):
                worker.use_model(model)
            else:  # it builds the stored or default model from them, as GovDB.linkage_model does
                worker.build_model()
                model = worker.model
        elif total >= IN_MEMORY_EVENTS:
            with master.connect() as conn:
                if features.load_everyone(conn) and not isinstance(model, LinkModel):
                    model = _with_features(model, features)
        writer = stack.enter_context(ChunkWriter(events))
        queued: _Prepared | None = None
        while True:
            with events.connect() as conn:
                chunk = _read_chunk(conn, after)
            prepared = None
            if chunk:
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
                after = chunk[-1]["event_id"]
                prepared = _prepare_chunk(events, master, rules, chunk, report, worker)
            if queued is not None:  # planned while the next chunk links
                work = _finish_chunk(
                    master, rules, model, units, queued, report, address_hint, features, worker
                )
                if work is not None:
                    writer.write(work)
            if prepared is None:
                break
            queued = prepared
    if report.events:  # after the last chunk's write: leaving the writer waited for it
        # The clerks list and decide their queues next: PostgreSQL planned them over tables it
        # had never analyzed (the first 20,000 decisions of a 200,000 county: 46 s, then 16 s).
        refresh_statistics(events, EVENTS_GROWN)
    return report


def _with_features(factory: Callable[..., LinkModel], features: FeatureCache) -> Callable[[], LinkModel]:
    """The model factory given the run's features of everyone, as they are when it is called."""

    def model() -> LinkModel:
        return factory(features=features.all())

    return model


def _waiting(events: Engine) -> int:
    with events.connect() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(EVENT)
                .where(
                    EVENT.c.status.in_([EventStatus.standardized.value, EventStatus.identity_review.value])
                )
            ).scalar_one()
        )


@dataclass
class _Prepared:
    """A chunk read and sorted, its linking perhaps started: what planning it needs."""

    events: Engine
    work: ChunkWork
    pending: list[dict[str, Any]]
    entities: list[dict[str, Any]]
    settled: dict[int, LinkResult]
    records: pl.DataFrame | None


def _prepare_chunk(
    events: Engine,
    master: Engine,
    rules: Rulebook,
    chunk: list[dict[str, Any]],
    report: ProposeReport,
    worker: LinkWorker | None,
) -> _Prepared:
    """Settle reviewed links, refuse what cannot be stored, sort out entity events; start linking."""
    from govdb.verify.entity_proposals import is_entity_event  # it imports this module

    for event in chunk:
        proven = rules.verification.sources.get(event["authenticated_source"] or "")
        event["proven_department"] = proven.department if proven else None
    work = ChunkWork()
    with events.connect() as conn:
        settled = reviewed_links(conn, master, chunk, work.resolved)
    pending = [e for e in chunk if e["status"] == EventStatus.standardized or e["event_id"] in settled]
    pending = _refused(pending, work, report, lambda e: e.get("unstorable"))
    # Enterprise and place events take their own path (govdb.verify.entity_proposals).
    entities = [e for e in pending if e["event_id"] not in settled and is_entity_event(rules, e)]
    pending = [e for e in pending if e["event_id"] in settled or not is_entity_event(rules, e)]
    records = None
    if pending:
        records = event_records(pending)  # the compared fields as text, for linking and planning
        # A person's values wider than master's columns, or a date it cannot read (whole columns).
        wide = column_problems(records, PERSON_WIDTH)
        if wide:
            person = {e["event_id"] for e in pending if _changes_person(rules, e)}
            found = {int(i): p for i, p in wide.items() if int(i) in person}
            pending = _refused(pending, work, report, lambda e: found.get(e["event_id"]))
            records = records.filter(~pl.col("event_id").is_in([str(i) for i in found]))
        if worker is not None:
            submit_links(worker, [e for e in pending if e["event_id"] not in settled], records)
    return _Prepared(events, work, pending, entities, settled, records)


def _finish_chunk(
    master: Engine,
    rules: Rulebook,
    model: LinkModel | Callable[[], LinkModel],
    units: UnitIndex,
    prepared: _Prepared,
    report: ProposeReport,
    address_hint: str | None,
    features: FeatureCache,
    worker: LinkWorker | None,
) -> ChunkWork | None:
    """One chunk of events: link the rest (or take the linking process's links), plan, auto-pass;
    what to write."""
    from govdb.verify.entity_proposals import plan_entity_events  # it imports this module

    work, pending, entities, settled = prepared.work, prepared.pending, prepared.entities, prepared.settled
    if not pending and not entities:
        return work if work.status else None
    if pending:
        report.events += len(pending)
        fresh = [e for e in pending if e["event_id"] not in settled]
        kept = {e["event_id"] for e in pending}
        results = [r for e, r in settled.items() if e in kept]  # a refused one is not planned
        if fresh:
            if worker is None:
                with master.connect() as conn:
                    features.refresh(conn)  # people master changed meanwhile (a concurrent promote)
            results += link_events(
                prepared.events, master, rules, model, fresh, address_hint, features, prepared.records, worker
            )
        by_id = {e["event_id"]: e for e in pending}
        assert prepared.records is not None
        _plan(master, rules, units, by_id, results, prepared.records, work, report)
    if entities:
        plan_entity_events(master, rules, units, entities, work, report, address_hint=address_hint)
    report.auto_passed += run_auto_pass(rules, work.flows, utcnow())
    report.auto_approved += sum(f.state == ProposalState.approved for f in work.flows)
    return work


def _refused(
    events: list[dict[str, Any]],
    work: ChunkWork,
    report: ProposeReport,
    problems_of: Callable[[dict[str, Any]], list[Problem] | None],
) -> list[dict[str, Any]]:
    """The events with no problem; each other one is refused (govdb.verify.refusals)."""
    kept = []
    for event in events:
        problems = problems_of(event)
        if not problems:
            kept.append(event)
            continue
        report.events += 1
        report.refused += 1
        refuse(work, report.refused_events, event, problems, explain(event["event_id"], problems))
    return kept


def _changes_person(rules: Rulebook, event: dict[str, Any]) -> bool:
    """Whether the event's service proposes a person's own fields (not a credential's)."""
    service = rules.verification.services.get(event["service_code"] or "")
    return service is not None and service.change == "person"


def _plan(
    master: Engine,
    rules: Rulebook,
    units: UnitIndex,
    by_id: dict[int, dict[str, Any]],
    results: list[LinkResult],
    records: pl.DataFrame,
    work: ChunkWork,
    report: ProposeReport,
) -> None:
    """Decide, in memory, what each linked event becomes: a proposal on its route, an identity
    check, unlinked or confirmed."""
    candidates: set[Any] = {r.explanation.get("candidate") for r in results if r.decision == "review"}
    candidates -= {None}
    with master.connect() as mconn:
        candidate_rows = (
            {r["person_id"]: r for r in read_people(mconn, list(candidates)).to_dicts()} if candidates else {}
        )
    known = [(r.record_id, r.master) for r in results if r.master is not None]
    changed = _changed_fields(records, _master_frame(known))
    proposal_ids = iter(uuid7_texts(len(results)))  # at most one proposal per result, in order
    for link in results:
        event = by_id[int(link.record_id)]
        rec = event["standardized"] or {}
        service = rules.verification.services.get(event["service_code"] or "")
        work.link(event, "person", link)
        if service is None:
            work.event_to(event, EventStatus.unlinked, "unknown_service")
            report.unlinked += 1
            continue
        if link.decision == "review":
            candidate = candidate_rows.get(link.explanation.get("candidate"))
            # The candidate's own village confirms; a candidate without a place in master has no
            # village to ask, and the place the event claims is not one (it stays unroutable).
            home = (candidate or {}).get("division_code")
            proposal = _proposal(
                event,
                IDENTITY_ROUTE,
                "person",
                candidate["person_id"] if candidate else None,
                home,
                {"candidate": link.explanation.get("candidate"), "match_probability": link.match_probability},
                next(proposal_ids),
            )
            if _route(rules, units, work, event, proposal, home, None):
                report.identity_reviews += 1
            else:
                report.unroutable += 1
            work.event_to(event, EventStatus.identity_review)
            continue
        if link.decision == "new" and link.explanation.get("id_of_excluded"):
            # Split off the person its ID number names: the ID itself is wrong; the window corrects it.
            work.event_to(event, EventStatus.unlinked, "id_number_of_split_person")
            report.unlinked += 1
            continue
        if link.decision == "new" and (service.change == "credential" or not rec.get("id_number")):
            flag = "no_master_person" if service.change == "credential" else "no_valid_id"
            work.event_to(event, EventStatus.unlinked, flag)
            report.unlinked += 1
            continue
        report.linked += link.decision == "match"
        master_row = link.master
        if service.change == "person":
            route_name, payload = _person_change(
                service, rec, master_row is not None, changed.get(link.record_id, [])
            )
            # Jurisdiction from master: a known person's own residence; someone new where they register.
            home = (master_row or {}).get("division_code") if master_row else payload.get("division_code")
            destination = payload.get("division_code") if master_row else None
        else:
            route_name, payload = service.route, _credential_change(service, rec)
            home, destination = (master_row or {}).get("division_code"), None
        if route_name is None:
            work.event_to(event, EventStatus.confirmed)  # master already holds exactly this
            report.unchanged += 1
            continue
        report.new_people += link.person_id is None
        proposal = _proposal(
            event,
            route_name,
            "person" if service.change == "person" else "credential",
            link.person_id,
            home,
            payload,
            next(proposal_ids),
        )
        if _route(rules, units, work, event, proposal, home, destination):
            report.proposals += 1
        else:
            report.unroutable += 1
        work.event_to(event, EventStatus.proposed)


def _proposal(
    event: dict[str, Any],
    change: str,
    kind: str,
    entity_id: str | None,
    home: str | None,
    payload: dict[str, Any],
    proposal_id: str | None = None,
) -> dict[str, Any]:
    now = utcnow()
    return {
        "proposal_id": proposal_id or uuid7_texts(1)[0],
        "event_id": event["event_id"],
        "change": change,
        "entity_kind": kind,
        "entity_id": entity_id,
        "payload": payload,
        "division_code": home,
        "county_code": home[:6] if home else None,
        "source": event["source_system"],
        # Trust in survivorship follows the department the source *proved* to be, never the
        # department an ingest merely named.
        "department": event["proven_department"],
        "state": ProposalState.pending.value,
        "round": event["link_round"],
        "created_at": now,
        "updated_at": now,
    }


def _route(
    rules: Rulebook,
    units: UnitIndex,
    work: ChunkWork,
    event: dict[str, Any],
    proposal: dict[str, Any],
    home: str | None,
    destination: str | None,
) -> bool:
    """Plan the proposal's tasks (the first open); False when no unit covers a step."""
    route = rules.verification.routes[proposal["change"]]
    assigned = units.assign(route, home, destination)
    work.proposals.append(proposal)
    missing = [
        a.level + (f":{a.department}" if a.department else "") + f" of {a.division_code}"
        for a in assigned
        if a.unit_id is None
    ]
    if missing:
        proposal["state"] = ProposalState.unroutable.value
        proposal["payload"] = {**proposal["payload"], "_unroutable": f"no unit registered for {missing}"}
        work.flags.append(
            {"k_event_id": event["event_id"], "v_flags": [*event["quality_flags"], "no_unit_for_division"]}
        )
        return False
    tasks = [
        StepTask(
            i,
            a.level,
            a.department,
            a.unit_id or "",
            a.division_code,
            a.route_step,
            TaskState.open if i == 0 else TaskState.waiting,
        )
        for i, a in enumerate(assigned)
    ]
    work.flows.append(
        Flow(
            proposal["proposal_id"],
            proposal["change"],
            event["event_id"],
            tasks,
            authenticated_source=event["authenticated_source"],
        )
    )
    return True
