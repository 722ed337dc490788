"""the change feed without its index by entity

The feed is read in order (`seq`), never by entity: a programme or department pages through it
with a cursor, and a linking run gathers the people changed after a seq. Its index on
`entity_id` only cost writes: every promotion chunk put its rows' entries at random places of
it (a county's chunk of 60,000 proposals, about 130,000 rows, dirtied nearly every page of it).
No data changes.

Revision ID: master_0013
Revises: master_0012
Create Date: 2026-12-03 09:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "master_0013"
down_revision: str | None = "master_0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_masterchange_entity_id", table_name="masterchange")


def downgrade() -> None:
    op.create_index("ix_masterchange_entity_id", "masterchange", ["entity_id"])
