"""The thin Python query layer: typed calls to rerankdb's SQL, blocking.

Ranking logic lives in the SQL functions; :mod:`rerankdb.calls` checks the
input (so a mistake gets a clear message and writes nothing) and names the
statements; this module runs them on a connection pool, moves writes in bulk
(COPY), and returns frozen dataclasses.  :class:`rerankdb.AsyncClient` is the
same for asyncio.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from rerankdb import calls, db
from rerankdb.calls import Interaction, Item, Ranked, Reason, Status, WorkerRow
from rerankdb.config import Settings
from rerankdb.errors import DatabaseUnavailableError, PermissionDeniedError, SchemaNotInstalledError
from rerankdb.sqlfiles import queries

if TYPE_CHECKING:
    from rerankdb.load import LoadReport
    from rerankdb.tune import TuneReport

__all__ = ["Client", "Interaction", "Item", "Ranked", "Reason", "Status", "WorkerRow"]

Q = queries("client")
log = logging.getLogger(__name__)
READ_RETRY_SECONDS = 5.0  # how long reads stay on the primary after the read server failed


def _installed_dimension(url: str, server: str) -> int:
    """The schema's dimension on ``url``; a clear error if it cannot be reached or has no schema."""
    try:
        with db.connect(url, autocommit=True) as conn:
            row = conn.execute(Q["dimension"]).fetchone()
    except psycopg.errors.UndefinedFunction:
        raise calls.no_schema(server) from None
    except SchemaNotInstalledError as exc:
        raise calls.no_schema(server, exc) from None
    except psycopg.OperationalError as exc:
        raise calls.unreachable(server, exc) from None
    assert row is not None
    return int(row[0])


