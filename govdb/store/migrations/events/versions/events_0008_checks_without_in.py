"""state CHECKs written as OR-ed comparisons instead of IN lists

SQLite builds a temporary index for an `IN (...)` list each time a statement runs, so the CHECK on
`event.status` alone cost a bulk insert about 3.7 us a row, a third of ingest's insert. The same
states, written `status = 'received' OR status = 'invalid' ...`, cost nothing measurable. SQLite
rebuilds each table to change a CHECK (alembic batch mode; indexes are kept).

Revision ID: events_0008
Revises: events_0007
Create Date: 2026-11-30 08:00:00
"""

from collections.abc import Sequence

from alembic import op

from govdb.store.states import in_list, one_of, rewrite_checks

revision: str = "events_0008"
down_revision: str | None = "events_0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, constraint, column, values) as of this revision
CHECKS = (
    (
        "event",
        "ck_event_status",
        "status",
        (
            "received",
            "invalid",
            "standardized",
            "identity_review",
            "unlinked",
            "confirmed",
            "proposed",
            "rejected",
            "returned",
            "promoted",
        ),
    ),
    (
        "proposal",
        "ck_proposal_state",
        "state",
        ("pending", "approved", "rejected", "returned", "unroutable", "resolved", "promoted", "reverted"),
    ),
    ("task", "ck_task_state", "state", ("waiting", "open", "approved", "rejected", "returned", "cancelled")),
    ("decision", "ck_decision_outcome", "outcome", ("approve", "reject", "amend", "return")),
)


def upgrade() -> None:
    rewrite_checks(op, CHECKS, one_of)


def downgrade() -> None:
    rewrite_checks(op, CHECKS, in_list)
