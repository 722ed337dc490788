"""drop task.state's own index

Every decision moves two tasks between states (the one decided, the next one opened), and
`ix_task_state` (state, task_id) took each move as a delete and an insert at two random places:
a batch of 66 village decisions dirtied 58 of its 16 KiB pages, 29% of the pages the batch wrote
(benchmarks/RESULTS.md, issue 10). No query needs it: a unit's queue is read off `ix_task_queue`
(unit_id, state, task_id), and the listing of every unit's open tasks walks the table in task
order and stops at its limit. No data changes.

Revision ID: events_0012
Revises: events_0011
Create Date: 2026-12-01 16:20:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "events_0012"
down_revision: str | None = "events_0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_task_state", table_name="task")


def downgrade() -> None:
    op.create_index("ix_task_state", "task", ["state"], unique=False)
