"""The sequence space in the database: training, the worker's refresh, rerank's blend, explain."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest
import torch

from rerankdb import Client, sequence, sequence_space, tune_report, tune_sequence
from rerankdb.drain import drain
from rerankdb.train import train
from rerankdb.tune import CONTEXT_ITEMS, Grid, context_sweep, tune
from rerankdb.tune import fit as tune_fit
from rerankdb.user_refresh import rebuild_all_in_transaction
from tests.helpers import load_items

DIM = 384
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
CONFIG = sequence.SequenceConfig(dim=16, max_len=8, max_epochs=15, patience=15, eval_users=40, lr=5e-3)
N_ITEMS = 40


def insert(conn: Any, rows: list[tuple[int, int, str, datetime]]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "insert into rerankdb.interactions (user_id, item_id, kind, occurred_at) values (%s, %s, %s, %s)",
            rows,
        )


@pytest.fixture(autouse=True)
def few_users(monkeypatch: pytest.MonkeyPatch) -> None:
    """These worlds have 30 to 40 users: below the shipped minimum, on purpose (fast)."""
    monkeypatch.setattr(sequence_space, "MIN_USERS", 3)


@pytest.fixture
def world(client: Client, conn: Any, rng: np.random.Generator) -> dict[str, Any]:
    """40 items; 40 users each walk a chain (item i, then i + 1, ...) from a random start."""
    load_items(client, rng.standard_normal((N_ITEMS, DIM)))
    rows = []
    for u in range(1, 41):
        start = int(rng.integers(1, N_ITEMS - 12))
        for k in range(int(rng.integers(5, 12))):
            rows.append((u, start + k, "like", T0 + timedelta(hours=k)))
    insert(conn, rows)
    drain(conn, None, 0.0, DIM)
    report = train(conn, None, 0.0, DIM, k=8, sequence=True, sequence_config=CONFIG)
    assert report.sequence_epochs > 0
    return {"rows": rows}


def seq_vectors(conn: Any, table: str, key: str) -> dict[int, np.ndarray]:
    rows = conn.execute(f"select {key}, seq from rerankdb.{table} where seq is not null").fetchall()
    return {i: np.asarray(v.to_numpy(), dtype=np.float64) for i, v in rows}


def expected_user_vector(conn: Any, user: int) -> np.ndarray:
    """The user's vector computed afresh from the ordered log with the stored model."""
    loaded = sequence_space.current(conn)
    assert loaded is not None
    items = [
        r[0]
        for r in conn.execute(
            "select item_id from rerankdb.interactions where user_id = %s order by occurred_at, interaction_id",
            [user],
        ).fetchall()
    ]
    seq = [loaded.index[i] for i in items]
    return sequence.user_vectors(loaded.model, [seq])[0].astype(np.float64)


def test_training_stores_the_model_and_every_item_and_user_vector(conn: Any, world: Any) -> None:
    version, items, dim, max_len = conn.execute(
        "select version, items, dim, max_len from rerankdb.sequence_model"
    ).fetchone()
    assert version == 1 and items == list(range(1, N_ITEMS + 1)) and (dim, max_len) == (16, 8)
    item_seq = seq_vectors(conn, "item_rank", "item_id")
    assert set(item_seq) == set(range(1, N_ITEMS + 1))
    for v in item_seq.values():
        assert len(v) == 16 and np.linalg.norm(v) == pytest.approx(1.0, abs=1e-5)
    users = seq_vectors(conn, "user_vectors", "user_id")
    assert set(users) == set(range(1, 41))
    for u in (1, 17, 40):
        np.testing.assert_allclose(users[u], expected_user_vector(conn, u), atol=1e-5)


