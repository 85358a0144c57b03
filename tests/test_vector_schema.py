"""pgvector outside public (as managed services keep it): install, work, upgrade, remove."""

from __future__ import annotations

from typing import Any

import numpy as np
import psycopg

from rerankdb import Client, Interaction, Item, db, migrate
from rerankdb.drain import drain


def test_rerankdb_installs_and_works_with_pgvector_in_schema_extensions(empty_db_url: str) -> None:
    url = empty_db_url
    with psycopg.connect(db.libpq_url(url), autocommit=True) as c:
        c.execute("create schema extensions")
        c.execute("create extension vector schema extensions")
        assert c.execute("show search_path").fetchone() == ('"$user", public',), "not on the path"
    migrate.upgrade(url)
    assert migrate.current_revision(url) == migrate.head_revision()
    with psycopg.connect(db.libpq_url(url)) as c:
        pinned = c.execute(
            "select count(*) from pg_proc p, unnest(p.proconfig) s"
            " where p.pronamespace = 'rerankdb'::regnamespace and s = 'search_path=pg_catalog, extensions'"
        ).fetchone()
        assert pinned is not None and pinned[0] > 5
        assert c.execute(
            "select extnamespace::regnamespace::text from pg_extension where extname = 'vector'"
        ).fetchone() == ("extensions",), "the extension stays where it was"

    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((4, 384))
    with Client(url) as client:
        client.upsert_items(Item(i, f"item {i}") for i in range(1, 5))
        client.set_item_vectors([1, 2, 3, 4], vectors)
        client.record_interactions([Interaction(7, 2, "like")])
        with db.connect(url, autocommit=True) as conn:
            report = drain(conn, None, 0.0, 384)
            assert report.interactions_folded == 1
            # the SQL functions run with pgvector found through their pinned path
            assert conn.execute("select count(*) from rerankdb.recommend(7, 2)").fetchone() == (2,)
            assert conn.execute("select rerankdb.refresh_collab_keys()").fetchone() == (0,)
            diverse = (
                "select count(*) from rerankdb.rerank(7, array[1, 2, 3, 4]::bigint[], 3, diversity => 0.5)"
            )
            assert conn.execute(diverse).fetchone() == (3,)
            assert conn.execute(
                "select because_item_id from rerankdb.explain(7, array[1], 1)"
            ).fetchone() == (2,)
        ranked = client.rerank(7, [1, 2, 3, 4])
        assert ranked[0].item_id == 2 and ranked[0].score is not None
        assert client.rerank_scored(7, [1, 2], [1.0, 0.0])
        assert client.similar_items(2, 2)

    migrate.downgrade(url)
    with psycopg.connect(db.libpq_url(url)) as c:
        assert c.execute("select to_regnamespace('rerankdb')").fetchone() == (None,)


def test_the_offline_script_works_there_too(empty_db_url: str) -> None:
    script = migrate.upgrade_sql(dim=8)
    with psycopg.connect(db.libpq_url(empty_db_url), autocommit=True) as c:
        c.execute("create schema extensions")
        c.execute("create extension vector schema extensions")
        c.execute(script)  # type: ignore[call-overload]
        c.execute("set search_path = public, extensions")
        c.execute("insert into rerankdb.items (item_id, content) values (1, 'x')")
        c.execute("insert into rerankdb.item_vectors (item_id, embedding) values (1, '[1,2,3,4,5,6,7,8]')")
        c.execute("insert into rerankdb.user_vectors (user_id, embedding) values (1, '[1,2,3,4,5,6,7,8]')")
        c.execute("reset search_path")
        got: Any = c.execute("select item_id, round(score::numeric, 3) from rerankdb.rerank(1, array[1])")
        assert got.fetchall() == [(1, 1)]
