"""The Python query layer for asyncio: :class:`AsyncClient`, the same calls as :class:`rerankdb.Client`.

Every method checks its input with the same code as ``Client``
(:mod:`rerankdb.calls`: the same refusals, nothing written) and sends the same
statements, on psycopg's ``AsyncConnectionPool``.  The calls that are heavy
work in Python rather than a round trip (loading a file, tuning) run the
blocking implementation in a thread, so they do not stall the event loop.

    async with AsyncClient.from_env() as rr:
        await rr.record_interactions([Interaction(42, 1017, "like")])
        rows = await rr.rerank(42, [1017, 88, 3051])
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from rerankdb import calls, client, db
from rerankdb.calls import Interaction, Item, Ranked, Reason, Status
from rerankdb.config import Settings
from rerankdb.errors import DatabaseUnavailableError, RerankdbError, SchemaNotInstalledError
from rerankdb.sqlfiles import queries

if TYPE_CHECKING:
    from rerankdb.load import LoadReport
    from rerankdb.tune import TuneReport

Q = queries("client")
log = logging.getLogger(__name__)
READ_RETRY_SECONDS = 5.0  # how long reads stay on the primary after the read server failed


async def _installed_dimension(url: str, server: str) -> int:
    """The schema's dimension on ``url``; a clear error if it cannot be reached or has no schema."""
    try:
        async with await db.connect_async(url, autocommit=True) as conn:
            row = await (await conn.execute(Q["dimension"])).fetchone()
    except psycopg.errors.UndefinedFunction:
        raise calls.no_schema(server) from None
    except SchemaNotInstalledError as exc:
        raise calls.no_schema(server, exc) from None
    except psycopg.OperationalError as exc:
        raise calls.unreachable(server, exc) from None
    assert row is not None
    return int(row[0])


