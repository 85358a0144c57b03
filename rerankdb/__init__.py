"""rerankdb: PostgreSQL + pgvector as a real-time personalized reranker.

Applications insert items and interactions and call ``rerankdb.rerank`` in
SQL; :class:`Client` is the thin Python layer over the same functions.
"""

from __future__ import annotations

from rerankdb.client import Client, Interaction, Item, Ranked, Reason, Status
from rerankdb.errors import (
    ConfigError,
    DatabaseUnavailableError,
    DimensionMismatchError,
    EmbeddedServerError,
    InvalidInputError,
    RerankdbError,
    SchemaNotInstalledError,
    UnknownKindError,
)

__version__ = "0.1.0"

__all__ = [
    "Client",
    "ConfigError",
    "DatabaseUnavailableError",
    "DimensionMismatchError",
    "EmbeddedServerError",
    "Interaction",
    "InvalidInputError",
    "Item",
    "Ranked",
    "Reason",
    "RerankdbError",
    "SchemaNotInstalledError",
    "Status",
    "UnknownKindError",
]
