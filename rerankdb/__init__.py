"""rerankdb: PostgreSQL + pgvector as a real-time personalized reranker.

Applications insert items and interactions and call ``rerankdb.rerank`` in
SQL; :class:`Client` (and :class:`AsyncClient`, for asyncio) is the thin Python
layer over the same functions.
"""

from __future__ import annotations

from rerankdb.async_client import AsyncClient
from rerankdb.client import Client, Interaction, Item, Ranked, Reason, Status, WorkerRow
from rerankdb.errors import (
    ConfigError,
    DatabaseUnavailableError,
    DimensionMismatchError,
    EmbeddedServerError,
    InvalidInputError,
    PermissionDeniedError,
    RerankdbError,
    SchemaNotInstalledError,
    UnknownKindError,
)

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "Client",
    "ConfigError",
    "DatabaseUnavailableError",
    "DimensionMismatchError",
    "EmbeddedServerError",
    "Interaction",
    "InvalidInputError",
    "Item",
    "PermissionDeniedError",
    "Ranked",
    "Reason",
    "RerankdbError",
    "SchemaNotInstalledError",
    "Status",
    "UnknownKindError",
    "WorkerRow",
]
