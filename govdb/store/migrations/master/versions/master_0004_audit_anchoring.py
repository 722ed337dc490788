"""audit anchoring: keyed chain, head, subjects, outcomes, append-only triggers, applied rules

The audit log gains the outcome of each read (read / refused / not_found / changed), a keyed
digest of what a failed look-up asked for, the rulebook fingerprint, and the scheme of its hash
(entries written before this revision stay plain sha256 and are sealed by the head when the first
keyed entry is written). The head, outside the audited table, is the lock that orders appends
and the anchor that shows a removed tail. Triggers make the log, its subjects and the record of
applied rules (each row sealed with the audit key) append-only and the head forward-only.
Promotions record the rulebook they ran on.

Revision ID: master_0004
Revises: master_0003
Create Date: 2026-11-30 01:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

from govdb.store import append_only

revision: str = "master_0004"
down_revision: str | None = "master_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    with op.batch_alter_table("auditlog", schema=None) as batch_op:
        batch_op.add_column(sa.Column("outcome", S(length=16), nullable=False, server_default="read"))
        batch_op.add_column(sa.Column("reason", S(length=512), nullable=True))
        batch_op.add_column(sa.Column("query_digest", S(length=64), nullable=True))
        batch_op.add_column(sa.Column("subject_count", sa.Integer(), nullable=False, server_default="1"))
        batch_op.add_column(sa.Column("subjects_digest", S(length=64), nullable=True))
        batch_op.add_column(sa.Column("rules_fingerprint", S(length=64), nullable=True))
        batch_op.add_column(sa.Column("scheme", S(length=8), nullable=False, server_default="sha256"))
        batch_op.create_check_constraint(
            "ck_audit_outcome", "outcome IN ('read', 'refused', 'not_found', 'changed')"
        )
        batch_op.create_check_constraint("ck_audit_scheme", "scheme IN ('sha256', 'hmac')")
        batch_op.create_index(batch_op.f("ix_auditlog_subject_id"), ["subject_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_auditlog_query_digest"), ["query_digest"], unique=False)
    op.create_table(
        "auditsubject",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("subject_kind", S(length=16), nullable=False),
        sa.Column("subject_id", S(length=32), nullable=False),
        sa.PrimaryKeyConstraint("seq", "subject_kind", "subject_id"),
    )
    with op.batch_alter_table("auditsubject", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_auditsubject_subject_id"), ["subject_id"], unique=False)
    op.create_table(
        "audithead",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", S(length=64), nullable=False),
        sa.Column("legacy_until", sa.Integer(), nullable=False),
        sa.Column("key_id", S(length=16), nullable=True),
        sa.Column("mac", S(length=64), nullable=True),
        sa.CheckConstraint("id = 1", name="ck_audit_head_single"),
        sa.PrimaryKeyConstraint("id"),
    )
    # The head starts at the last entry written so far; those entries are the legacy part.
    op.execute(
        "INSERT INTO audithead (id, seq, hash, legacy_until) "
        "SELECT 1, COALESCE(MAX(seq), 0), "
        "COALESCE((SELECT hash FROM auditlog ORDER BY seq DESC LIMIT 1), "
        "'0000000000000000000000000000000000000000000000000000000000000000'), "
        "COALESCE(MAX(seq), 0) FROM auditlog"
    )
    op.create_table(
        "rulesapplied",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("fingerprint", S(length=64), nullable=False),
        sa.Column("full_fingerprint", S(length=64), nullable=False),
        sa.Column("rules_dir", S(length=1024), nullable=False),
        sa.Column("applied_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("actor_id", S(length=64), nullable=False),
        sa.Column("unit_id", S(length=64), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("audit_seq", sa.Integer(), nullable=True),
        sa.Column("mac", S(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("rulesapplied", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rulesapplied_fingerprint"), ["fingerprint"], unique=False)
    with op.batch_alter_table("promotion", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rules_fingerprint", S(length=64), nullable=True))
    for statement in append_only.statements(
        op.get_bind().dialect.name, ("auditlog", "auditsubject", "audithead", "rulesapplied")
    ):
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table in ("auditlog", "auditsubject", "audithead", "rulesapplied"):
        if dialect == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        else:
            for name in ("no_delete", "no_update", "forward_only"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_{name}")
    with op.batch_alter_table("promotion", schema=None) as batch_op:
        batch_op.drop_column("rules_fingerprint")
    op.drop_table("rulesapplied")
    op.drop_table("audithead")
    op.drop_table("auditsubject")
    with op.batch_alter_table("auditlog", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_auditlog_query_digest"))
        batch_op.drop_index(batch_op.f("ix_auditlog_subject_id"))
        batch_op.drop_constraint("ck_audit_scheme", type_="check")
        batch_op.drop_constraint("ck_audit_outcome", type_="check")
        for column in (
            "scheme",
            "rules_fingerprint",
            "subjects_digest",
            "subject_count",
            "query_digest",
            "reason",
            "outcome",
        ):
            batch_op.drop_column(column)