def test_a_rebuild_in_many_batches_in_one_transaction_keeps_every_users_vectors(
    conn: Any, world: Any
) -> None:
    # A training's switch rebuilds every user in batches, all in one transaction: each batch
    # must write its own users alone (the state stage empties only at the commit).
    before = {
        r[0]: r[1:]
        for r in conn.execute("select user_id, embedding, collab, seq from rerankdb.user_vectors").fetchall()
    }
    with conn.transaction():
        rebuild_all_in_transaction(conn, None, 0.0, DIM, batch_users=7)
    users = seq_vectors(conn, "user_vectors", "user_id")
    assert set(users) == set(range(1, 41))
    for u in range(1, 41):
        np.testing.assert_allclose(users[u], expected_user_vector(conn, u), atol=1e-5)
    after = conn.execute("select user_id, embedding, collab from rerankdb.user_vectors").fetchall()
    assert {r[0] for r in after} == set(before)
    for user, embedding, collab in after:
        np.testing.assert_allclose(embedding.to_numpy(), before[user][0].to_numpy(), atol=1e-6)
        np.testing.assert_allclose(collab.to_numpy(), before[user][1].to_numpy(), atol=1e-6)


def test_a_fold_recomputes_from_the_ordered_log_whatever_the_commit_order(conn: Any, world: Any) -> None:
    # A new event, then one older than it, committed later: the vector is the same as
    # if they had arrived in time order.
    insert(conn, [(3, 30, "like", T0 + timedelta(days=3))])
    drain(conn, None, 0.0, DIM)
    insert(conn, [(3, 29, "like", T0 + timedelta(days=2))])
    drain(conn, None, 0.0, DIM)
    got = seq_vectors(conn, "user_vectors", "user_id")[3]
    np.testing.assert_allclose(got, expected_user_vector(conn, 3), atol=1e-5)
    seq_items = conn.execute("select seq_items from rerankdb.user_vectors where user_id = 3").fetchone()[0]
    assert seq_items[-2:] == [29, 30] and len(seq_items) <= CONFIG.max_len


def test_negative_interactions_are_not_in_the_sequence(conn: Any, world: Any) -> None:
    before = seq_vectors(conn, "user_vectors", "user_id")[5]
    insert(conn, [(5, 1, "dislike", T0 + timedelta(days=5))])
    drain(conn, None, 0.0, DIM)
    np.testing.assert_allclose(seq_vectors(conn, "user_vectors", "user_id")[5], before, atol=1e-6)


def test_new_items_get_their_text_part_and_new_users_a_vector(
    client: Client, conn: Any, world: Any, rng: np.random.Generator
) -> None:
    text = rng.standard_normal((1, DIM))
    load_items(client, text, ids=[1000])
    # An item brought with set_item_vectors (no worker encoding): the fold fills it in.
    insert(conn, [(500, 5, "like", T0), (500, 1000, "like", T0 + timedelta(hours=1))])
    drain(conn, None, 0.0, DIM)
    loaded = sequence_space.current(conn)
    assert loaded is not None
    stored = text / np.linalg.norm(text)
    want = sequence.new_item_vectors(loaded.model, stored.astype(np.float32))[0]
    np.testing.assert_allclose(seq_vectors(conn, "item_rank", "item_id")[1000], want, atol=1e-5)
    user = seq_vectors(conn, "user_vectors", "user_id")[500]
    table = sequence.input_table(loaded.model, stored.astype(np.float32))
    expected = sequence.user_vectors(loaded.model, [[loaded.index[5], N_ITEMS + 1]], items=table)[0]
    np.testing.assert_allclose(user, expected, atol=1e-5)


def test_rerank_blends_the_sequence_cosine(client: Client, conn: Any, world: Any) -> None:
    conn.execute("update rerankdb.settings set sequence_weight = 0.4")
    cands = list(range(1, N_ITEMS + 1))
    with_seq = {r.item_id: r.score for r in client.rerank(7, cands)}
    conn.execute("update rerankdb.settings set sequence_weight = 0")
    base = {r.item_id: r.score for r in client.rerank(7, cands)}
    user = seq_vectors(conn, "user_vectors", "user_id")[7]
    items = seq_vectors(conn, "item_rank", "item_id")
    for item in cands:
        want = 0.6 * base[item] + 0.4 * float(items[item] @ user)
        assert with_seq[item] == pytest.approx(want, abs=1e-5)
    conn.execute("update rerankdb.settings set sequence_weight = 1")
    order = [r.item_id for r in client.rerank(7, cands)]
    assert order == sorted(cands, key=lambda i: -float(items[i] @ user))


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def test_a_first_time_visitors_context_is_scored_in_the_sequence_space(
    client: Client, conn: Any, world: Any
) -> None:
    # A user with no vector is ranked by the context alone: in the sequence space by the
    # average of the context items' sequence vectors, blended as a user's cosine is.
    visitor, context, cands = 10**9, [3, 5], list(range(1, N_ITEMS + 1))
    items = seq_vectors(conn, "item_rank", "item_id")
    query = unit(items[3] + items[5])
    conn.execute("update rerankdb.settings set sequence_weight = 0")
    base = {r.item_id: r.score for r in client.rerank(visitor, cands, context_items=context)}
    conn.execute("update rerankdb.settings set sequence_weight = 0.4")
    with_seq = {r.item_id: r.score for r in client.rerank(visitor, cands, context_items=context)}
    for item in cands:
        want = 0.6 * base[item] + 0.4 * float(items[item] @ query)
        assert with_seq[item] == pytest.approx(want, abs=1e-5)


