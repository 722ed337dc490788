"""the change feed's and issuances' CHECKs written as OR-ed comparisons instead of IN lists

SQLite builds a temporary index for an `IN (...)` list each time a statement runs: every change
numbered in the feed (one per field a load or promotion writes) paid for it. The audit log and
conflicts keep theirs (one row per read or per conflict; rebuilding the audit tables would drop
their append-only triggers).

Revision ID: master_0007
Revises: master_0006
Create Date: 2026-11-30 08:00:00
"""

from collections.abc import Sequence

from alembic import op

from govdb.store.states import in_list, one_of, rewrite_checks

revision: str = "master_0007"
down_revision: str | None = "master_0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHECKS = (
    ("masterchange", "ck_change_op", "op", ("insert", "update", "delete")),
    ("issuance", "ck_issuance_status", "status", ("offered", "accepted", "declined", "delivered")),
)


def upgrade() -> None:
    rewrite_checks(op, CHECKS, one_of)


def downgrade() -> None:
    rewrite_checks(op, CHECKS, in_list)
