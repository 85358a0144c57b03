"""Bulk loading of items and interactions from a file (``rerankdb load``).

A file is streamed (:mod:`rerankdb.filerows`), each record checked in Python
(:mod:`rerankdb.load_rows`: types, dimensions, finite numbers, known kinds) and COPYed in binary
into a staging table with its line number; what only the database can judge
(an item twice in one file, an interaction time in the future by the
database's clock) is checked there, set-based.  Then, in one transaction, the
rows go into rerankdb's tables through the same doors as single writes (the
items' upsert, ``rerankdb.set_item_vectors``, the interactions' triggers).

Strict by default: the first bad line is an error naming its line and field,
and nothing of the file is written.  With a reject file, bad lines go there
(as the file has them; Parquet rows as JSON Lines) and the rest loads.  The
reject file is never the input (by any name), and is filled before the
commit: a load either writes nothing, and its error says so, or commits and
says what; a step after the commit that fails (the index build) raises
:class:`LoadFailedError` naming what was committed and what is left to do.

The text HNSW index: inserting into it row by row is what makes a large load
slow, so a load that brings many embeddings (``index="auto"``: at least
REBUILD_MIN rows and at least 1/REBUILD_FRACTION of the table's) drops it
concurrently before writing and builds it once afterwards, concurrently, with
``maintenance_work_mem`` and parallel workers set for the build.  Readers keep
working throughout: they see the old index, then none (a sequential scan:
slower, never an error), then the new one.  Only the table's owner may do
this; other roles load through the index (``auto`` falls back).  One load
at a time drops and builds it (:mod:`rerankdb.load_index`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psycopg

from rerankdb import filerows, load_index
from rerankdb.errors import InvalidInputError, PermissionDeniedError, RerankdbError
from rerankdb.load_index import cause, quietly
from rerankdb.load_rows import BadField, csv_interactions, interaction_row, item_row
from rerankdb.sqlfiles import queries

log = logging.getLogger(__name__)
Q = queries("load")

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
RETRIES = 3  # tries of the load's transaction when the database breaks a deadlock by aborting it
# A load of at least this many interactions queues a user whose log it at least
# doubles for one rebuild (the worker reads their log once) instead of a queue
# row per interaction: measured by `python -m rerankdb.bench loads`.
BY_USER_MIN = 10_000

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
    users_queued: int = 0  # users whose interactions the worker counts by a rebuild (a large load)


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
    csv_fast: CsvFast | None = None,
) -> int:
    """COPY every good record into the staging table; return how many."""
    n = 0
    with conn.cursor().copy(copy) as cp:
        cp.set_types(types)
        for line, row in _rows(path, fmt, to_row, rejects, csv_fast):
            cp.write_row((line, *row))
            n += 1
            if progress is not None and n % 10_000 == 0:
                progress(n)
    if progress is not None:
        progress(n)
    return n


# For a CSV file, given its header: a converter of a record's cells straight to a row
# (None for a record it leaves to ``to_row``), or None (every record goes to ``to_row``).
CsvFast = Callable[[list[str]], Callable[[list[str]], "tuple[Any, ...] | None"] | None]


def _rows(
    path: Path,
    fmt: str,
    to_row: Callable[[dict[str, Any]], tuple[Any, ...]],
    rejects: _Rejects,
    csv_fast: CsvFast | None,
) -> Iterator[tuple[int, tuple[Any, ...]]]:
    """(line, row) of every good record; the bad ones go to ``rejects``."""

    def checked(line: int, fields: dict[str, Any] | None, error: str | None) -> tuple[Any, ...] | None:
        if fields is None:
            rejects.add(line, None, error or "not a record")
            return None
        try:
            return to_row(fields)
        except BadField as bad:
            rejects.add(line, bad.field, bad.message)
            return None

    if fmt == "csv" and csv_fast is not None:
        table = filerows.csv_table(path)
        first = next(table, None)
        header = (first[1] or []) if first is not None else []
        fast = csv_fast(header)
        for line, cells, error in table:
            row = fast(cells) if fast is not None and cells is not None else None
            if row is None:
                fields = (
                    None if cells is None else {h: v for h, v in zip(header, cells, strict=True) if v != ""}
                )
                row = checked(line, fields, error)
            if row is not None:
                yield line, row
        return
    for rec in filerows.read_records(path, fmt):
        row = checked(rec.line, rec.fields, rec.error)
        if row is not None:
            yield rec.line, row


def _db_rejects(conn: psycopg.Connection[Any], problems: str, unstage: str, rejects: _Rejects) -> None:
    """Lines the database refuses (``problems`` returns line, field, message), taken out of
    the stage (``unstage``)."""
    bad = conn.execute(problems).fetchall()
    for line, field_, message in bad:
        rejects.add(int(line), field_, message)
    if bad:
        conn.execute(unstage, {"lines": [int(b[0]) for b in bad]})


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
            log.info("load transaction rolled back (%s); trying again", cause(exc))
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
            f"{path.name}: the database connection was lost while committing ({cause(exc)}): the "
            "load may or may not be in the database; `rerankdb status` shows the counts" + index_note
        )
    if isinstance(exc, psycopg.Error) or index_note:
        return LoadFailedError(f"{path.name}: nothing was loaded: {cause(exc)}" + index_note)
    return exc  # a bad line, an unreadable file: its message says that nothing was written


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
    out = filerows.RejectFile.prepare(path, before, reject_file)
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
    out: filerows.RejectFile | None,
    index: str,
    build_memory: str,
    progress: Progress | None,
) -> LoadReport:
    t0 = time.perf_counter()
    dim = int(conn.execute(Q["dimension"]).fetchone()[0])  # type: ignore[index]
    load_index.build_settings(conn, build_memory)
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
            out.write(path, fmt, rejects.lines)
        filerows.check_unchanged(path, before)
        if mode == "rebuilt":
            load_index.lock_build(conn)
            locked = True
            if load_index.state(conn) != "missing":  # as it is now that the lock is ours
                load_index.drop(conn)
        _transact(conn, write)
    except BaseException as exc:
        note = load_index.restore(conn, path) if locked else ""
        quietly(conn, Q["drop_items_stage"])
        failure = _failed_before_commit(path, exc, note)
        if failure is exc:
            raise
        raise failure from exc
    quietly(conn, Q["drop_items_stage"])
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
            index_seconds = load_index.build(conn)
        except (psycopg.Error, KeyboardInterrupt) as exc:  # interrupted: still say what is committed
            report = replace(report, index="not rebuilt")
            why = "interrupted" if isinstance(exc, KeyboardInterrupt) else cause(exc)
            left.append(f"the text index build failed ({why}): {load_index.rebuild_hint(path)}")
        finally:
            load_index.unlock(conn)
    report = replace(report, seconds=time.perf_counter() - t0, index_seconds=index_seconds)
    if left:
        raise LoadFailedError(
            f"{path.name}: {describe(report, 'items')} committed; but " + "; ".join(left), report
        )
    return report


def _index_mode(conn: psycopg.Connection[Any], index: str, embedded: int) -> str:
    """ "rebuilt" or "incremental", by ``index`` and what the load brings."""
    owner = bool(conn.execute(Q["owns_item_vectors"]).fetchone()[0])  # type: ignore[index]
    state = load_index.state(conn)
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

    A load of BY_USER_MIN rows or more queues a user whose log it at least
    doubles for one rebuild instead of each of their rows (the report's
    ``users_queued``): the worker then reads that user's log once.

    All or nothing: either every good line is committed, or nothing is written
    and the error says so.
    """
    fmt = filerows.detect_format(path, fmt)
    before = filerows.check_input(path)
    out = filerows.RejectFile.prepare(path, before, reject_file)
    t0 = time.perf_counter()
    done: dict[str, int] = {}

    def write() -> None:
        if staged >= BY_USER_MIN:
            conn.execute(Q["queue_by_user"])
        done["rows"] = int(conn.execute(Q["insert_interactions"]).rowcount)
        done["users_queued"] = int(conn.execute(Q["users_queued"]).fetchone()[0])  # type: ignore[index]

    try:
        kinds = {r[0] for r in conn.execute(Q["kinds"]).fetchall()}
        rejects = _Rejects(path, fmt, out is not None)
        conn.execute(Q["create_interactions_stage"])
        staged = _stream(
            conn, path, fmt, lambda r: interaction_row(r, kinds), Q["copy_interactions_stage"],
            ["int8", "int8", "int8", "text", "float8", "text", "timestamptz"], rejects, progress,
            lambda header: csv_interactions(header, kinds),
        )  # fmt: skip
        # Outside the transaction: a time that is not in the future now will not be at the insert.
        _db_rejects(conn, Q["interactions_stage_problems"], Q["unstage_interactions"], rejects)
        if out is not None:
            out.write(path, fmt, rejects.lines)
        filerows.check_unchanged(path, before)
        _transact(conn, write)
    except BaseException as exc:
        quietly(conn, Q["drop_interactions_stage"])
        if out is not None:
            out.discard()
        failure = _failed_before_commit(path, exc, "")
        if failure is exc:
            raise
        raise failure from exc
    quietly(conn, Q["drop_interactions_stage"])
    report = LoadReport(
        rows=done["rows"],
        rejected=len(rejects.lines),
        errors=tuple(sorted(rejects.errors, key=lambda r: r.line)),
        seconds=time.perf_counter() - t0,
        users_queued=done["users_queued"],
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
    elif report.users_queued:
        text += f" ({report.users_queued} users queued for the worker to rebuild from their log)"
    return text


def iter_errors(report: LoadReport) -> Iterator[str]:
    """One line per described rejection, for a terminal."""
    for r in report.errors:
        yield f"line {r.line}" + (f", field {r.field}" if r.field else "") + f": {r.message}"
