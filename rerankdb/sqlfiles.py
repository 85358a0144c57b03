"""Locate the SQL files and Alembic scripts, in a checkout or an installed wheel.

In a source checkout they live at the top level (``sql/``, ``migrations/``);
a built wheel carries them inside the package as ``_sql`` and ``_migrations``.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _find(installed: str, checkout: str) -> Path:
    inside = _PACKAGE / installed
    return inside if inside.is_dir() else _PACKAGE.parent / checkout


def sql_dir() -> Path:
    return _find("_sql", "sql")


def migrations_dir() -> Path:
    return _find("_migrations", "migrations")


def read_sql(relative: str) -> str:
    """Text of ``sql/<relative>``, e.g. ``read_sql("functions/rerank.sql")``."""
    return (sql_dir() / relative).read_text(encoding="utf-8")
