"""Migrations: install, remove, reinstall; the DBA's alembic CLI; offline SQL; no drift."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import psycopg
import pytest
import sqlalchemy.exc
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, pool

from rerankdb import db, migrate
from rerankdb.errors import ConfigError
from rerankdb.schema import build_metadata

ROOT = Path(__file__).resolve().parent.parent
EXPECTED_TABLES = {
    "config", "items", "interaction_kinds", "interactions", "item_vectors", "user_vectors",
    "item_queue", "interaction_queue", "user_state", "worker_state", "status", "settings", "item_rank",
    "user_rebuild_queue", "collab_keys", "user_snapshot", "workers", "sequence_model",
    "hybrid_keys", "hybrid_meta", "hybrid_keys_fresh",
}  # fmt: skip
EXPECTED_FUNCTIONS = {
    "dimension", "normalize_embedding", "rerank", "nearest", "recommend", "similar_items",
    "enqueue_item", "release_deferred", "notify_worker", "sync_item_rank", "rerank_scored",
    "refresh_centers", "center",
    "interaction_problem", "check_interaction", "enqueue_user_rebuild", "forget_user", "counts",
    "_check_vector_arguments", "set_item_vectors", "set_user_vectors",
    "blend", "notice_half_life_changed",
    "collab_key", "diversify", "explain", "refresh_collab_keys", "mmr",
    "enqueue_interactions", "enqueue_user_rebuilds", "check_interactions", "refuse_interaction",
    "hybrid_key", "swap_in_next", "refresh_hybrid_keys",
    "unqueue_interactions", "check_kinds",
}  # fmt: skip


def tables(url: str) -> set[str]:
    with psycopg.connect(db.libpq_url(url)) as c:
        rows = c.execute("select table_name from information_schema.tables where table_schema = 'rerankdb'")
        return {r[0] for r in rows}


def functions(url: str) -> set[str]:
    with psycopg.connect(db.libpq_url(url)) as c:
        rows = c.execute("select proname from pg_proc where pronamespace = 'rerankdb'::regnamespace")
        return {r[0] for r in rows}


def has_extension(url: str) -> bool:
    with psycopg.connect(db.libpq_url(url)) as c:
        return c.execute("select 1 from pg_extension where extname = 'vector'").fetchone() is not None


def test_upgrade_downgrade_upgrade(empty_db_url: str) -> None:
    url = empty_db_url
    assert migrate.current_revision(url) is None
    migrate.upgrade(url)
    assert migrate.current_revision(url) == migrate.head_revision()
    assert tables(url) == EXPECTED_TABLES
    assert functions(url) == EXPECTED_FUNCTIONS

    migrate.downgrade(url)
    assert migrate.current_revision(url) is None
    assert tables(url) == set()
    assert not has_extension(url), "downgrade base removes the extension it installed"

    migrate.upgrade(url)
    assert tables(url) == EXPECTED_TABLES


def test_downgrade_keeps_vector_extension_used_elsewhere(empty_db_url: str) -> None:
    url = empty_db_url
    migrate.upgrade(url)
    with psycopg.connect(db.libpq_url(url), autocommit=True) as c:
        c.execute("create table public.app_embeddings (v vector(3))")
    migrate.downgrade(url)
    assert tables(url) == set()
    assert has_extension(url)


def test_dimension_is_recorded_and_enforced(empty_db_url: str) -> None:
    migrate.upgrade(empty_db_url, dim=8)
    with psycopg.connect(db.libpq_url(empty_db_url)) as c:
        assert c.execute("select rerankdb.dimension()").fetchone() == (8,)
        types = c.execute(
            "select format_type(atttypid, atttypmod) from pg_attribute "
            "where attrelid in ('rerankdb.item_vectors'::regclass, 'rerankdb.user_vectors'::regclass) "
            "and attname = 'embedding'"
        ).fetchall()
        assert types == [("vector(8)",), ("vector(8)",)]


@pytest.mark.parametrize("bad", [0, 2001, -3])
def test_bad_dimension_is_refused_before_anything_is_written(empty_db_url: str, bad: int) -> None:
    with pytest.raises(ConfigError, match="between 1 and 2000"):
        migrate.upgrade(empty_db_url, dim=bad)
    assert tables(empty_db_url) == set()
    assert migrate.current_revision(empty_db_url) is None


def test_dba_alembic_cli_with_x_arguments(empty_db_url: str) -> None:
    """The documented DBA path: `alembic -x url=... -x dim=... upgrade head` from the root."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RERANKDB_")}
    cmd = [sys.executable, "-m", "alembic", "-x", f"url={empty_db_url}", "-x", "dim=16", "upgrade", "head"]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    with psycopg.connect(db.libpq_url(empty_db_url)) as c:
        assert c.execute("select rerankdb.dimension()").fetchone() == (16,)
        assert c.execute("select version_num from public.rerankdb_alembic_version").fetchone() == (
            migrate.head_revision(),
        )


