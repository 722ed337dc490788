"""source credentials, key refresh in promotions, lineage and issuance constraints

Registered sources prove themselves with a token whose salted hash is kept here; a promotion
remembers whether its person's blocking keys were rewritten (so a crashed run's recovery does it);
field history may never end before it starts; an issuance's status is one of its states.
Inverted history rows left by earlier versions (valid_to before valid_from) are closed at their
start instead, so the constraint can hold.

Revision ID: master_0003
Revises: master_0002
Create Date: 2026-11-29 22:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "master_0003"
down_revision: str | None = "master_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ISSUANCE = "status IN ('offered', 'accepted', 'declined', 'delivered')"


def upgrade() -> None:
    op.create_table(
        "sourcecredential",
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("salt", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("token_sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("registered_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("source"),
    )
    with op.batch_alter_table("promotion", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("keys_refreshed", sa.Boolean(), nullable=False, server_default=sa.true())
        )
    op.execute(
        "UPDATE fieldhistory SET valid_to = valid_from "
        "WHERE valid_to IS NOT NULL AND valid_from IS NOT NULL AND valid_to < valid_from"
    )
    with op.batch_alter_table("fieldhistory", schema=None) as batch_op:
        batch_op.create_check_constraint(
            "ck_field_history_valid", "valid_to IS NULL OR valid_from IS NULL OR valid_from <= valid_to"
        )
    with op.batch_alter_table("issuance", schema=None) as batch_op:
        batch_op.create_check_constraint("ck_issuance_status", ISSUANCE)


def downgrade() -> None:
    with op.batch_alter_table("issuance", schema=None) as batch_op:
        batch_op.drop_constraint("ck_issuance_status", type_="check")
    with op.batch_alter_table("fieldhistory", schema=None) as batch_op:
        batch_op.drop_constraint("ck_field_history_valid", type_="check")
    with op.batch_alter_table("promotion", schema=None) as batch_op:
        batch_op.drop_column("keys_refreshed")
    op.drop_table("sourcecredential")
