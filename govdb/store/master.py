"""Master store (基础主数据库) tables: verified people, enterprises, places and their lineage.

These tables have their own metadata, so they can never be created in (or joined with) the event
store by accident. Nothing outside promote.py and bulk loads writes person, enterprise, place or
credential rows (invariant 1).

Times are timezone-aware UTC datetimes (sqlmodel's UTCDateTime); dates are calendar dates.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, Column, Index, String, UniqueConstraint
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import registry
from sqlalchemy.sql.expression import ColumnElement
from sqlmodel import Field, Session, SQLModel, col, select

from govdb.base.clock import utcnow
from govdb.store.states import IssuanceStatus, check_sql, one_of


class MasterModel(SQLModel, registry=registry()):
    """Base of master-store tables (separate metadata)."""


class Person(MasterModel, table=True):
    """One natural person (自然人), identified by a verified resident ID number."""

    person_id: str = Field(primary_key=True, max_length=32)
    id_number: str = Field(index=True, unique=True, max_length=18)
    name: str = Field(max_length=64)
    gender: str | None = Field(default=None, max_length=1)  # "M" / "F"
    birth_date: dt.date | None = Field(default=None, index=True)
    phone: str | None = Field(default=None, max_length=32)
    address: str | None = Field(default=None, max_length=256)
    division_code: str | None = Field(default=None, index=True, max_length=12)
    death_date: dt.date | None = None
    # The master place (building) at the person's standardized address, set at promotion.
    place_id: str | None = Field(default=None, index=True, max_length=32)
    created_at: dt.datetime = Field(default_factory=utcnow)
    updated_at: dt.datetime = Field(default_factory=utcnow)


class LinkKey(MasterModel, table=True):
    """A blocking key of a master person ("surname_pinyin+birth_date=zhang|1990-01-02"), indexed so
    one incoming record finds its candidates without scanning master (written by govdb.link.keys,
    read by govdb.link.online). Clustered by its primary key on SQLite (master_0011): two B-trees
    per key, not three."""

    __table_args__ = {"sqlite_with_rowid": False}

    key: str = Field(primary_key=True, max_length=192)
    person_id: str = Field(primary_key=True, max_length=32, index=True)


# The ID number inside a person's stored features, as each backend's indexes and queries spell it
# (an index on an expression serves a query only when the query spells it the same). Every row
# is indexed, so the expression must not fail on one govdb never wrote: malformed JSON on SQLite
# is no number. On PostgreSQL it is master_0012's function `govdb_feature_id_number`: `->>` on a
# json value decodes the whole document and fails on the escape of a NUL or a lone surrogate
# anywhere in it, where the function gives no number; it keeps FEATURE_ID_PREFIX characters (a
# B-tree entry holds at most 2,704 bytes), and readers compare the rest.
FEATURE_ID_PREFIX = 64
FEATURE_ID_NUMBER = {
    "sqlite": "CASE WHEN json_valid(features) THEN json_extract(features, '$.id_number') END",
    "postgresql": "govdb_feature_id_number(features)",
}


class _FeatureIdNumber(ColumnElement[str]):
    """FEATURE_ID_NUMBER as one index expression of the model, spelt for the backend it is
    compiled for: two indexes of one name, one per backend, would make the model hold both."""

    inherit_cache = True
    type = String()


@compiles(_FeatureIdNumber)
def _feature_id_number(element: _FeatureIdNumber, compiler: Any, **kw: Any) -> str:
    return FEATURE_ID_NUMBER[compiler.dialect.name]


class LinkFeatures(MasterModel, table=True):
    """A master person's linkage features (govdb.link.features.prepare), kept with the keys so an
    online lookup compares candidates without standardizing them again.

    Indexed by the ID number they hold, then person (master_0012): a look-up of a record with an
    ID number reads only candidates that could be chosen under `different_valid_ids` (the
    number's holders, and the candidates holding none, found in the index), where a
    village's common given name is hundreds of people, each read at a random place."""

    __table_args__ = (Index("ix_linkfeatures_id_number", _FeatureIdNumber(), "person_id"),)

    person_id: str = Field(primary_key=True, max_length=32)
    features: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))


