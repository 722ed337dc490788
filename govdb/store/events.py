"""Event store (业务动态数据库) tables: everything captured while services are delivered.

Unverified by definition. Serving code (prefill, profiles, master queries) never imports this
module (invariant 2); proactive programmes and analytics may, and label what they use.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, CheckConstraint, Column, Index, LargeBinary, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from govdb.base.clock import utcnow
from govdb.store.states import EventStatus, Outcome, ProposalState, TaskState, check_sql

# What a source sent: UTF-8 JSON text on SQLite, JSONB on PostgreSQL so a data steward can query it.
RawJSON = JSON().with_variant(JSONB(), "postgresql")
SOURCE_MAX = 128
KEY_MAX = 256


class EventModel(SQLModel, registry=registry()):
    """Base of event-store tables (separate metadata)."""


class IngestBatch(EventModel, table=True):
    """One ingest of one file or frame, with its counts."""

    batch_id: str = Field(primary_key=True, max_length=36)
    source_system: str = Field(max_length=SOURCE_MAX)
    source_file: str | None = Field(default=None, sa_column=Column(Text))
    file_sha256: str | None = Field(default=None, max_length=64)
    encoding: str | None = Field(default=None, max_length=32)
    read: int = 0
    stored: int = 0
    new_versions: int = 0
    duplicate: int = 0
    quarantined: int = 0
    blank: int = 0
    # The registered source this ingest proved to be (a verified token), else None: only a proven
    # source's events can earn an automatic pass (invariant 9).
    authenticated_source: str | None = Field(default=None, max_length=SOURCE_MAX)
    received_at: dt.datetime = Field(default_factory=utcnow)
    # header -> standard column, as the ingest was told (--map); process reads the payloads through it
    column_map: dict[str, str] | None = Field(default=None, sa_column=Column(JSON))


class Event(EventModel, table=True):
    """One version of one source record as received. `raw_text` and `raw` are never modified.

    A source record is (source system, source key); the same key sent again with other content is
    stored as the next version, identical content is stored once. `raw_text` is the record exactly
    as the file held it (None for spreadsheets, Parquet and frames); `raw` is its parsed payload;
    `standardized` is derived from it.
    """

    __table_args__ = (
        # Indexes rather than table constraints, so that a bulk ingest can build them after its
        # insert (store.bulk.indexes_deferred); unique all the same.
        Index("uq_event_source_version", "source_system", "source_key", "version", unique=True),
        Index("uq_event_source_content", "source_system", "source_key", "content_sha256", unique=True),
        Index("ix_event_status", "status"),
        # Ingest leaves division_code empty (validate fills it in): NULLs stay out of the index.
        Index(
            "ix_event_division_code",
            "division_code",
            sqlite_where=text("division_code IS NOT NULL"),
            postgresql_where=text("division_code IS NOT NULL"),
        ),
        CheckConstraint(check_sql("status", EventStatus), name="ck_event_status"),
    )

    event_id: int | None = Field(default=None, primary_key=True)
    source_system: str = Field(max_length=SOURCE_MAX)
    source_key: str = Field(max_length=KEY_MAX)
    version: int = 1
    content_sha256: str = Field(max_length=64)
    batch_id: str = Field(max_length=36)  # not indexed: no query looks events up by batch
    source_file: str | None = Field(default=None, sa_column=Column(Text))
    source_line: int | None = None
    raw_text: str | None = Field(default=None, sa_column=Column(Text))
    service_code: str | None = Field(default=None, max_length=64)
    department: str | None = Field(default=None, max_length=64)
    channel: str | None = Field(default=None, max_length=32)
    occurred_at: dt.datetime | None = None
    received_at: dt.datetime = Field(default_factory=utcnow)
    division_code: str | None = Field(default=None, max_length=12)
    raw: dict[str, Any] = Field(sa_column=Column(RawJSON, nullable=False))
    standardized: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    quality_flags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    status: str = Field(default="received", max_length=16)
    link_round: int = 0  # how often a split sent it back to be linked again


class Quarantine(EventModel, table=True):
    """A row that could not be read, with its line number and reason (nothing silently dropped)."""

    __table_args__ = (UniqueConstraint("source_system", "file_sha256", "line", name="uq_quarantine_line"),)

    id: int | None = Field(default=None, primary_key=True)
    batch_id: str = Field(max_length=36, index=True)
    source_system: str = Field(max_length=SOURCE_MAX)
    source_file: str | None = Field(default=None, sa_column=Column(Text))
    file_sha256: str = Field(max_length=64)
    line: int
    raw_text: str  # as received where it decodes; undecodable bytes and NUL shown as U+FFFD
    raw_bytes: bytes | None = Field(default=None, sa_column=Column(LargeBinary))  # exactly as received
    reason: str
    received_at: dt.datetime = Field(default_factory=utcnow)


class Link(EventModel, table=True):
    """A link from an event to a master entity (or to nobody), with its explanation."""

    id: int | None = Field(default=None, primary_key=True)
    event_id: int = Field(foreign_key="event.event_id", index=True)
    entity_kind: str = Field(max_length=16)
    entity_id: str | None = Field(default=None, max_length=32)
    score: float
    decision: str = Field(max_length=16)  # "match" / "review" / "new"
    explanation: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: dt.datetime = Field(default_factory=utcnow)


class Proposal(EventModel, table=True):
    """A change an event proposes for master data, and where it stands on its route of checks.

    `division_code` is the place whose units check it: for a change to someone already in master,
    their master residence (never the place the event claims); for someone new, where they
    register. `county_code` partitions the work by county.
    """

    __table_args__ = (
        UniqueConstraint("event_id", "change", "round", name="uq_proposal_event_change"),
        CheckConstraint(check_sql("state", ProposalState), name="ck_proposal_state"),
        # Proposals in a state, oldest first: promote reads the approved ones a chunk at a time.
        Index("ix_proposal_queue", "state", "created_at", "proposal_id"),
    )

    proposal_id: str = Field(primary_key=True, max_length=36)
    event_id: int = Field(foreign_key="event.event_id")  # looked up through uq_proposal_event_change
    change: str = Field(max_length=64)  # route name: new_person, update_person, credential, ...
    entity_kind: str = Field(max_length=16)
    entity_id: str | None = Field(default=None, max_length=32)
    payload: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    division_code: str | None = Field(default=None, max_length=12)
    county_code: str | None = Field(default=None, max_length=6, index=True)
    source: str = Field(max_length=128)
    department: str | None = Field(default=None, max_length=64)
    state: str = Field(default="pending", max_length=16)
    created_at: dt.datetime = Field(default_factory=utcnow)
    updated_at: dt.datetime = Field(default_factory=utcnow)
    round: int = 0  # the event's link round it was proposed in (a split links it again)


class LinkExclusion(EventModel, table=True):
    """A master entity an event must not be linked to again: a split found it was someone else."""

    event_id: int = Field(foreign_key="event.event_id", primary_key=True)
    entity_kind: str = Field(primary_key=True, max_length=16)
    entity_id: str = Field(primary_key=True, max_length=32)
    actor: str = Field(max_length=140)  # actor@unit who split
    reason: str | None = Field(default=None, max_length=512)
    created_at: dt.datetime = Field(default_factory=utcnow)


class Task(EventModel, table=True):
    """One check at one level for one proposal, assigned to the unit whose jurisdiction covers it.

    `division_code` is the place this check is about (the person's master residence, or the
    destination village of a move); only an actor whose unit covers it may decide. `round` counts
    how often the task was reopened by a return, so each round has at most one decision.
    """

    __table_args__ = (
        UniqueConstraint("proposal_id", "step", name="uq_task_step"),
        CheckConstraint(check_sql("state", TaskState), name="ck_task_state"),
        # A unit's queue (its open tasks, oldest first) read straight off one index.
        Index("ix_task_queue", "unit_id", "state", "task_id"),
    )

    task_id: int | None = Field(default=None, primary_key=True)
    proposal_id: str = Field(foreign_key="proposal.proposal_id", max_length=36)  # through uq_task_step
    step: int
    level: str = Field(max_length=16)
    department: str | None = Field(default=None, max_length=64)
    unit_id: str = Field(max_length=64)
    division_code: str | None = Field(default=None, max_length=12)
    # No index of its own: each decision would move two entries of it (events_0012).
    state: str = Field(default="waiting", max_length=16)
    round: int = 0
    created_at: dt.datetime = Field(default_factory=utcnow)
    decided_at: dt.datetime | None = None


class Decision(EventModel, table=True):
    """What a person (or an auto-pass rule earned by an authenticated source) decided on a task:
    exactly one decision per task and round."""

    __table_args__ = (
        UniqueConstraint("task_id", "round", name="uq_decision_task_round"),
        CheckConstraint(check_sql("outcome", Outcome), name="ck_decision_outcome"),
        CheckConstraint(
            "(actor_id IS NOT NULL AND actor_id <> '') OR (rule IS NOT NULL AND source IS NOT NULL)",
            name="ck_decision_by_someone",
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    task_id: int = Field(foreign_key="task.task_id")  # looked up through uq_decision_task_round
    round: int = 0
    outcome: str = Field(max_length=16)  # approve / reject / amend / return
    actor_id: str | None = Field(default=None, max_length=64)
    unit_id: str = Field(max_length=64)
    rule: str | None = Field(default=None, max_length=64)
    source: str | None = Field(default=None, max_length=128)  # the authenticated source of a rule's pass
    reason: str | None = None
    amendments: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    decided_at: dt.datetime = Field(default_factory=utcnow)
    rules_fingerprint: str | None = Field(default=None, max_length=64)  # the rulebook decided under


class AuditCheckpoint(EventModel, table=True):
    """A copy of the master audit chain's head kept in the other store, sealed with the audit key.

    Written whenever the chain verifies; a later head that is shorter, or an entry at a
    checkpointed seq with another hash, shows the master audit log was cut back or rewritten.
    Append-only (triggers refuse UPDATE and DELETE)."""

    seq: int = Field(primary_key=True)
    hash: str = Field(max_length=64)
    at: dt.datetime = Field(default_factory=utcnow)
    key_id: str = Field(max_length=16)
    mac: str = Field(max_length=64)
