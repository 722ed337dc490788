"""queues in one index each: a unit's tasks (unit_id, state, task_id), proposals by state and age

A clerk's list is "this unit's open tasks, oldest first". With one index on `unit_id` and one on
`state`, SQLite walked every open task of the county in id order to find one unit's first few (a
county with 1.6M tasks lists a village's 20 after reading up to all the open ones); the composite
index reads exactly the unit's open tasks in order. It replaces the index on `unit_id` alone, whose
look-ups it serves as its first column. Likewise `promote` reads the approved proposals oldest
first, a chunk at a time: with an index on `state` alone every chunk sorted all the approved
proposals left (680,000 for a county's year, 34 times over); (state, created_at, proposal_id)
hands them over in order and replaces the index on `state`. No data changes.

Revision ID: events_0009
Revises: events_0008
Create Date: 2026-11-30 12:15:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "events_0009"
down_revision: str | None = "events_0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_task_queue", "task", ["unit_id", "state", "task_id"], unique=False)
    op.drop_index("ix_task_unit_id", table_name="task")
    op.create_index("ix_proposal_queue", "proposal", ["state", "created_at", "proposal_id"], unique=False)
    op.drop_index("ix_proposal_state", table_name="proposal")


def downgrade() -> None:
    op.create_index("ix_proposal_state", "proposal", ["state"], unique=False)
    op.drop_index("ix_proposal_queue", table_name="proposal")
    op.create_index("ix_task_unit_id", "task", ["unit_id"], unique=False)
    op.drop_index("ix_task_queue", table_name="task")