class LinkageModel(MasterModel, table=True):
    """The trained linkage model of an entity kind (m, u, prior, term frequencies), so every
    process run and every `link_one` call scores with the same numbers."""

    entity_kind: str = Field(primary_key=True, max_length=16)
    trained_at: dt.datetime = Field(default_factory=utcnow)
    model: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))


class LinkKeyRules(MasterModel, table=True):
    """What master's stored link keys and features were written with: the blocking rules' names
    and the county hint for addresses. Look-ups refuse other rules until `rules apply` keys
    everyone again (else a new rule would find nobody)."""

    entity_kind: str = Field(primary_key=True, max_length=16)
    fingerprint: str = Field(max_length=64)
    rules: list[str] = Field(sa_column=Column(JSON, nullable=False))
    address_hint: str | None = Field(default=None, max_length=12)
    keyed_at: dt.datetime = Field(default_factory=utcnow)


class Enterprise(MasterModel, table=True):
    """One legal person (法人), identified by its unified social credit code."""

    enterprise_id: str = Field(primary_key=True, max_length=32)
    uscc: str = Field(index=True, unique=True, max_length=18)
    name: str = Field(max_length=256)
    legal_representative: str | None = Field(default=None, max_length=64)
    address: str | None = Field(default=None, max_length=256)
    division_code: str | None = Field(default=None, index=True, max_length=12)
    phone: str | None = Field(default=None, max_length=32)
    business_scope: str | None = Field(default=None, max_length=2000)
    status: str | None = Field(default=None, max_length=32)  # 登记状态: 存续, 在业, 注销, 吊销 ...
    place_id: str | None = Field(default=None, index=True, max_length=32)
    created_at: dt.datetime = Field(default_factory=utcnow)
    updated_at: dt.datetime = Field(default_factory=utcnow)


class Place(MasterModel, table=True):
    """A place (空间地理): a building at a standardized address, or a named road, in a division."""

    place_id: str = Field(primary_key=True, max_length=32)
    kind: str = Field(max_length=32)  # "building" or "road"
    address: str = Field(max_length=256, index=True)  # standardized; a road's is its name in its county
    division_code: str | None = Field(default=None, index=True, max_length=12)
    name: str | None = Field(default=None, max_length=128)  # the building's or road's name
    road: str | None = Field(default=None, max_length=128)
    building: str | None = Field(default=None, max_length=128)
    created_at: dt.datetime = Field(default_factory=utcnow)
    updated_at: dt.datetime = Field(default_factory=utcnow)


class Credential(MasterModel, table=True):
    """A card or certificate held by a person (disability certificate, senior transit card, ...)."""

    __table_args__ = (UniqueConstraint("kind", "number", name="uq_credential_kind_number"),)

    credential_id: str = Field(primary_key=True, max_length=32)
    person_id: str = Field(foreign_key="person.person_id", index=True, max_length=32)
    kind: str = Field(max_length=64)  # looked up through uq_credential_kind_number
    number: str = Field(max_length=64)
    attributes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    issuer: str | None = Field(default=None, max_length=64)
    valid_from: dt.date | None = None
    valid_to: dt.date | None = None
    created_at: dt.datetime = Field(default_factory=utcnow)


