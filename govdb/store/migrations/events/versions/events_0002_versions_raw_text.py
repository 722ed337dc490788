"""versions of source records, raw text and bytes as received, JSONB payloads

A source key sent again with other content becomes the next version instead of being dropped;
`raw_text` keeps the record exactly as the file held it, `quarantine.raw_bytes` the exact bytes of
an unreadable record; on PostgreSQL `event.raw` becomes JSONB so a data steward can query it.

Revision ID: events_0002
Revises: events_0001
Create Date: 2026-11-29 19:50:00
"""

import hashlib
import json
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "events_0002"
down_revision: str | None = "events_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _content_sha256(raw: object) -> str:
    payload = json.loads(raw) if isinstance(raw, str) else raw
    text = json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def upgrade() -> None:
    bind = op.get_bind()
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="1"))
        batch_op.add_column(
            sa.Column("content_sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )
        batch_op.add_column(sa.Column("raw_text", sa.Text(), nullable=True))
        batch_op.alter_column(
            "source_key", type_=sqlmodel.sql.sqltypes.AutoString(length=256), existing_nullable=False
        )
        batch_op.alter_column("source_file", type_=sa.Text(), existing_nullable=True)
    event = sa.table(
        "event", sa.column("event_id", sa.Integer()), sa.column("raw"), sa.column("content_sha256")
    )
    rows = bind.execute(sa.select(event.c.event_id, event.c.raw)).all()
    if rows:
        bind.execute(
            event.update()
            .where(event.c.event_id == sa.bindparam("id"))
            .values(content_sha256=sa.bindparam("sha")),
            [{"id": event_id, "sha": _content_sha256(raw)} for event_id, raw in rows],
        )
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.alter_column(
            "content_sha256", existing_type=sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False
        )
        batch_op.drop_constraint("uq_event_source_key", type_="unique")
        batch_op.create_unique_constraint(
            "uq_event_source_version", ["source_system", "source_key", "version"]
        )
        batch_op.create_unique_constraint(
            "uq_event_source_content", ["source_system", "source_key", "content_sha256"]
        )
    if bind.dialect.name == "postgresql":
        op.alter_column(
            "event", "raw", type_=postgresql.JSONB(), postgresql_using="raw::jsonb", existing_nullable=False
        )
    with op.batch_alter_table("ingestbatch", schema=None) as batch_op:
        batch_op.add_column(sa.Column("new_versions", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("blank", sa.Integer(), nullable=False, server_default="0"))
        batch_op.alter_column("source_file", type_=sa.Text(), existing_nullable=True)
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.add_column(sa.Column("raw_bytes", sa.LargeBinary(), nullable=True))
        batch_op.alter_column("source_file", type_=sa.Text(), existing_nullable=True)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.alter_column(
            "event", "raw", type_=sa.JSON(), postgresql_using="raw::json", existing_nullable=False
        )
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.drop_column("raw_bytes")
    with op.batch_alter_table("ingestbatch", schema=None) as batch_op:
        batch_op.drop_column("blank")
        batch_op.drop_column("new_versions")
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.drop_constraint("uq_event_source_content", type_="unique")
        batch_op.drop_constraint("uq_event_source_version", type_="unique")
        batch_op.create_unique_constraint("uq_event_source_key", ["source_system", "source_key"])
        batch_op.drop_column("raw_text")
        batch_op.drop_column("content_sha256")
        batch_op.drop_column("version")
