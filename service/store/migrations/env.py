"""Alembic environment: run against the connection handed over by service.store.migrate."""

from __future__ import annotations

from alembic import context

from service.store.models import Base

connection = context.config.attributes["connection"]
# our own version table: the database may be shared with Optuna or MLflow, which keep theirs
# in Alembic's default "alembic_version"
context.configure(
    connection=connection, target_metadata=Base.metadata, version_table="pcd_alembic_version"
)
with context.begin_transaction():
    context.run_migrations()