class FieldHistory(MasterModel, table=True):
    """Lineage of one field value (invariant 4): where it came from, who checked it, when valid."""

    __table_args__ = (
        Index("ix_field_history_entity", "entity_kind", "entity_id", "field"),
        CheckConstraint(
            "valid_to IS NULL OR valid_from IS NULL OR valid_from <= valid_to", name="ck_field_history_valid"
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    entity_kind: str = Field(max_length=16)
    entity_id: str = Field(max_length=32)
    field: str = Field(max_length=64)
    value: str | None = Field(default=None)
    valid_from: dt.date | None = None
    valid_to: dt.date | None = None
    recorded_at: dt.datetime = Field(default_factory=utcnow)
    source: str = Field(max_length=128)
    proposal_id: str | None = Field(default=None, max_length=36, index=True)
    bulk_load_id: str | None = Field(default=None, max_length=36)
    event_ids: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    checks: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # Record time, bitemporally: when valid_to was set (None: not closed, or closed before this
    # was kept), and when the row was withdrawn from the record by a revert (it then never held).
    closed_at: dt.datetime | None = None
    retracted_at: dt.datetime | None = None


def lineage_checks(row: Any) -> list[dict[str, Any]]:
    """The checks behind a lineage row (a FieldHistory or a row of its table).

    A person bulk load stores none per row: the load is the check (authoritative, by the row's
    source, when it was recorded), the same for every field of every person it loaded, so a
    register of 1M people does not store one chain 7M times. Any other row keeps its own chain.
    """
    checks = list(row.checks or [])
    if checks or not row.bulk_load_id:
        return checks
    at = row.recorded_at
    if isinstance(at, dt.datetime) and at.tzinfo is None:
        at = at.replace(tzinfo=dt.UTC)  # kept in UTC; SQLite hands it back without its zone
    return [{"level": "authoritative", "source": row.source, "at": at.isoformat() if at else None}]


class Promotion(MasterModel, table=True):
    """One applied proposal; the unique proposal id makes promotion idempotent across stores."""

    proposal_id: str = Field(primary_key=True, max_length=36)
    entity_kind: str = Field(max_length=16)
    entity_id: str = Field(max_length=32)
    changes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    applied_at: dt.datetime = Field(default_factory=utcnow)
    # False until the person's blocking keys are rewritten, so a crashed run's recovery does it;
    # indexed, as every chunk of a promote looks for the few still False.
    keys_refreshed: bool = Field(default=True, index=True)
    rules_fingerprint: str | None = Field(default=None, max_length=64)
    reverted_at: dt.datetime | None = None
    reverted_by: str | None = Field(default=None, max_length=140)  # actor@unit
    revert_reason: str | None = Field(default=None, max_length=512)


class SourceCredential(MasterModel, table=True):
    """The credential a registered source proves itself with (invariant 9): a salted SHA-256 of a
    random 256-bit token that only the deployment holds. Registering again replaces it."""

    source: str = Field(primary_key=True, max_length=128)
    salt: str = Field(max_length=32)
    token_sha256: str = Field(max_length=64)
    registered_at: dt.datetime = Field(default_factory=utcnow)


class BulkLoad(MasterModel, table=True):
    """An authoritative bulk load (e.g. the public-security population register) and its source."""

    load_id: str = Field(primary_key=True, max_length=36)
    source: str = Field(max_length=128)
    entity_kind: str = Field(max_length=16)
    rows: int
    loaded_at: dt.datetime = Field(default_factory=utcnow)


class Conflict(MasterModel, table=True):
    """A verified value that disagrees with a more trusted master value (比对), for its owner.

    The owning department resolves it once (open -> resolved, a checked transition): accept the
    proposed value, keep master's, or amend to a third; the resolution is its lineage."""

    __table_args__ = (
        CheckConstraint("status IN ('open', 'resolved')", name="ck_conflict_status"),
        CheckConstraint(
            "resolution IS NULL OR resolution IN ('accept', 'keep', 'amend', 'withdrawn')",
            name="ck_conflict_resolution",
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    proposal_id: str = Field(max_length=36, index=True)
    entity_kind: str = Field(max_length=16)
    entity_id: str = Field(max_length=32)
    field: str = Field(max_length=64)
    master_value: str | None = None
    master_source: str = Field(max_length=128)
    proposed_value: str | None = None
    proposed_source: str = Field(max_length=128)
    owner_department: str | None = Field(default=None, max_length=64)
    status: str = Field(default="open", max_length=16)
    created_at: dt.datetime = Field(default_factory=utcnow)
    resolution: str | None = Field(default=None, max_length=16)
    resolved_value: str | None = None
    resolved_at: dt.datetime | None = None
    resolved_by: str | None = Field(default=None, max_length=140)  # actor@unit
    resolution_reason: str | None = Field(default=None, max_length=512)


class MasterChange(MasterModel, table=True):
    """The change feed: every master change as one ordered row (insert / update / delete of an
    entity's field), so a department or programme acts on new facts without rescanning master.

    `seq` is handed out under the lock of `ChangeHead`, held until the writer commits, so the
    order of seqs is the order of commits: a reader that has seen seq N never later finds a
    smaller one. No values are kept here; they are read through the audited reads. Read in seq
    order only, so indexed by nothing else (master_0013)."""

    __table_args__ = (CheckConstraint(one_of("op", ("insert", "update", "delete")), name="ck_change_op"),)

    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    at: dt.datetime = Field(default_factory=utcnow)
    entity_kind: str = Field(max_length=16)
    entity_id: str = Field(max_length=32)
    field: str | None = Field(default=None, max_length=64)
    op: str = Field(max_length=8)
    valid_from: dt.date | None = None
    cause: str = Field(max_length=48)  # promotion / bulk_load / revert / conflict / issuance
    cause_id: str | None = Field(default=None, max_length=48)


class ChangeHead(MasterModel, table=True):
    """The last seq of the change feed (one row); writers lock it to number their changes."""

    __table_args__ = (CheckConstraint("id = 1", name="ck_change_head_single"),)

    id: int = Field(default=1, primary_key=True)
    seq: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))


class AuditLog(MasterModel, table=True):
    """Append-only, hash-chained record of every read of personal master data (invariant 6).

    Entries after the legacy seal are chained with HMAC-SHA256 under the deployment's audit key,
    so nobody without the key can rewrite and re-chain them; the head (`AuditHead`) and the
    checkpoints in the event store make a removed tail visible. Triggers refuse UPDATE and DELETE.
    A read of many people (a programme run) is one entry whose subjects are `AuditSubject` rows,
    covered by `subjects_digest`. A failed look-up keeps only a keyed digest of what was asked.
    """

    __table_args__ = (
        CheckConstraint("outcome IN ('read', 'refused', 'not_found', 'changed')", name="ck_audit_outcome"),
        CheckConstraint("scheme IN ('sha256', 'hmac')", name="ck_audit_scheme"),
    )

    seq: int = Field(primary_key=True)
    at: dt.datetime = Field(default_factory=utcnow)
    actor_id: str = Field(max_length=64)
    unit_id: str = Field(max_length=64)
    department: str | None = Field(default=None, max_length=64)
    purpose: str = Field(max_length=256)
    action: str = Field(max_length=32)
    subject_kind: str = Field(max_length=16)
    subject_id: str = Field(max_length=32, index=True)
    fields: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    masked: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64, unique=True)
    outcome: str = Field(default="read", max_length=16)
    reason: str | None = Field(default=None, max_length=512)
    query_digest: str | None = Field(default=None, max_length=64, index=True)
    subject_count: int = 1
    subjects_digest: str | None = Field(default=None, max_length=64)
    rules_fingerprint: str | None = Field(default=None, max_length=64)
    scheme: str = Field(default="sha256", max_length=8)


class AuditSubject(MasterModel, table=True):
    """One subject of an audit entry that read many (append-only like the log)."""

    seq: int = Field(primary_key=True)
    subject_kind: str = Field(primary_key=True, max_length=16)
    subject_id: str = Field(primary_key=True, max_length=32, index=True)


class AuditHead(MasterModel, table=True):
    """The chain's head, outside the audited table: the last seq and hash, sealed with the key.

    One row (id 1). Appends lock it (FOR UPDATE on PostgreSQL), so concurrent readers queue for
    the next seq instead of colliding; a trigger lets its seq only grow. `legacy_until` is the
    last entry written before keyed chaining (plain sha256, verified as such)."""

    __table_args__ = (CheckConstraint("id = 1", name="ck_audit_head_single"),)

    id: int = Field(default=1, primary_key=True)
    seq: int = 0
    hash: str = Field(max_length=64)
    legacy_until: int = 0
    key_id: str | None = Field(default=None, max_length=16)
    mac: str | None = Field(default=None, max_length=64)


class RulesApplied(MasterModel, table=True):
    """A governed rulebook (access policies and routes) applied to these stores, by whom, when.

    Opening the stores with governed rules that differ from the newest row is refused until
    `govdb rules apply` records the change; the change itself is an audit entry."""

    id: int | None = Field(default=None, primary_key=True)
    fingerprint: str = Field(max_length=64, index=True)
    full_fingerprint: str = Field(max_length=64)
    rules_dir: str = Field(max_length=1024)
    applied_at: dt.datetime = Field(default_factory=utcnow)
    actor_id: str = Field(max_length=64)
    unit_id: str = Field(max_length=64)
    summary: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    audit_seq: int | None = None
    mac: str | None = Field(default=None, max_length=64)  # sealed with the audit key


class Division(MasterModel, table=True):
    """An administrative division the deployment serves (a subtree of the shipped table)."""

    code: str = Field(primary_key=True, max_length=12)
    name: str = Field(max_length=64)
    level: int
    parent_code: str | None = Field(default=None, index=True, max_length=12)
    scheme: str = Field(max_length=8)  # "mca" (民政部区划代码) or "nbs" (统计用区划代码)


def served_county(conn: Any) -> str | None:
    """The county the deployment serves when it serves exactly one (the hint for parsing addresses)."""
    table = Division.__table__  # type: ignore[attr-defined]
    counties = list(conn.execute(select(table.c.code).where(table.c.level == 3)).scalars())
    return counties[0] if len(counties) == 1 else None


class OrgUnit(MasterModel, table=True):
    """A checking unit: a village/residents' committee, a street/township office or a department.

    `division_code` is the jurisdiction: the unit covers every record whose division code starts
    with it (village: 12 digits, street: 9, department: its county's 6).
    """

    unit_id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=128)
    level: str = Field(max_length=16)  # "village" / "street" / "department"
    division_code: str = Field(max_length=12, index=True)
    department: str | None = Field(default=None, max_length=64)


