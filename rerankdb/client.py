"""The thin Python query layer: typed calls to rerankdb's SQL.

Ranking logic lives in the SQL functions; this module validates input (so a
mistake gets a clear message and writes nothing), moves data in bulk (COPY),
and returns frozen dataclasses.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from rerankdb import db
from rerankdb.config import Settings
from rerankdb.errors import (
    ConfigError,
    DatabaseUnavailableError,
    DimensionMismatchError,
    InvalidInputError,
    PermissionDeniedError,
    SchemaNotInstalledError,
    UnknownKindError,
)
from rerankdb.sqlfiles import queries

if TYPE_CHECKING:
    from rerankdb.load import LoadReport
    from rerankdb.tune import TuneReport

Q = queries("client")
log = logging.getLogger(__name__)
READ_RETRY_SECONDS = 5.0  # how long reads stay on the primary after the read server failed
INT8_MIN, INT8_MAX = -(2**63), 2**63 - 1
INT4_MAX = 2**31 - 1
MAX_WEIGHT = 1e6  # as rerankdb.interactions checks: no sum of weights can overflow
VECTOR_CHUNK = 5_000  # vectors per call of rerankdb.set_item_vectors / set_user_vectors


@dataclass(frozen=True)
class Ranked:
    """One row of rerank / recommend / similar_items."""

    item_id: int
    score: float | None
    rank: int


@dataclass(frozen=True)
class Reason:
    """One row of ``rerankdb.explain``: item_id scores as it does partly because of
    the user's interactions with because_item_id (the newest at occurred_at)."""

    item_id: int
    because_item_id: int
    contribution: float
    occurred_at: datetime


@dataclass(frozen=True)
class Item:
    item_id: int
    content: str
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Interaction:
    user_id: int
    item_id: int
    kind: str = "view"
    weight: float | None = None
    context: str | None = None
    occurred_at: datetime | None = None  # None: the database's now()


@dataclass(frozen=True)
class Status:
    """What is installed and stored, and the worker's backlog (the ``rerankdb.status`` view)."""

    schema_revision: str | None
    dimension: int
    items: int
    item_vectors: int
    user_vectors: int
    interactions: int
    pending_items: int  # waiting to be embedded, never failed
    failed_items: int  # whose text could not be embedded yet (retried with backoff)
    pending_interactions: int  # waiting to be folded into user vectors
    deferred_interactions: int  # whose item has no vector yet
    interaction_lag: timedelta | None  # age of the oldest pending interaction
    item_lag: timedelta | None  # age of the oldest queued item
    last_item_refresh_at: datetime | None
    last_user_refresh_at: datetime | None
    last_rebuild_at: datetime | None
    model: str | None  # the encoder that made the item vectors
    failed_interactions: int  # set aside: could not be folded (retried with backoff)
    users_to_rebuild: int  # whose interactions were deleted or changed
    last_interaction_error: str | None  # why the newest set-aside interaction failed
    storage: str = "vector"  # how item text vectors are stored (revision 0008): vector or halfvec
    text_index: str = "valid"  # the text HNSW index: valid, or missing / invalid (a load killed mid-build)
    last_compact_at: datetime | None = None  # revision 0009: the last compaction of the log
    compacted_before: datetime | None = None  # older interactions are in user snapshots, not the log
    workers: tuple[WorkerRow, ...] = ()  # the worker processes seen in the last day, newest first


@dataclass(frozen=True)
class WorkerRow:
    """One worker process (``rerankdb.workers``): its totals since it started."""

    worker_id: str
    host: str
    pid: int
    started_at: datetime
    seen_at: datetime
    seen_ago: timedelta
    interactions_folded: int
    items_embedded: int
    interactions_set_aside: int
    items_failed: int
    users_rebuilt: int
    drains: int
    busy_seconds: float
    last_drain_seconds: float | None


