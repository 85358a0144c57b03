"""Half-precision storage (revision 0008, -x storage=halfvec): every path works, at halfvec precision."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from rerankdb import Client, Interaction, Item, db, migrate
from rerankdb.drain import drain
from rerankdb.errors import ConfigError
from tests.conftest import _fresh_name
from tests.helpers import reference_rerank, unit
from tests.worker_helpers import CATALOG

DIM = 384
HALF = 2e-3  # a score from halfvec components (11-bit mantissa) against float64


@pytest.fixture
def half_url(server_url: str) -> Iterator[str]:
    name = _fresh_name()
    url = db.create_database(server_url, name)
    migrate.upgrade(url, dim=DIM, storage="halfvec")
    yield url
    db.drop_database(server_url, name)


def column_types(conn: psycopg.Connection[Any]) -> dict[str, str]:
    rows = conn.execute(
        "select c.relname || '.' || a.attname, format_type(a.atttypid, a.atttypmod)"
        " from pg_attribute a join pg_class c on c.oid = a.attrelid"
        " join pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = 'rerankdb' and a.attname in ('embedding', 'collab') and c.relkind = 'r'"
    ).fetchall()
    return dict(rows)


def index_opclass(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute(
        "select pg_get_indexdef(to_regclass('rerankdb.item_vectors_embedding_hnsw'))"
    ).fetchone()
    assert row is not None
    return str(row[0])


def test_install_converts_item_text_vectors_only(half_url: str) -> None:
    with db.connect(half_url, autocommit=True) as conn:
        types = column_types(conn)
        assert conn.execute("select storage from rerankdb.config").fetchone() == ("halfvec",)
        assert "halfvec_ip_ops" in index_opclass(conn)
    assert types["item_vectors.embedding"] == types["item_rank.embedding"] == "halfvec(384)"
    # What is small or summed stays single precision.
    assert types["user_vectors.embedding"] == "vector(384)"
    assert types["item_rank.collab"] == types["user_vectors.collab"] == "vector"


def test_the_default_is_vector(db_url: str) -> None:
    with db.connect(db_url, autocommit=True) as conn:
        assert conn.execute("select storage from rerankdb.config").fetchone() == ("vector",)
        assert column_types(conn)["item_vectors.embedding"] == "vector(384)"
        assert "vector_ip_ops" in index_opclass(conn)


def test_reranking_and_the_worker_on_halfvec(
    half_url: str, encoder: Any, rng: np.random.Generator, tmp_path: Path
) -> None:
    vectors = {i: rng.standard_normal(DIM) for i in range(1, 41)}
    path = tmp_path / "items.jsonl"
    path.write_text(
        "".join(
            json.dumps({"item_id": i, "content": f"item {i}", "embedding": v.round(5).tolist()}) + "\n"
            for i, v in vectors.items()
        )
    )
    with Client(half_url) as client, db.connect(half_url, autocommit=True) as conn:
        # A load with the index rebuilt: the new index is halfvec's too.
        assert client.load_items(path, index="rebuild").rows == 40
        assert "halfvec_ip_ops" in index_opclass(conn)
        # The worker embeds text items into halfvec and folds interactions from them.
        client.upsert_items([Item(100 + i, t) for i, t in CATALOG.items()])
        client.record_interactions([Interaction(7, 3, "like"), Interaction(7, 101, "view")])
        report = drain(conn, encoder, 0.0, DIM)
        assert (report.items_embedded, report.interactions_folded) == (len(CATALOG), 2)
        stored = np.asarray(
            conn.execute("select embedding::vector from rerankdb.item_vectors where item_id = 3")
            .fetchone()[0]
            .to_list()  # type: ignore[index]
        )
        np.testing.assert_allclose(stored, unit(vectors[3]), atol=HALF)
        # rerank against numpy, at halfvec precision.
        client.set_user_vectors([1], rng.standard_normal((1, DIM)))
        user = np.asarray(
            conn.execute("select embedding from rerankdb.user_vectors where user_id = 1")
            .fetchone()[0]
            .to_list()  # type: ignore[index]
        )
        cands = list(range(1, 41))
        got = client.rerank(1, cands)
        want = reference_rerank(user, cands, vectors)
        assert [r.score for r in got] == pytest.approx([s for _, s in want], abs=HALF)
        # Every reading path runs.
        assert len(client.rerank(1, cands, k=5, diversity=0.3, context_items=[2, 3], exclude_seen=True)) == 5
        assert len(client.rerank_scored(1, cands[:5], [1.0] * 5)) == 5
        assert len(client.recommend(7, k=5)) == 5
        assert len(client.similar_items(3, k=5)) == 5
        assert client.explain(7, [2, 4])
        # Training writes collaborative vectors (vector) beside halfvec text vectors.
        from rerankdb.config import Settings
        from rerankdb.worker import Worker

        client.record_interactions(
            [Interaction(u, i, "like") for u in range(10, 30) for i in rng.choice(40, 5, replace=False) + 1]
        )
        worker = Worker(half_url, Settings(), encoder)
        worker.drain_once()
        assert worker.train().dim > 0
        assert len(client.recommend(10, k=5)) == 5
        conn.execute("set enable_seqscan = off")
        plan = conn.execute(
            "explain select item_id from rerankdb.item_vectors order by embedding <#> %s::vector limit 3",
            (str(user.tolist()),),
        ).fetchall()
        assert "item_vectors_embedding_hnsw" in str(plan), "a vector query uses the halfvec index"


def test_downgrade_to_0007_restores_vector(half_url: str, rng: np.random.Generator) -> None:
    with Client(half_url) as client:
        client.upsert_items([Item(1, "a"), Item(2, "b")])
        client.set_item_vectors([1, 2], rng.standard_normal((2, DIM)))
    migrate.downgrade(half_url, revision="0007")
    with db.connect(half_url, autocommit=True) as conn:
        assert column_types(conn)["item_vectors.embedding"] == "vector(384)"
        assert "vector_ip_ops" in index_opclass(conn)
        assert conn.execute("select count(*) from rerankdb.item_rank").fetchone() == (2,)
    migrate.upgrade(half_url)  # vector, by default
    with db.connect(half_url, autocommit=True) as conn:
        assert conn.execute("select storage from rerankdb.config").fetchone() == ("vector",)


def test_storage_is_fixed_at_install(half_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="installed in this database with halfvec"):
        migrate.upgrade(half_url, storage="vector")
    monkeypatch.setenv("RERANKDB_STORAGE", "float16")
    with pytest.raises(ConfigError, match="RERANKDB_STORAGE must be one of vector, halfvec"):
        migrate.upgrade(half_url)


def test_dba_cli_and_offline_script(empty_db_url: str) -> None:
    root = Path(__file__).resolve().parent.parent
    cmd = [
        sys.executable,
        "-m",
        "alembic",
        "-x",
        f"url={empty_db_url}",
        "-x",
        "storage=halfvec",
        "upgrade",
        "head",
    ]
    subprocess.run(cmd, cwd=root, check=True, capture_output=True)
    with db.connect(empty_db_url, autocommit=True) as conn:
        assert column_types(conn)["item_rank.embedding"] == "halfvec(384)"
    script = migrate.upgrade_sql(storage="halfvec")
    assert "update rerankdb.config set storage = 'halfvec'" in script
