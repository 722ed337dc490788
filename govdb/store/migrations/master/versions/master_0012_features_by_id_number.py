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

# As govdb.store.master.FEATURE_ID_NUMBER spells them when this revision was written. No row fails
# the build or a later write: on SQLite malformed JSON is no number; on PostgreSQL `->>` decodes
# the whole json document and fails on the escape of a NUL or a lone surrogate anywhere in it, so
# a function gives no number for such a row (a data exception, class 22, caught), and keeps the
# first 64 characters of a number (a B-tree entry holds at most 2,704 bytes).
ID_NUMBER = {
    "sqlite": "CASE WHEN json_valid(features) THEN json_extract(features, '$.id_number') END",
    "postgresql": "govdb_feature_id_number(features)",
}
FUNCTION = """
CREATE OR REPLACE FUNCTION govdb_feature_id_number(features json) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN left(features ->> 'id_number', 64);
EXCEPTION WHEN data_exception THEN
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(FUNCTION)
    op.create_index("ix_linkfeatures_id_number", "linkfeatures", [sa.text(ID_NUMBER[dialect]), "person_id"])


def downgrade() -> None:
    op.drop_index("ix_linkfeatures_id_number", table_name="linkfeatures")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION govdb_feature_id_number(json)")
