"""Shared benchmark plumbing: the bench database, timing, machine facts, tables."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import psycopg
from psycopg import sql as pgsql

from rerankdb import db, embedded, migrate, sqlfiles
from rerankdb.config import Settings

BENCH_DATABASE = "rerankdb_bench"


def bench_url(settings: Settings) -> str:
    """A database of its own on the configured server, created if missing."""
    return db.ensure_database(embedded.resolve_url(settings), BENCH_DATABASE)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine(conn: psycopg.Connection[Any]) -> str:
    pg = conn.execute("show server_version").fetchone()[0]  # type: ignore[index]
    vec = conn.execute("select extversion from pg_extension where extname = 'vector'").fetchone()
    sb = conn.execute("show shared_buffers").fetchone()[0]  # type: ignore[index]
    return (
        f"{cpu_model()}, {os.cpu_count()} cores; PostgreSQL {pg}, pgvector {vec[0] if vec else '?'}, "
        f"shared_buffers {sb}"
    )


def timed(fn: Callable[[], Any], repeats: int, warmup: int = 20) -> np.ndarray:
    """Wall-clock milliseconds of ``repeats`` calls after ``warmup`` unmeasured ones."""
    for _ in range(warmup):
        fn()
    out = np.empty(repeats)
    for i in range(repeats):
        t0 = time.perf_counter()
        fn()
        out[i] = (time.perf_counter() - t0) * 1000
    return out


def p50_p99(ms: Sequence[float] | np.ndarray) -> tuple[float, float]:
    arr = np.asarray(ms)
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 99))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table (readable in a terminal, pasteable into the README)."""
    cells = [[str(h) for h in headers], *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def install_frozen_recommend(conn: psycopg.Connection[Any], recommend_rev: str, nearest_rev: str) -> str:
    """Revision ``recommend_rev``'s recommend calling revision ``nearest_rev``'s nearest, as
    each revision shipped them (:func:`rerankdb.migrate.function_path`), under other names
    in schema rerankdb (a same-run baseline); returns the recommend's qualified name (drop both with :func:`drop_frozen_recommend`)."""
    recommend_name, nearest_name = _frozen_names(recommend_rev, nearest_rev)
    nearest = sqlfiles.read_sql(migrate.function_path(nearest_rev, "nearest"))
    conn.execute(nearest.replace("function rerankdb.nearest(", f"function rerankdb.{nearest_name}("))
    recommend = sqlfiles.read_sql(migrate.function_path(recommend_rev, "recommend"))
    renamed = (
        recommend.replace("function rerankdb.recommend(", f"function rerankdb.{recommend_name}(")
        .replace("rerankdb.nearest(", f"rerankdb.{nearest_name}(")
        .replace("recommend.user_id", f"{recommend_name}.user_id")
    )
    assert renamed.count(f"function rerankdb.{recommend_name}(") == 1 and nearest_name in renamed
    conn.execute(renamed)
    return f"rerankdb.{recommend_name}"


def drop_frozen_recommend(conn: psycopg.Connection[Any], recommend_rev: str, nearest_rev: str) -> None:
    for name in _frozen_names(recommend_rev, nearest_rev):
        conn.execute(pgsql.SQL("drop function {}").format(pgsql.Identifier("rerankdb", name)))


def _frozen_names(recommend_rev: str, nearest_rev: str) -> tuple[str, str]:
    return f"_bench_recommend_{recommend_rev}", f"_bench_nearest_{nearest_rev}"


def exact_top_10(conn: psycopg.Connection[Any], users: Sequence[int], n_items: int) -> dict[int, set[int]]:
    """Each user's exact top 10 of items 1..n_items: rerank over them all, the seen left out
    (what recommend's indexes approximate)."""
    everything = db.BigintArray(np.arange(1, n_items + 1))
    query = "select item_id from rerankdb.rerank(%s, %s::bigint[], 10, exclude_seen => true)"
    return {u: {r[0] for r in conn.execute(query, [u, everything]).fetchall()} for u in users}
