"""Connections: URLs, pgvector type registration, pooling, creating and dropping databases.

The lowest layer that talks to PostgreSQL; which server to use (the
configured URL or the embedded one) is :func:`rerankdb.embedded.resolve_url`'s
choice, above this.
"""

from __future__ import annotations

import struct
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import numpy as np
import psycopg
from pgvector.psycopg.halfvec import register_halfvec_info
from pgvector.psycopg.vector import register_vector_info
from psycopg import sql
from psycopg.adapt import Dumper
from psycopg.types import TypeInfo
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from rerankdb.errors import ConfigError, SchemaNotInstalledError
from rerankdb.sqlfiles import queries

Q = queries("db")


def sqlalchemy_url(url: str) -> str:
    """Turn a libpq URL into one SQLAlchemy resolves to the psycopg 3 driver."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise ConfigError(f"database URL must start with postgresql://, got {url.split(':', 1)[0]}://...")


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` instead (query string kept)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + quote(name, safe="")))


def libpq_url(url: str) -> str:
    """Inverse of :func:`sqlalchemy_url`: a URL psycopg accepts."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _maintenance(server_url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(libpq_url(with_database(server_url, "postgres")), autocommit=True)


def _composed(query: str, **identifiers: str) -> sql.Composed:
    return sql.SQL(query).format(**{k: sql.Identifier(v) for k, v in identifiers.items()})


def create_database(server_url: str, name: str, *, template: str | None = None, replace: bool = False) -> str:
    """Create database ``name`` on the server of ``server_url``; return its URL.

    ``template``: clone that database.  ``replace``: drop an existing one first
    (its sessions are ended); otherwise an existing database is an error.
    """
    with _maintenance(server_url) as conn:
        if replace:
            conn.execute(_composed(Q["drop_database"], name=name))
        if template is None:
            conn.execute(_composed(Q["create_database"], name=name))
        else:
            conn.execute(_composed(Q["create_database_from_template"], name=name, template=template))
    return with_database(server_url, name)


def ensure_database(server_url: str, name: str) -> str:
    """Database ``name`` on the server of ``server_url``, created if missing; its URL."""
    with _maintenance(server_url) as conn:
        if not conn.execute(Q["database_exists"], {"name": name}).fetchone():
            conn.execute(_composed(Q["create_database"], name=name))
    return with_database(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    """Drop database ``name`` if it exists, ending its sessions."""
    with _maintenance(server_url) as conn:
        conn.execute(_composed(Q["drop_database"], name=name))


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


def _no_pgvector() -> SchemaNotInstalledError:
    return SchemaNotInstalledError(
        "no rerankdb schema in this database (nor the pgvector extension it installs): "
        "run `rerankdb migrate` (or `alembic upgrade head`) first"
    )


def _register_infos(
    conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any], vector: Any, halfvec: Any
) -> None:
    register_vector_info(conn, vector)
    if halfvec is not None:
        register_halfvec_info(conn, halfvec)


def register_types(conn: psycopg.Connection[Any]) -> None:
    """Register pgvector's types on ``conn``, wherever the extension lives; explain if it is missing.

    Managed services often keep extensions in a schema of their own (Supabase:
    ``extensions``) that is not on the search path: the types are found
    through the extension, not by name.
    """
    conn.adapters.register_dumper(BigintArray, BigintArrayDumper)
    row = conn.execute(Q["vector_schema"]).fetchone()
    if row is None:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.rollback()
        raise _no_pgvector()
    schema, on_path = row
    if not on_path:
        # rerankdb's statements name pgvector's types and functions unqualified.
        conn.execute(Q["add_to_search_path"], {"schema": schema})
    vector = TypeInfo.fetch(conn, sql.Identifier(schema, "vector"))
    _register_infos(conn, vector, TypeInfo.fetch(conn, sql.Identifier(schema, "halfvec")))
    # The catalog queries above opened a transaction on a non-autocommit connection:
    # commit it (a rollback would undo the search_path set above).
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        conn.commit()


async def register_types_async(conn: psycopg.AsyncConnection[Any]) -> None:
    """:func:`register_types` for an asyncio connection (the pools of AsyncClient)."""
    conn.adapters.register_dumper(BigintArray, BigintArrayDumper)
    row = await (await conn.execute(Q["vector_schema"])).fetchone()
    if row is None:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            await conn.rollback()
        raise _no_pgvector()
    schema, on_path = row
    if not on_path:
        await conn.execute(Q["add_to_search_path"], {"schema": schema})
    vector = await TypeInfo.fetch(conn, sql.Identifier(schema, "vector"))
    _register_infos(conn, vector, await TypeInfo.fetch(conn, sql.Identifier(schema, "halfvec")))
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        await conn.commit()


# What Citus says when a worker node it was using went away mid-transaction (at the
# commit, SQLSTATE XX000): a lost connection, as OperationalError is on one node.
_LOST_REMOTE = (
    "server closed the connection unexpectedly",
    "connection not open",
    "connection to the remote node",
)


def lost_connection(exc: BaseException) -> bool:
    """Whether ``exc`` is a lost or refused connection, to this server or, on Citus, from
    the coordinator to a worker node: nothing the rows did; the caller retries later."""
    if isinstance(exc, psycopg.OperationalError):
        return True
    return isinstance(exc, psycopg.errors.InternalError) and any(m in str(exc) for m in _LOST_REMOTE)


def connect(url: str, *, autocommit: bool = False) -> psycopg.Connection[Any]:
    conn = psycopg.connect(libpq_url(url), autocommit=autocommit)
    try:
        register_types(conn)
    except BaseException:
        conn.close()
        raise
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


async def connect_async(url: str, *, autocommit: bool = False) -> psycopg.AsyncConnection[Any]:
    conn = await psycopg.AsyncConnection.connect(libpq_url(url), autocommit=autocommit)
    try:
        await register_types_async(conn)
    except BaseException:
        await conn.close()
        raise
    return conn


async def make_pool_async(url: str, *, min_size: int = 1, max_size: int = 4) -> AsyncConnectionPool[Any]:
    """:func:`make_pool` for asyncio (AsyncClient): autocommit connections, pgvector registered."""
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        libpq_url(url),
        min_size=min_size,
        max_size=max_size,
        kwargs={"autocommit": True},
        configure=register_types_async,
        open=False,
    )
    await pool.open(wait=True, timeout=30)
    return pool
