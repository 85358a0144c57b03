"""The SQL versioning rule, enforced: released revisions are frozen (hash lock), and the
functions and views at head are exactly the files in sql/functions/."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import psycopg
import pytest

from rerankdb import sqlfiles, sqllock

ROOT = Path(__file__).resolve().parent.parent


def test_the_tree_keeps_the_rule() -> None:
    assert sqllock.problems() == []


def test_sql_functions_holds_only_objects_of_head() -> None:
    """Frozen versions live with the revision that shipped them, never beside the live files."""
    names = [p.name for p in (ROOT / "sql" / "functions").iterdir()]
    assert all(n.endswith(".sql") and n.count(".") == 1 for n in names), names


@pytest.fixture
def sql_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of sql/ that rerankdb reads instead of the real one."""
    copy = tmp_path / "sql"
    shutil.copytree(ROOT / "sql", copy)
    monkeypatch.setattr(sqlfiles, "sql_dir", lambda: copy)
    return copy


def append(path: Path, text: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")


def last_owner(name: str) -> str:
    """The newest revision that applies function ``name``: the one that owns the live file."""
    return max(r for r, kind, n in sqllock.read_lock() if kind == "function" and n == name)


def test_a_changed_released_function_fails_and_says_how_to_freeze_it(sql_copy: Path) -> None:
    owner = last_owner("rerank")
    append(sql_copy / "functions" / "rerank.sql", "-- a new idea\n")
    found = sqllock.problems()
    assert len(found) == 1, found
    assert f"sql/functions/rerank.sql changed, but revision {owner} was released applying it" in found[0]
    assert f"sql/revisions/{owner}/functions/rerank.sql" in found[0]


def test_a_changed_frozen_copy_or_table_file_fails(sql_copy: Path) -> None:
    append(sql_copy / "revisions" / "0003" / "functions" / "rerank.sql", "\n")
    append(sql_copy / "revisions" / "0002" / "up.sql", "create table rerankdb.extra (x int);\n")
    found = "\n".join(sqllock.problems())
    assert "sql/revisions/0003/functions/rerank.sql changed, but revision 0003" in found
    assert "sql/revisions/0002/up.sql changed, but revision 0002" in found


def test_freezing_the_released_version_first_is_the_recipe(sql_copy: Path) -> None:
    """Copy the owner's rerank under revisions/<owner>/ first: it keeps what it shipped, the live file is free."""
    owner = last_owner("rerank")
    live = sql_copy / "functions" / "rerank.sql"
    (sql_copy / "revisions" / owner / "functions").mkdir(parents=True, exist_ok=True)
    shutil.copy(live, sql_copy / "revisions" / owner / "functions" / "rerank.sql")
    append(live, "-- the next revision's rerank\n")
    assert sqllock.problems() == []


def test_an_unlocked_revision_and_a_stray_frozen_file_fail(sql_copy: Path) -> None:
    lock = sql_copy / sqllock.LOCK_FILE
    lines = lock.read_text(encoding="utf-8").splitlines()
    head = sqllock.revisions()[-1]
    lock.write_text("\n".join(x for x in lines if not x.startswith(f"{head} ")) + "\n", encoding="utf-8")
    (sql_copy / "revisions" / "0002" / "functions" / "old.sql").write_text("select 1;\n")
    found = "\n".join(sqllock.problems())
    assert f"revision {head} is not locked" in found
    assert "sql/revisions/0002/functions/old.sql is applied by no revision" in found


def test_locking_adds_only_unlocked_revisions(sql_copy: Path) -> None:
    lock = sql_copy / sqllock.LOCK_FILE
    original = lock.read_text(encoding="utf-8")
    lines = original.splitlines()
    head = sqllock.revisions()[-1]
    lock.write_text("\n".join(x for x in lines if not x.startswith(f"{head} ")) + "\n", encoding="utf-8")
    assert sqllock.lock() == [head]
    assert lock.read_text(encoding="utf-8") == original
    append(sql_copy / "revisions" / "0001" / "up.sql", "\n")
    assert sqllock.lock() == [], "a released revision is never locked again"
    assert any("revision 0001" in p for p in sqllock.problems())


# --- the functions at head are the files ------------------------------------------------

DEFINITIONS = """
select 'function ' || p.oid::regprocedure::text, pg_get_functiondef(p.oid)
from pg_proc p where p.pronamespace = 'rerankdb'::regnamespace
union all
select 'view ' || c.oid::regclass::text, pg_get_viewdef(c.oid)
from pg_class c where c.relnamespace = 'rerankdb'::regnamespace and c.relkind = 'v'
"""


def drift(conn: psycopg.Connection[Any]) -> list[str]:
    """How the functions and views installed differ from what sql/functions/ defines.

    Drops every function and view of the schema, runs every file of
    sql/functions/, and compares definitions (pg_get_functiondef,
    pg_get_viewdef) before and after, in a transaction rolled back at the end.
    """
    installed = dict(conn.execute(DEFINITIONS).fetchall())
    try:
        with conn.transaction(force_rollback=True):
            conn.execute("set local check_function_bodies = off")  # files in any order
            for what in list(installed):
                kind, name = what.split(" ", 1)
                conn.execute(f"drop {kind} {name} cascade")  # type: ignore[arg-type]
            for path in sorted((ROOT / "sql" / "functions").glob("*.sql")):
                conn.execute(path.read_text(encoding="utf-8"))  # type: ignore[arg-type]
            from_files = dict(conn.execute(DEFINITIONS).fetchall())
    except psycopg.Error as exc:
        return [f"applying sql/functions/ failed: {exc}"]
    out = [
        f"{w} is installed but no file in sql/functions/ defines it" for w in installed.keys() - from_files
    ]
    out += [f"{w} is defined in sql/functions/ but not installed" for w in from_files.keys() - installed]
    out += [
        f"{w} differs from its file" for w in installed.keys() & from_files if installed[w] != from_files[w]
    ]
    return sorted(out)


def test_functions_at_head_are_exactly_the_files(conn: psycopg.Connection[Any]) -> None:
    assert drift(conn) == []


def test_function_drift_is_caught(conn: psycopg.Connection[Any]) -> None:
    """The check above can fail: a function changed by hand, and one that no file defines."""
    conn.execute(
        "create or replace function rerankdb.dimension() returns integer language sql stable"
        " set search_path = pg_catalog as $fn$ select 7 $fn$"
    )
    conn.execute("create function rerankdb.extra() returns int language sql as $$ select 1 $$")
    found = drift(conn)
    assert found == [
        "function rerankdb.dimension() differs from its file",
        "function rerankdb.extra() is installed but no file in sql/functions/ defines it",
    ]


def test_the_drift_check_sees_every_function_and_view(conn: psycopg.Connection[Any]) -> None:
    kinds = [w.split(" ", 1)[0] for w, _ in conn.execute(DEFINITIONS).fetchall()]
    files = list((ROOT / "sql" / "functions").glob("*.sql"))
    assert kinds.count("view") == 1 and kinds.count("function") == len(files) - 1
