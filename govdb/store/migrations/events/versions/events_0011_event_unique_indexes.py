"""event's two unique constraints as unique indexes of the same names

A UNIQUE table constraint lives in an index SQLite makes itself, which no statement can drop. As
indexes of their own, a bulk ingest into a table it more than doubles can drop them and build
them again after the insert (`store.bulk.indexes_deferred`): 900,000 hall rows with receipt
numbers in random order took 20.5 s kept, 11.7 s built after, because each kept index takes every
row at a random place (in receipt-number order: 9.3 s and 9.6 s). The build checks uniqueness all the
same, and a failure rolls the whole ingest back. PostgreSQL keeps its indexes during a COPY; the
change there is only the kind of object. SQLite rebuilds the table (alembic batch mode); no data
changes.

Revision ID: events_0011
Revises: events_0010
Create Date: 2026-12-01 11:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "events_0011"
down_revision: str | None = "events_0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNIQUE = (
    ("uq_event_source_version", ["source_system", "source_key", "version"]),
    ("uq_event_source_content", ["source_system", "source_key", "content_sha256"]),
)


def upgrade() -> None:
    with op.batch_alter_table("event", schema=None) as batch_op:
        for name, _ in UNIQUE:
            batch_op.drop_constraint(name, type_="unique")
    for name, columns in UNIQUE:
        op.create_index(name, "event", columns, unique=True)


def downgrade() -> None:
    for name, _ in UNIQUE:
        op.drop_index(name, table_name="event")
    with op.batch_alter_table("event", schema=None) as batch_op:
        for name, columns in UNIQUE:
            batch_op.create_unique_constraint(name, columns)
