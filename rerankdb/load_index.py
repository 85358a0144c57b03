"""The text HNSW index during a load (:mod:`rerankdb.load`): its state, the lock
that lets one load at a time drop and build it, the build, and its repair
after a load that failed.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

import psycopg

from rerankdb.errors import InvalidInputError
from rerankdb.sqlfiles import queries

log = logging.getLogger(__name__)
Q = queries("load_index")

BUILD_WORKERS = 2  # max_parallel_maintenance_workers for the build
_SIZE = re.compile(r"\s*\d+(\.\d+)?\s*(B|kB|MB|GB|TB)\s*")  # as PostgreSQL writes a memory setting


def cause(exc: BaseException) -> str:
    """An error in one line, for a message that goes on."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def quietly(conn: psycopg.Connection[Any], statement: str) -> None:
    """Clean up after a load (a temporary table, a session lock): nothing to do, and
    nothing to report, when the connection is gone (the server drops both with it)."""
    if conn.closed:
        return
    try:
        conn.execute(statement)
    except psycopg.Error as exc:
        log.debug("load cleanup %s: %s", statement.split()[0], exc)


def state(conn: psycopg.Connection[Any]) -> str:
    """valid, invalid (a build under way, or one interrupted), or missing."""
    row = conn.execute(Q["text_index_state"]).fetchone()
    return "missing" if row is None else ("valid" if row[0] else "invalid")


def build_settings(conn: psycopg.Connection[Any], memory: str) -> None:
    """Set the build's memory and workers for this session, before anything is written:
    a bad value is an error now, not after the index was dropped.  The unit is
    required: PostgreSQL reads a bare number as kB (``--build-memory 1000`` would
    build with 1 MB), and an empty value as the server's default."""
    expected = "build memory must be a PostgreSQL size with its unit, like 1GB or 512MB"
    if not _SIZE.fullmatch(memory):
        raise InvalidInputError(f"{expected}, got {memory!r}")
    try:
        conn.execute(Q["build_settings"], {"memory": memory, "workers": str(BUILD_WORKERS)})
    except psycopg.errors.DataError as exc:  # invalid_parameter_value is class 22
        raise InvalidInputError(f"{expected}, got {memory!r} ({cause(exc)})") from exc


def lock_build(conn: psycopg.Connection[Any]) -> None:
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


def drop(conn: psycopg.Connection[Any]) -> None:
    """Drop the index (concurrently: readers fall back to a scan), if it is there."""
    conn.execute(Q["drop_text_index"])


def unlock(conn: psycopg.Connection[Any]) -> None:
    """Let go of the build lock (nothing to do when the connection is gone: so is the lock)."""
    quietly(conn, Q["unlock_index_build"])


def build(conn: psycopg.Connection[Any]) -> float:
    """Build the index (concurrently, if it is not there); return the seconds it took."""
    t0 = time.perf_counter()
    storage = conn.execute(Q["storage"]).fetchone()[0]  # type: ignore[index]
    conn.execute(Q["create_text_index_halfvec"] if storage == "halfvec" else Q["create_text_index_vector"])
    return time.perf_counter() - t0


def rebuild_hint(path: Path) -> str:
    """What to do about an index a load left missing or invalid."""
    return (
        "until it is built, searches scan every item vector (`rerankdb status` shows it); "
        f"`rerankdb load items {path} --index rebuild` as the owner of rerankdb.item_vectors builds it "
        "(so does the owner's next load of items)"
    )


def restore(conn: psycopg.Connection[Any], path: Path) -> str:
    """After a failed load that took the index lock: build the index it may have dropped.
    Return what the message must add when that failed too."""
    try:
        if not conn.closed:
            build(conn)
            if state(conn) == "valid":
                return ""
        return f"; the text index was dropped for the load and is not rebuilt: {rebuild_hint(path)}"
    except psycopg.Error as exc:
        return (
            f"; the text index was dropped for the load and its rebuild failed ({cause(exc)}): "
            + rebuild_hint(path)
        )
    finally:
        unlock(conn)
