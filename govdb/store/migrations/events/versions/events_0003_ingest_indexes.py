"""lighter event indexes for ingest: no batch index, division codes indexed only once known

Every event written pays for every index on `event`. Nothing looks events up by `batch_id` (an
ingest's report names its batch; a steward's query for one batch reads the table), so its index
goes. `division_code` is empty when an event is ingested and filled in by validate, so its index
keeps only the rows that have one: ingest no longer writes an index entry per event for it, and
lookups by a code (`division_code = ...`) still use it. No data changes.

Revision ID: events_0003
Revises: events_0002
Create Date: 2026-11-29 23:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "events_0003"
down_revision: str | None = "events_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KNOWN_CODE = sa.text("division_code IS NOT NULL")


def upgrade() -> None:
    op.drop_index("ix_event_batch_id", table_name="event")
    op.drop_index("ix_event_division_code", table_name="event")
    op.create_index(
        "ix_event_division_code",
        "event",
        ["division_code"],
        unique=False,
        sqlite_where=KNOWN_CODE,
        postgresql_where=KNOWN_CODE,
    )


def downgrade() -> None:
    op.drop_index("ix_event_division_code", table_name="event")
    op.create_index("ix_event_division_code", "event", ["division_code"], unique=False)
    op.create_index("ix_event_batch_id", "event", ["batch_id"], unique=False)
