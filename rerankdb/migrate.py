"""Alembic glue: the programmatic upgrade used by ``rerankdb migrate``, and the
helpers with which revisions apply their ``sql/`` files.

Revisions are thin: each applies ``.sql`` files in a fixed order through
:class:`RevisionSql`, which knows where each file lives:

* ``sql/revisions/NNNN/<step>.sql``: the tables and indexes revision NNNN
  creates (``up``) and removes (``down``); frozen once released.
* ``sql/functions/<object>.sql``: the replaceable objects (functions,
  views) as head installs them, ``create or replace``, one per file.
* ``sql/revisions/NNNN/functions/<object>.sql``: the version of an object
  that revision NNNN shipped, kept there once a later revision changed it.

``RevisionSql("NNNN").function(name)`` applies revision NNNN's own version:
its frozen copy if there is one, else the live file.  What every released
revision applies is locked by SHA-256 in ``sql/revisions/released.lock``
(:mod:`rerankdb.sqllock`), and a test fails when a locked file changes, so a
revision installs, and downgrades to, exactly what it shipped.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TextIO

from alembic import command, context, op
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, pool, text
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import CreateTable
from sqlalchemy.sql.compiler import DDLCompiler

from rerankdb import sqlfiles
from rerankdb.config import Settings, parse_dim, parse_storage
from rerankdb.db import sqlalchemy_url
from rerankdb.errors import ConfigError

VERSION_TABLE = "rerankdb_alembic_version"
Q = sqlfiles.queries("migrate")


@compiles(CreateTable, "postgresql")
def _create_table(create: CreateTable, compiler: DDLCompiler, **kw: object) -> str:
    """``create table if not exists`` for the version table.

    The offline (``--sql``) script from base creates the version table, but
    ``downgrade base`` leaves it in place (empty): without ``if not exists``
    the script fails on such a database.  Online, Alembic checks first anyway.
    """
    if create.element.name == VERSION_TABLE and create.element.schema is None:
        create = CreateTable(create.element, if_not_exists=True)
    ddl: str = compiler.visit_create_table(create, **kw)  # type: ignore[no-untyped-call]
    return ddl


def alembic_config(
    url: str | None = None,
    dim: int | None = None,
    stdout: TextIO | None = None,
    storage: str | None = None,
) -> Config:
    """An Alembic Config for rerankdb's scripts; no alembic.ini needed."""
    cfg = Config(stdout=stdout, output_buffer=stdout) if stdout is not None else Config()
    cfg.set_main_option("script_location", str(sqlfiles.migrations_dir()))
    cfg.attributes["rerankdb_url"] = url
    cfg.attributes["rerankdb_dim"] = dim
    cfg.attributes["rerankdb_storage"] = storage
    return cfg


def upgrade(url: str, *, revision: str = "head", dim: int | None = None, storage: str | None = None) -> None:
    command.upgrade(alembic_config(url, dim, storage=storage), revision)


def upgrade_sql(*, revision: str = "head", dim: int | None = None, storage: str | None = None) -> str:
    """The offline (``--sql``) script for base -> ``revision``, as a string."""
    out = io.StringIO()
    command.upgrade(alembic_config(None, dim, stdout=out, storage=storage), revision, sql=True)
    return out.getvalue()


def downgrade(url: str, *, revision: str = "base", cascade: bool = False) -> None:
    """Downgrade to ``revision``.  To base, it refuses while objects outside rerankdb depend on
    it, unless ``cascade`` (as ``alembic -x cascade=true downgrade base``), which drops them too."""
    cfg = alembic_config(url)
    if cascade:
        cfg.cmd_opts = argparse.Namespace(x=["cascade=true"])
    command.downgrade(cfg, revision)


def downgrade_sql(*, revision: str = "base") -> str:
    """The offline script for head -> ``revision``, as a string."""
    out = io.StringIO()
    command.downgrade(alembic_config(None, stdout=out), f"head:{revision}", sql=True)
    return out.getvalue()


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


def explicit_storage() -> tuple[str, str] | None:
    """The storage asked for and who asked (``-x storage``, ``--storage``, RERANKDB_STORAGE)."""
    for raw, source in (
        (context.get_x_argument(as_dictionary=True).get("storage"), "-x storage"),
        (context.config.attributes.get("rerankdb_storage"), "--storage"),
        (os.environ.get("RERANKDB_STORAGE") or None, "RERANKDB_STORAGE"),
    ):
        if raw is not None:
            return parse_storage(raw, source), source
    return None


def install_storage() -> str:
    """How revision 0008 stores item text vectors: what was asked, else 'vector'."""
    asked = explicit_storage()
    return "vector" if asked is None else asked[0]


@dataclass(frozen=True)
class Applied:
    """One file a revision applied: whose step it is, what it is, and its content's hash."""

    owner: str  # the revision that shipped it
    kind: str  # "schema" (sql/revisions/NNNN/<name>.sql) or "function" (a replaceable object)
    name: str
    path: str  # relative to sql/
    sha256: str


