"""Alembic environment shared by both stores; the caller passes the connection and store name."""

from __future__ import annotations

from alembic import context

from govdb.store.events import EventModel
from govdb.store.master import MasterModel

config = context.config
store = config.attributes.get("store", "master")
target_metadata = MasterModel.metadata if store == "master" else EventModel.metadata
version_table = f"alembic_version_{store}"


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
        version_table=version_table,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        version_table=version_table,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