def test_a_users_context_moves_the_sequence_query_by_the_context_weight(
    client: Client, conn: Any, world: Any
) -> None:
    cands, context = list(range(1, N_ITEMS + 1)), [3, 5]
    user = seq_vectors(conn, "user_vectors", "user_id")[7]
    items = seq_vectors(conn, "item_rank", "item_id")
    conn.execute("update rerankdb.settings set sequence_weight = 1, context_items_weight = 0.25")
    order = [r.item_id for r in client.rerank(7, cands, context_items=context)]
    query = unit(0.75 * user + 0.25 * unit(items[3] + items[5]))
    assert order == sorted(cands, key=lambda i: -float(items[i] @ query))
    conn.execute("update rerankdb.settings set context_items_weight = 0")
    order = [r.item_id for r in client.rerank(7, cands, context_items=context)]
    assert order == sorted(cands, key=lambda i: -float(items[i] @ user))


def test_the_sequence_space_learns_what_follows(client: Client, conn: Any, world: Any) -> None:
    # Every user walked a chain: for a user whose newest item is i, item i + 1 ranks high
    # by the sequence cosine alone, far above a random item's average rank.
    conn.execute("update rerankdb.settings set sequence_weight = 1")
    ranks = []
    for user in range(1, 41):
        last = max((r for r in world["rows"] if r[0] == user), key=lambda r: r[3])[1]
        if last + 1 > N_ITEMS:
            continue
        order = [r.item_id for r in client.rerank(user, list(range(1, N_ITEMS + 1)))]
        ranks.append(order.index(last + 1) + 1)
    assert np.median(ranks) <= 5, ranks


def test_a_training_without_the_sequence_keeps_the_model(conn: Any, world: Any) -> None:
    before = seq_vectors(conn, "user_vectors", "user_id")
    train(conn, None, 0.0, DIM, k=8)
    assert conn.execute("select count(*) from rerankdb.sequence_model").fetchone()[0] == 1
    after = seq_vectors(conn, "user_vectors", "user_id")
    assert set(after) == set(before)
    for u in before:
        np.testing.assert_allclose(after[u], before[u], atol=1e-6)


def test_trainings_switch_versions_and_keep_the_newest_three(conn: Any, world: Any) -> None:
    for _ in range(3):
        train(conn, None, 0.0, DIM, k=8, sequence=True, sequence_config=CONFIG)
    versions = [r[0] for r in conn.execute("select version from rerankdb.sequence_model order by 1")]
    assert versions == [2, 3, 4]
    loaded = sequence_space.current(conn)
    assert loaded is not None and loaded.version == 4
    np.testing.assert_allclose(
        seq_vectors(conn, "user_vectors", "user_id")[9], expected_user_vector(conn, 9), atol=1e-5
    )


def test_explain_names_the_attended_items(client: Client, conn: Any, world: Any) -> None:
    conn.execute("update rerankdb.settings set sequence_weight = 1")
    items, attention = conn.execute(
        "select seq_items, seq_attention from rerankdb.user_vectors where user_id = 11"
    ).fetchone()
    assert sum(attention) == pytest.approx(1.0, abs=1e-4) and len(items) == len(attention)
    item_seq = seq_vectors(conn, "item_rank", "item_id")
    target = 20
    rows = conn.execute(
        "select because_item_id, contribution from rerankdb.explain(11, array[20], 50)"
    ).fetchall()
    share: dict[int, float] = {}
    for i, a in zip(items, attention, strict=True):
        share[i] = share.get(i, 0.0) + a
    for because, contribution in rows:
        want = share.get(because, 0.0) * float(item_seq[because] @ item_seq[target])
        assert contribution == pytest.approx(want, abs=1e-4)


