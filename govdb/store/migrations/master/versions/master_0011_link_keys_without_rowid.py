"""link keys clustered by their primary key on SQLite (WITHOUT ROWID)

`linkkey` was a rowid table: each key row lived in three B-trees (the table, its primary key
(key, person_id) and the index by person), and reading a person's keys by that index went to
the table for each key. Clustered by its primary key the row lives in two, and the index by
person holds the key (a look-up of a person's keys reads the index alone): a promote re-keying
the people it changes writes a third fewer pages. PostgreSQL has no such table option; nothing
changes there. The rows are copied in key order; on SQLite DDL is transactional, so a failure
leaves the table as it was.

Revision ID: master_0011
Revises: master_0010
Create Date: 2026-12-01 19:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "master_0011"
down_revision: str | None = "master_0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _rebuild(without_rowid: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    option = " WITHOUT ROWID" if without_rowid else ""
    op.execute(
        'CREATE TABLE linkkey_rebuilt ("key" VARCHAR(192) NOT NULL, person_id VARCHAR(32) NOT NULL, '
        f'PRIMARY KEY ("key", person_id)){option}'
    )
    op.execute('INSERT INTO linkkey_rebuilt SELECT "key", person_id FROM linkkey ORDER BY "key", person_id')
    op.execute("DROP TABLE linkkey")
    op.execute("ALTER TABLE linkkey_rebuilt RENAME TO linkkey")
    op.execute("CREATE INDEX ix_linkkey_person_id ON linkkey (person_id)")


def upgrade() -> None:
    _rebuild(without_rowid=True)


def downgrade() -> None:
    _rebuild(without_rowid=False)
