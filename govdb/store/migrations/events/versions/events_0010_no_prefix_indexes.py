"""drop indexes whose column leads a unique constraint of the same table

`proposal.event_id`, `task.proposal_id` and `decision.task_id` each had an index of their own
besides the unique constraint that starts with the same column (uq_proposal_event_change,
uq_task_step, uq_decision_task_round). Both databases look a leading column up through the
constraint's index, foreign-key checks included, so the single-column indexes only cost a write
for every proposal, task and decision (a county's process writes millions). No data changes.

Revision ID: events_0010
Revises: events_0009
Create Date: 2026-12-01 03:50:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "events_0010"
down_revision: str | None = "events_0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_proposal_event_id", table_name="proposal")
    op.drop_index("ix_task_proposal_id", table_name="task")
    op.drop_index("ix_decision_task_id", table_name="decision")


def downgrade() -> None:
    op.create_index("ix_decision_task_id", "decision", ["task_id"], unique=False)
    op.create_index("ix_task_proposal_id", "task", ["proposal_id"], unique=False)
    op.create_index("ix_proposal_event_id", "proposal", ["event_id"], unique=False)
