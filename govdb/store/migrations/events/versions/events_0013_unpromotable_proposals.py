"""unpromotable proposals: set aside by promote, with why

An approved proposal holding a value master cannot store (a NUL, which PostgreSQL refuses in text;
a lone surrogate; a value wider than its column) failed promote's master transaction, and with it
every later promote. Promote now sets it aside (approved -> unpromotable, the reason kept in its
payload as `_unpromotable`); the proposal state CHECK takes the new state. No data changes.

Revision ID: events_0013
Revises: events_0012
Create Date: 2026-12-02 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from govdb.store.states import one_of, rewrite_checks

revision: str = "events_0013"
down_revision: str | None = "events_0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BEFORE = ("pending", "approved", "rejected", "returned", "unroutable", "resolved", "promoted", "reverted")
# (table, constraint, column, values) as of this revision
CHECKS = (("proposal", "ck_proposal_state", "state", (*BEFORE, "unpromotable")),)


def upgrade() -> None:
    rewrite_checks(op, CHECKS, one_of)


def downgrade() -> None:
    # The older code knows no such state: the proposals go back to approved, as they were.
    op.execute(sa.text("UPDATE proposal SET state = 'approved' WHERE state = 'unpromotable'"))
    rewrite_checks(op, [(t, n, c, BEFORE) for t, n, c, _ in CHECKS], one_of)
