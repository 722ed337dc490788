"""One chunk of promote against master: worked out (`work_out`: master's rows read, survivorship,
the people's new keys), then written (`write_out`) in one master transaction.

The two halves are apart so that promote's planning process (govdb.promote.planner) can work out
the next chunk on the other core while this process writes the one before.
Work done beside the writes was read from master as it stood then, so before it is written,
`still_holds` checks inside the writing transaction that nothing it read has changed: every
change to master is numbered in the change feed (govdb.store.feed), so the feed after the number
the work read with must name none of the entities it read; no person or credential it creates
may have been created since (the feed names those by ids the work never read; work creating an
enterprise or a place is always worked out again); no person it re-keys who held no keys may
hold some now (a refresh of the keyless writes keys without a change to the feed); and the link
keys must follow the same rules. Otherwise the chunk is worked out again where it is written.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from sqlalchemy import Connection, select

from govdb.base.clock import utcnow
from govdb.link.keys import Rekeying, link_keys_current, rekey_prepared, write_keys
from govdb.link.reads import MASTER_COLUMNS
from govdb.promote.entities import attach_places
from govdb.promote.storable import missing_entity, unstorable
from govdb.promote.survivorship import Chunk, PromoteReport
from govdb.rulebook.loader import Rulebook
from govdb.store.bulk import among, driver_fetch, fetch_among, id_chunks
from govdb.store.master import LinkKeyRules, MasterChange, Promotion

PROMOTION = Promotion.__table__  # type: ignore[attr-defined]
CHANGE = MasterChange.__table__  # type: ignore[attr-defined]
KEYED = LinkKeyRules.__table__  # type: ignore[attr-defined]


@dataclass
class ChunkWork:
    """What one chunk will write, and what it was worked out from."""

    proposals: list[tuple[str, int]]  # the chunk's approved proposals (id, event id), in queue order
    aside: dict[str, str]  # proposals master cannot take: id -> why
    aside_payloads: dict[str, Any]  # and their payloads, as the event store holds them
    report: PromoteReport  # this chunk's counts
    work: Chunk | None = None  # None: nothing to write
    keys: Rekeying | None = None  # None: master's keys follow other rules (left for a later refresh)
    keys_current: bool = False
    keyed: tuple[Any, ...] = ()  # master's record of its keys (rules, county hint, when keyed)
    head: int = 0  # the change feed's head when master was read
    read: set[tuple[str, str]] = field(default_factory=set)  # the entities read or sought (kind, id)
    new_numbers: list[str] = field(default_factory=list)  # ID numbers of the people it creates
    new_credentials: list[tuple[str, str]] = field(default_factory=list)  # (kind, number) it creates
    new_entities: bool = False  # it creates enterprises or places
    keyless: list[str] = field(default_factory=list)  # people of master it keys who held no keys

    def still_holds(self, conn: Connection, rules: Rulebook) -> bool:
        """Whether master, as this writing transaction sees it, is still what this work was worked
        out from (the module's docstring says what is checked and why)."""
        # Keys written again since (other rules, another county's hint, or the same again)
        # would not be what this work's key changes were worked out against.
        if (
            _keyed(conn) != self.keyed
            or link_keys_current(conn, rules.matching["person"]) != self.keys_current
        ):
            return False
        mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        since = f"SELECT entity_kind, entity_id FROM {CHANGE.name} WHERE seq > {mark}"
        if not self.read.isdisjoint(map(tuple, driver_fetch(conn, since, (self.head,)))):
            return False
        # What this work creates, created since by someone else (the chunk before, of the queue's
        # order, or a load): the feed names it by an id this work never read.
        if self.new_entities:
            return False
        if fetch_among(conn, "SELECT id_number FROM person WHERE {among}", "id_number", self.new_numbers):
            return False
        numbers = sorted({number for _, number in self.new_credentials})
        held = fetch_among(conn, "SELECT kind, number FROM credential WHERE {among}", "number", numbers)
        if not set(self.new_credentials).isdisjoint(map(tuple, held)):
            return False
        # Keys written since for people who had none (a refresh of the keyless after a load).
        return not fetch_among(conn, "SELECT person_id FROM linkkey WHERE {among}", "person_id", self.keyless)


def _keyed(conn: Connection) -> tuple[Any, ...]:
    """Master's record of the rules, county hint and time its people's keys were written with."""
    row = conn.execute(
        select(KEYED.c.fingerprint, KEYED.c.address_hint, KEYED.c.keyed_at).where(
            KEYED.c.entity_kind == "person"
        )
    ).first()
    return tuple(row) if row is not None else ()


def feed_head(conn: Connection) -> int:
    """The change feed's head: the number of the last change committed to master."""
    head = conn.exec_driver_sql("SELECT seq FROM changehead WHERE id = 1").scalar_one_or_none()
    return int(head or 0)


def work_out(
    conn: Connection,
    rules: Rulebook,
    approved: list[dict[str, Any]],
    checks: dict[str, str],
    dates: dict[int, dt.date],
    fingerprint: str,
    today: dt.date,
) -> ChunkWork:
    """A chunk's writes worked out from master as `conn` reads it (skipping proposals a crashed
    run applied), nothing written. A proposal whose value master cannot store is set aside here,
    before anything is written, so no statement of the transaction carries it."""
    report = PromoteReport()
    proposals = [(p["proposal_id"], p["event_id"]) for p in approved]
    head = feed_head(conn)
    already: set[str] = set()
    for chunk in id_chunks(conn, [p["proposal_id"] for p in approved]):
        already.update(
            conn.execute(
                select(PROMOTION.c.proposal_id).where(among(conn, PROMOTION.c.proposal_id, chunk))
            ).scalars()
        )
    fresh = [p for p in approved if p["proposal_id"] not in already]
    report.completed_after_crash += len(already)
    aside = {p["proposal_id"]: why for p in fresh if (why := unstorable(p)) is not None}
    fresh = _without(fresh, aside, report)
    keys_current, keyed = link_keys_current(conn, rules.matching["person"]), _keyed(conn)

    def nothing_to_write(read: set[tuple[str, str]]) -> ChunkWork:
        payloads = _payloads(approved, aside)
        return ChunkWork(
            proposals, aside, payloads, report, keys_current=keys_current, keyed=keyed, head=head, read=read
        )

    if not fresh:
        return nothing_to_write(set())
    work = Chunk(rules, report, fingerprint)
    work.read(conn, fresh)
    # What it read, and what its proposals name that master did not hold (a person reverted, then
    # loaded again under the same id, must not stay set aside). A credential's proposal names its
    # holder.
    read = {
        ("person" if p["entity_kind"] == "credential" else p["entity_kind"], p["entity_id"]) for p in fresh
    }
    read |= {("person", p) for p in work.people}
    read |= {("credential", c["credential_id"]) for c in work.credentials.values()}
    read |= {(kind, e) for kind, entities in work.entities.items() for e in entities}
    # Against master as this transaction reads it: a person reverted since approval.
    people, numbers = set(work.people), set(work.by_id_number)
    gone = {p["proposal_id"]: why for p in fresh if (why := missing_entity(p, people, numbers))}
    aside |= gone
    fresh = _without(fresh, gone, report)
    if not fresh:
        return nothing_to_write(read)

    # A value holds from its event's date, never from a date still to come (a mistyped 2099
    # would otherwise outrank every real change after it). The chunk is applied in valid-time
    # order, so two changes of one field land in the order they happened, whatever the order
    # they were approved in.
    def valid_from(proposal: dict[str, Any]) -> dt.date:
        return min(dates.get(proposal["event_id"], today), today)

    for proposal in sorted(fresh, key=lambda p: (valid_from(p), p["created_at"], p["proposal_id"])):
        entity_id = work.apply(proposal, valid_from(proposal), checks.get(proposal["proposal_id"], "[]"))
        if proposal["entity_kind"] == "person":
            report.person_ids.append(entity_id)
        work.promotions.append(
            {
                "proposal_id": proposal["proposal_id"],
                "entity_kind": proposal["entity_kind"],
                "entity_id": entity_id,
                "changes": proposal["payload"],
                "applied_at": work.now,
            }
        )
        report.promoted += 1
        report.promoted_ids.append(proposal["proposal_id"])
    report.person_ids = list(dict.fromkeys(report.person_ids))
    keys = _rekeying(conn, rules, work) if keys_current else None
    for promotion in work.promotions:
        promotion["keys_refreshed"] = promotion["entity_kind"] != "person" or keys_current
    keyless: list[str] = []
    if keys is not None:
        keyless = sorted({*work.changed_people} - keys[3])
        keys = (*keys[:3], set())  # who held keys crosses to the writer as `keyless`
    created = sorted(n for r in work.new_people.values() if (n := r.get("id_number")))
    credentials = [(c["kind"], c["number"]) for c in work.new_credentials.values()]
    entities = any(work.new_entities.values())
    work.seal()
    return ChunkWork(
        proposals,
        aside,
        _payloads(approved, aside),
        report,
        work=work,
        keys=keys,
        keys_current=keys_current,
        keyed=keyed,
        head=head,
        read=read,
        new_numbers=created,
        new_credentials=credentials,
        new_entities=entities,
        keyless=keyless,
    )


def _payloads(approved: list[dict[str, Any]], aside: dict[str, str]) -> dict[str, Any]:
    return {p["proposal_id"]: p["payload"] for p in approved if p["proposal_id"] in aside}


def write_out(conn: Connection, worked: ChunkWork) -> None:
    """Write what `work_out` worked out, in the caller's master transaction: the people's keys,
    the chunk's rows, then the buildings people and enterprises stand in."""
    work = worked.work
    if work is None:
        return
    work.stamp(utcnow())
    if worked.keys is not None:
        added, features, gone, _ = worked.keys
        write_keys(conn, added, features, gone=gone, replace=True)
        worked.report.keys_refreshed += len({*work.new_people, *work.changed_people})
    work.write(conn)
    # People and enterprises reference the master building at their address (set-based).
    buildings = [
        work.entities["place"][i]["address"]
        for i in (*work.new_entities["place"], *work.changed_entities["place"])
        if work.entities["place"][i]["kind"] == "building"
    ]
    worked.report.places_referenced += attach_places(
        conn,
        [*work.new_people, *work.changed_people],
        [*work.new_entities["enterprise"], *work.changed_entities["enterprise"]],
        buildings,
    )


def _rekeying(conn: Connection, rules: Rulebook, work: Chunk) -> Rekeying | None:
    """The keys of the people this chunk creates or changes, from their rows as they will be."""
    ids = sorted({*work.new_people, *work.changed_people})
    if not ids:
        return None
    schema = {c: (pl.Date if c == "birth_date" else pl.String) for c in MASTER_COLUMNS}
    rows = [work.people[i] for i in ids]
    people = pl.DataFrame({c: [r[c] for r in rows] for c in MASTER_COLUMNS}, schema=schema)
    return rekey_prepared(conn, rules.matching["person"], people)


def _without(
    proposals: list[dict[str, Any]], aside: dict[str, str], report: PromoteReport
) -> list[dict[str, Any]]:
    """The proposals not set aside; those set aside counted in the report with their reasons."""
    if not aside:
        return proposals
    report.set_aside += len(aside)
    report.set_aside_ids += list(aside)
    report.set_aside_reasons.update(aside)
    return [p for p in proposals if p["proposal_id"] not in aside]
