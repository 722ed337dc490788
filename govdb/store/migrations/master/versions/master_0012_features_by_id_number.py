"""stored features indexed by the ID number they hold, then person

Under the `different_valid_ids` hard rule a look-up of a record with an ID number can choose only
candidates whose features hold that number or none. It read every candidate's features to find
them: a village's common given name is hundreds of people, each row at a random place (7-9 ms
of a look-up at a million people). `ix_linkfeatures_id_number` on (the number, person_id) gives
the holders of a number, and which candidates hold none, from the index alone. No data changes.

Revision ID: master_0012
Revises: master_0011
Create Date: 2026-12-02 13:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "master_0012"
down_revision: str | None = "master_0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As govdb.store.master.FEATURE_ID_NUMBER spells them when this revision was written: a row govdb
# never wrote (malformed JSON on SQLite, an "ID number" of thousands of characters on PostgreSQL)
# fails neither the build nor a later write. A PostgreSQL row whose number holds the escape of a
# NUL (\u0000) cannot be read as text at all: the build fails naming that error, and the row must
# be mended (the look-ups it was a candidate in failed on it before this revision too).
ID_NUMBER = {
    "sqlite": "CASE WHEN json_valid(features) THEN json_extract(features, '$.id_number') END",
    "postgresql": "left(features ->> 'id_number'::text, 64)",
}


def upgrade() -> None:
    expression = ID_NUMBER[op.get_bind().dialect.name]
    op.create_index("ix_linkfeatures_id_number", "linkfeatures", [sa.text(expression), "person_id"])


def downgrade() -> None:
    op.drop_index("ix_linkfeatures_id_number", table_name="linkfeatures")
