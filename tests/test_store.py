"""The stores: migrations build exactly the schema the table models declare, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from govdb import GovDB
from govdb.store.events import EventModel
from govdb.store.master import MasterModel


def test_migrations_build_the_schema_the_models_declare(db: GovDB) -> None:
    for engine, metadata, store in (
        (db.master, MasterModel.metadata, "master"),
        (db.events, EventModel.metadata, "events"),
    ):
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": False})
            differences = [
                d
                for d in compare_metadata(context, metadata)
                if not (d[0] == "remove_table" and d[1].name == f"alembic_version_{store}")
            ]
        assert differences == [], f"{store}: the models and the migrations differ: {differences}"
