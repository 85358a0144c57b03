"""Connections: URL resolution, pgvector type registration, pooling."""

from __future__ import annotations

import struct
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg.adapt import Dumper
from psycopg_pool import ConnectionPool

from rerankdb import embedded
from rerankdb.config import Settings
from rerankdb.errors import ConfigError, SchemaNotInstalledError


def resolve_url(settings: Settings) -> str:
    """The configured database URL, or the embedded server's (started if needed)."""
    if settings.database_url:
        return settings.database_url
    return embedded.start(settings.home)


def sqlalchemy_url(url: str) -> str:
    """Turn a libpq URL into one SQLAlchemy resolves to the psycopg 3 driver."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise ConfigError(f"database URL must start with postgresql://, got {url.split(':', 1)[0]}://...")


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` instead (query string kept)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def libpq_url(url: str) -> str:
    """Inverse of :func:`sqlalchemy_url`: a URL psycopg accepts."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


class BigintArray:
    """A 1-d array of ids sent to PostgreSQL as a binary ``bigint[]`` in one copy.

    psycopg's generic list adaptation inspects every element in Python; for the
    candidate lists of ``rerank`` (up to 100,000 ids) this is the main client cost.
    """

    __slots__ = ("values",)

    def __init__(self, values: np.ndarray) -> None:
        self.values = np.ascontiguousarray(values, dtype=np.int64)


_INT8_OID = 20


class BigintArrayDumper(Dumper):
    format = psycopg.pq.Format.BINARY
    oid = 1016  # bigint[]

    def dump(self, obj: BigintArray) -> bytes:
        n = len(obj.values)
        if n == 0:  # ndim 0: the empty array
            return struct.pack("!iii", 0, 0, _INT8_OID)
        body = np.empty(n, dtype=[("len", ">i4"), ("val", ">i8")])
        body["len"] = 8
        body["val"] = obj.values
        return struct.pack("!iiiii", 1, 0, _INT8_OID, n, 1) + body.tobytes()


def register_types(conn: psycopg.Connection[Any]) -> None:
    """Register pgvector's types on ``conn``; explain if the schema is missing."""
    conn.adapters.register_dumper(BigintArray, BigintArrayDumper)
    try:
        register_vector(conn)
    except psycopg.ProgrammingError as exc:  # TypeInfo for 'vector' not found
        raise SchemaNotInstalledError(
            "the database has no pgvector extension yet: run `rerankdb migrate` "
            "(or `alembic upgrade head`) first"
        ) from exc
    # register_vector runs catalog queries; leave no transaction open behind it.
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        conn.rollback()


def connect(url: str, *, autocommit: bool = False) -> psycopg.Connection[Any]:
    conn = psycopg.connect(libpq_url(url), autocommit=autocommit)
    register_types(conn)
    return conn


def make_pool(url: str, *, min_size: int = 1, max_size: int = 4) -> ConnectionPool[Any]:
    # Autocommit: a read is one round trip (no BEGIN, and no ROLLBACK when the
    # connection goes back to the pool); writes open `conn.transaction()`.
    pool: ConnectionPool[Any] = ConnectionPool(
        libpq_url(url),
        min_size=min_size,
        max_size=max_size,
        kwargs={"autocommit": True},
        configure=register_types,
        open=False,
    )
    pool.open(wait=True, timeout=30)
    return pool
