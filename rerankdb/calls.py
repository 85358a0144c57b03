"""What the clients send: the checks and parameters of every call, and the rows they return.

:class:`rerankdb.Client` and :class:`rerankdb.AsyncClient` share this module, so
both refuse the same input with the same message (nothing is written) and send
the same statements; each only runs them, blocking or awaiting.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import psycopg

from rerankdb import db
from rerankdb.errors import (
    ConfigError,
    DatabaseUnavailableError,
    DimensionMismatchError,
    InvalidInputError,
    SchemaNotInstalledError,
    UnknownKindError,
)
from rerankdb.sqlfiles import queries

Q = queries("calls")
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


def _check_flag(value: Any, name: str) -> bool:
    """A yes/no option: True or False, nothing else (None is not "the default": say so)."""
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidInputError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _nul_in(value: Any) -> bool:
    """Whether a NUL character is anywhere in a JSON value (PostgreSQL's jsonb refuses it)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, Mapping):
        return any(_nul_in(k) or _nul_in(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_nul_in(v) for v in value)
    return False


# -- reads: one statement and its parameters ---------------------------------------


@dataclass(frozen=True)
class Read:
    """A read statement with its checked parameters, ready to run on either client."""

    query: str
    params: dict[str, Any]


def rerank(
    user_id: int,
    candidates: Sequence[int | None] | np.ndarray,
    k: int | None,
    diversity: float,
    context_items: Sequence[int] | None,
    exclude_seen: bool,
) -> Read:
    return Read(
        Q["rerank"],
        {
            "user": _check_id(user_id, "user_id"),
            "candidates": _candidates(candidates),
            "k": _check_k(k, allow_none=True),
            "diversity": _check_diversity(diversity),
            "context": _context(context_items),
            "exclude_seen": _check_flag(exclude_seen, "exclude_seen"),
        },
    )


def rerank_scored(
    user_id: int,
    candidates: Sequence[int],
    base_scores: Sequence[float | None],
    weight: float,
    k: int | None,
    diversity: float,
    context_items: Sequence[int] | None,
    exclude_seen: bool,
) -> Read:
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
    return Read(
        Q["rerank_scored"],
        {
            "user": _check_id(user_id, "user_id"),
            "candidates": _candidates(candidates),
            "scores": scores,
            "weight": float(weight),
            "k": _check_k(k, allow_none=True),
            "diversity": _check_diversity(diversity),
            "context": _context(context_items),
            "exclude_seen": _check_flag(exclude_seen, "exclude_seen"),
        },
    )


def recommend(user_id: int, k: int, exclude_seen: bool) -> Read:
    return Read(
        Q["recommend"],
        {
            "user": _check_id(user_id, "user_id"),
            "k": _check_k(k, allow_none=False),
            "exclude_seen": _check_flag(exclude_seen, "exclude_seen"),
        },
    )


def similar_items(item_id: int, k: int) -> Read:
    return Read(
        Q["similar_items"], {"item": _check_id(item_id, "item_id"), "k": _check_k(k, allow_none=False)}
    )


def explain(user_id: int, item_ids: Sequence[int], n: int) -> Read:
    uid = _check_id(user_id, "user_id")
    if isinstance(item_ids, (str, bytes)) or item_ids is None:
        raise InvalidInputError(f"item_ids must be a sequence of item ids, got {item_ids!r}")
    items = [_check_id(i, "an item_id") for i in item_ids]
    return Read(Q["explain"], {"user": uid, "items": items, "n": _check_k(n, allow_none=False, name="n")})


def ranked(rows: Iterable[tuple[Any, ...]]) -> list[Ranked]:
    return [Ranked(i, s, r) for i, s, r in rows]


def reasons(rows: Iterable[tuple[Any, ...]]) -> list[Reason]:
    return [Reason(*row) for row in rows]


# -- writes: checked rows, before anything is sent ------------------------------------


def item_rows(items: Iterable[Item | Mapping[str, Any]]) -> list[tuple[int, str, Any]]:
    """The rows of an upsert, every item checked; ids unique."""
    from psycopg.types.json import Jsonb

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
        if _nul_in(it.metadata):
            raise InvalidInputError(
                f"item {item_id}: metadata contains a NUL character, which PostgreSQL's jsonb cannot store"
            )
        rows.append((item_id, it.content, Jsonb(dict(it.metadata))))
    _unique_ids((r[0] for r in rows), "item_id")
    return rows


InteractionRow = tuple[int, int, str, float | None, str | None, datetime | None]


def interaction_rows(interactions: Iterable[Interaction | Mapping[str, Any]]) -> list[InteractionRow]:
    """The rows of an append, every interaction checked (kinds are checked against the database)."""
    rows: list[InteractionRow] = []
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
    return rows


def check_kinds(rows: Sequence[InteractionRow], known: Iterable[str]) -> list[str]:
    """Raise UnknownKindError unless every row's kind is known; the kinds used."""
    known = sorted(known)
    used = sorted({r[2] for r in rows})
    unknown = [k for k in used if k not in known]
    if unknown:
        raise UnknownKindError(unknown, known)
    return used


def with_now(row: InteractionRow, now: datetime) -> InteractionRow:
    """occurred_at None means the database's now(): COPY has no DEFAULT per row, so fill it in."""
    return row if row[5] is not None else (*row[:5], now)


def refused_interaction(exc: psycopg.Error) -> InvalidInputError | None:
    """rerankdb.check_interaction's refusal (a future time, say) as an InvalidInputError: its message
    says it all.  None for any other error."""
    if isinstance(exc, (psycopg.errors.DatetimeFieldOverflow, psycopg.errors.NumericValueOutOfRange)):
        return InvalidInputError(f"{str(exc).strip()}; nothing was written")
    return None


def vector_chunks(of: str, ids: Sequence[int], vectors: Any, dim: int) -> list[dict[str, Any]]:
    """The parameters of rerankdb.set_item_vectors / set_user_vectors, checked, in chunks."""
    ids_ = _unique_ids(ids, f"{of}_id")
    arr = _as_matrix(vectors, len(ids_), dim, f"{of} vectors")
    return [
        {
            "ids": db.BigintArray(np.asarray(ids_[lo : lo + VECTOR_CHUNK])),
            "vectors": list(arr[lo : lo + VECTOR_CHUNK]),
        }
        for lo in range(0, len(ids_), VECTOR_CHUNK)
    ]


def unknown_items(exc: psycopg.errors.ForeignKeyViolation) -> InvalidInputError:
    """set_item_vectors' refusal of items that do not exist (it names them)."""
    return InvalidInputError(f"{str(exc).strip()} (upsert_items); nothing was written")


def user(user_id: int) -> dict[str, int]:
    return {"user": _check_id(user_id, "user_id")}


def item_ids(ids: Iterable[int]) -> dict[str, list[int]]:
    return {"items": [_check_id(i, "item_id") for i in ids]}


def max_users(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"max_users must be a positive integer, got {value!r}")
    return value


def status(
    revision: str | None,
    dimension: int,
    counts: Sequence[Any],
    worker: Sequence[Any],
    storage_and_index: Sequence[Any],
    workers: Iterable[Sequence[Any]],
) -> Status:
    """A Status from the rows of the status statements (client.sql)."""
    items, item_vectors, user_vectors, interactions = map(int, counts)
    storage, index = storage_and_index
    st = Status(revision, dimension, items, item_vectors, user_vectors, interactions, *worker[:13])
    return replace(
        st,
        storage=storage or "vector",
        text_index=index or "missing",
        last_compact_at=worker[13],
        compacted_before=worker[14],
        workers=tuple(WorkerRow(*r) for r in workers),
    )


# -- what goes wrong, said once for both clients -----------------------------------

READ_SERVER = "the read server (read_url)"
READ_FALLBACK = "read server unavailable (%s); reading from the primary for %g s"
READ_RETRY_PAUSE = 0.05  # seconds between tries of a read whose connection was lost
FORGET_ATTEMPTS = 5


def no_schema(server: str, cause: Exception | None = None) -> SchemaNotInstalledError:
    if server == READ_SERVER:
        return SchemaNotInstalledError(
            f"{server} has no rerankdb schema: {cause or 'run `rerankdb migrate`'}"
        )
    if cause is not None:
        return SchemaNotInstalledError(str(cause))
    return SchemaNotInstalledError("no rerankdb schema in this database: run `rerankdb migrate` first")


def unreachable(server: str, exc: Exception) -> DatabaseUnavailableError:
    return DatabaseUnavailableError(f"cannot connect to {server}: {' '.join(str(exc).split())}")


def check_read_dimension(read_dim: int, dim: int) -> None:
    """The read server must hold the same schema as the primary: else a clear error now."""
    if read_dim != dim:
        raise ConfigError(
            f"{READ_SERVER} holds {read_dim}-d vectors, the primary {dim}-d: "
            "read_url must be a replica of the same database"
        )


def pool_timeout(timeout: float, stats: Mapping[str, int]) -> DatabaseUnavailableError:
    return DatabaseUnavailableError(
        f"no connection to the database within {timeout:g} s: is the server running? "
        f"({stats.get('connections_errors', 0)} failed attempts)"
    )


def lost_connection(exc: psycopg.OperationalError) -> DatabaseUnavailableError | None:
    """A lost connection or a server shutting down, as DatabaseUnavailableError; None for other errors."""
    if not exc.sqlstate or exc.sqlstate.startswith(("08", "57")):  # connection, shutdown
        return DatabaseUnavailableError(f"lost the connection to the database: {str(exc).strip()}")
    return None


def kind_deleted(used: Sequence[str]) -> UnknownKindError:
    """A kind known when checked but gone at the write (deleted meanwhile)."""
    return UnknownKindError(list(used), ["the kinds now in rerankdb.interaction_kinds"])


def forget_backoff(attempt: int) -> float:
    return 0.05 * (attempt + 1)


def forget_conflict(user_id: int) -> DatabaseUnavailableError:
    return DatabaseUnavailableError(f"forget_user({user_id}) kept conflicting with concurrent work")


def tune_denied(exc: Exception) -> str:
    return (
        "rerankdb tune reads the log and the vectors and writes rerankdb.settings: connect as "
        f"the owner or a member of rerankdb_worker ({str(exc).strip()})"
    )


def lag_bytes(row: Sequence[Any] | None) -> int:
    return int(row[0]) if row and row[0] is not None else 0