def test_offline_sql_installs_the_same_schema(empty_db_url: str, template_url: str) -> None:
    """`alembic upgrade head --sql` gives a script a DBA can run by hand, with the same result."""
    script = migrate.upgrade_sql(dim=384)
    assert "create table rerankdb.items" in script
    assert "create or replace function rerankdb.rerank(" in script
    assert "insert into rerankdb.config (dim) values (384)" in script
    with psycopg.connect(db.libpq_url(empty_db_url), autocommit=True) as c:
        c.execute(script)  # type: ignore[call-overload]  # a whole script, no parameters
    assert tables(empty_db_url) == tables(template_url)
    assert functions(empty_db_url) == functions(template_url)
    assert migrate.current_revision(empty_db_url) == migrate.head_revision()
    assert diff(empty_db_url, 384) == []


def diff(url: str, dim: int) -> list[object]:
    engine = create_engine(db.sqlalchemy_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(
                conn,
                opts={
                    "include_schemas": True,
                    "version_table": migrate.VERSION_TABLE,
                    "include_name": lambda name, type_, parent: type_ != "schema" or name == "rerankdb",
                },
            )
            with warnings.catch_warnings():
                # SQLAlchemy's reflection warns about the NOT VALID check constraints of
                # revision 0005 ("Can't validate argument 'dialect_options'"); harmless.
                warnings.simplefilter("ignore", sqlalchemy.exc.SAWarning)
                return list(compare_metadata(ctx, build_metadata(dim)))
    finally:
        engine.dispose()


def test_models_match_migrations(template_url: str) -> None:
    assert diff(template_url, 384) == []


def test_drift_check_detects_a_difference(template_url: str) -> None:
    """The drift check above can fail: a model of another dimension differs."""
    assert diff(template_url, 385) != []


def test_upgrade_from_0001_queues_existing_work_and_downgrade_keeps_data(empty_db_url: str) -> None:
    url = empty_db_url
    migrate.upgrade(url, revision="0001")
    vec = "[" + ",".join(["1"] * 384) + "]"
    with psycopg.connect(db.libpq_url(url), autocommit=True) as c:
        c.execute("insert into rerankdb.items (item_id, content) values (1, 'a'), (2, 'b')")
        c.execute("insert into rerankdb.item_vectors (item_id, embedding) values (1, %s)", [vec])
        c.execute("insert into rerankdb.interactions (user_id, item_id) values (7, 1), (7, 2)")
    migrate.upgrade(url)
    with psycopg.connect(db.libpq_url(url)) as c:
        assert c.execute("select item_id from rerankdb.item_queue").fetchall() == [(2,)], (
            "only items without vectors"
        )
        assert c.execute("select count(*) from rerankdb.interaction_queue").fetchone() == (2,)
    migrate.downgrade(url, revision="0001")
    assert "item_queue" not in tables(url)
    with psycopg.connect(db.libpq_url(url)) as c:
        assert c.execute("select count(*) from rerankdb.interactions").fetchone() == (2,)
        assert c.execute("select count(*) from rerankdb.item_vectors").fetchone() == (1,)


def test_0003_keeps_its_own_rerank_and_0004_downgrades_to_it(empty_db_url: str) -> None:
    """Released revisions are frozen: at 0003 rerank is 0003's, before and after a round trip to head."""
    url = empty_db_url
    vec = "[" + ",".join(["1"] * 384) + "]"

    def rerank_and_settings() -> tuple[list[tuple[int, float]], set[str]]:
        with psycopg.connect(db.libpq_url(url), autocommit=True) as c:
            ranked = c.execute(
                "select item_id, round(score::numeric, 4)::float8 from rerankdb.rerank(7, array[1])"
            )
            cols = c.execute(
                "select column_name from information_schema.columns"
                " where table_schema = 'rerankdb' and table_name = 'settings'"
            )
            return ranked.fetchall(), {r[0] for r in cols}

    migrate.upgrade(url, revision="0003")
    with psycopg.connect(db.libpq_url(url), autocommit=True) as c:
        c.execute("insert into rerankdb.items (item_id, content) values (1, 'a')")
        c.execute("insert into rerankdb.item_vectors (item_id, embedding) values (1, %s)", [vec])
        c.execute("insert into rerankdb.user_vectors (user_id, embedding) values (7, %s)", [vec])
    at_0003 = rerank_and_settings()
    assert at_0003[0] == [(1, 1.0)] and "text_centering" not in at_0003[1]
    migrate.upgrade(url)
    assert rerank_and_settings()[0] == [(1, 1.0)]
    assert {"text_center", "collab_center", "text_centering", "collab_centering"} <= rerank_and_settings()[1]
    migrate.downgrade(url, revision="0003")
    assert rerank_and_settings() == at_0003
    assert not {"refresh_centers", "center"} & functions(url)


def test_new_revision_template_gives_a_working_revision(tmp_path: Path) -> None:
    """`alembic revision` (the Mako template) writes a revision that uses RevisionSql."""
    import shutil

    from alembic import command

    shutil.copytree(ROOT / "migrations", tmp_path / "migrations")
    cfg = migrate.alembic_config()
    cfg.set_main_option("script_location", str(tmp_path / "migrations"))
    next_id = f"{int(migrate.head_revision()) + 1:04d}"
    command.revision(cfg, "next change", rev_id=next_id)
    (new,) = (tmp_path / "migrations" / "versions").glob(f"{next_id}_*.py")
    namespace: dict[str, object] = {}
    exec(compile(new.read_text(), str(new), "exec"), namespace)
    assert namespace["down_revision"] == migrate.head_revision()
    assert namespace["sql"].revision == next_id  # type: ignore[attr-defined]


def test_upgrade_to_0006_with_users_rebuilds_them_with_short_term_vectors(empty_db_url: str) -> None:
    """An install with users gets short-term vectors at the worker's first drain after the
    upgrade; the downgrade to 0005 keeps the long-term ones and 0005's rerank."""
    from rerankdb.drain import drain

    url = empty_db_url
    migrate.upgrade(url, dim=3, revision="0005")
    with db.connect(url, autocommit=True) as c:
        c.execute("insert into rerankdb.items (item_id, content) values (1, 'a'), (2, 'b')")
        c.execute("select rerankdb.set_item_vectors(array[1, 2], array['[1,0,0]', '[0,1,0]']::vector[])")
        c.execute(
            "insert into rerankdb.interactions (user_id, item_id, occurred_at) values"
            " (7, 1, '2026-01-01'), (7, 2, '2026-01-02')"
        )
        # What 0005's worker left (its code is not this one): a long-term state and vector.
        c.execute(
            "insert into rerankdb.user_state (user_id, weighted_sum, ref_time, interactions)"
            " values (7, '[0.9772,1,0]', '2026-01-02', 2)"
        )
        c.execute("insert into rerankdb.user_vectors (user_id, embedding) values (7, '[0.9772,1,0]')")
        c.execute("delete from rerankdb.interaction_queue")
    migrate.upgrade(url)
    with db.connect(url, autocommit=True) as c:
        assert c.execute("select short_embedding from rerankdb.user_vectors").fetchone() == (None,)
        assert c.execute("select states_short_half_life from rerankdb.worker_state").fetchone() == (None,)
        assert drain(c, None, 0.0, 3).half_lives_changed
        long, short = c.execute("select embedding, short_embedding from rerankdb.user_vectors").fetchone()
        want = np.array([2 ** (-1 / 30), 1, 0])  # 30 days, as 0005's default
        np.testing.assert_allclose(long.to_numpy(), want / np.linalg.norm(want), atol=1e-6)
        np.testing.assert_allclose(short.to_numpy(), [0, 1, 0], atol=1e-9)  # the newest, a day later
    migrate.downgrade(url, revision="0005")
    with db.connect(url, autocommit=True) as c:
        kept = c.execute("select embedding from rerankdb.user_vectors").fetchone()[0]
        assert kept.to_numpy().tolist() == long.to_numpy().tolist(), "the long-term vectors stay"
        assert c.execute("select item_id from rerankdb.rerank(7, array[1, 2])").fetchall() == [(2,), (1,)]


def test_two_migrations_at_once_on_a_fresh_database(empty_db_url: str) -> None:
    """Both succeed: an advisory lock runs them one after the other, and the second finds head."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RERANKDB_")}
    env["RERANKDB_DATABASE_URL"] = empty_db_url
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "rerankdb.cli", "migrate"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        assert f"rerankdb schema at revision {migrate.head_revision()}" in out
    assert migrate.current_revision(empty_db_url) == migrate.head_revision()


def test_offline_sql_runs_where_downgrade_base_left_the_version_table(empty_db_url: str) -> None:
    migrate.upgrade(empty_db_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RERANKDB_")}
    cmd = [sys.executable, "-m", "alembic", "-x", f"url={empty_db_url}", "downgrade", "base"]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    with psycopg.connect(db.libpq_url(empty_db_url)) as c:
        assert c.execute("select count(*) from public.rerankdb_alembic_version").fetchone() == (0,)
    script = subprocess.run(
        [sys.executable, "-m", "rerankdb.cli", "migrate", "--sql"], env=env, capture_output=True, text=True
    )
    assert script.returncode == 0, script.stderr
    with psycopg.connect(db.libpq_url(empty_db_url), autocommit=True) as c:
        c.execute(script.stdout)  # type: ignore[call-overload]  # a whole script, no parameters
    assert migrate.current_revision(empty_db_url) == migrate.head_revision()


def test_upgrade_to_0013_rekeys_the_log_with_its_rows_and_dates_given_vectors(empty_db_url: str) -> None:
    """0013 keys the log and its queue by (interaction_id, user_id) with rows in them, and
    records the text a vector given before stands for (on Citus the worker finds changed
    texts by it); down again, the keys are interaction_id alone."""
    url = empty_db_url
    migrate.upgrade(url, revision="0012")
    vec = "[" + ",".join(["1"] * 384) + "]"
    with psycopg.connect(db.libpq_url(url), autocommit=True) as c:
        c.execute("insert into rerankdb.items (item_id, content) values (1, 'given'), (2, 'b')")
        c.execute("select rerankdb.set_item_vectors(array[1]::bigint[], array[%s::vector])", [vec])
        c.execute("insert into rerankdb.interactions (user_id, item_id) values (7, 1), (8, 2)")
    migrate.upgrade(url, revision="0015")  # 0016 replaces the queue's foreign key (the test below)
    with psycopg.connect(db.libpq_url(url), autocommit=True) as c:
        assert c.execute(
            "select content_sha256 = sha256('given'::bytea), model from rerankdb.item_vectors"
        ).fetchall() == [(True, None)]
        assert c.execute("select count(*) from rerankdb.interaction_queue").fetchone() == (2,)
        # The queue follows a user_id changed in the log (ON UPDATE CASCADE).
        c.execute("update rerankdb.interactions set user_id = 9 where user_id = 8")
        assert c.execute("select user_id from rerankdb.interaction_queue order by 1").fetchall() == [
            (7,),
            (9,),
        ]
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            c.execute(
                "insert into rerankdb.interaction_queue (interaction_id, item_id, user_id) values (1, 1, 99)"
            )
    migrate.downgrade(url, revision="0012")
    with psycopg.connect(db.libpq_url(url)) as c:
        assert c.execute(
            "select pg_get_constraintdef(oid) from pg_constraint where conname = 'interactions_pkey'"
        ).fetchone() == ("PRIMARY KEY (interaction_id)",)
        assert c.execute("select count(*) from rerankdb.interaction_queue").fetchone() == (2,)


def test_0016_replaces_the_queues_foreign_key_and_down_again(empty_db_url: str) -> None:
    """0016: the queue has no foreign key (triggers take its rows along with the log's);
    down again, a queue row whose log row is gone is dropped and the key is back."""
    url = empty_db_url
    migrate.upgrade(url, revision="0015")
    with psycopg.connect(db.libpq_url(url), autocommit=True) as c:
        c.execute("insert into rerankdb.items (item_id, content) values (1, 'a'), (2, 'b')")
        c.execute("insert into rerankdb.interactions (user_id, item_id) values (7, 1), (8, 2), (8, 1)")
    migrate.upgrade(url)
    fkey = "select count(*) from pg_constraint where conname = 'interaction_queue_interaction_id_fkey'"
    with psycopg.connect(db.libpq_url(url), autocommit=True) as c:
        assert c.execute(fkey).fetchone() == (0,)
        assert c.execute("select count(*) from rerankdb.interaction_queue").fetchone() == (3,)
        c.execute("delete from rerankdb.interactions where user_id = 7")
        c.execute(
            "insert into rerankdb.interaction_queue (interaction_id, item_id, user_id) values (50, 1, 99)"
        )
        assert c.execute("select count(*) from rerankdb.interaction_queue").fetchone() == (3,)
    migrate.downgrade(url, revision="0015")
    with psycopg.connect(db.libpq_url(url), autocommit=True) as c:
        assert c.execute(fkey).fetchone() == (1,)
        assert c.execute("select user_id from rerankdb.interaction_queue order by 1").fetchall() == [
            (8,),
            (8,),
        ]
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            c.execute(
                "insert into rerankdb.interaction_queue (interaction_id, item_id, user_id) values (50, 1, 99)"
            )