class AsyncClient:
    """A pooled asyncio connection to a rerankdb database.

    ``AsyncClient(url)`` makes it without touching the network; ``await
    client.open()`` (or ``async with``) connects, checks the schema and opens
    the pool; ``await client.close()`` closes it.  ``AsyncClient.from_env()``
    and ``AsyncClient.embedded()`` as for :class:`rerankdb.Client`.  Share one
    client between the tasks of an event loop.
    """

    def __init__(
        self,
        url: str,
        *,
        read_url: str | None = None,
        max_connections: int = 4,
        timeout: float = 5.0,
    ) -> None:
        """The arguments of :class:`rerankdb.Client`: ``read_url`` a replica for the reads,
        ``timeout`` the seconds a call waits for a connection."""
        self.url = url
        self.read_url = read_url or None
        self.timeout = timeout
        self._max_connections = max_connections
        self._dim: int | None = None
        self._pool: AsyncConnectionPool[Any] | None = None
        self._read_pool: AsyncConnectionPool[Any] | None = None
        self._read_down_until = 0.0

    @classmethod
    def from_env(cls, **kwargs: Any) -> AsyncClient:
        """``RERANKDB_DATABASE_URL`` if set, else the embedded server (started if needed)."""
        from rerankdb import embedded

        settings = Settings.from_env()
        kwargs.setdefault("read_url", settings.read_url)
        return cls(embedded.resolve_url(settings), **kwargs)

    @classmethod
    def embedded(cls, **kwargs: Any) -> AsyncClient:
        """The embedded server (started if needed), whatever RERANKDB_DATABASE_URL says."""
        from rerankdb import embedded

        return cls(embedded.start(Settings.from_env().home), **kwargs)

    async def open(self) -> AsyncClient:
        """Connect: an unreachable server or a missing schema fails here with its own message."""
        if self._pool is not None:
            return self
        dim = await _installed_dimension(self.url, "the database")
        if self.read_url is not None:
            calls.check_read_dimension(await _installed_dimension(self.read_url, calls.READ_SERVER), dim)
        pool = await db.make_pool_async(self.url, max_size=self._max_connections)
        read_pool = pool
        if self.read_url is not None:
            try:
                read_pool = await db.make_pool_async(self.read_url, max_size=self._max_connections)
            except BaseException:
                await pool.close()
                raise
        self._dim, self._pool, self._read_pool = dim, pool, read_pool
        return self

    async def close(self) -> None:
        pool, read_pool = self._pool, self._read_pool
        self._pool = self._read_pool = None
        if read_pool is not None and read_pool is not pool:
            await read_pool.close()
        if pool is not None:
            await pool.close()

    async def __aenter__(self) -> AsyncClient:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _pools(self) -> tuple[AsyncConnectionPool[Any], AsyncConnectionPool[Any]]:
        if self._pool is None or self._read_pool is None:
            raise RerankdbError("the AsyncClient is not open: use `async with` or `await client.open()`")
        return self._pool, self._read_pool

    @asynccontextmanager
    async def _connection(
        self, pool: AsyncConnectionPool[Any] | None = None
    ) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        pool = self._pools()[0] if pool is None else pool
        try:
            async with pool.connection(timeout=self.timeout) as conn:
                yield conn
        except PoolTimeout:
            raise calls.pool_timeout(self.timeout, pool.get_stats()) from None
        except psycopg.OperationalError as exc:
            lost = calls.lost_connection(exc)
            if lost is not None:
                raise lost from exc
            raise

    # -- facts ---------------------------------------------------------------

    @property
    def dimension(self) -> int:
        """The embedding dimension the schema was installed with (known once open)."""
        self._pools()
        assert self._dim is not None
        return self._dim

    async def kinds(self) -> dict[str, float]:
        """Interaction kinds and their weights."""
        async with self._connection() as conn:
            rows = await (await conn.execute(Q["kinds"])).fetchall()
        return {k: float(w) for k, w in rows}

    async def status(self) -> Status:
        """Counts, the worker's backlog and the worker processes (the ``rerankdb.status`` view)."""
        from rerankdb.migrate import current_revision

        async with self._connection() as conn:
            counts = await (await conn.execute(Q["counts"])).fetchone()
            worker = await (await conn.execute(Q["worker_status"])).fetchone()
            storage_and_index = await (await conn.execute(Q["storage_and_text_index"])).fetchone()
            workers = await (await conn.execute(Q["workers"])).fetchall()
        assert counts is not None and worker is not None and storage_and_index is not None
        revision = await asyncio.to_thread(current_revision, self.url)
        return calls.status(revision, self.dimension, counts, worker, storage_and_index, workers)

    # -- writes ---------------------------------------------------------------

    async def upsert_items(self, items: Iterable[Item | Mapping[str, Any]]) -> int:
        """Insert or update items by id; returns how many rows changed (as ``Client``)."""
        rows = calls.item_rows(items)
        if not rows:
            return 0
        async with self._connection() as conn, conn.transaction():
            await conn.execute(Q["create_items_stage"])
            async with conn.cursor().copy(Q["copy_items_stage"]) as cp:
                for r in rows:
                    await cp.write_row(r)
            return int((await conn.execute(Q["upsert_items"])).rowcount)

    async def delete_items(self, item_ids: Iterable[int]) -> int:
        """Delete items (and, by cascade, their vectors); returns how many existed."""
        params = calls.item_ids(item_ids)
        async with self._connection() as conn:
            return int((await conn.execute(Q["delete_items"], params)).rowcount)

    async def record_interactions(self, interactions: Iterable[Interaction | Mapping[str, Any]]) -> int:
        """Append interactions to the log in one COPY; returns how many were written (as ``Client``)."""
        rows = calls.interaction_rows(interactions)
        if not rows:
            return 0
        used = calls.check_kinds(rows, await self.kinds())
        async with self._connection() as conn, conn.transaction():
            now = (await (await conn.execute(Q["now"])).fetchone())[0]  # type: ignore[index]
            try:
                async with conn.cursor().copy(Q["copy_interactions"]) as cp:
                    for r in rows:
                        await cp.write_row(calls.with_now(r, now))
            except psycopg.errors.ForeignKeyViolation:  # a kind deleted meanwhile
                calls.check_kinds(rows, await self.kinds())
                raise calls.kind_deleted(used) from None
            except psycopg.Error as exc:
                refused = calls.refused_interaction(exc)
                if refused is None:
                    raise
                raise refused from None
        return len(rows)

    async def set_item_vectors(self, item_ids: Sequence[int], vectors: Any) -> int:
        """Bring your own item embeddings (items must exist). Returns rows written."""
        return await self._set_vectors("item", item_ids, vectors)

    async def set_user_vectors(self, user_ids: Sequence[int], vectors: Any) -> int:
        """Bring your own user embeddings. Returns rows written."""
        return await self._set_vectors("user", user_ids, vectors)

    async def _set_vectors(self, of: str, ids: Sequence[int], vectors: Any) -> int:
        chunks = calls.vector_chunks(of, ids, vectors, self.dimension)
        written = 0
        if not chunks:
            return 0
        async with self._connection() as conn, conn.transaction():
            for chunk in chunks:
                try:
                    row = await (await conn.execute(Q[f"set_{of}_vectors"], chunk)).fetchone()
                except psycopg.errors.ForeignKeyViolation as exc:
                    raise calls.unknown_items(exc) from None
                assert row is not None
                written += int(row[0])
        return written

    async def forget_user(self, user_id: int) -> int:
        """``rerankdb.forget_user``: erase a user's interactions, state and vectors; how many interactions."""
        params = calls.user(user_id)
        for attempt in range(calls.FORGET_ATTEMPTS):
            try:
                async with self._connection() as conn:
                    row = await (await conn.execute(Q["forget_user"], params)).fetchone()
                assert row is not None
                return int(row[0])
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
                await asyncio.sleep(calls.forget_backoff(attempt))
        raise calls.forget_conflict(params["user"])

    # -- reads ----------------------------------------------------------------

    async def rerank(
        self,
        user_id: int,
        candidates: Sequence[int | None] | np.ndarray,
        k: int | None = None,
        *,
        diversity: float = 0.0,
        context_items: Sequence[int] | None = None,
        exclude_seen: bool = False,
    ) -> list[Ranked]:
        """``rerankdb.rerank``: the candidates ordered for this user (as :meth:`rerankdb.Client.rerank`)."""
        call = calls.rerank(user_id, candidates, k, diversity, context_items, exclude_seen)
        return calls.ranked(await self._read(call))

    async def rerank_scored(
        self,
        user_id: int,
        candidates: Sequence[int],
        base_scores: Sequence[float | None],
        weight: float = 0.5,
        k: int | None = None,
        *,
        diversity: float = 0.0,
        context_items: Sequence[int] | None = None,
        exclude_seen: bool = False,
    ) -> list[Ranked]:
        """``rerankdb.rerank_scored``: the retriever's scores blended with personalization."""
        call = calls.rerank_scored(
            user_id, candidates, base_scores, weight, k, diversity, context_items, exclude_seen
        )
        return calls.ranked(await self._read(call))

    async def recommend(self, user_id: int, k: int = 10, exclude_seen: bool = True) -> list[Ranked]:
        """``rerankdb.recommend``: the catalog's k best items for the user."""
        return calls.ranked(await self._read(calls.recommend(user_id, k, exclude_seen)))

    async def similar_items(self, item_id: int, k: int = 10) -> list[Ranked]:
        """``rerankdb.similar_items``: the k nearest items to an item, itself excluded."""
        return calls.ranked(await self._read(calls.similar_items(item_id, k)))

    async def explain(self, user_id: int, item_ids: Sequence[int], n: int = 3) -> list[Reason]:
        """``rerankdb.explain``: per item, the interactions that contribute most to its score."""
        return calls.reasons(await self._read(calls.explain(user_id, item_ids, n)))

    # -- bulk loading and tuning: the blocking implementation, in a thread --------

    async def load_items(
        self,
        path: str | os.PathLike[str],
        *,
        format: str | None = None,
        reject_file: str | os.PathLike[str] | None = None,
        index: str = "auto",
        build_memory: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> LoadReport:
        """``rerankdb load items`` (as :meth:`rerankdb.Client.load_items`), in a worker thread."""
        return await asyncio.to_thread(
            client.load_items,
            self.url,
            path,
            format=format,
            reject_file=reject_file,
            index=index,
            build_memory=build_memory,
            progress=progress,
        )

    async def load_interactions(
        self,
        path: str | os.PathLike[str],
        *,
        format: str | None = None,
        reject_file: str | os.PathLike[str] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> LoadReport:
        """``rerankdb load interactions`` (as :meth:`rerankdb.Client.load_interactions`), in a thread."""
        return await asyncio.to_thread(
            client.load_interactions,
            self.url,
            path,
            format=format,
            reject_file=reject_file,
            progress=progress,
        )

    async def tune(
        self, objective: str = "mean", *, dry_run: bool = False, max_users: int = 2000, seed: int = 0
    ) -> TuneReport:
        """``rerankdb tune`` (as :meth:`rerankdb.Client.tune`), in a worker thread."""
        users = calls.max_users(max_users)
        return await asyncio.to_thread(
            client.tune,
            self.url,
            objective=objective,
            dry_run=dry_run,
            dim=self.dimension,
            max_users=users,
            seed=seed,
        )

    async def _read(self, call: calls.Read) -> list[tuple[Any, ...]]:
        """Run a read on the read server (the primary while it is down, or without one);
        a lost connection (a server restart, a failover) is retried within ``timeout``."""
        primary, replica = self._pools()
        deadline = time.monotonic() + self.timeout
        while True:
            pool = primary
            if replica is not primary and time.monotonic() >= self._read_down_until:
                pool = replica
            try:
                async with self._connection(pool) as conn:
                    cur = await conn.execute(call.query, call.params, binary=True)
                    return await cur.fetchall()
            except DatabaseUnavailableError as exc:
                if pool is replica and pool is not primary:
                    log.warning(calls.READ_FALLBACK, exc, READ_RETRY_SECONDS)
                    self._read_down_until = time.monotonic() + READ_RETRY_SECONDS
                    continue
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(calls.READ_RETRY_PAUSE)

    async def read_lag(self) -> int:
        """Bytes of WAL the read server has yet to replay (0 without a read server)."""
        primary, replica = self._pools()
        if replica is primary:
            return 0
        async with self._connection() as conn:
            row = await (await conn.execute(Q["primary_lsn"])).fetchone()
        async with self._connection(replica) as conn:
            cur = await conn.execute(Q["replica_lag"], {"primary_lsn": row[0] if row else None})
            lag = await cur.fetchone()
        return calls.lag_bytes(lag)
