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
import os
import secrets
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from rerankdb import filerows
from rerankdb.errors import InvalidInputError, PermissionDeniedError, RerankdbError
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
RETRIES = 3  # tries of the load's transaction when the database breaks a deadlock by aborting it

Progress = Callable[[int], None]


class LoadError(InvalidInputError):
    """A line of the file is not what rerankdb expects; nothing of the file was written."""


class LoadFailedError(RerankdbError):
    """A load that stopped part way; the message says what it committed and what is left.

    ``committed``: the report of what is in the database, or None when nothing
    (or, the connection lost during COMMIT, when that cannot be known: the
    message says which).
    """

    def __init__(self, message: str, committed: LoadReport | None = None) -> None:
        super().__init__(message)
        self.committed = committed


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
    # "rebuilt": the text index was built once at the end ("not rebuilt": that build failed)
    index: str = "incremental"
    seconds: float = 0.0  # the whole load
    index_seconds: float = 0.0  # of which the index build
    extra: dict[str, float] = field(default_factory=dict)
    changed: int = 0  # items new, or with new content or metadata (the others were left as they were)
    queued: int = 0  # items this load queued for the worker's encoder (new text, no embedding)


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


class _RejectFile:
    """The reject file: checked before anything is read or written, filled in a
    temporary file beside it before the load commits, put in place (renamed) once it
    has.  A load that fails leaves an existing reject file as it was."""

    def __init__(self, given: Path, target: Path, direct: bool) -> None:
        self.given = given  # as the caller named it
        self.target = target  # symbolic links followed
        self.direct = direct  # a device or pipe (/dev/null): written into, not replaced
        self.temp: Path | None = None

    @classmethod
    def prepare(cls, path: Path, input_stat: os.stat_result, given: Path | None) -> _RejectFile | None:
        if given is None:
            return None

        def refuse(why: str) -> InvalidInputError:
            return InvalidInputError(f"cannot write the reject file {given}: {why}; nothing was written")

        # The same file by any name (a hard or symbolic link, another path): writing
        # it would destroy the input.  Compared by device and inode, not by name.
        try:
            existing: os.stat_result | None = given.stat()
        except FileNotFoundError:
            existing = None  # nothing there yet (or a dangling link: writing creates its target)
        except OSError as exc:
            raise refuse(exc.strerror or str(exc)) from None
        if existing is not None and (existing.st_dev, existing.st_ino) == (
            input_stat.st_dev,
            input_stat.st_ino,
        ):
            raise InvalidInputError(
                f"the reject file must not be the file being loaded ({given} is {path}); nothing was written"
            )
        if not stat.S_ISREG(input_stat.st_mode):
            raise InvalidInputError(
                f"a reject file needs {path} read a second time (for the bad lines), and it is a pipe "
                "or device that can be read once: save it to a file first, or load without --reject-file"
            )
        target = Path(os.path.realpath(given))
        if existing is not None and stat.S_ISDIR(existing.st_mode):
            raise refuse("it is a directory")
        if existing is not None and not stat.S_ISREG(existing.st_mode):
            if not os.access(target, os.W_OK):
                raise refuse("permission denied")
            return cls(given, target, direct=True)
        if existing is not None and not os.access(target, os.W_OK):
            raise refuse("permission denied")
        if not target.parent.is_dir():
            raise refuse(f"no such directory: {target.parent}")
        out = cls(given, target, direct=False)
        temp = target.parent / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:  # proves the directory writable; the umask sets its mode, as for any new file
            os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except OSError as exc:
            raise refuse(exc.strerror or str(exc)) from None
        out.temp = temp
        if existing is not None:
            os.chmod(temp, stat.S_IMODE(existing.st_mode))
        return out

    def write(self, rejects: _Rejects) -> None:
        """Copy the rejected lines (before the load commits: a failure here writes nothing)."""
        try:
            with (self.target if self.direct else self.temp or self.target).open(
                "w", encoding="utf-8", newline=""
            ) as out:
                filerows.copy_lines(rejects.path, rejects.fmt, rejects.lines, out)
        except OSError as exc:
            raise InvalidInputError(
                f"cannot write the reject file {self.given}: {exc.strerror or exc}; nothing was written"
            ) from None

    def put_in_place(self) -> None:
        if self.temp is not None:
            os.replace(self.temp, self.target)
            self.temp = None

    def discard(self) -> None:
        if self.temp is not None:
            self.temp.unlink(missing_ok=True)
            self.temp = None


