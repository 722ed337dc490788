"""the column mapping an ingest was given

`govdb ingest --map 统一社会信用代码=uscc` names which header holds which standard column where the
rules' aliases do not know it. Events keep their payload exactly as received, so the mapping is
kept with the ingest batch and `process` reads that batch's payloads through it. No data changes.

Revision ID: events_0007
Revises: events_0006
Create Date: 2026-11-30 04:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "events_0007"
down_revision: str | None = "events_0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ingestbatch", schema=None) as batch_op:
        batch_op.add_column(sa.Column("column_map", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ingestbatch", schema=None) as batch_op:
        batch_op.drop_column("column_map")