def load_items(
    url: str,
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    reject_file: str | os.PathLike[str] | None = None,
    index: str = "auto",
    build_memory: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> LoadReport:
    """``rerankdb load items`` on its own connection (Client.load_items; AsyncClient in a thread)."""
    from rerankdb import load

    with db.connect(url, autocommit=True) as conn:
        return load.load_items(
            conn,
            Path(path),
            fmt=format,
            reject_file=None if reject_file is None else Path(reject_file),
            index=index,
            build_memory=build_memory or load.BUILD_MEMORY,
            progress=progress,
        )


def load_interactions(
    url: str,
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    reject_file: str | os.PathLike[str] | None = None,
    progress: Callable[[int], None] | None = None,
) -> LoadReport:
    """``rerankdb load interactions`` on its own connection."""
    from rerankdb import load

    with db.connect(url, autocommit=True) as conn:
        return load.load_interactions(
            conn,
            Path(path),
            fmt=format,
            reject_file=None if reject_file is None else Path(reject_file),
            progress=progress,
        )


def tune(url: str, *, objective: str, dry_run: bool, dim: int, max_users: int, seed: int) -> TuneReport:
    """``rerankdb tune`` on its own connection; a role that may not tune gets PermissionDeniedError."""
    from rerankdb import tune as tuning

    with db.connect(url, autocommit=True) as conn:
        try:
            return tuning.tune(
                conn, objective=objective, dry_run=dry_run, dim=dim, max_users=max_users, seed=seed
            )
        except psycopg.errors.InsufficientPrivilege as exc:
            raise PermissionDeniedError(calls.tune_denied(exc)) from None


class Client:
    """A pooled connection to a rerankdb database.

    ``Client(url)`` for any PostgreSQL with the schema installed;
    ``Client.embedded()`` or ``Client.from_env()`` for the configured default.
    Use it as a context manager, or call :meth:`close`.  Safe to share
    between threads.
    """

    def __init__(
        self,
        url: str,
        *,
        read_url: str | None = None,
        max_connections: int = 4,
        timeout: float = 5.0,
    ) -> None:
        """``read_url``: a streaming replica of ``url`` (or any server with the same
        data) that the reads go to: rerank, rerank_scored, recommend, similar_items,
        explain.  Writes, status and tuning go to ``url``.  While the read server is
        unreachable, reads go to ``url`` and it is tried again every
        READ_RETRY_SECONDS.  ``timeout``: seconds a call waits for a connection
        before DatabaseUnavailableError.
        """
        self.url = url
        self.read_url = read_url or None
        self.timeout = timeout
        # One plain connection first: an unreachable server or a missing
        # schema fails here at once, with its own message, not as a pool timeout.
        self._dim = _installed_dimension(url, "the database")
        if self.read_url is not None:
            calls.check_read_dimension(_installed_dimension(self.read_url, calls.READ_SERVER), self._dim)
        self._pool: ConnectionPool[Any] = db.make_pool(url, max_size=max_connections)
        self._read_pool = self._pool
        self._read_down_until = 0.0  # monotonic time before which reads skip the read server
        if self.read_url is not None:
            try:
                self._read_pool = db.make_pool(self.read_url, max_size=max_connections)
            except BaseException:
                self._pool.close()
                raise

    @contextmanager
    def _connection(self, pool: ConnectionPool[Any] | None = None) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection (of the primary's pool unless ``pool``), or
        DatabaseUnavailableError after ``timeout`` seconds."""
        pool = self._pool if pool is None else pool
        try:
            with pool.connection(timeout=self.timeout) as conn:
                yield conn
        except PoolTimeout:
            raise calls.pool_timeout(self.timeout, pool.get_stats()) from None
        except psycopg.OperationalError as exc:
            lost = calls.lost_connection(exc)
            if lost is not None:
                raise lost from exc
            raise

    @classmethod
    def from_env(cls, **kwargs: Any) -> Client:
        """``RERANKDB_DATABASE_URL`` if set, else the embedded server."""
        from rerankdb import embedded

        settings = Settings.from_env()
        kwargs.setdefault("read_url", settings.read_url)
        return cls(embedded.resolve_url(settings), **kwargs)

    @classmethod
    def embedded(cls, **kwargs: Any) -> Client:
        """The embedded server (started if needed), whatever RERANKDB_DATABASE_URL says."""
        from rerankdb import embedded

        return cls(embedded.start(Settings.from_env().home), **kwargs)

    def close(self) -> None:
        if self._read_pool is not self._pool:
            self._read_pool.close()
        self._pool.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- facts ---------------------------------------------------------------

    @property
    def dimension(self) -> int:
        """The embedding dimension the schema was installed with."""
        return self._dim

    def kinds(self) -> dict[str, float]:
        """Interaction kinds and their weights."""
        with self._connection() as conn:
            rows = conn.execute(Q["kinds"]).fetchall()
        return {k: float(w) for k, w in rows}

    def status(self) -> Status:
        """Counts, the worker's backlog and the worker processes (the ``rerankdb.status`` view)."""
        from rerankdb.migrate import current_revision

        with self._connection() as conn:
            counts = conn.execute(Q["counts"]).fetchone()
            worker = conn.execute(Q["worker_status"]).fetchone()
            storage_and_index = conn.execute(Q["storage_and_text_index"]).fetchone()
            workers = conn.execute(Q["workers"]).fetchall()
        assert counts is not None and worker is not None and storage_and_index is not None
        return calls.status(current_revision(self.url), self._dim, counts, worker, storage_and_index, workers)

    # -- writes ---------------------------------------------------------------

    def upsert_items(self, items: Iterable[Item | Mapping[str, Any]]) -> int:
        """Insert or update items by id; returns how many rows changed.

        An update that changes neither content nor metadata touches nothing.
        """
        rows = calls.item_rows(items)
        if not rows:
            return 0
        with self._connection() as conn, conn.transaction():
            conn.execute(Q["create_items_stage"])
            with conn.cursor().copy(Q["copy_items_stage"]) as cp:
                for r in rows:
                    cp.write_row(r)
            return int(conn.execute(Q["upsert_items"]).rowcount)

    def delete_items(self, item_ids: Iterable[int]) -> int:
        """Delete items (and, by cascade, their vectors); returns how many existed."""
        params = calls.item_ids(item_ids)
        with self._connection() as conn:
            return int(conn.execute(Q["delete_items"], params).rowcount)

    def record_interactions(self, interactions: Iterable[Interaction | Mapping[str, Any]]) -> int:
        """Append interactions to the log in one COPY; returns how many were written.

        Items need not exist yet.  An unknown kind raises UnknownKindError and
        nothing is written.
        """
        rows = calls.interaction_rows(interactions)
        if not rows:
            return 0
        used = calls.check_kinds(rows, self.kinds())
        with self._connection() as conn, conn.transaction():
            now = conn.execute(Q["now"]).fetchone()[0]  # type: ignore[index]
            try:
                with conn.cursor().copy(Q["copy_interactions"]) as cp:
                    for r in rows:
                        cp.write_row(calls.with_now(r, now))
            except psycopg.errors.ForeignKeyViolation:  # a kind deleted meanwhile
                calls.check_kinds(rows, self.kinds())
                raise calls.kind_deleted(used) from None
            except psycopg.Error as exc:
                refused = calls.refused_interaction(exc)
                if refused is None:
                    raise
                raise refused from None
        return len(rows)

    def set_item_vectors(self, item_ids: Sequence[int], vectors: Any) -> int:
        """Bring your own item embeddings (items must exist). Returns rows written."""
        return self._set_vectors("item", item_ids, vectors)

    def set_user_vectors(self, user_ids: Sequence[int], vectors: Any) -> int:
        """Bring your own user embeddings. Returns rows written."""
        return self._set_vectors("user", user_ids, vectors)

    def _set_vectors(self, of: str, ids: Sequence[int], vectors: Any) -> int:
        """Through rerankdb.set_item_vectors / set_user_vectors, in chunks, in one transaction."""
        chunks = calls.vector_chunks(of, ids, vectors, self._dim)
        written = 0
        if not chunks:
            return 0
        with self._connection() as conn, conn.transaction():
            for chunk in chunks:
                try:
                    row = conn.execute(Q[f"set_{of}_vectors"], chunk).fetchone()
                except psycopg.errors.ForeignKeyViolation as exc:  # unknown items, named by the function
                    raise calls.unknown_items(exc) from None
                assert row is not None
                written += int(row[0])
        return written

    def forget_user(self, user_id: int) -> int:
        """``rerankdb.forget_user``: erase a user's interactions, state and vectors; how many interactions."""
        params = calls.user(user_id)
        for attempt in range(calls.FORGET_ATTEMPTS):
            try:
                with self._connection() as conn:
                    row = conn.execute(Q["forget_user"], params).fetchone()
                assert row is not None
                return int(row[0])
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
                time.sleep(calls.forget_backoff(attempt))  # raced a worker on the same user: again, atomic
        raise calls.forget_conflict(params["user"])

    # -- reads ----------------------------------------------------------------

    def rerank(
        self,
        user_id: int,
        candidates: Sequence[int | None] | np.ndarray,
        k: int | None = None,
        *,
        diversity: float = 0.0,
        context_items: Sequence[int] | None = None,
        exclude_seen: bool = False,
    ) -> list[Ranked]:
        """``rerankdb.rerank``: the candidates ordered for this user (see its SQL contract).

        ``candidates`` is a sequence of ints (None allowed and ignored, as in
        SQL) or an integer numpy array.  ``diversity`` in [0, 1] (0.3: some;
        MMR), ``context_items`` what the user is looking at, ``exclude_seen``
        drops what the user already has.
        """
        call = calls.rerank(user_id, candidates, k, diversity, context_items, exclude_seen)
        return calls.ranked(self._read(call))

    def rerank_scored(
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
        """``rerankdb.rerank_scored``: the retriever's scores blended with personalization
        (``diversity``, ``context_items``, ``exclude_seen`` as for :meth:`rerank`)."""
        call = calls.rerank_scored(
            user_id, candidates, base_scores, weight, k, diversity, context_items, exclude_seen
        )
        return calls.ranked(self._read(call))

    def recommend(self, user_id: int, k: int = 10, exclude_seen: bool = True) -> list[Ranked]:
        """``rerankdb.recommend``: the catalog's k best items for the user."""
        return calls.ranked(self._read(calls.recommend(user_id, k, exclude_seen)))

    def similar_items(self, item_id: int, k: int = 10) -> list[Ranked]:
        """``rerankdb.similar_items``: the k nearest items to an item, itself excluded."""
        return calls.ranked(self._read(calls.similar_items(item_id, k)))

    def explain(self, user_id: int, item_ids: Sequence[int], n: int = 3) -> list[Reason]:
        """``rerankdb.explain``: per item, the user's interactions that contribute most to its
        score ("because you watched X"), in the order of ``item_ids``."""
        return calls.reasons(self._read(calls.explain(user_id, item_ids, n)))

    # -- bulk loading ----------------------------------------------------------

    def load_items(
        self,
        path: str | os.PathLike[str],
        *,
        format: str | None = None,
        reject_file: str | os.PathLike[str] | None = None,
        index: str = "auto",
        build_memory: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> LoadReport:
        """Load items from a JSON Lines, CSV or Parquet file (``rerankdb load items``).

        Columns: item_id, content, optional metadata (a JSON object) and
        embedding (the installed dimension; items without one are queued for
        the worker).  Strict unless ``reject_file``: a bad line raises
        LoadError naming it and its field, and nothing is written.  ``index``:
        "auto" (rebuild the text index once at the end when the load is
        large), "rebuild" or "incremental" (rerankdb.load); ``build_memory``:
        the build's maintenance_work_mem (default 1GB).  ``progress`` is
        called with the rows read so far.
        """
        return load_items(
            self.url,
            path,
            format=format,
            reject_file=reject_file,
            index=index,
            build_memory=build_memory,
            progress=progress,
        )

    def load_interactions(
        self,
        path: str | os.PathLike[str],
        *,
        format: str | None = None,
        reject_file: str | os.PathLike[str] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> LoadReport:
        """Append interactions from a file (``rerankdb load interactions``).

        Columns: user_id, item_id, optional kind (default view), weight,
        context, occurred_at (ISO 8601, no offset meaning UTC, or seconds
        since the epoch; missing: now).  Strict unless ``reject_file``, as
        :meth:`load_items`.  Folded by the worker as any other insert.
        """
        return load_interactions(self.url, path, format=format, reject_file=reject_file, progress=progress)

    # -- tuning ----------------------------------------------------------------

    def tune(
        self, objective: str = "mean", *, dry_run: bool = False, max_users: int = 2000, seed: int = 0
    ) -> TuneReport:
        """``rerankdb tune``: choose the settings on this installation's log (rerankdb.tune).

        Writes them unless ``dry_run``.  If a half-life changed, every user is
        rebuilt in the same transaction when no interaction carries context
        text; otherwise (contexts need the worker's encoder) the worker
        rebuilds at its next drain (``report.rebuild_pending``).
        """
        users = calls.max_users(max_users)
        return tune(self.url, objective=objective, dry_run=dry_run, dim=self._dim, max_users=users, seed=seed)

    def _read(self, call: calls.Read) -> list[tuple[Any, ...]]:
        """Run a read on the read server (the primary while it is down, or without one);
        a lost connection (a server restart, a failover) is retried within ``timeout``."""
        deadline = time.monotonic() + self.timeout
        while True:
            pool = self._pool
            if self._read_pool is not self._pool and time.monotonic() >= self._read_down_until:
                pool = self._read_pool
            try:
                with self._connection(pool) as conn:
                    return conn.execute(call.query, call.params, binary=True).fetchall()
            except DatabaseUnavailableError as exc:
                if pool is self._read_pool and pool is not self._pool:
                    log.warning(calls.READ_FALLBACK, exc, READ_RETRY_SECONDS)
                    self._read_down_until = time.monotonic() + READ_RETRY_SECONDS
                    continue
                if time.monotonic() >= deadline:
                    raise
                time.sleep(calls.READ_RETRY_PAUSE)  # reads are idempotent: again, on a fresh connection

    def read_lag(self) -> int:
        """Bytes of WAL the read server has received but not replayed yet, plus those it has
        not received: how far its reads are behind the primary (0 without a read server)."""
        if self.read_url is None:
            return 0
        with self._connection() as conn:
            row = conn.execute(Q["primary_lsn"]).fetchone()
        with self._connection(self._read_pool) as conn:
            lag = conn.execute(Q["replica_lag"], {"primary_lsn": row[0] if row else None}).fetchone()
        return calls.lag_bytes(lag)
