"""checked transitions: state constraints, one decision per task and round, task jurisdiction

Every state column is held to its enum (govdb.store.states); one proposal per event and change;
one decision per task and round (a return reopens a task in a new round); a decision is made by a
named actor or by a rule earned by an authenticated source. Tasks record the place they check
(`division_code`), proposals their county (the partition key), ingest batches the source they
proved to be. Decisions of earlier versions get their rounds numbered in order, and rule decisions
the source `unauthenticated (before checked sources)`.

Revision ID: events_0004
Revises: events_0003
Create Date: 2026-11-29 22:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "events_0004"
down_revision: str | None = "events_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EVENT = (
    "status IN ('received', 'invalid', 'standardized', 'identity_review', 'unlinked', 'confirmed', "
    "'proposed', 'rejected', 'returned', 'promoted')"
)
PROPOSAL = "state IN ('pending', 'approved', 'rejected', 'returned', 'unroutable', 'resolved', 'promoted')"
TASK = "state IN ('waiting', 'open', 'approved', 'rejected', 'returned', 'cancelled')"
OUTCOME = "outcome IN ('approve', 'reject', 'amend', 'return')"
BY_SOMEONE = "(actor_id IS NOT NULL AND actor_id <> '') OR (rule IS NOT NULL AND source IS NOT NULL)"
String = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    with op.batch_alter_table("ingestbatch", schema=None) as batch_op:
        batch_op.add_column(sa.Column("authenticated_source", String(length=128), nullable=True))
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.create_check_constraint("ck_event_status", EVENT)
    with op.batch_alter_table("proposal", schema=None) as batch_op:
        batch_op.add_column(sa.Column("county_code", String(length=6), nullable=True))
        batch_op.create_index("ix_proposal_county_code", ["county_code"], unique=False)
        batch_op.create_unique_constraint("uq_proposal_event_change", ["event_id", "change"])
        batch_op.create_check_constraint("ck_proposal_state", PROPOSAL)
    op.execute(
        "UPDATE proposal SET county_code = substr(division_code, 1, 6) WHERE division_code IS NOT NULL"
    )
    with op.batch_alter_table("task", schema=None) as batch_op:
        batch_op.add_column(sa.Column("division_code", String(length=12), nullable=True))
        batch_op.add_column(sa.Column("round", sa.Integer(), nullable=False, server_default="0"))
        batch_op.create_check_constraint("ck_task_state", TASK)
    op.execute(
        "UPDATE task SET division_code = "
        "(SELECT p.division_code FROM proposal p WHERE p.proposal_id = task.proposal_id)"
    )
    with op.batch_alter_table("decision", schema=None) as batch_op:
        batch_op.add_column(sa.Column("round", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("source", String(length=128), nullable=True))
    op.execute(
        "UPDATE decision SET round = (SELECT count(*) FROM decision d "
        "WHERE d.task_id = decision.task_id AND d.id < decision.id)"
    )
    op.execute("UPDATE task SET round = (SELECT count(*) FROM decision d WHERE d.task_id = task.task_id)")
    op.execute(
        "UPDATE decision SET source = 'unauthenticated (before checked sources)' "
        "WHERE rule IS NOT NULL AND source IS NULL"
    )
    with op.batch_alter_table("decision", schema=None) as batch_op:
        batch_op.create_unique_constraint("uq_decision_task_round", ["task_id", "round"])
        batch_op.create_check_constraint("ck_decision_outcome", OUTCOME)
        batch_op.create_check_constraint("ck_decision_by_someone", BY_SOMEONE)


def downgrade() -> None:
    with op.batch_alter_table("decision", schema=None) as batch_op:
        batch_op.drop_constraint("ck_decision_by_someone", type_="check")
        batch_op.drop_constraint("ck_decision_outcome", type_="check")
        batch_op.drop_constraint("uq_decision_task_round", type_="unique")
        batch_op.drop_column("source")
        batch_op.drop_column("round")
    with op.batch_alter_table("task", schema=None) as batch_op:
        batch_op.drop_constraint("ck_task_state", type_="check")
        batch_op.drop_column("round")
        batch_op.drop_column("division_code")
    with op.batch_alter_table("proposal", schema=None) as batch_op:
        batch_op.drop_constraint("ck_proposal_state", type_="check")
        batch_op.drop_constraint("uq_proposal_event_change", type_="unique")
        batch_op.drop_index("ix_proposal_county_code")
        batch_op.drop_column("county_code")
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.drop_constraint("ck_event_status", type_="check")
    with op.batch_alter_table("ingestbatch", schema=None) as batch_op:
        batch_op.drop_column("authenticated_source")
