"""Locate and load the SQL files: ``sql/`` in a checkout, ``_sql`` in a wheel.

In a source checkout they live at the top level (``sql/``, ``migrations/``);
a built wheel carries them inside the package as ``_sql`` and ``_migrations``.

Every statement the Python code sends lives in ``sql/queries/<module>.sql``,
one named section per statement (procrastinate's layout)::

    -- name: claim_interactions
    -- What it does and why (these leading comment lines are not sent).
    select ... limit %(limit)s for update skip locked

:func:`queries` loads a file once and returns its statements by name.
Statements take psycopg's ``%(name)s`` parameters; a literal ``%`` in a
statement with parameters is written ``%%``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_NAME = re.compile(r"^-- name: ([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


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


class Queries(Mapping[str, str]):
    """The named statements of one ``sql/queries/*.sql`` file."""

    def __init__(self, file: str, statements: dict[str, str]) -> None:
        self.file = file
        self._statements = statements

    def __getitem__(self, name: str) -> str:
        try:
            return self._statements[name]
        except KeyError:
            raise KeyError(f"no query named {name!r} in {self.file}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._statements)

    def __len__(self) -> int:
        return len(self._statements)


def parse_queries(text: str, file: str = "<string>") -> Queries:
    """Split a queries file into its named statements (see the module docstring)."""
    parts = _NAME.split(text)
    statements: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in statements:
            raise ValueError(f"{file}: query {name!r} is defined twice")
        lines = body.strip().splitlines()
        while lines and lines[0].lstrip().startswith("--"):  # its description
            lines.pop(0)
        statement = "\n".join(lines).strip().removesuffix(";").rstrip()
        if not statement:
            raise ValueError(f"{file}: query {name!r} is empty")
        statements[name] = statement
    return Queries(file, statements)


@functools.cache
def queries(module: str) -> Queries:
    """The statements of ``sql/queries/<module>.sql``, loaded once."""
    relative = f"queries/{module}.sql"
    return parse_queries(read_sql(relative), f"sql/{relative}")