def test_a_deleted_interaction_leaves_the_sequence(conn: Any, world: Any) -> None:
    conn.execute(
        "delete from rerankdb.interactions where user_id = 12 and occurred_at = "
        "(select max(occurred_at) from rerankdb.interactions where user_id = 12)"
    )
    drain(conn, None, 0.0, DIM)
    np.testing.assert_allclose(
        seq_vectors(conn, "user_vectors", "user_id")[12], expected_user_vector(conn, 12), atol=1e-5
    )


SMALL_GRID = Grid(
    half_lives=(None,),
    short_half_lives=(3600.0,),
    short_weights=(0.0,),
    collab_short_weights=(0.0,),
    collab_weights=(0.0, 0.5),
    collab_shrinks=(0.0,),
    text_centerings=(0.0,),
    collab_centerings=(0.0,),
    collab_dims=(8,),
)


def test_tune_chooses_the_sequence_weight_on_held_out_users(conn: Any, world: Any) -> None:
    # Chains: what follows is all there is to learn, and random text vectors say nothing.
    report = tune(conn, dry_run=True, dim=DIM, grid=SMALL_GRID)
    assert report.chosen.sequence_weight > 0
    assert set(report.sequence_ndcg) == set(tune_sequence.WEIGHTS)
    without = report.sequence_ndcg[0.0]
    best = report.sequence_ndcg[report.chosen.sequence_weight]
    assert best["uniform"] + best["popular"] > without["uniform"] + without["popular"]
    assert report.sequence_seconds > 0
    assert "sequence_weight" in tune_report.comparison(report)
    # Written: rerank uses it.
    written = tune(conn, dim=DIM, grid=SMALL_GRID)
    got = conn.execute("select sequence_weight from rerankdb.settings").fetchone()[0]
    assert got == written.chosen.sequence_weight > 0


def test_the_tuners_context_sweep_scores_the_contexts_sequence_vector(conn: Any, world: Any) -> None:
    # At context weight 1 and sequence weight 1, a held-out user is ranked by the average of
    # their newest history items' sequence vectors alone (rerank's formula).
    fitted, current, trained, _ = tune_fit(conn, max_users=1000, seed=3)
    seq = tune_sequence.fit(conn, fitted)
    assert seq is not None
    only_seq = replace(current, sequence_weight=1.0)
    sweep = context_sweep(fitted, only_seq, trained, weights=(0.0, 1.0), seq=seq)
    h = fitted.holdout
    for name in ("uniform", "popular"):
        want = []
        for u in range(len(h.users)):
            rows = np.flatnonzero(h.user_idx == u)
            newest = rows[np.lexsort((-rows, -h.times[rows]))][:CONTEXT_ITEMS]
            _, first = np.unique(h.items[newest], return_index=True)
            query = unit(seq.row_vecs[newest[first]].mean(axis=0))
            cands = seq.cands[name]
            scores = cands.vectors[cands.positions[u]] @ query
            assert seq.has_item[name][u].all()  # every item has a vector in this world
            rank = int((scores > scores[h.target_pos[name][u]]).sum())
            want.append(1 / np.log2(rank + 2) if rank < 10 else 0.0)
        np.testing.assert_allclose(sweep[1.0][name], want, atol=1e-9)
        assert not np.allclose(sweep[0.0][name], sweep[1.0][name])


def test_tune_without_the_sequence_keeps_its_weight(conn: Any, world: Any) -> None:
    conn.execute("update rerankdb.settings set sequence_weight = 0.25")
    report = tune(conn, dim=DIM, grid=SMALL_GRID, sequence=False)
    assert report.sequence_ndcg == {} and report.chosen.sequence_weight == 0.25
    assert conn.execute("select sequence_weight from rerankdb.settings").fetchone()[0] == 0.25


