"""link rounds, exclusions and reverted proposals

A split sends events wrongly merged into someone back to be linked again: the event counts its
link rounds, a proposal records the round it was made in (one proposal per event, change and
round), and `linkexclusion` keeps the person the event must not be linked to again. A promoted
proposal may be reverted.

Revision ID: events_0006
Revises: events_0005
Create Date: 2026-11-30 04:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "events_0006"
down_revision: str | None = "events_0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = sqlmodel.sql.sqltypes.AutoString
STATES = "'pending', 'approved', 'rejected', 'returned', 'unroutable', 'resolved', 'promoted'"


def upgrade() -> None:
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("link_round", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("proposal", schema=None) as batch_op:
        batch_op.add_column(sa.Column("round", sa.Integer(), nullable=False, server_default="0"))
        batch_op.drop_constraint("uq_proposal_event_change", type_="unique")
        batch_op.create_unique_constraint("uq_proposal_event_change", ["event_id", "change", "round"])
        batch_op.drop_constraint("ck_proposal_state", type_="check")
        batch_op.create_check_constraint("ck_proposal_state", f"state IN ({STATES}, 'reverted')")
    op.create_table(
        "linkexclusion",
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("entity_kind", S(length=16), nullable=False),
        sa.Column("entity_id", S(length=32), nullable=False),
        sa.Column("actor", S(length=140), nullable=False),
        sa.Column("reason", S(length=512), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["event.event_id"]),
        sa.PrimaryKeyConstraint("event_id", "entity_kind", "entity_id"),
    )


def downgrade() -> None:
    op.drop_table("linkexclusion")
    with op.batch_alter_table("proposal", schema=None) as batch_op:
        batch_op.drop_constraint("ck_proposal_state", type_="check")
        batch_op.create_check_constraint("ck_proposal_state", f"state IN ({STATES})")
        batch_op.drop_constraint("uq_proposal_event_change", type_="unique")
        batch_op.create_unique_constraint("uq_proposal_event_change", ["event_id", "change"])
        batch_op.drop_column("round")
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.drop_column("link_round")
