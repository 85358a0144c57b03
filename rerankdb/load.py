"""Bulk loading of items and interactions from a file (``rerankdb load``).

A file is streamed (:mod:`rerankdb.filerows`), each record checked here in
Python (types, dimensions, finite numbers, known kinds) and COPYed in binary
into a staging table with its line number; what only the database can judge
(an item twice in one file, an interaction time in the future by the
database's clock) is checked there, set-based.  Then, in one transaction, the
rows go into rerankdb's tables through the same doors as single writes (the
items' upsert, ``rerankdb.set_item_vectors``, the interactions' triggers).

Strict by default: the first bad line is an error naming its line and field,
and nothing of the file is written.  With a reject file, bad lines go there
(in the file's own format; Parquet rows as JSON Lines) and the rest loads.

The text HNSW index: inserting into it row by row is what makes a large load
slow, so a load that brings many embeddings (``index="auto"``: at least
REBUILD_MIN rows and at least 1/REBUILD_FRACTION of the table's) drops it
concurrently before writing and builds it once afterwards, concurrently, with
``maintenance_work_mem`` and parallel workers set for the build.  Readers keep
working throughout: they see the old index, then none (a sequential scan:
slower, never an error), then the new one.  Only the table's owner may do
this; other roles load through the index (``auto`` falls back).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from rerankdb import filerows
from rerankdb.errors import InvalidInputError, PermissionDeniedError
from rerankdb.sqlfiles import queries

log = logging.getLogger(__name__)
Q = queries("load")

INT8_MIN, INT8_MAX = -(2**63), 2**63 - 1
MAX_WEIGHT = 1e6  # as rerankdb.interaction_problem checks
ITEM_FIELDS = ("item_id", "content", "metadata", "embedding")
INTERACTION_FIELDS = ("user_id", "item_id", "kind", "weight", "context", "occurred_at")
INDEX_MODES = ("auto", "rebuild", "incremental")
# auto rebuilds the index when a load brings at least this many embeddings ...
REBUILD_MIN = 10_000
# ... and at least 1/REBUILD_FRACTION of the rows the table will hold: one
# bulk build of the whole table then costs less than inserting the new rows
# one by one (measured by `python -m rerankdb.bench scale`: a row inserted
# into the index costs about 5x a row of a bulk build).
REBUILD_FRACTION = 5
VECTOR_CHUNK = 5_000  # rows per call of rerankdb.set_item_vectors
MAX_ERRORS_KEPT = 100  # rejected lines described in the report (all are written to the reject file)
# maintenance_work_mem for the index build: the graph should fit (pgvector
# says so in a NOTICE, and goes on much slower, when it does not); about
# 2 kB per item at 384-d: 2 GB for 1M items.
BUILD_MEMORY = "1GB"
BUILD_WORKERS = 2  # max_parallel_maintenance_workers for the build

Progress = Callable[[int], None]


class LoadError(InvalidInputError):
    """A line of the file is not what rerankdb expects; nothing of the file was written."""


@dataclass(frozen=True)
class Rejected:
    """A line that was not loaded, and why."""

    line: int
    field: str | None
    message: str


@dataclass(frozen=True)
class LoadReport:
    """What a load did."""

    rows: int  # records loaded
    rejected: int  # records not loaded (in the reject file)
    errors: tuple[Rejected, ...]  # the first MAX_ERRORS_KEPT of them, described
    with_embedding: int = 0  # items that brought a vector
    index: str = "incremental"  # "rebuilt": the text index was built once at the end
    seconds: float = 0.0  # the whole load
    index_seconds: float = 0.0  # of which the index build
    extra: dict[str, float] = field(default_factory=dict)


class _Bad(Exception):
    def __init__(self, field: str | None, message: str) -> None:
        self.field = field
        self.message = message


# -- fields -------------------------------------------------------------------


def _int8(raw: Any, name: str) -> int:
    if isinstance(raw, str):
        try:
            raw = int(raw.strip())
        except ValueError:
            raise _Bad(name, f"expected an integer, got {raw!r}") from None
    if isinstance(raw, bool) or not isinstance(raw, (int, np.integer)):
        raise _Bad(name, f"expected an integer, got {raw!r}")
    if not INT8_MIN <= int(raw) <= INT8_MAX:
        raise _Bad(name, f"{raw} does not fit a bigint")
    return int(raw)


def _text(raw: Any, name: str) -> str:
    if not isinstance(raw, str):
        raise _Bad(name, f"expected a string, got {raw!r}")
    if "\x00" in raw:
        raise _Bad(name, "contains a NUL character, which PostgreSQL text cannot hold")
    return raw


def _metadata(raw: Any) -> dict[str, Any]:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise _Bad("metadata", f"expected a JSON object, got {raw[:60]!r}") from None
    if not isinstance(raw, dict):
        raise _Bad("metadata", f"expected a JSON object, got {raw!r}")
    try:
        json.dumps(raw, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise _Bad("metadata", f"not JSON: {exc}") from None
    return raw


def _embedding(raw: Any, dim: int) -> np.ndarray:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise _Bad("embedding", f"expected a list of {dim} numbers like [0.1, -0.2, ...]") from None
    if isinstance(raw, (str, bytes, dict)) or not hasattr(raw, "__len__"):
        raise _Bad("embedding", f"expected a list of {dim} numbers, got {type(raw).__name__}")
    try:
        arr = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise _Bad("embedding", f"expected a list of {dim} numbers, got non-numbers") from None
    if arr.ndim != 1 or arr.shape[0] != dim:
        got = arr.shape[0] if arr.ndim == 1 else f"shape {arr.shape}"
        raise _Bad("embedding", f"expected {dim} numbers (the installed dimension), got {got}")
    if not np.isfinite(arr).all():
        raise _Bad("embedding", "must be finite (no NaN or infinity)")
    if np.abs(arr).max() > np.finfo(np.float32).max:
        raise _Bad("embedding", "has values beyond float32 range")
    out = arr.astype(np.float32)
    if not out.any():
        raise _Bad("embedding", "is a zero vector (or rounds to one in float32): it has no direction")
    return out


def _weight(raw: Any) -> float:
    if isinstance(raw, str):
        try:
            raw = float(raw)
        except ValueError:
            raise _Bad("weight", f"expected a number, got {raw!r}") from None
    if isinstance(raw, bool) or not isinstance(raw, (int, float, np.number)):
        raise _Bad("weight", f"expected a number, got {raw!r}")
    value = float(raw)
    if not math.isfinite(value) or abs(value) > MAX_WEIGHT:
        raise _Bad("weight", f"must be between -1e6 and 1e6, got {raw!r}")
    return value


def _time(raw: Any) -> datetime:
    """ISO 8601 (no offset: UTC), or seconds since the epoch."""
    if isinstance(raw, datetime):
        return raw if raw.tzinfo else raw.replace(tzinfo=timezone.utc)
    if isinstance(raw, str):
        text = raw.strip()
        try:
            raw = float(text)
        except ValueError:
            try:
                t = datetime.fromisoformat(text)
            except ValueError:
                raise _Bad(
                    "occurred_at",
                    f"expected an ISO 8601 time (2026-01-31T12:00:00Z) or seconds since the epoch, got {text!r}",
                ) from None
            return t if t.tzinfo else t.replace(tzinfo=timezone.utc)
    if isinstance(raw, bool) or not isinstance(raw, (int, float, np.number)):
        raise _Bad("occurred_at", f"expected a time, got {raw!r}")
    try:
        return datetime.fromtimestamp(float(raw), tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise _Bad(
            "occurred_at",
            f"{raw!r} seconds since the epoch is beyond the calendar (milliseconds? divide by 1000)",
        ) from None


def _fields(record: dict[str, Any], allowed: tuple[str, ...], required: tuple[str, ...]) -> dict[str, Any]:
    """The record without its nulls (a null is a missing value), once its fields are known."""
    record = {k: v for k, v in record.items() if v is not None}
    unknown = sorted(set(record) - set(allowed))
    if unknown:
        raise _Bad(unknown[0], f"unknown field; expected {', '.join(allowed)}")
    for name in required:
        if name not in record:
            raise _Bad(name, "missing (required)")
    return record


def item_row(record: dict[str, Any], dim: int) -> tuple[Any, ...]:
    """(item_id, content, metadata, embedding) from a record, or _Bad."""
    record = _fields(record, ITEM_FIELDS, ("item_id", "content"))
    return (
        _int8(record["item_id"], "item_id"),
        _text(record["content"], "content"),
        _metadata(record["metadata"]) if "metadata" in record else None,
        _embedding(record["embedding"], dim) if "embedding" in record else None,
    )


def interaction_row(record: dict[str, Any], kinds: set[str]) -> tuple[Any, ...]:
    """(user_id, item_id, kind, weight, context, occurred_at) from a record, or _Bad."""
    record = _fields(record, INTERACTION_FIELDS, ("user_id", "item_id"))
    kind = _text(record.get("kind", "view"), "kind")
    if kind not in kinds:
        raise _Bad("kind", f"unknown kind {kind!r}; known: {', '.join(sorted(kinds))}")
    return (
        _int8(record["user_id"], "user_id"),
        _int8(record["item_id"], "item_id"),
        kind,
        _weight(record["weight"]) if "weight" in record else None,
        _text(record["context"], "context") if "context" in record else None,
        _time(record["occurred_at"]) if "occurred_at" in record else None,
    )


# -- the load -----------------------------------------------------------------


@dataclass
class _Rejects:
    path: Path
    fmt: str
    allowed: bool  # a reject file was given
    lines: set[int] = field(default_factory=set)
    errors: list[Rejected] = field(default_factory=list)

    def add(self, line: int, field_: str | None, message: str) -> None:
        if not self.allowed:
            where = f"line {line}" + (f", field {field_}" if field_ else "")
            raise LoadError(
                f"{self.path.name} {where}: {message}; nothing was written "
                "(--reject-file PATH sets bad lines aside and loads the rest)"
            )
        if line not in self.lines:
            self.lines.add(line)
            if len(self.errors) < MAX_ERRORS_KEPT:
                self.errors.append(Rejected(line, field_, message))


def _stream(
    conn: psycopg.Connection[Any],
    path: Path,
    fmt: str,
    to_row: Callable[[dict[str, Any]], tuple[Any, ...]],
    copy: str,
    types: list[str],
    rejects: _Rejects,
    progress: Progress | None,
) -> int:
    """COPY every good record into the staging table; return how many."""
    n = 0
    with conn.cursor().copy(copy) as cp:
        cp.set_types(types)
        for rec in filerows.read_records(path, fmt):
            if rec.fields is None:
                rejects.add(rec.line, None, rec.error or "not a record")
                continue
            try:
                row = to_row(rec.fields)
            except _Bad as bad:
                rejects.add(rec.line, bad.field, bad.message)
                continue
            cp.write_row((rec.line, *row))
            n += 1
            if progress is not None and n % 10_000 == 0:
                progress(n)
    if progress is not None:
        progress(n)
    return n


def _db_rejects(conn: psycopg.Connection[Any], problems: str, unstage: str, rejects: _Rejects) -> None:
    """Lines the database refuses (``problems`` returns line, field, message), taken out of
    the stage (``unstage``)."""
    bad = conn.execute(problems).fetchall()
    for line, field_, message in bad:
        rejects.add(int(line), field_, message)
    if bad:
        conn.execute(unstage, {"lines": [int(b[0]) for b in bad]})


def _index_state(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute(Q["text_index_state"]).fetchone()
    return "missing" if row is None else ("valid" if row[0] else "invalid")


def _build_settings(conn: psycopg.Connection[Any], memory: str) -> None:
    """Set the build's memory and workers for this session, before anything is written:
    a bad value is an error now, not after the index was dropped."""
    try:
        conn.execute(Q["build_settings"], {"memory": memory, "workers": str(BUILD_WORKERS)})
    except psycopg.errors.DataError as exc:  # invalid_parameter_value is class 22
        raise InvalidInputError(
            f"build memory must be a PostgreSQL size like 1GB or 512MB, got {memory!r}"
        ) from exc


def _build_index(conn: psycopg.Connection[Any]) -> float:
    t0 = time.perf_counter()
    storage = conn.execute(Q["storage"]).fetchone()[0]  # type: ignore[index]
    conn.execute(Q["create_text_index_halfvec"] if storage == "halfvec" else Q["create_text_index_vector"])
    return time.perf_counter() - t0


def _open_rejects(path: Path, reject_file: Path | None) -> None:
    """Fail before loading anything if the reject file cannot be written (or is the input)."""
    if reject_file is None:
        return
    if reject_file.exists() and path.exists() and reject_file.resolve() == path.resolve():
        raise InvalidInputError(f"the reject file must not be the file being loaded ({path})")
    try:
        reject_file.open("w").close()
    except OSError as exc:
        raise InvalidInputError(f"cannot write the reject file {reject_file}: {exc.strerror}") from None


def _write_rejects(rejects: _Rejects, reject_file: Path | None) -> None:
    if reject_file is None or not rejects.lines:
        return
    with reject_file.open("w", encoding="utf-8", newline="") as out:
        filerows.copy_lines(rejects.path, rejects.fmt, rejects.lines, out)


def load_items(
    conn: psycopg.Connection[Any],
    path: Path,
    *,
    fmt: str | None = None,
    reject_file: Path | None = None,
    index: str = "auto",
    build_memory: str = BUILD_MEMORY,
    progress: Progress | None = None,
) -> LoadReport:
    """Load items (and their embeddings, where given) from ``path``.

    ``conn``: an autocommit connection (the index is dropped and built outside
    a transaction).  Items without an embedding are queued for the worker;
    items with one leave the queue (``rerankdb.set_item_vectors``).
    """
    if index not in INDEX_MODES:
        raise InvalidInputError(f"index must be one of {', '.join(INDEX_MODES)}, got {index!r}")
    fmt = filerows.detect_format(path, fmt)
    _open_rejects(path, reject_file)
    t0 = time.perf_counter()
    dim = int(conn.execute(Q["dimension"]).fetchone()[0])  # type: ignore[index]
    _build_settings(conn, build_memory)
    rejects = _Rejects(path, fmt, reject_file is not None)
    conn.execute(Q["create_items_stage"])
    try:
        _stream(
            conn, path, fmt, lambda r: item_row(r, dim), Q["copy_items_stage"],
            ["int8", "int8", "text", "jsonb", "vector"], rejects, progress,
        )  # fmt: skip
        conn.execute(Q["index_items_stage"])
        _db_rejects(conn, Q["items_stage_problems"], Q["unstage_items"], rejects)
        staged, embedded = conn.execute(Q["items_stage_counts"]).fetchone()  # type: ignore[misc]
        mode = _index_mode(conn, index, int(embedded))
        index_seconds = 0.0
        locked = False
        try:
            if mode == "rebuilt":
                conn.execute(Q["lock_index_build"])
                locked = True
                if _index_state(conn) != "missing":
                    conn.execute(Q["drop_text_index"])
            with conn.transaction():
                conn.execute(Q["upsert_items"])
                last = int(conn.execute(Q["items_stage_last_line"]).fetchone()[0])  # type: ignore[index]
                for lo in range(0, last + 1, VECTOR_CHUNK):
                    conn.execute(Q["set_item_vectors"], {"lo": lo, "hi": lo + VECTOR_CHUNK})
        finally:
            if locked:
                log.info("building the text index of rerankdb.item_vectors")
                index_seconds = _build_index(conn)
                conn.execute(Q["unlock_index_build"])
    finally:
        conn.execute(Q["drop_items_stage"])
    _write_rejects(rejects, reject_file)
    return LoadReport(
        rows=int(staged),
        rejected=len(rejects.lines),
        errors=tuple(sorted(rejects.errors, key=lambda r: r.line)),
        with_embedding=int(embedded),
        index=mode,
        seconds=time.perf_counter() - t0,
        index_seconds=index_seconds,
    )


def _index_mode(conn: psycopg.Connection[Any], index: str, embedded: int) -> str:
    """ "rebuilt" or "incremental", by ``index`` and what the load brings."""
    owner = bool(conn.execute(Q["owns_item_vectors"]).fetchone()[0])  # type: ignore[index]
    state = _index_state(conn)
    if index == "rebuild" and not owner:
        raise PermissionDeniedError(
            "rebuilding the text index needs the owner of rerankdb.item_vectors "
            "(the role that installed rerankdb); load with --index incremental, or as the owner"
        )
    if not owner:
        if state != "valid":
            log.warning("the text index of rerankdb.item_vectors is %s: its owner should load again", state)
        return "incremental"
    if index == "rebuild" or state != "valid":
        return "rebuilt"  # a missing or invalid index (a load killed mid-build) is repaired too
    if index == "incremental" or embedded < REBUILD_MIN:
        return "incremental"
    existing = int(conn.execute(Q["item_vectors_rows"]).fetchone()[0])  # type: ignore[index]
    return "rebuilt" if embedded * REBUILD_FRACTION >= existing + embedded else "incremental"


def load_interactions(
    conn: psycopg.Connection[Any],
    path: Path,
    *,
    fmt: str | None = None,
    reject_file: Path | None = None,
    progress: Progress | None = None,
) -> LoadReport:
    """Append the interactions of ``path`` to the log (queued for folding as any insert)."""
    fmt = filerows.detect_format(path, fmt)
    _open_rejects(path, reject_file)
    t0 = time.perf_counter()
    kinds = {r[0] for r in conn.execute(Q["kinds"]).fetchall()}
    rejects = _Rejects(path, fmt, reject_file is not None)
    conn.execute(Q["create_interactions_stage"])
    try:
        _stream(
            conn, path, fmt, lambda r: interaction_row(r, kinds), Q["copy_interactions_stage"],
            ["int8", "int8", "int8", "text", "float8", "text", "timestamptz"], rejects, progress,
        )  # fmt: skip
        with conn.transaction():
            _db_rejects(conn, Q["interactions_stage_problems"], Q["unstage_interactions"], rejects)
            cur = conn.execute(Q["insert_interactions"])
            rows = int(cur.rowcount)
    finally:
        conn.execute(Q["drop_interactions_stage"])
    _write_rejects(rejects, reject_file)
    return LoadReport(
        rows=rows,
        rejected=len(rejects.lines),
        errors=tuple(sorted(rejects.errors, key=lambda r: r.line)),
        seconds=time.perf_counter() - t0,
    )


def iter_errors(report: LoadReport) -> Iterator[str]:
    """One line per described rejection, for a terminal."""
    for r in report.errors:
        yield f"line {r.line}" + (f", field {r.field}" if r.field else "") + f": {r.message}"