def test_tune_without_a_model_leaves_the_sequence_alone(
    client: Client, conn: Any, rng: np.random.Generator
) -> None:
    load_items(client, rng.standard_normal((N_ITEMS, DIM)))
    insert(
        conn,
        [
            (u, int(i), "like", T0 + timedelta(hours=k))
            for u in range(1, 31)
            for k, i in enumerate(rng.choice(N_ITEMS, 6, replace=False) + 1)
        ],
    )
    drain(conn, None, 0.0, DIM)
    report = tune(conn, dry_run=True, dim=DIM, grid=SMALL_GRID)
    assert report.sequence_ndcg == {} and report.chosen.sequence_weight == 0.3  # the default, kept


def test_a_damaged_model_does_not_stop_the_folds(
    client: Client, conn: Any, world: Any, caplog: pytest.LogCaptureFixture
) -> None:
    conn.execute("update rerankdb.sequence_model set weights = 'not a model'::bytea")
    sequence_space._cache.clear()  # a worker started since: it loads the damaged weights
    insert(conn, [(4, 2, "like", T0 + timedelta(days=9))])
    report = drain(conn, None, 0.0, DIM)
    assert report.interactions_folded == 1 and report.interactions_set_aside == 0
    assert "the sequence model cannot run" in caplog.text
    row = conn.execute(
        "select seq, seq_items, embedding is not null from rerankdb.user_vectors where user_id = 4"
    )
    assert row.fetchone() == (None, None, True), "cleared, never stale; the text vector folded"
    # rerank scores the user by the other spaces alone.
    assert all(r.score is not None for r in client.rerank(4, [1, 2, 3]))


def test_text_vectors_of_another_dimension_keep_the_learned_part(conn: Any, world: Any) -> None:
    loaded = sequence_space.current(conn)
    assert loaded is not None
    state = loaded.model.state()
    again = sequence.SequenceModel.from_state(state, np.ones((N_ITEMS, 7), dtype=np.float32))
    with torch.no_grad():
        np.testing.assert_allclose(again.item.weight.numpy(), loaded.model.item.weight.numpy())


def test_recommend_reorders_its_pool_by_the_blend(client: Client, conn: Any, world: Any) -> None:
    conn.execute("update rerankdb.settings set sequence_weight = 0")
    plain = conn.execute("select item_id, score from rerankdb.recommend(8, 40, false)").fetchall()
    conn.execute("update rerankdb.settings set sequence_weight = 0.5")
    got = conn.execute("select item_id, score, rank from rerankdb.recommend(8, 5, false)").fetchall()
    user = seq_vectors(conn, "user_vectors", "user_id")[8]
    items = seq_vectors(conn, "item_rank", "item_id")
    # The pool (the 40 best by the linear score: here the whole catalog), scored as rerank does.
    want = sorted(
        ((i, 0.5 * s + 0.5 * float(items[i] @ user)) for i, s in plain), key=lambda r: (-r[1], r[0])
    )[:5]
    assert [r[0] for r in got] == [w[0] for w in want] and [r[2] for r in got] == [1, 2, 3, 4, 5]
    for (_, score, _), (_, w) in zip(got, want, strict=True):
        assert score == pytest.approx(w, abs=1e-5)
    # The same scores as rerank's for those items.
    reranked = {r.item_id: r.score for r in client.rerank(8, [r[0] for r in got])}
    for item, score, _ in got:
        assert reranked[item] == pytest.approx(score, abs=1e-5)


def test_too_few_users_train_no_model(conn: Any, client: Client, rng: np.random.Generator) -> None:
    sequence_space.MIN_USERS = 50  # the shipped minimum (the fixture lowered it)
    load_items(client, rng.standard_normal((N_ITEMS, DIM)))
    insert(
        conn,
        [(u, 1 + (u + k) % N_ITEMS, "like", T0 + timedelta(hours=k)) for u in range(1, 50) for k in range(3)],
    )
    drain(conn, None, 0.0, DIM)
    report = train(conn, None, 0.0, DIM, k=4, sequence=True, sequence_config=CONFIG)
    assert report.dim == 4 and report.sequence_epochs == 0
    assert conn.execute("select count(*) from rerankdb.sequence_model").fetchone() == (0,)
    assert conn.execute("select count(*) from rerankdb.user_vectors where seq is not null").fetchone() == (0,)
