"""record what master's link keys were written with (blocking rules, county hint)

A change of the blocking rules in rules/matching used to leave the stored keys as they were: a
look-up by a new rule found nobody, and `process` (blocking in memory) and `link_one` (through
the stored keys) could answer differently. A store upgraded from before has no record, so its
people are keyed again, once, by the first look-up or key refresh.

Revision ID: master_0009
Revises: master_0008
Create Date: 2026-11-30 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "master_0009"
down_revision: str | None = "master_0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "linkkeyrules",
        sa.Column("entity_kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("fingerprint", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("address_hint", sqlmodel.sql.sqltypes.AutoString(length=12), nullable=True),
        sa.Column("keyed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("entity_kind"),
    )


def downgrade() -> None:
    op.drop_table("linkkeyrules")
