"""Collaborative vectors: training, hybrid reranking, folds in both spaces."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest
from psycopg import sql

from rerankdb import Client
from rerankdb.drain import drain
from rerankdb.train import binary_matrix, item_factors, train
from rerankdb.user_refresh import rebuild_all
from tests.helpers import load_items

DIM = 384
CONTEXT_WEIGHT = 0.0  # the half-lives are rerankdb.settings'
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def vectors(conn: Any, table: str, column: str, key: str) -> dict[int, np.ndarray]:
    query = sql.SQL("select {k}, {c} from {t} where {c} is not null").format(
        k=sql.Identifier(key), c=sql.Identifier(column), t=sql.Identifier("rerankdb", table)
    )
    rows = conn.execute(query).fetchall()
    return {i: np.asarray(v.to_numpy(), dtype=np.float64) for i, v in rows}


@pytest.fixture
def world(client: Client, conn: Any, rng: np.random.Generator) -> dict[str, Any]:
    """60 items in two taste groups (text vectors random), 40 users each liking one group."""
    load_items(client, rng.standard_normal((60, DIM)))
    rows = []
    for u in range(1, 41):
        group = range(1, 31) if u <= 20 else range(31, 59)  # items 59, 60: nobody
        for k, i in enumerate(rng.choice(list(group), 12, replace=False)):
            rows.append((u, int(i), "like", T0 + timedelta(hours=k)))
    with conn.cursor() as cur:
        cur.executemany(
            "insert into rerankdb.interactions (user_id, item_id, kind, occurred_at) values (%s, %s, %s, %s)",
            rows,
        )
    drain(conn, None, CONTEXT_WEIGHT, DIM)
    report = train(conn, None, CONTEXT_WEIGHT, DIM, k=8)
    assert report.dim == 8 and report.items == 58 and report.users == 40
    # The hybrid formula of the long-term vectors; the blend with the short-term
    # ones is tested in test_short_term.py.
    conn.execute("update rerankdb.settings set short_weight = 0, collab_short_weight = 0")
    return {"rows": rows}


def test_items_with_interactions_get_unit_collab_vectors(conn: Any, world: Any) -> None:
    collab = vectors(conn, "item_rank", "collab", "item_id")
    assert set(collab) == set(range(1, 59)), "items nobody touched stay text-only"
    for v in collab.values():
        assert len(v) == 8 and np.linalg.norm(v) == pytest.approx(1.0, abs=1e-5)
    users = vectors(conn, "user_vectors", "collab", "user_id")
    assert set(users) == set(range(1, 41))
    # taste groups are separated in the collaborative space
    assert users[1] @ collab[5] > users[1] @ collab[40]


def test_hybrid_score_blends_the_two_cosines(conn: Any, world: Any) -> None:
    text_u = vectors(conn, "user_vectors", "embedding", "user_id")[3]
    col_u = vectors(conn, "user_vectors", "collab", "user_id")[3]
    text_i = vectors(conn, "item_vectors", "embedding", "item_id")
    col_i = vectors(conn, "item_rank", "collab", "item_id")
    cands = [5, 40, 59, 12]
    for w in (0.0, 0.3, 1.0):
        conn.execute("update rerankdb.settings set collab_weight = %s", [w])
        got = dict(
            conn.execute("select item_id, score from rerankdb.rerank(3, %s::bigint[])", [cands]).fetchall()
        )
        for i in cands:
            want = (
                text_u @ text_i[i] if i not in col_i else (1 - w) * text_u @ text_i[i] + w * col_u @ col_i[i]
            )
            assert got[i] == pytest.approx(want, abs=1e-5), (w, i)
    conn.execute("update rerankdb.settings set collab_weight = 0.7")
    ranked = [
        r[0] for r in conn.execute("select item_id from rerankdb.rerank(3, array[40, 41, 5, 6])").fetchall()
    ]
    assert set(ranked[:2]) == {5, 6}, "user 3 likes the first group"


def test_incremental_folds_after_training_equal_a_rebuild(
    conn: Any, world: Any, rng: np.random.Generator
) -> None:
    more = [
        (int(rng.integers(1, 41)), int(rng.integers(1, 61)), "view", T0 + timedelta(days=3))
        for _ in range(50)
    ]
    with conn.cursor() as cur:
        cur.executemany(
            "insert into rerankdb.interactions (user_id, item_id, kind, occurred_at) values (%s, %s, %s, %s)",
            more,
        )
    drain(conn, None, CONTEXT_WEIGHT, DIM)
    before = {t: vectors(conn, "user_vectors", t, "user_id") for t in ("embedding", "collab")}
    rebuild_all(conn, None, CONTEXT_WEIGHT, DIM)
    after = {t: vectors(conn, "user_vectors", t, "user_id") for t in ("embedding", "collab")}
    for t in before:
        assert before[t].keys() == after[t].keys()
        for u in before[t]:
            assert np.abs(before[t][u] - after[t][u]).max() <= 1e-5, (t, u)


def test_new_items_rank_by_text_until_the_next_training(conn: Any, client: Client, world: Any) -> None:
    text_u = vectors(conn, "user_vectors", "embedding", "user_id")[7]
    load_items(client, np.vstack([text_u, -text_u]), ids=[100, 101])  # a new item just like user 7's taste
    got = dict(conn.execute("select item_id, score from rerankdb.rerank(7, array[100, 101])").fetchall())
    assert got[100] == pytest.approx(1.0, abs=1e-5) and got[101] == pytest.approx(-1.0, abs=1e-5)


def test_training_builds_the_hybrid_index_recommend_searches(conn: Any, client: Client, world: Any) -> None:
    """After the training's commit: one key per item (all 60, with or without a collaborative
    vector), built for the trained dimension and the current weights; recommend's results are
    rerank's best over the whole catalog, and a new item is found at once."""
    meta = conn.execute(
        "select m.items, m.text_dim, m.collab_dim, m.collab_weight = st.collab_weight,"
        " m.trained_at = st.trained_at"
        " from rerankdb.hybrid_meta m, rerankdb.settings st"
    ).fetchone()
    assert meta == (60, DIM, 8, True, True)
    everything = (
        "select item_id from rerankdb.rerank(1, (select array_agg(item_id) from rerankdb.items), 5,"
        " exclude_seen => true)"
    )
    want = [r[0] for r in conn.execute(everything)]
    assert [r[0] for r in conn.execute("select item_id from rerankdb.recommend(1, 5)")] == want
    text_u = vectors(conn, "user_vectors", "embedding", "user_id")[1]
    load_items(client, text_u[None, :], ids=[100])
    assert conn.execute("select item_id from rerankdb.recommend(1, 1)").fetchone() == (100,)