def _check_id(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidInputError(f"{what} must be an integer, got {value!r}")
    if not INT8_MIN <= int(value) <= INT8_MAX:
        raise InvalidInputError(f"{what} {value} does not fit a bigint")
    return int(value)


def _check_k(k: int | None, *, allow_none: bool, name: str = "k") -> int | None:
    if k is None and allow_none:
        return None
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= INT4_MAX:
        raise InvalidInputError(f"{name} must be an integer from 0 to {INT4_MAX}, got {k!r}")
    return k


def _as_matrix(vectors: Any, n: int, dim: int, what: str) -> np.ndarray:
    """Validate and convert to a float32 (n, dim) array; raise before any write."""
    try:
        arr = np.asarray(vectors, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{what} must be numeric vectors: {exc}") from None
    if arr.ndim == 1 and n == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise InvalidInputError(f"{what} must be a 2-d array (one row per id), got shape {arr.shape}")
    if arr.shape[0] != n:
        raise InvalidInputError(f"got {n} ids but {arr.shape[0]} {what}")
    if arr.shape[1] != dim:
        raise DimensionMismatchError(dim, arr.shape[1], what)
    if arr.size == 0:
        return arr.astype(np.float32)
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        raise InvalidInputError(
            f"{what} must be finite; row {int(np.argmax(bad))} has NaN or infinity; nothing was written"
        )
    zero = ~arr.any(axis=1)
    if zero.any():
        raise InvalidInputError(
            f"{what} row {int(np.argmax(zero))} is a zero vector, which has no direction "
            "for cosine similarity; nothing was written"
        )
    if np.abs(arr).max() > np.finfo(np.float32).max:
        raise InvalidInputError(f"{what} have values beyond float32 range; nothing was written")
    out = arr.astype(np.float32)
    tiny = ~out.any(axis=1)
    if tiny.any():
        raise InvalidInputError(
            f"{what} row {int(np.argmax(tiny))} is too small for float32: every value rounds to 0, "
            "which has no direction (scale it up); nothing was written"
        )
    return out


def _check_diversity(diversity: float) -> float:
    if (
        isinstance(diversity, bool)
        or not isinstance(diversity, (int, float, np.number))
        or not 0 <= diversity <= 1
    ):
        raise InvalidInputError(f"diversity must be in [0, 1] (0: off), got {diversity!r}")
    return float(diversity)


def _context(context_items: Sequence[int] | None) -> list[int] | None:
    if context_items is None:
        return None
    if isinstance(context_items, (str, bytes)):
        raise InvalidInputError(f"context_items must be a sequence of item ids, got {context_items!r}")
    return [_check_id(i, "a context item") for i in context_items]


def _candidates(candidates: Sequence[int | None] | np.ndarray) -> db.BigintArray | list[int | None]:
    """Validate candidate ids; integers go over the wire as one binary array."""
    if candidates is None or isinstance(candidates, (str, bytes)):
        raise InvalidInputError(f"candidates must be a sequence of item ids, got {candidates!r}")
    try:
        arr = np.asarray(candidates)
    except ValueError:  # ragged nesting
        raise InvalidInputError("candidates must be a flat sequence of item ids") from None
    if arr.ndim > 1:
        raise InvalidInputError(f"candidates must be a flat sequence of item ids, got shape {arr.shape}")
    if arr.ndim == 1 and arr.dtype.kind in "iu":
        if arr.dtype.kind == "u" and arr.size and arr.max() > INT8_MAX:
            raise InvalidInputError(f"candidate {arr.max()} does not fit a bigint")
        return db.BigintArray(arr)
    if arr.ndim == 1 and arr.size == 0:
        return db.BigintArray(np.empty(0, dtype=np.int64))
    # Mixed, None, or wrong types: check one by one for a precise message.
    return [None if c is None else _check_id(c, "candidate") for c in candidates]


def _unique_ids(ids: Iterable[Any], what: str) -> list[int]:
    out = [_check_id(i, what) for i in ids]
    dups = [i for i, n in Counter(out).items() if n > 1]
    if dups:
        raise InvalidInputError(f"{what} {dups[0]} appears more than once in one call; nothing was written")
    return out


def _from_mapping(cls: Any, raw: Any) -> Any:
    """An Item or Interaction from a mapping, with a clear error for anything else."""
    if not isinstance(raw, Mapping):
        raise InvalidInputError(f"expected a {cls.__name__} or a mapping, got {raw!r}")
    try:
        return cls(**raw)
    except TypeError as exc:
        raise InvalidInputError(f"{cls.__name__}: {exc}; nothing was written") from None


def _check_read_server(read_url: str, dim: int) -> None:
    """The read server must hold the same schema as the primary: else a clear error now."""
    try:
        with db.connect(read_url, autocommit=True) as conn:
            read_dim = _installed_dimension(conn)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailableError(
            f"cannot connect to the read server (read_url): {str(exc).strip()}"
        ) from None
    except SchemaNotInstalledError as exc:
        raise SchemaNotInstalledError(f"the read server (read_url) has no rerankdb schema: {exc}") from None
    if read_dim != dim:
        raise ConfigError(
            f"the read server (read_url) holds {read_dim}-d vectors, the primary {dim}-d: "
            "read_url must be a replica of the same database"
        )


def _installed_dimension(conn: psycopg.Connection[Any]) -> int:
    try:
        row = conn.execute(Q["dimension"]).fetchone()
    except psycopg.errors.UndefinedFunction as exc:
        raise SchemaNotInstalledError(
            "no rerankdb schema in this database: run `rerankdb migrate` first"
        ) from exc
    assert row is not None
    return int(row[0])


class Client:
    """A pooled connection to a rerankdb database.

    ``Client(url)`` for any PostgreSQL with the schema installed;
    ``Client.embedded()`` or ``Client.from_env()`` for the configured default.
    Use it as a context manager, or call :meth:`close`.
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
        try:
            first = db.connect(url, autocommit=True)
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailableError(
                f"cannot connect to the database: {' '.join(str(exc).split())}"
            ) from None
        with first as conn:
            self._dim = _installed_dimension(conn)
        if self.read_url is not None:
            _check_read_server(self.read_url, self._dim)
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
            raise DatabaseUnavailableError(
                f"no connection to the database within {self.timeout:g} s: is the server running? "
                f"({pool.get_stats().get('connections_errors', 0)} failed attempts)"
            ) from None
        except psycopg.OperationalError as exc:
            if not exc.sqlstate or exc.sqlstate.startswith(("08", "57")):  # connection, shutdown
                raise DatabaseUnavailableError(
                    f"lost the connection to the database: {str(exc).strip()}"
                ) from exc
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
        from rerankdb.migrate import current_revision

        with self._connection() as conn:
            counts = conn.execute(Q["counts"]).fetchone()
            worker = conn.execute(Q["worker_status"]).fetchone()
            storage, index = conn.execute(Q["storage_and_text_index"]).fetchone()  # type: ignore[misc]
            workers = tuple(WorkerRow(*r) for r in conn.execute(Q["workers"]).fetchall())
        assert counts is not None and worker is not None
        items, item_vectors, user_vectors, interactions = map(int, counts)
        st = Status(
            current_revision(self.url),
            self.dimension,
            items,
            item_vectors,
            user_vectors,
            interactions,
            *worker[:13],
        )
        return replace(
            st,
            storage=storage or "vector",
            text_index=index or "missing",
            last_compact_at=worker[13],
            compacted_before=worker[14],
            workers=workers,
        )

    # -- writes ---------------------------------------------------------------

    def upsert_items(self, items: Iterable[Item | Mapping[str, Any]]) -> int:
        """Insert or update items by id; returns how many rows changed.

        An update that changes neither content nor metadata touches nothing.
        """
        rows = []
        for raw in items:
            it = raw if isinstance(raw, Item) else _from_mapping(Item, raw)
            item_id = _check_id(it.item_id, "item_id")
            if not isinstance(it.content, str):
                raise InvalidInputError(f"item {item_id}: content must be a string, got {it.content!r}")
            if "\x00" in it.content:
                raise InvalidInputError(f"item {item_id}: content contains a NUL character")
            if not isinstance(it.metadata, Mapping):
                raise InvalidInputError(f"item {item_id}: metadata must be a mapping, got {it.metadata!r}")
            try:
                json.dumps(it.metadata, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise InvalidInputError(f"item {item_id}: metadata is not JSON: {exc}") from None
            rows.append((item_id, it.content, Jsonb(dict(it.metadata))))
        _unique_ids((r[0] for r in rows), "item_id")
        if not rows:
            return 0
        with self._connection() as conn, conn.transaction():
            conn.execute(Q["create_items_stage"])
            with conn.cursor().copy(Q["copy_items_stage"]) as cp:
                for r in rows:
                    cp.write_row(r)
            cur = conn.execute(Q["upsert_items"])
            return int(cur.rowcount)

    def delete_items(self, item_ids: Iterable[int]) -> int:
        """Delete items (and, by cascade, their vectors); returns how many existed."""
        ids = [_check_id(i, "item_id") for i in item_ids]
        with self._connection() as conn:
            cur = conn.execute(Q["delete_items"], {"items": ids})
            return int(cur.rowcount)

    def record_interactions(self, interactions: Iterable[Interaction | Mapping[str, Any]]) -> int:
        """Append interactions to the log in one COPY; returns how many were written.

        Items need not exist yet.  An unknown kind raises UnknownKindError and
        nothing is written.
        """
        rows = []
        for raw in interactions:
            it = raw if isinstance(raw, Interaction) else _from_mapping(Interaction, raw)
            user_id = _check_id(it.user_id, "user_id")
            item_id = _check_id(it.item_id, "item_id")
            if not isinstance(it.kind, str):
                raise InvalidInputError(f"kind must be a string, got {it.kind!r}")
            weight = it.weight
            if weight is not None:
                if isinstance(weight, bool) or not isinstance(weight, (int, float, np.number)):
                    raise InvalidInputError(f"weight must be a number or None, got {weight!r}")
                try:
                    finite = math.isfinite(float(weight))
                except OverflowError:
                    finite = False
                if not finite:
                    raise InvalidInputError(f"weight must be finite, got {weight!r}")
                if abs(float(weight)) > MAX_WEIGHT:
                    raise InvalidInputError(f"weight must be between -1e6 and 1e6, got {weight!r}")
                weight = float(weight)
            if it.context is not None and not isinstance(it.context, str):
                raise InvalidInputError(f"context must be a string or None, got {it.context!r}")
            if it.context is not None and "\x00" in it.context:
                raise InvalidInputError(f"user {user_id}, item {item_id}: context contains a NUL character")
            if it.occurred_at is not None and not isinstance(it.occurred_at, datetime):
                raise InvalidInputError(f"occurred_at must be a datetime or None, got {it.occurred_at!r}")
            rows.append((user_id, item_id, it.kind, weight, it.context, it.occurred_at))
        if not rows:
            return 0
        known = self.kinds()
        unknown = sorted({r[2] for r in rows} - known.keys())
        if unknown:
            raise UnknownKindError(unknown, sorted(known))
        with self._connection() as conn, conn.transaction():
            # occurred_at None means "now": COPY has no DEFAULT per row, so fill it here.
            now = conn.execute(Q["now"]).fetchone()[0]  # type: ignore[index]
            try:
                with conn.cursor().copy(Q["copy_interactions"]) as cp:
                    for r in rows:
                        cp.write_row(r if r[5] is not None else (*r[:5], now))
            except psycopg.errors.ForeignKeyViolation as exc:  # a kind deleted meanwhile
                raise UnknownKindError(unknown or ["?"], sorted(self.kinds())) from exc
            except (psycopg.errors.DatetimeFieldOverflow, psycopg.errors.NumericValueOutOfRange) as exc:
                # rerankdb.check_interaction's refusal (a future time, say): its message says it all.
                raise InvalidInputError(f"{str(exc).strip()}; nothing was written") from None
        return len(rows)

    def set_item_vectors(self, item_ids: Sequence[int], vectors: Any) -> int:
        """Bring your own item embeddings (items must exist). Returns rows written."""
        return self._set_vectors("item", item_ids, vectors)

    def set_user_vectors(self, user_ids: Sequence[int], vectors: Any) -> int:
        """Bring your own user embeddings. Returns rows written."""
        return self._set_vectors("user", user_ids, vectors)

    def _set_vectors(self, of: str, ids: Sequence[int], vectors: Any) -> int:
        """Through rerankdb.set_item_vectors / set_user_vectors, in chunks, in one transaction."""
        ids_ = _unique_ids(ids, f"{of}_id")
        arr = _as_matrix(vectors, len(ids_), self.dimension, f"{of} vectors")
        if not ids_:
            return 0
        written = 0
        with self._connection() as conn, conn.transaction():
            for lo in range(0, len(ids_), VECTOR_CHUNK):
                chunk = {
                    "ids": db.BigintArray(np.asarray(ids_[lo : lo + VECTOR_CHUNK])),
                    "vectors": list(arr[lo : lo + VECTOR_CHUNK]),
                }
                try:
                    row = conn.execute(Q[f"set_{of}_vectors"], chunk).fetchone()
                except psycopg.errors.ForeignKeyViolation as exc:  # unknown items, named by the function
                    raise InvalidInputError(
                        f"{str(exc).strip()} (upsert_items); nothing was written"
                    ) from None
                assert row is not None
                written += int(row[0])
        return written

    def forget_user(self, user_id: int) -> int:
        """``rerankdb.forget_user``: erase a user's interactions, state and vectors; how many interactions."""
        uid = _check_id(user_id, "user_id")
        for attempt in range(5):
            try:
                with self._connection() as conn:
                    row = conn.execute(Q["forget_user"], {"user": uid}).fetchone()
                assert row is not None
                return int(row[0])
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
                time.sleep(0.05 * (attempt + 1))  # raced a worker on the same user: again, atomic
        raise DatabaseUnavailableError(f"forget_user({uid}) kept conflicting with concurrent work")

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
        uid = _check_id(user_id, "user_id")
        return self._ranked(
            Q["rerank"],
            user=uid,
            candidates=_candidates(candidates),
            k=_check_k(k, allow_none=True),
            diversity=_check_diversity(diversity),
            context=_context(context_items),
            exclude_seen=bool(exclude_seen),
        )

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
        if candidates is None or base_scores is None:
            raise InvalidInputError("candidates and base_scores must be sequences, got None")
        if len(base_scores) != len(candidates):
            raise InvalidInputError(
                f"base_scores must have one score per candidate ({len(candidates)} candidates, "
                f"{len(base_scores)} scores)"
            )
        if any(
            b is not None and (isinstance(b, (bool, str)) or not isinstance(b, (int, float, np.number)))
            for b in base_scores
        ):
            raise InvalidInputError("base_scores must be numbers or None")
        try:
            scores = [None if b is None else float(b) for b in base_scores]
        except OverflowError:
            raise InvalidInputError("base_scores must be finite numbers") from None
        if any(b is not None and not math.isfinite(b) for b in scores):
            raise InvalidInputError("base_scores must be finite numbers")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight <= 1:
            raise InvalidInputError(f"weight must be in [0, 1], got {weight!r}")
        return self._ranked(
            Q["rerank_scored"],
            user=_check_id(user_id, "user_id"),
            candidates=_candidates(candidates),
            scores=scores,
            weight=float(weight),
            k=_check_k(k, allow_none=True),
            diversity=_check_diversity(diversity),
            context=_context(context_items),
            exclude_seen=bool(exclude_seen),
        )

    def recommend(self, user_id: int, k: int = 10, exclude_seen: bool = True) -> list[Ranked]:
        """``rerankdb.recommend``: the k nearest items to the user's vector."""
        return self._ranked(
            Q["recommend"],
            user=_check_id(user_id, "user_id"),
            k=_check_k(k, allow_none=False),
            exclude_seen=bool(exclude_seen),
        )

    def similar_items(self, item_id: int, k: int = 10) -> list[Ranked]:
        """``rerankdb.similar_items``: the k nearest items to an item, itself excluded."""
        return self._ranked(
            Q["similar_items"],
            item=_check_id(item_id, "item_id"),
            k=_check_k(k, allow_none=False),
        )

    def explain(self, user_id: int, item_ids: Sequence[int], n: int = 3) -> list[Reason]:
        """``rerankdb.explain``: per item, the user's interactions that contribute most to its
        score ("because you watched X"), in the order of ``item_ids``."""
        uid = _check_id(user_id, "user_id")
        if isinstance(item_ids, (str, bytes)) or item_ids is None:
            raise InvalidInputError(f"item_ids must be a sequence of item ids, got {item_ids!r}")
        items = [_check_id(i, "an item_id") for i in item_ids]
        rows = self._read(Q["explain"], user=uid, items=items, n=_check_k(n, allow_none=False, name="n"))
        return [Reason(*row) for row in rows]

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
        from rerankdb import load

        with db.connect(self.url, autocommit=True) as conn:
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
        from rerankdb import load

        with db.connect(self.url, autocommit=True) as conn:
            return load.load_interactions(
                conn,
                Path(path),
                fmt=format,
                reject_file=None if reject_file is None else Path(reject_file),
                progress=progress,
            )

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
        from rerankdb.tune import tune

        if isinstance(max_users, bool) or not isinstance(max_users, int) or max_users < 1:
            raise InvalidInputError(f"max_users must be a positive integer, got {max_users!r}")
        with db.connect(self.url, autocommit=True) as conn:
            try:
                return tune(
                    conn, objective=objective, dry_run=dry_run, dim=self._dim, max_users=max_users, seed=seed
                )
            except psycopg.errors.InsufficientPrivilege as exc:
                raise PermissionDeniedError(
                    "rerankdb tune reads the log and the vectors and writes rerankdb.settings: connect as "
                    f"the owner or a member of rerankdb_worker ({str(exc).strip()})"
                ) from None

    def _ranked(self, query: str, **params: Any) -> list[Ranked]:
        return [Ranked(i, s, r) for i, s, r in self._read(query, **params)]

    def _read(self, query: str, **params: Any) -> list[tuple[Any, ...]]:
        """Run a read on the read server (the primary while it is down, or without one);
        a lost connection (a server restart, a failover) is retried within ``timeout``."""
        deadline = time.monotonic() + self.timeout
        while True:
            pool = self._pool
            if self._read_pool is not self._pool and time.monotonic() >= self._read_down_until:
                pool = self._read_pool
            try:
                with self._connection(pool) as conn:
                    return conn.execute(query, params, binary=True).fetchall()
            except DatabaseUnavailableError as exc:
                if pool is self._read_pool and pool is not self._pool:
                    log.warning(
                        "read server unavailable (%s); reading from the primary for %g s",
                        exc,
                        READ_RETRY_SECONDS,
                    )
                    self._read_down_until = time.monotonic() + READ_RETRY_SECONDS
                    continue
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)  # reads are idempotent: again, on a fresh connection

    def read_lag(self) -> int:
        """Bytes of WAL the read server has received but not replayed yet, plus those it has
        not received: how far its reads are behind the primary (0 without a read server)."""
        if self.read_url is None:
            return 0
        with self._connection() as conn:
            row = conn.execute(Q["primary_lsn"]).fetchone()
        with self._connection(self._read_pool) as conn:
            lag = conn.execute(Q["replica_lag"], {"primary_lsn": row[0] if row else None}).fetchone()
        return int(lag[0]) if lag and lag[0] is not None else 0
