"""drop indexes whose column leads a unique constraint of the same table

`credential.kind` and `issuance.programme` each had an index of their own besides the unique
constraint that starts with the same column (uq_credential_kind_number, uq_issuance_once), which
serves every look-up by it; the single-column indexes only cost a write for every credential
promoted and every issuance a programme run records. No data changes.

Revision ID: master_0010
Revises: master_0009
Create Date: 2026-12-01 03:50:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "master_0010"
down_revision: str | None = "master_0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_credential_kind", table_name="credential")
    op.drop_index("ix_issuance_programme", table_name="issuance")


def downgrade() -> None:
    op.create_index("ix_issuance_programme", "issuance", ["programme"], unique=False)
    op.create_index("ix_credential_kind", "credential", ["kind"], unique=False)
