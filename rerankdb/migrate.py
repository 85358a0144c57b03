"""Alembic glue: the programmatic upgrade used by ``rerankdb migrate`` and the
helpers that revisions use to apply the ``sql/`` files.

Revisions are thin: each applies ``.sql`` files in a fixed order.  Table and
index files (``sql/schema/NNNN_*.sql``) are frozen with their revision;
functions (``sql/functions/*.sql``) are ``create or replace`` and are applied
again by any later revision that changes them.
"""

from __future__ import annotations

import io
from typing import TextIO

from alembic import command, context, op
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool, text

from rerankdb.config import Settings, parse_dim
from rerankdb.db import sqlalchemy_url
from rerankdb.sqlfiles import migrations_dir, read_sql

VERSION_TABLE = "rerankdb_alembic_version"


def alembic_config(url: str | None = None, dim: int | None = None, stdout: TextIO | None = None) -> Config:
    """An Alembic Config for rerankdb's scripts; no alembic.ini needed."""
    cfg = Config(stdout=stdout, output_buffer=stdout) if stdout is not None else Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.attributes["rerankdb_url"] = url
    cfg.attributes["rerankdb_dim"] = dim
    return cfg


def upgrade(url: str, *, revision: str = "head", dim: int | None = None) -> None:
    command.upgrade(alembic_config(url, dim), revision)


def upgrade_sql(*, revision: str = "head", dim: int | None = None) -> str:
    """The offline (``--sql``) script for base -> ``revision``, as a string."""
    out = io.StringIO()
    command.upgrade(alembic_config(None, dim, stdout=out), revision, sql=True)
    return out.getvalue()


def downgrade(url: str, *, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "migrations/versions has no revision"
    return head


def current_revision(url: str) -> str | None:
    engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            return ctx.get_current_revision()
    finally:
        engine.dispose()


# --- helpers for revisions ---------------------------------------------------


def install_dim() -> int:
    """The dimension to install with: ``-x dim=``, then the caller's, then RERANKDB_DIM."""
    cfg = context.config
    raw = context.get_x_argument(as_dictionary=True).get("dim")
    if raw is not None:
        return parse_dim(raw, "-x dim")
    given = cfg.attributes.get("rerankdb_dim")
    if given is not None:
        return parse_dim(given, "dim")
    return Settings.from_env().dim


def apply_sql(relative: str) -> None:
    """Run ``sql/<relative>`` as it is (several statements, no parameters)."""
    sql = read_sql(relative)
    if context.is_offline_mode():
        # Emitted verbatim; TextClause would treat ':name' and '%' specially.
        context.get_context().impl.static_output(sql.rstrip() + "\n")
    else:
        # Straight to psycopg, without parameters: '%' in the SQL stays as written.
        driver = op.get_bind().connection.driver_connection
        assert driver is not None
        driver.execute(sql)


def execute(sql: str, **params: object) -> None:
    """Run one statement with bound parameters (rendered as literals offline)."""
    op.execute(text(sql).bindparams(**params))