def _check_unchanged(path: Path, before: os.stat_result) -> None:
    """The file read twice (records, then the reject file's lines) must be one file."""
    if not filerows.unchanged(path, before):
        raise InvalidInputError(
            f"{path} changed while it was being loaded; nothing was written: load it again once "
            "it is complete"
        )


def _cause(exc: BaseException) -> str:
    """An error in one line, for a message that goes on."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _quietly(conn: psycopg.Connection[Any], statement: str) -> None:
    """Clean up after a load (a temporary table, a session lock): nothing to do, and
    nothing to report, when the connection is gone (the server drops both with it)."""
    if conn.closed:
        return
    try:
        conn.execute(statement)
    except psycopg.Error as exc:
        log.debug("load cleanup %s: %s", statement.split()[0], exc)


def _transact(conn: psycopg.Connection[Any], body: Callable[[], None]) -> bool:
    """Run ``body`` in one transaction, again (up to RETRIES times) if the database
    broke a deadlock with another writer by rolling it back: the stage it reads is
    outside the transaction, so nothing is lost.  Return True once committed; raise
    _CommitInDoubt when the connection was lost during COMMIT."""
    for attempt in range(1, RETRIES + 1):
        committing = False
        try:
            with conn.transaction():
                body()
                committing = True
            return True
        except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure) as exc:
            if committing or attempt == RETRIES:
                raise
            log.info("load transaction rolled back (%s); trying again", _cause(exc))
        except psycopg.OperationalError as exc:
            if committing:
                raise _CommitInDoubt(exc) from exc
            raise
    return False  # not reached


class _CommitInDoubt(Exception):
    """The connection was lost during COMMIT: whether it happened, only the database knows."""

    def __init__(self, cause: psycopg.OperationalError) -> None:
        super().__init__(str(cause))


def _failed_before_commit(path: Path, exc: BaseException, index_note: str) -> BaseException:
    """What to raise for a load that stopped before its commit (or at it)."""
    if isinstance(exc, _CommitInDoubt):
        return LoadFailedError(
            f"{path.name}: the database connection was lost while committing ({_cause(exc)}): the "
            "load may or may not be in the database; `rerankdb status` shows the counts" + index_note
        )
    if isinstance(exc, psycopg.Error) or index_note:
        return LoadFailedError(f"{path.name}: nothing was loaded: {_cause(exc)}" + index_note)
    return exc  # a bad line, an unreadable file: its message says that nothing was written


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


def _lock_index_build(conn: psycopg.Connection[Any]) -> None:
    """Wait for the index lock without holding a snapshot while waiting.

    Another load's ``CREATE INDEX CONCURRENTLY`` waits for every transaction
    whose snapshot is older than its own; ``pg_advisory_lock`` waits inside a
    statement, which holds a snapshot, for the lock that build's load holds:
    the two deadlock (and PostgreSQL aborts one, maybe the build of a load that
    has committed).  So: try, and sleep outside any statement.
    """
    delay = 0.05
    while not conn.execute(Q["try_lock_index_build"]).fetchone()[0]:  # type: ignore[index]
        if delay == 0.05:
            log.info("waiting for another load's text index build")
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


def _build_index(conn: psycopg.Connection[Any]) -> float:
    t0 = time.perf_counter()
    storage = conn.execute(Q["storage"]).fetchone()[0]  # type: ignore[index]
    conn.execute(Q["create_text_index_halfvec"] if storage == "halfvec" else Q["create_text_index_vector"])
    return time.perf_counter() - t0


def _rebuild_hint(path: Path) -> str:
    return (
        "until it is built, searches scan every item vector (`rerankdb status` shows it); "
        f"`rerankdb load items {path} --index rebuild` as the owner of rerankdb.item_vectors builds it "
        "(so does the owner's next load of items)"
    )


def _restore_index(conn: psycopg.Connection[Any], path: Path) -> str:
    """After a failed load that took the index lock: build the index it may have dropped.
    Return what the message must add when that failed too."""
    try:
        if not conn.closed:
            _build_index(conn)
            if _index_state(conn) == "valid":
                return ""
        return f"; the text index was dropped for the load and is not rebuilt: {_rebuild_hint(path)}"
    except psycopg.Error as exc:
        return (
            f"; the text index was dropped for the load and its rebuild failed ({_cause(exc)}): "
            + _rebuild_hint(path)
        )
    finally:
        _quietly(conn, Q["unlock_index_build"])


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

    Either nothing is written (a bad line, an unreadable file, a database error
    before the commit: the error says so), or the items are committed and the
    report says how many; if a step after the commit fails (the index build),
    :class:`LoadFailedError` says what was committed and what is left to do.
    """
    if index not in INDEX_MODES:
        raise InvalidInputError(f"index must be one of {', '.join(INDEX_MODES)}, got {index!r}")
    fmt = filerows.detect_format(path, fmt)
    before = filerows.check_input(path)
    out = _RejectFile.prepare(path, before, reject_file)
    try:
        return _load_items(conn, path, fmt, before, out, index, build_memory, progress)
    finally:
        if out is not None:
            out.discard()  # a temporary file left by a load that failed


