"""enterprises and places as master entities, and people's and enterprises' places

An enterprise keeps its phone, business scope and registration status beside its name, legal
representative and address; a place (a building at a standardized address, or a named road) has
a name, road and building; people and enterprises reference the master place at their
standardized address (set at promotion, nullable).

Revision ID: master_0006
Revises: master_0005
Create Date: 2026-11-30 04:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "master_0006"
down_revision: str | None = "master_0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _text(name: str, length: int) -> sa.Column:
    return sa.Column(name, sqlmodel.sql.sqltypes.AutoString(length=length), nullable=True)


def upgrade() -> None:
    with op.batch_alter_table("enterprise", schema=None) as batch_op:
        batch_op.add_column(_text("phone", 32))
        batch_op.add_column(_text("business_scope", 2000))
        batch_op.add_column(_text("status", 32))
        batch_op.add_column(_text("place_id", 32))
        batch_op.create_index(batch_op.f("ix_enterprise_place_id"), ["place_id"], unique=False)
    with op.batch_alter_table("place", schema=None) as batch_op:
        batch_op.add_column(_text("name", 128))
        batch_op.add_column(_text("road", 128))
        batch_op.add_column(_text("building", 128))
        batch_op.add_column(
            sa.Column(
                "updated_at",
                sqlmodel.sql.sqltypes.UTCDateTime(),
                nullable=False,
                server_default=sa.text("CURRENT_TIMESTAMP"),
            )
        )
        batch_op.create_index(batch_op.f("ix_place_address"), ["address"], unique=False)
    with op.batch_alter_table("person", schema=None) as batch_op:
        batch_op.add_column(_text("place_id", 32))
        batch_op.create_index(batch_op.f("ix_person_place_id"), ["place_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("person", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_person_place_id"))
        batch_op.drop_column("place_id")
    with op.batch_alter_table("place", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_place_address"))
        for column in ("updated_at", "building", "road", "name"):
            batch_op.drop_column(column)
    with op.batch_alter_table("enterprise", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_enterprise_place_id"))
        for column in ("place_id", "status", "business_scope", "phone"):
            batch_op.drop_column(column)