def test_training_with_too_little_data_changes_nothing(conn: Any) -> None:
    report = train(conn, None, CONTEXT_WEIGHT, DIM)
    assert report.dim == 0
    assert conn.execute("select trained_at from rerankdb.settings").fetchone() == (None,)


def test_item_factors_shape_and_units() -> None:
    users = np.array([0, 0, 1, 1, 2, 3, 3])
    items = np.array([0, 1, 0, 1, 2, 2, 3])
    f = item_factors(binary_matrix(users, items, 4, 5), k=16)
    assert f.shape == (5, 3)  # k capped below min(users, items)
    assert np.allclose(np.linalg.norm(f[:4], axis=1), 1.0) and not f[4].any()  # item 4: no interactions


def test_hybrid_score_with_both_spaces_centered(conn: Any, world: Any) -> None:
    assert conn.execute("select rerankdb.refresh_centers(10)").fetchone() == (40,)
    conn.execute(
        "update rerankdb.settings set collab_weight = 0.6, text_centering = 1, collab_centering = 0.5"
    )
    text_u = vectors(conn, "user_vectors", "embedding", "user_id")
    col_u = vectors(conn, "user_vectors", "collab", "user_id")
    text_i = vectors(conn, "item_vectors", "embedding", "item_id")
    col_i = vectors(conn, "item_rank", "collab", "item_id")
    t_center = np.mean(list(text_u.values()), axis=0)
    c_center = np.mean(list(col_u.values()), axis=0)
    cands = [5, 40, 59, 12]
    got = dict(
        conn.execute("select item_id, score from rerankdb.rerank(3, %s::bigint[])", [cands]).fetchall()
    )
    t = text_u[3] - t_center
    c = col_u[3] - 0.5 * c_center
    t, c = t / np.linalg.norm(t), c / np.linalg.norm(c)
    for i in cands:
        want = t @ text_i[i] if i not in col_i else 0.4 * t @ text_i[i] + 0.6 * c @ col_i[i]
        assert got[i] == pytest.approx(want, abs=1e-5), i