class Issuance(MasterModel, table=True):
    """The ledger of a proactive programme: one row per person per programme cycle."""

    __table_args__ = (
        UniqueConstraint("programme", "cycle", "person_id", name="uq_issuance_once"),
        CheckConstraint(check_sql("status", IssuanceStatus), name="ck_issuance_status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    programme: str = Field(max_length=64)  # looked up through uq_issuance_once
    cycle: str = Field(max_length=32)
    person_id: str = Field(foreign_key="person.person_id", max_length=32)
    run_id: str = Field(max_length=36)
    as_of: dt.date
    delivery: str = Field(max_length=16)  # "home" / "pickup"
    status: str = Field(default="offered", max_length=16)
    reasons: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    unverified_inputs: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # Set when a master fact it rested on was reverted: someone must look at it again.
    review_reason: str | None = Field(default=None, max_length=512)
    created_at: dt.datetime = Field(default_factory=utcnow)
    updated_at: dt.datetime = Field(default_factory=utcnow)


def current_lineage(ms: Session, kind: str, entity_id: str) -> dict[str, FieldHistory]:
    """The current (valid_to is null) lineage row of each field of one entity."""
    rows = ms.exec(
        select(FieldHistory)
        .where(
            FieldHistory.entity_kind == kind,
            FieldHistory.entity_id == entity_id,
            col(FieldHistory.valid_to).is_(None),
            col(FieldHistory.retracted_at).is_(None),
        )
        .order_by(col(FieldHistory.id))
    ).all()
    return {row.field: row for row in rows}
