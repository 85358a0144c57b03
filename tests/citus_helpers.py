"""A real Citus cluster for the tests and the benchmark: a coordinator and two workers.

Built (once, cached) and started by rerankdb.citus from the source tarball in
RERANKDB_CITUS_SOURCE or ../shared/citus/.  Without a source the Citus tests
are skipped with that reason, so that the README's test command runs on any
machine; CI sets RERANKDB_REQUIRE_CITUS=1, which turns a missing source into
a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest

from rerankdb import citus, db, migrate
from rerankdb.errors import CitusError

# The test servers only hold throw-away data: no durability, and small.
FAST_CONF = "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nshared_buffers = '128MB'\n"

# Every table with data, emptied between tests (the functions, settings and kinds stay).
DATA_TABLES = (
    "rerankdb.interactions, rerankdb.interaction_queue, rerankdb.user_state, rerankdb.user_vectors, "
    "rerankdb.user_rebuild_queue, rerankdb.user_snapshot, rerankdb.items, rerankdb.item_vectors, "
    "rerankdb.item_rank, rerankdb.item_queue, rerankdb.collab_keys, rerankdb.sequence_model, rerankdb.workers"
)


def source_or_skip() -> Path:
    """The Citus source tarball; skips the test without one (fails under RERANKDB_REQUIRE_CITUS=1)."""
    try:
        return citus.source_tarball()
    except CitusError as exc:
        if os.environ.get("RERANKDB_REQUIRE_CITUS") == "1":
            pytest.fail(f"RERANKDB_REQUIRE_CITUS=1 but {exc}")
        pytest.skip(f"no Citus to test on: {exc}")


def start(home: Path) -> citus.Cluster:
    """A cluster under ``home`` with rerankdb installed and distributed (rerankdb migrate --citus)."""
    source_or_skip()
    cluster = citus.up(home, workers=2, extra_conf=FAST_CONF)
    url = cluster.url()
    migrate.upgrade(url, dim=384)
    citus.apply_layout(url, shard_count=8)
    remember_installed(url)
    return cluster


def empty(url: str) -> None:
    """Every data table emptied, the settings and the worker's state as installed."""
    with psycopg.connect(db.libpq_url(url), autocommit=True) as conn:
        conn.execute(f"truncate {DATA_TABLES} cascade")  # type: ignore[arg-type]
        for table in ("settings", "worker_state"):
            conn.execute(
                f"update rerankdb.{table} t set ({INSTALLED_COLUMNS[table]}) = "  # type: ignore[arg-type]
                f"(select {INSTALLED_COLUMNS[table]} from json_populate_record(null::rerankdb.{table}, %s))",
                [INSTALLED[table]],
            )


INSTALLED: dict[str, str] = {}  # table -> its row as installed, JSON
INSTALLED_COLUMNS: dict[str, str] = {}


def remember_installed(url: str) -> None:
    with psycopg.connect(db.libpq_url(url), autocommit=True) as conn:
        for table in ("settings", "worker_state"):
            row = conn.execute(f"select row_to_json(t)::text from rerankdb.{table} t").fetchone()  # type: ignore[arg-type]
            assert row is not None
            INSTALLED[table] = row[0]
            cols = conn.execute(
                "select string_agg(quote_ident(attname), ', ' order by attnum) from pg_attribute "
                "where attrelid = %s::regclass and attnum > 0 and not attisdropped and attname <> 'singleton'",
                [f"rerankdb.{table}"],
            ).fetchone()
            assert cols is not None
            INSTALLED_COLUMNS[table] = cols[0]