def test_collab_center_of_another_dimension_is_skipped(conn: Any, world: Any) -> None:
    """Mid-retraining some users may still hold vectors of the old dimension: no error, no centering."""
    others = vectors(conn, "user_vectors", "collab", "user_id")
    del others[3]
    conn.execute("update rerankdb.user_vectors set collab = '[1,0,0,0]' where user_id = 3")
    conn.execute("update rerankdb.item_rank set collab = '[0.6,0.8,0,0]' where item_id = 5")
    conn.execute("select rerankdb.refresh_centers(10)")
    conn.execute("update rerankdb.settings set collab_centering = 1")
    got = dict(conn.execute("select item_id, score from rerankdb.rerank(3, array[5])").fetchall())
    text_u = vectors(conn, "user_vectors", "embedding", "user_id")
    t = text_u[3] - np.mean(list(text_u.values()), axis=0)
    t_i = vectors(conn, "item_vectors", "embedding", "item_id")[5]
    assert got[5] == pytest.approx(0.3 * (t / np.linalg.norm(t)) @ t_i + 0.7 * 0.6, abs=1e-5)
    row = conn.execute("select collab_center from rerankdb.settings").fetchone()
    center = np.asarray(row[0].to_numpy(), dtype=np.float64)
    assert len(center) == 8, "the center averages the vectors of the most common dimension"
    assert np.abs(center - np.mean(list(others.values()), axis=0)).max() <= 1e-5


def test_reads_during_a_training_that_changes_the_dimension_never_fail_nor_mix(
    db_url: str, conn: Any, world: Any
) -> None:
    """Concurrent reranks while training moves from 8-d to 3-d vectors: each call returns the
    full ranking of the old space or of the new one, and none fails."""
    import threading

    from rerankdb import db

    candidates = list(range(1, 61))

    def ranking() -> list[tuple[int, float | None]]:
        rows = conn.execute("select item_id, score from rerankdb.rerank(3, %s)", [candidates]).fetchall()
        return [(i, None if s is None else round(s, 6)) for i, s in rows]

    before = ranking()
    stop = threading.Event()
    seen: list[list[tuple[int, float | None]]] = []
    errors: list[BaseException] = []

    def read() -> None:
        with db.connect(db_url, autocommit=True) as c:
            while not stop.is_set():
                try:
                    rows = c.execute(
                        "select item_id, score from rerankdb.rerank(3, %s)", [candidates]
                    ).fetchall()
                    seen.append([(i, None if s is None else round(s, 6)) for i, s in rows])
                except BaseException as exc:  # surfaced below
                    errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(2)]
    for r in readers:
        r.start()
    conn.execute("update rerankdb.settings set collab_dim = 3")
    with db.connect(db_url, autocommit=True) as trainer:
        for _ in range(3):
            assert train(trainer, None, CONTEXT_WEIGHT, DIM).dim == 3
    stop.set()
    for r in readers:
        r.join()
    after = ranking()
    assert not errors, errors[:3]
    assert before != after, "the spaces rank differently"
    assert seen and all(s in (before, after) for s in seen), "a call mixed the spaces"
    assert len(vectors(conn, "user_vectors", "collab", "user_id")[3]) == 3
