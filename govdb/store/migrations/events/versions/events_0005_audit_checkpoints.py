"""audit checkpoints and the rulebook of each decision

The master audit chain's head is copied here, sealed with the audit key, whenever the chain
verifies, so cutting the master log back (and its head with it) shows. Checkpoints are
append-only. Decisions record the fingerprint of the rulebook they were made under.

Revision ID: events_0005
Revises: events_0004
Create Date: 2026-11-30 01:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

from govdb.store import append_only

revision: str = "events_0005"
down_revision: str | None = "events_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "auditcheckpoint",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", S(length=64), nullable=False),
        sa.Column("at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("key_id", S(length=16), nullable=False),
        sa.Column("mac", S(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    with op.batch_alter_table("decision", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rules_fingerprint", S(length=64), nullable=True))
    for statement in append_only.statements(op.get_bind().dialect.name, ("auditcheckpoint",)):
        op.execute(statement)


def downgrade() -> None:
    with op.batch_alter_table("decision", schema=None) as batch_op:
        batch_op.drop_column("rules_fingerprint")
    op.drop_table("auditcheckpoint")
