"""A `process` run: the events waiting from before proposed, then the received ones standardized,
validated and proposed, a chunk at a time, through linking, planning and writing.

Kept apart from what a linked event proposes (govdb.verify.proposals, and for enterprises and
places govdb.verify.entity_proposals), which this module drives: here is only the flow of chunks.
Events are taken in chunks, linked with the batch linker and the stored model, planned, auto-passed
by vectorised rules, and written with bulk inserts and checked transitions in one transaction per
chunk (govdb.verify.chunk_writes, in a thread of its own while the next chunk is linked).
`process_events` holds the `process` job lock, so two runs never propose one event twice (a unique
proposal per event and change backs it).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import polars as pl
from sqlalchemy import Connection, Engine, Text, cast, func, select
from sqlmodel import Session

from govdb import validate as validate_stage
from govdb.base.clock import utcnow
from govdb.base.collector import bulk_collection
from govdb.link.keys import ensure_link_keys
from govdb.link.model import LinkModel
from govdb.link.online import LinkResult
from govdb.link.reads import FeatureCache
from govdb.link.worker import LinkWorker
from govdb.rulebook.loader import Rulebook
from govdb.store.bulk import driver_rows, json_value
from govdb.store.engine import refresh_statistics
from govdb.store.events import Event, IngestBatch
from govdb.store.locks import job_lock
from govdb.store.states import EventStatus, ProposalState
from govdb.verify.chunk_writes import ChunkWork, ChunkWriter
from govdb.verify.entity_proposals import is_entity_event, plan_entity_events
from govdb.verify.linking import ChunkLinks, event_records, link_events, reviewed_links, submit_links
from govdb.verify.proposals import ProposeReport, _plan
from govdb.verify.refusals import PERSON_WIDTH, Problem, column_problems, decode_records, explain, refuse
from govdb.verify.routes import UnitIndex
from govdb.verify.tasks import run_auto_pass

EVENT = Event.__table__  # type: ignore[attr-defined]
BATCH = IngestBatch.__table__  # type: ignore[attr-defined]
EVENTS_GROWN = ("event", "link", "proposal", "task", "decision")
CHUNK = 50_000
WAITING = (EventStatus.standardized, EventStatus.identity_review)  # to be proposed
# From this many waiting events on, a run links against every master person held in memory
# (FeatureCache.load_everyone) rather than looking candidates up by key for each chunk.
IN_MEMORY_EVENTS = 20_000
# Such a run links in a second process while this one plans (govdb.link.worker), unless the
# store is in this process's memory or GOVDB_LINK_PROCESS=0 (a host that cannot start one).


@dataclass(frozen=True)
class ProcessReport:
    """One processing run: validation of received events, then linkage and proposals."""

    validation: validate_stage.ValidationReport
    proposals: ProposeReport
    retried: int = 0  # events taken again (`retry`) before validation


def process_events(
    events: Engine,
    master: Engine,
    rules: Rulebook,
    model: Callable[[], LinkModel | Callable[..., LinkModel]],
    *,
    address_hint: Callable[[], str | None],
    today: dt.date | None = None,
    retry: validate_stage.Retry | str | None = None,
    progress: Callable[[int, int], None] | None = None,
    stored_or_default: bool = False,
) -> ProcessReport:
    """Under the `process` job lock: take `retry` events again, then propose every event waiting
    from before, then standardize, validate and propose the received ones (`propose_events`).

    A received event is standardized, linked and proposed a chunk at a time, and its chunk's
    standardized records are written in the transaction that writes its proposals: no event is
    read back, and a run stopped midway leaves every event either `received` or proposed (never
    standardized and unproposed).

    `address_hint()` and `model()` are asked once the lock is held (a run that waited for another
    uses what its caller holds then): the served county, and the model or model factory that
    `propose_events` takes. A large run's linking process starts before the first chunk is
    standardized, so it reads everyone's features while this process standardizes (it builds its
    model when the first chunk needs it, from master as it is then)."""
    with job_lock(events, "process"), contextlib.ExitStack() as stack:
        retried = validate_stage.retry_events(events, retry) if retry is not None else 0
        linking_model = model()
        worker = None
        if stored_or_default and _in_states(events, (*WAITING, EventStatus.received)) >= IN_MEMORY_EVENTS:
            # Its features must follow the rules' keys first, as propose_events would make them.
            ensure_link_keys(master, rules.matching["person"])
            worker = _linking_process(stack, master, rules, address_hint())
            if worker is not None:
                linking_model = _given(worker, linking_model)
        standardizing = validate_stage.Standardizing(events, rules, today=today, address_hint=address_hint())
        proposals = propose_events(
            events,
            master,
            rules,
            linking_model,
            address_hint=address_hint(),
            progress=progress,
            stored_or_default=stored_or_default,
            worker=worker,
            received=standardizing,
        )
    return ProcessReport(standardizing.report(), proposals, retried)


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
    worker: LinkWorker | None = None,
    received: validate_stage.Standardizing | None = None,
) -> ProposeReport:
    """Link every standardized event, record its link, and propose its change for verification;
    then, given `received` (a pass of standardizing), each chunk of received events it standardizes,
    written with its proposals in one transaction.

    Review-band links become identity checks (route `confirm_identity`) instead; once decided, the
    next run takes the reviewer's answer as the link and proposes the event's change. The caller
    holds the `process` job lock. A `model` factory is called when first needed, with `features`
    (every person's) when the run holds them, else without arguments. `stored_or_default` says the
    factory gives the stored model, else the default one (GovDB.linkage_model): a linking process
    then builds that itself; with another factory, the run links in this process. `worker`: a
    linking process the caller started (process_events, before validation) and gave the model, used
    as is; `model` is then the one it links with (`_given`).

    Chunks go through a pipeline: chunk N+1 is read (or standardized) and its linking started (in a
    second process for a large run on a file or server store, `govdb.link.worker`) before chunk N
    is planned, and each planned chunk is written in a thread (`ChunkWriter`) while the next is
    planned. The events waiting from before go first: only they can be `standardized` when read,
    so an event this run standardized and left unproposed (none should be) waits for the next run
    rather than being proposed twice in this one."""
    report = ProposeReport()
    with Session(master) as ms:
        units = UnitIndex(ms)
    done = 0
    total = _waiting(events, received=received is not None)
    features = FeatureCache()  # a large run: every person's features, read once
    ensure_link_keys(master, rules.matching["person"])  # before features are read: rules may have changed
    with contextlib.ExitStack() as stack:
        separate = isinstance(model, LinkModel) or stored_or_default
        if worker is None and total >= IN_MEMORY_EVENTS and separate:
            # Started first: it reads everyone's features while this process reads the first chunk.
            worker = _linking_process(stack, master, rules, address_hint)
            if worker is not None:
                model = _given(worker, model)
        if worker is None and total >= IN_MEMORY_EVENTS:
            with master.connect() as conn:
                if features.load_everyone(conn) and not isinstance(model, LinkModel):
                    model = _with_features(model, features)
        writer = stack.enter_context(ChunkWriter(events))

        def plan_and_write(prepared: _Prepared) -> None:
            work = _finish_chunk(
                master, rules, model, units, prepared, report, address_hint, features, worker
            )
            if work is not None:
                writer.write(work)

        queued: _Prepared | None = None
        for chunk, standardized in itertools.chain(_waiting_chunks(events), _received_chunks(received)):
            done += len(chunk) if standardized is None else standardized.height
            total = max(total, done)  # events ingested during the run are taken by it too
            if progress is not None:
                progress(done, total)
            prepared = _prepare_chunk(events, master, rules, chunk, report, worker)
            prepared.work.standardized = standardized
            if queued is not None:  # planned while the next chunk links
                plan_and_write(queued)
            queued = prepared
        if queued is not None:
            plan_and_write(queued)
    if report.events:  # after the last chunk's write: leaving the writer waited for it
        # The clerks list and decide their queues next: PostgreSQL planned them over tables it
        # had never analyzed (the first 20,000 decisions of a 200,000 county: 46 s, then 16 s).
        refresh_statistics(events, EVENTS_GROWN)
    return report


def _waiting_chunks(events: Engine) -> Iterator[tuple[list[dict[str, Any]], None]]:
    """The events waiting to be proposed, a chunk at a time; each read when asked for, after the
    chunk before (whose write may be under way)."""
    after = 0
    while True:
        with events.connect() as conn:
            chunk = _read_chunk(conn, after)
        if not chunk:
            return
        after = chunk[-1]["event_id"]
        yield chunk, None


def _received_chunks(
    received: validate_stage.Standardizing | None,
) -> Iterator[tuple[list[dict[str, Any]], pl.DataFrame]]:
    """Each chunk of received events standardized: its standardized events as `_read_chunk` would
    read them once written, and the rows that write sets."""
    if received is None:
        return
    for chunk in received.chunks(CHUNK):
        rows = chunk.standardized_events()
        decode_records(rows)
        yield rows, chunk.updates


def _with_features(factory: Callable[..., LinkModel], features: FeatureCache) -> Callable[[], LinkModel]:
    """The model factory given the run's features of everyone, as they are when it is called."""

    def model() -> LinkModel:
        return factory(features=features.all())

    return model


def _given(worker: LinkWorker, model: LinkModel | Callable[..., LinkModel]) -> Callable[[], LinkModel]:
    """The model handed to the linking process, which holds everyone's features (this process never
    reads them): this one, or the stored or default one it builds as GovDB.linkage_model would;
    what to link with here (the model it links with)."""
    if isinstance(model, LinkModel):
        worker.use_model(model)
    else:
        worker.build_model()
    return worker.model


def _linking_process(
    stack: contextlib.ExitStack, master: Engine, rules: Rulebook, address_hint: str | None
) -> LinkWorker | None:
    """A linking process for a large run, closed with `stack`; None where one is not wanted or
    cannot open the store (govdb.link.worker)."""
    if not (LinkWorker.wanted() and LinkWorker.can_open(master)):
        return None
    return stack.enter_context(LinkWorker(master, rules.matching["person"], address_hint))


def _waiting(events: Engine, *, received: bool = False) -> int:
    """Events waiting to be proposed (and, with `received`, to be standardized first)."""
    return _in_states(events, (*WAITING, EventStatus.received) if received else WAITING)


def _in_states(events: Engine, states: tuple[EventStatus, ...]) -> int:
    with events.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(EVENT).where(EVENT.c.status.in_([s.value for s in states]))
            ).scalar_one()
        )


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
    for state in WAITING:
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
    work, pending, entities, settled = prepared.work, prepared.pending, prepared.entities, prepared.settled
    if not pending and not entities:
        return work if work.status or work.standardized is not None else None
    if pending:
        report.events += len(pending)
        fresh = [e for e in pending if e["event_id"] not in settled]
        kept = {e["event_id"] for e in pending}
        # A refused one is not planned.
        parts = [ChunkLinks.of_results([r for e, r in settled.items() if e in kept])]
        if fresh:
            if worker is None:
                with master.connect() as conn:
                    features.refresh(conn)  # people master changed meanwhile (a concurrent promote)
            parts.append(
                link_events(
                    prepared.events,
                    master,
                    rules,
                    model,
                    fresh,
                    address_hint,
                    features,
                    prepared.records,
                    worker,
                )
            )
        by_id = {e["event_id"]: e for e in pending}
        assert prepared.records is not None
        _plan(master, rules, units, by_id, ChunkLinks.concat(parts), prepared.records, work, report)
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
