"""Alembic environment: run against the connection handed over by service.store.migrate."""

from __future__ import annotations

from alembic import context

from service.store.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata)
with context.begin_transaction():
    context.run_migrations()
