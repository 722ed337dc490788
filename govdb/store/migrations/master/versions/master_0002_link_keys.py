"""link keys and features of master people (online linkage) and the stored linkage model

Revision ID: master_0002
Revises: master_0001
Create Date: 2026-11-23 05:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "master_0002"
down_revision: str | None = "master_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "linkkey",
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=192), nullable=False),
        sa.Column("person_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.PrimaryKeyConstraint("key", "person_id"),
    )
    with op.batch_alter_table("linkkey", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_linkkey_person_id"), ["person_id"], unique=False)
    op.create_table(
        "linkfeatures",
        sa.Column("person_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("features", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("person_id"),
    )
    op.create_table(
        "linkagemodel",
        sa.Column("entity_kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("trained_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("model", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("entity_kind"),
    )


def downgrade() -> None:
    op.drop_table("linkagemodel")
    op.drop_table("linkfeatures")
    with op.batch_alter_table("linkkey", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_linkkey_person_id"))
    op.drop_table("linkkey")
