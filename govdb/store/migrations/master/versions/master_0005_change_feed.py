"""change feed, bitemporal record time, conflict resolutions, reverts

Every master change becomes a numbered row of `masterchange` (seqs handed out under the lock of
`changehead`, so their order is the order of commits); the lineage gathered so far is fed in
first, in the order it was recorded. Lineage rows learn when they were closed and when a revert
withdrew them (record time); promotions when and by whom they were reverted; conflicts how they
were resolved; issuances why they need another look.

Revision ID: master_0005
Revises: master_0004
Create Date: 2026-11-30 04:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "master_0005"
down_revision: str | None = "master_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = sqlmodel.sql.sqltypes.AutoString
T = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    with op.batch_alter_table("fieldhistory", schema=None) as batch_op:
        batch_op.add_column(sa.Column("closed_at", T(), nullable=True))
        batch_op.add_column(sa.Column("retracted_at", T(), nullable=True))
    with op.batch_alter_table("promotion", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reverted_at", T(), nullable=True))
        batch_op.add_column(sa.Column("reverted_by", S(length=140), nullable=True))
        batch_op.add_column(sa.Column("revert_reason", S(length=512), nullable=True))
    with op.batch_alter_table("conflict", schema=None) as batch_op:
        batch_op.add_column(sa.Column("resolution", S(length=16), nullable=True))
        batch_op.add_column(sa.Column("resolved_value", S(), nullable=True))
        batch_op.add_column(sa.Column("resolved_at", T(), nullable=True))
        batch_op.add_column(sa.Column("resolved_by", S(length=140), nullable=True))
        batch_op.add_column(sa.Column("resolution_reason", S(length=512), nullable=True))
        batch_op.create_check_constraint("ck_conflict_status", "status IN ('open', 'resolved')")
        batch_op.create_check_constraint(
            "ck_conflict_resolution",
            "resolution IS NULL OR resolution IN ('accept', 'keep', 'amend', 'withdrawn')",
        )
    with op.batch_alter_table("issuance", schema=None) as batch_op:
        batch_op.add_column(sa.Column("review_reason", S(length=512), nullable=True))
    op.create_table(
        "masterchange",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at", T(), nullable=False),
        sa.Column("entity_kind", S(length=16), nullable=False),
        sa.Column("entity_id", S(length=32), nullable=False),
        sa.Column("field", S(length=64), nullable=True),
        sa.Column("op", S(length=8), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=True),
        sa.Column("cause", S(length=48), nullable=False),
        sa.Column("cause_id", S(length=48), nullable=True),
        sa.CheckConstraint("op IN ('insert', 'update', 'delete')", name="ck_change_op"),
        sa.PrimaryKeyConstraint("seq"),
    )
    with op.batch_alter_table("masterchange", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_masterchange_entity_id"), ["entity_id"], unique=False)
    op.create_table(
        "changehead",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_change_head_single"),
        sa.PrimaryKeyConstraint("id"),
    )
    # The lineage so far, in the order it was recorded: an entity's first row is its insert.
    op.execute(
        "INSERT INTO masterchange (seq, at, entity_kind, entity_id, field, op, valid_from, cause, cause_id) "
        "SELECT ROW_NUMBER() OVER (ORDER BY id), recorded_at, entity_kind, entity_id, field, "
        "CASE WHEN id = MIN(id) OVER (PARTITION BY entity_kind, entity_id) THEN 'insert' ELSE 'update' END, "
        "valid_from, CASE WHEN bulk_load_id IS NOT NULL THEN 'bulk_load' ELSE 'promotion' END, "
        "COALESCE(bulk_load_id, proposal_id) FROM fieldhistory"
    )
    op.execute("INSERT INTO changehead (id, seq) SELECT 1, COUNT(*) FROM masterchange")


def downgrade() -> None:
    op.drop_table("changehead")
    with op.batch_alter_table("masterchange", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_masterchange_entity_id"))
    op.drop_table("masterchange")
    with op.batch_alter_table("issuance", schema=None) as batch_op:
        batch_op.drop_column("review_reason")
    with op.batch_alter_table("conflict", schema=None) as batch_op:
        batch_op.drop_constraint("ck_conflict_resolution", type_="check")
        batch_op.drop_constraint("ck_conflict_status", type_="check")
        for column in ("resolution_reason", "resolved_by", "resolved_at", "resolved_value", "resolution"):
            batch_op.drop_column(column)
    with op.batch_alter_table("promotion", schema=None) as batch_op:
        for column in ("revert_reason", "reverted_by", "reverted_at"):
            batch_op.drop_column(column)
    with op.batch_alter_table("fieldhistory", schema=None) as batch_op:
        batch_op.drop_column("retracted_at")
        batch_op.drop_column("closed_at")