_recording: list[Applied] | None = None


@contextmanager
def recording() -> Iterator[list[Applied]]:
    """Collect every file revisions apply inside the block (offline runs included)."""
    global _recording
    previous, _recording = _recording, []
    try:
        yield _recording
    finally:
        _recording = previous


class RevisionSql:
    """The SQL files of one revision (see the module docstring for the layout)."""

    def __init__(self, revision: str) -> None:
        self.revision = revision

    def schema(self, step: str) -> None:
        """Apply ``sql/revisions/<revision>/<step>.sql`` (tables, indexes; frozen once released)."""
        self._apply("schema", step, f"revisions/{self.revision}/{step}.sql")

    def function(self, name: str) -> None:
        """Apply this revision's version of replaceable object ``name``."""
        self._apply("function", name, function_path(self.revision, name))

    def _apply(self, kind: str, name: str, relative: str) -> None:
        sql = sqlfiles.read_sql(relative)
        if _recording is not None:
            digest = hashlib.sha256(sql.encode("utf-8")).hexdigest()
            _recording.append(Applied(self.revision, kind, name, relative, digest))
        apply_sql_text(sql)


def function_path(revision: str, name: str) -> str:
    """Where revision ``revision``'s version of ``name`` lives, relative to ``sql/``."""
    frozen = f"revisions/{revision}/functions/{name}.sql"
    return frozen if (sqlfiles.sql_dir() / frozen).is_file() else f"functions/{name}.sql"


def explicit_dim() -> tuple[int, str] | None:
    """The dimension asked for and who asked (``-x dim``, ``--dim``, RERANKDB_DIM); None: nobody."""
    raw = context.get_x_argument(as_dictionary=True).get("dim")
    if raw is not None:
        return parse_dim(raw, "-x dim"), "-x dim"
    given = context.config.attributes.get("rerankdb_dim")
    if given is not None:
        return parse_dim(given, "--dim"), "--dim"
    env = os.environ.get("RERANKDB_DIM")
    if env:
        return parse_dim(env, "RERANKDB_DIM"), "RERANKDB_DIM"
    return None


def lock_migrations(connection: Connection) -> None:
    """Wait until no other migration runs on this database; held until ``connection`` closes.

    Without it, migrations that start together on a fresh database both
    install the schema and the second fails on a duplicate key.  Once the
    first is done, the second finds the schema at its revision and does nothing.
    """
    connection.execute(text(Q["lock"]))
    connection.commit()


def check_installed_dim(connection: Connection) -> None:
    """Refuse a dimension that differs from the one installed (it is fixed at install)."""
    asked = explicit_dim()
    if asked is None:
        return
    installed = connection.execute(text(Q["is_installed"])).scalar()
    row = connection.execute(text(Q["installed_dim"])).fetchone() if installed else None
    connection.commit()
    if row is not None and int(row[0]) != asked[0]:
        raise ConfigError(
            f"{asked[1]} asks for dimension {asked[0]}, but rerankdb is installed in this database with "
            f"dimension {row[0]}: the dimension is fixed at install (use another database, or remove "
            "rerankdb first with `alembic downgrade base`); nothing was changed"
        )


def check_installed_storage(connection: Connection) -> None:
    """Refuse a storage that differs from the one installed (it is chosen at install)."""
    asked = explicit_storage()
    if asked is None:
        return
    installed = connection.execute(text(Q["is_installed"])).scalar()
    row = connection.execute(text(Q["installed_storage"])).fetchone() if installed else None
    connection.commit()
    if row is not None and row[0] is not None and row[0] != asked[0]:
        raise ConfigError(
            f"{asked[1]} asks for {asked[0]} storage, but rerankdb is installed in this database with "
            f"{row[0]}: the storage is chosen when revision 0008 is applied (reinstall in another "
            "database, or downgrade to 0007 and upgrade again); nothing was changed"
        )


def guard_dependents() -> None:
    """Refuse to remove the schema while objects outside it depend on it (unless -x cascade=true).

    Run by revision 0001's downgrade before it drops the schema with CASCADE,
    which would silently take the application's views and foreign keys along.
    """
    cascade = context.get_x_argument(as_dictionary=True).get("cascade", "false").lower()
    if cascade in ("true", "yes", "1", "on"):
        return
    apply_sql_text(sqlfiles.read_sql("guards/dependents.sql"))


def run_guard(name: str) -> None:
    """Run ``sql/guards/<name>.sql`` in the migration's transaction (env.py, online or offline)."""
    sql = sqlfiles.read_sql(f"guards/{name}.sql")
    mc = context.get_context()
    if context.is_offline_mode():
        mc.impl.static_output(sql.rstrip() + "\n")
    else:
        assert mc.connection is not None
        driver = mc.connection.connection.driver_connection
        assert driver is not None
        driver.execute(sql)


def apply_sql_text(sql: str) -> None:
    """Run a whole SQL file as it is (several statements, no parameters)."""
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