def _load_items(
    conn: psycopg.Connection[Any],
    path: Path,
    fmt: str,
    before: os.stat_result,
    out: _RejectFile | None,
    index: str,
    build_memory: str,
    progress: Progress | None,
) -> LoadReport:
    t0 = time.perf_counter()
    dim = int(conn.execute(Q["dimension"]).fetchone()[0])  # type: ignore[index]
    _build_settings(conn, build_memory)
    rejects = _Rejects(path, fmt, out is not None)
    locked = False
    done: dict[str, int] = {}

    def write() -> None:
        done["queued"] = int(conn.execute(Q["items_to_queue"]).fetchone()[0])  # type: ignore[index]
        done["changed"] = int(conn.execute(Q["upsert_items"]).rowcount)
        last = int(conn.execute(Q["items_stage_last_line"]).fetchone()[0])  # type: ignore[index]
        for lo in range(0, last + 1, VECTOR_CHUNK):
            conn.execute(Q["set_item_vectors"], {"lo": lo, "hi": lo + VECTOR_CHUNK})

    try:
        conn.execute(Q["create_items_stage"])
        _stream(
            conn, path, fmt, lambda r: item_row(r, dim), Q["copy_items_stage"],
            ["int8", "int8", "text", "jsonb", "vector"], rejects, progress,
        )  # fmt: skip
        conn.execute(Q["index_items_stage"])
        _db_rejects(conn, Q["items_stage_problems"], Q["unstage_items"], rejects)
        staged, embedded = conn.execute(Q["items_stage_counts"]).fetchone()  # type: ignore[misc]
        mode = _index_mode(conn, index, int(embedded))
        if out is not None:
            out.write(rejects)
        _check_unchanged(path, before)
        if mode == "rebuilt":
            _lock_index_build(conn)
            locked = True
            if _index_state(conn) != "missing":  # as it is now that the lock is ours
                conn.execute(Q["drop_text_index"])
        _transact(conn, write)
    except BaseException as exc:
        note = _restore_index(conn, path) if locked else ""
        _quietly(conn, Q["drop_items_stage"])
        failure = _failed_before_commit(path, exc, note)
        if failure is exc:
            raise
        raise failure from exc
    _quietly(conn, Q["drop_items_stage"])
    report = LoadReport(
        rows=int(staged),
        rejected=len(rejects.lines),
        errors=tuple(sorted(rejects.errors, key=lambda r: r.line)),
        with_embedding=int(embedded),
        index=mode,
        changed=done["changed"],
        queued=done["queued"],
    )
    left: list[str] = []
    index_seconds = 0.0
    if out is not None:
        try:
            out.put_in_place()
        except OSError as exc:
            left.append(f"the reject file {out.given} was not written ({exc.strerror or exc})")
    if locked:
        try:
            log.info("building the text index of rerankdb.item_vectors")
            index_seconds = _build_index(conn)
        except psycopg.Error as exc:
            report = replace(report, index="not rebuilt")
            left.append(f"the text index build failed ({_cause(exc)}): {_rebuild_hint(path)}")
        finally:
            _quietly(conn, Q["unlock_index_build"])
    report = replace(report, seconds=time.perf_counter() - t0, index_seconds=index_seconds)
    if left:
        raise LoadFailedError(
            f"{path.name}: {describe(report, 'items')} committed; but " + "; ".join(left), report
        )
    return report


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
    """Append the interactions of ``path`` to the log (queued for folding as any insert).

    All or nothing: either every good line is committed, or nothing is written
    and the error says so.
    """
    fmt = filerows.detect_format(path, fmt)
    before = filerows.check_input(path)
    out = _RejectFile.prepare(path, before, reject_file)
    t0 = time.perf_counter()
    done: dict[str, int] = {}

    def write() -> None:
        done["rows"] = int(conn.execute(Q["insert_interactions"]).rowcount)

    try:
        kinds = {r[0] for r in conn.execute(Q["kinds"]).fetchall()}
        rejects = _Rejects(path, fmt, out is not None)
        conn.execute(Q["create_interactions_stage"])
        _stream(
            conn, path, fmt, lambda r: interaction_row(r, kinds), Q["copy_interactions_stage"],
            ["int8", "int8", "int8", "text", "float8", "text", "timestamptz"], rejects, progress,
        )  # fmt: skip
        # Outside the transaction: a time that is not in the future now will not be at the insert.
        _db_rejects(conn, Q["interactions_stage_problems"], Q["unstage_interactions"], rejects)
        if out is not None:
            out.write(rejects)
        _check_unchanged(path, before)
        _transact(conn, write)
    except BaseException as exc:
        _quietly(conn, Q["drop_interactions_stage"])
        if out is not None:
            out.discard()
        failure = _failed_before_commit(path, exc, "")
        if failure is exc:
            raise
        raise failure from exc
    _quietly(conn, Q["drop_interactions_stage"])
    report = LoadReport(
        rows=done["rows"],
        rejected=len(rejects.lines),
        errors=tuple(sorted(rejects.errors, key=lambda r: r.line)),
        seconds=time.perf_counter() - t0,
    )
    if out is not None:
        try:
            out.put_in_place()
        except OSError as exc:
            raise LoadFailedError(
                f"{path.name}: {describe(report, 'interactions')} committed; but the reject file "
                f"{out.given} was not written ({exc.strerror or exc}): do not load the file again "
                "(interactions are appended: they would count twice)",
                report,
            ) from exc
        finally:
            out.discard()
    return report


def describe(report: LoadReport, what: str) -> str:
    """What a load wrote, in a few words: "320 items (0 new or changed, 320 with embeddings,
    0 queued for the worker's encoder)"."""
    text = f"{report.rows} {what}"
    if what == "items":
        text += (
            f" ({report.changed} new or changed, {report.with_embedding} with embeddings, "
            f"{report.queued} queued for the worker's encoder)"
        )
    return text


def iter_errors(report: LoadReport) -> Iterator[str]:
    """One line per described rejection, for a terminal."""
    for r in report.errors:
        yield f"line {r.line}" + (f", field {r.field}" if r.field else "") + f": {r.message}"
