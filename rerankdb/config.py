"""Settings, read once from ``RERANKDB_*`` environment variables.

==========================  ===================================================
``RERANKDB_DATABASE_URL``   PostgreSQL URL; unset means the embedded server
``RERANKDB_HOME``           where the embedded server keeps its data
                            (default ``~/.local/share/rerankdb``)
``RERANKDB_DIM``            vector dimension used when the schema is installed
                            (default 384, the default encoder's)
==========================  ===================================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rerankdb.errors import ConfigError

DEFAULT_DIM = 384
MAX_DIM = 2000  # pgvector's HNSW limit for the `vector` type


def _default_home(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "rerankdb"


def parse_dim(raw: str | int, source: str) -> int:
    """Return a valid vector dimension or raise ConfigError naming ``source``."""
    try:
        dim = int(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{source} must be an integer, got {raw!r}") from None
    if not 1 <= dim <= MAX_DIM:
        raise ConfigError(f"{source} must be between 1 and {MAX_DIM}, got {dim}")
    return dim


@dataclass(frozen=True)
class Settings:
    """Process-wide settings; build with :meth:`from_env`."""

    database_url: str | None = None
    home: Path = field(default_factory=lambda: _default_home(os.environ))
    dim: int = DEFAULT_DIM

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        url = env.get("RERANKDB_DATABASE_URL") or None
        home = Path(env["RERANKDB_HOME"]) if env.get("RERANKDB_HOME") else _default_home(env)
        dim = parse_dim(env["RERANKDB_DIM"], "RERANKDB_DIM") if env.get("RERANKDB_DIM") else DEFAULT_DIM
        return cls(database_url=url, home=home.expanduser(), dim=dim)
