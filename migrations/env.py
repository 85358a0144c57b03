"""Alembic environment for rerankdb.

Target database, in order: ``-x url=...``, the URL given programmatically
(``rerankdb migrate``), ``RERANKDB_DATABASE_URL``, else the embedded server.
Offline (``--sql``) needs no database at all.  The version table is
``public.rerankdb_alembic_version`` so that it never collides with the
application's own Alembic history and survives ``downgrade base``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from rerankdb.config import Settings
from rerankdb.db import sqlalchemy_url
from rerankdb.embedded import resolve_url
from rerankdb.migrate import (
    VERSION_TABLE,
    check_installed_dim,
    check_installed_storage,
    install_dim,
    lock_migrations,
    run_guard,
)
from rerankdb.schema import build_metadata

config = context.config


def target_url() -> str:
    x = context.get_x_argument(as_dictionary=True)
    return x.get("url") or config.attributes.get("rerankdb_url") or resolve_url(Settings.from_env())


def run_offline() -> None:
    context.configure(
        dialect_name="postgresql",
        literal_binds=True,
        version_table=VERSION_TABLE,
        target_metadata=build_metadata(install_dim()),
    )
    with context.begin_transaction():
        run_migrations()


def run_migrations() -> None:
    """The revisions, between the guards that find pgvector in any schema."""
    run_guard("vector_schema_before")
    context.run_migrations()
    run_guard("vector_schema_after")


def run_online() -> None:
    engine = create_engine(sqlalchemy_url(target_url()), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            lock_migrations(connection)
            check_installed_dim(connection)
            check_installed_storage(connection)
            context.configure(
                connection=connection,
                version_table=VERSION_TABLE,
                target_metadata=build_metadata(install_dim()),
            )
            with context.begin_transaction():
                run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
