"""Alembic environment: runs on the connection `service.core.db.migrate.upgrade` hands it, or on
`sqlalchemy.url` when alembic is driven from its own command line."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from service.core.db.models import Base

config = context.config


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    # render_as_batch: SQLite cannot ALTER most things, so Alembic rebuilds its tables instead.
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True,
                      compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("alembic: set sqlalchemy.url in the config (or run through service.core.db.migrate)")
    engine = create_engine(url)
    with engine.begin() as conn:
        _run(conn)
