"""index promotions by keys_refreshed: each chunk of a promote finds the few people to re-key

`promote` re-keys the people of promotions whose `keys_refreshed` is still False (this chunk's, or
a crashed run's) after every chunk; without an index each look-up read the whole promotion table,
which grows by a county's year of changes. No data changes.

Revision ID: master_0008
Revises: master_0007
Create Date: 2026-11-30 12:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "master_0008"
down_revision: str | None = "master_0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_promotion_keys_refreshed", "promotion", ["keys_refreshed"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_promotion_keys_refreshed", table_name="promotion")
