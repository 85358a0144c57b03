"""Diversity (MMR), context items, exclude_seen, explain, and recommend with the hybrid:
each against a numpy reference of its documented contract."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import psycopg
import pytest
from pgvector import Vector

from rerankdb import Client, db
from rerankdb.drain import drain
from tests.helpers import load_items
from tests.worker_helpers import T0, add_interactions

DIM = 384
COLLAB_WEIGHT, SHRINK = 0.6, 5.0


def unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def f32(v: np.ndarray) -> np.ndarray:
    """As PostgreSQL stores it."""
    return np.asarray(np.asarray(v, dtype=np.float32), dtype=np.float64)


@dataclass
class World:
    text: dict[int, np.ndarray]
    collab: dict[int, np.ndarray]
    support: dict[int, int]
    collab_weight: float = COLLAB_WEIGHT
    shrink: float = SHRINK

    def weight(self, item: int) -> float:
        return self.collab_weight * self.support[item] / (self.support[item] + self.shrink)

    def score(self, item: int, qt: np.ndarray, qc: np.ndarray | None) -> float:
        s = float(self.text[item] @ qt)
        if qc is not None and item in self.collab:
            w = self.weight(item)
            s = (1 - w) * s + w * float(self.collab[item] @ qc)
        return s

    def sim(self, c: int, s: int, use_collab: bool) -> float:
        """rerankdb.diversify's similarity of candidate c to chosen item s."""
        t = float(self.text[c] @ self.text[s])
        if use_collab and c in self.collab and s in self.collab:
            w = self.weight(c)
            return (1 - w) * t + w * float(self.collab[c] @ self.collab[s])
        return t

    def plain(self, cands: list[int], qt: np.ndarray, qc: np.ndarray | None) -> list[int]:
        first = list(dict.fromkeys(c for c in cands if c in self.text))
        return sorted(first, key=lambda c: (-self.score(c, qt, qc), first.index(c)))

    def mmr(
        self, order: list[int], rel: dict[int, float], lam: float, depth: int, use_collab: bool
    ) -> list[int]:
        rest, chosen = list(order), []
        maxsim = dict.fromkeys(order, -np.inf)
        for _ in range(min(depth, len(order))):
            if not chosen:
                best = rest[0]
            else:
                best = max(rest, key=lambda c: ((1 - lam) * rel[c] - lam * maxsim[c], -order.index(c)))
            chosen.append(best)
            rest.remove(best)
            for c in rest:
                maxsim[c] = max(maxsim[c], self.sim(c, best, use_collab))
        return chosen + rest


@pytest.fixture
def world(conn: psycopg.Connection[Any], client: Client, rng: np.random.Generator) -> World:
    n = 240
    text = rng.standard_normal((n, DIM))
    # Clusters, so that diversity has something to trade: 12 directions plus noise.
    centers = rng.standard_normal((12, 16))
    collab = unit(centers[rng.integers(0, 12, n)] + 0.4 * rng.standard_normal((n, 16)))
    ids = load_items(client, text)
    support = {i: int(s) for i, s in zip(ids, rng.integers(1, 40, n), strict=True)}
    with_collab = ids[: n - 40]  # the last 40 items have no collaborative vector
    conn.execute(
        "update rerankdb.item_rank r set collab = c.v, support = c.s"
        " from unnest(%s::bigint[], %s::vector[], %s::int[]) as c(id, v, s) where r.item_id = c.id",
        [with_collab, [Vector(collab[i - 1]) for i in with_collab], [support[i] for i in with_collab]],
    )
    conn.execute(
        "update rerankdb.settings set collab_weight = %s, collab_shrink = %s", [COLLAB_WEIGHT, SHRINK]
    )
    conn.execute("select rerankdb.refresh_collab_keys()")  # as a training does
    return World(
        text={i: f32(unit(text[i - 1])) for i in ids},
        collab={i: f32(collab[i - 1]) for i in with_collab},
        support=support,
    )


def set_user(
    conn: Any, user: int, qt: np.ndarray, qc: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    conn.execute(
        "insert into rerankdb.user_vectors (user_id, embedding, collab) values (%s, %s, %s)",
        [user, Vector(unit(qt)), None if qc is None else Vector(unit(qc))],
    )
    return f32(unit(qt)), None if qc is None else f32(unit(qc))


def rerank(conn: Any, sql: str, *args: Any) -> list[tuple[int, float | None, int]]:
    return [tuple(r) for r in conn.execute(sql, list(args)).fetchall()]  # type: ignore[misc]


# --- diversity ---------------------------------------------------------------


@pytest.mark.parametrize("lam", [0.1, 0.3, 0.7, 1.0])
def test_diversity_is_the_mmr_order_over_all_candidates(
    conn: Any, world: World, rng: np.random.Generator, lam: float
) -> None:
    qt, qc = set_user(conn, 1, rng.standard_normal(DIM), rng.standard_normal(16))
    cands = [int(c) for c in rng.permutation(list(world.text))[:200]]
    cands += [cands[5], 9999]  # a duplicate, an unknown item
    order = world.plain(cands, qt, qc)
    rel = {c: world.score(c, qt, qc) for c in order}
    want = world.mmr(order, rel, lam, 20, use_collab=True)
    rows = rerank(conn, "select * from rerankdb.rerank(%s, %s, 20, diversity => %s)", 1, cands, lam)
    assert [r[0] for r in rows] == want[:20]
    assert [r[2] for r in rows] == list(range(1, 21))
    for item, score, _ in rows:  # score stays the relevance
        assert score == pytest.approx(rel[item], abs=1e-5)
    # k NULL: the first 100 by MMR, the rest by relevance, then the unknown item.
    rows = rerank(conn, "select * from rerankdb.rerank(%s, %s, diversity => %s)", 1, cands, lam)
    want_all = world.mmr(order, rel, lam, 100, use_collab=True)
    assert [r[0] for r in rows] == [*want_all, 9999]
    assert rows[-1][1] is None


def test_diversity_picks_from_beyond_the_first_k(conn: Any, world: World, rng: np.random.Generator) -> None:
    """Not MMR over the top k only (Qdrant's trap): full diversity brings in items from below."""
    set_user(conn, 1, rng.standard_normal(DIM), rng.standard_normal(16))
    cands = list(world.text)
    plain = [r[0] for r in rerank(conn, "select * from rerankdb.rerank(%s, %s, 10)", 1, cands)]
    diverse = [r[0] for r in rerank(conn, "select * from rerankdb.rerank(%s, %s, 10, 1.0)", 1, cands)]
    assert plain[0] == diverse[0]
    assert set(diverse) - set(plain), "diversity 1 chooses items from outside the plain top 10"


def test_diversity_zero_is_exactly_the_plain_order_and_every_value_keeps_the_rows(
    conn: Any, world: World, rng: np.random.Generator
) -> None:
    set_user(conn, 1, rng.standard_normal(DIM), rng.standard_normal(16))
    cands = [int(c) for c in rng.permutation(list(world.text))[:150]] + [None, 7777, 3, 3]
    plain = rerank(conn, "select * from rerankdb.rerank(%s, %s::bigint[])", 1, cands)
    assert rerank(conn, "select * from rerankdb.rerank(%s, %s::bigint[], null, 0)", 1, cands) == plain
    for lam in (0.2, 0.5, 1.0):
        rows = rerank(conn, "select * from rerankdb.rerank(%s, %s::bigint[], diversity => %s)", 1, cands, lam)
        assert sorted(r[0] for r in rows) == sorted(r[0] for r in plain)  # every candidate once
        assert [r[2] for r in rows] == list(range(1, len(plain) + 1))
        assert dict((r[0], r[1]) for r in rows) == dict((r[0], r[1]) for r in plain)


def test_diversity_without_collaborative_vectors_uses_the_text_space(
    conn: Any, world: World, rng: np.random.Generator
) -> None:
    qt, _ = set_user(conn, 1, rng.standard_normal(DIM), None)
    cands = list(world.text)[:120]
    order = world.plain(cands, qt, None)
    rel = {c: world.score(c, qt, None) for c in order}
    rows = rerank(conn, "select * from rerankdb.rerank(%s, %s, 15, 0.5)", 1, cands)
    assert [r[0] for r in rows] == world.mmr(order, rel, 0.5, 15, use_collab=False)[:15]


def test_diversity_ties_go_to_the_plain_order(conn: Any, world: World, rng: np.random.Generator) -> None:
    """Copies of items (the same vectors and support): equal scores and equal
    similarities all along, so every choice between them is a tie, decided by
    the input position, as the numpy greedy decides it."""
    for copy, original in ((201, 7), (202, 7), (203, 7), (120, 44), (121, 44)):
        conn.execute(
            "update rerankdb.item_rank r set embedding = o.embedding, collab = o.collab, support = o.support"
            " from rerankdb.item_rank o where o.item_id = %s and r.item_id = %s",
            [original, copy],
        )
        world.text[copy], world.collab[copy] = world.text[original], world.collab[original]
        world.support[copy] = world.support[original]
    qt, qc = set_user(conn, 1, rng.standard_normal(DIM), rng.standard_normal(16))
    cands = [
        int(c)
        for c in rng.permutation([i for i in world.text if i not in (7, 44, 120, 121, 201, 202, 203)])[:80]
    ]
    cands[10:10] = [203, 7, 121]
    cands[40:40] = [201, 44, 202, 120]
    order = world.plain(cands, qt, qc)
    rel = {c: world.score(c, qt, qc) for c in order}
    for lam in (0.05, 0.3, 0.9):
        rows = rerank(conn, "select * from rerankdb.rerank(%s, %s, 30, diversity => %s)", 1, cands, lam)
        assert [r[0] for r in rows] == world.mmr(order, rel, lam, 30, use_collab=True)[:30]


@pytest.mark.parametrize("k", [0, 1, 2, 7, 500])
def test_diversity_at_every_k(conn: Any, world: World, rng: np.random.Generator, k: int) -> None:
    """k = 0 (no rows), 1 (the most relevant), and more than the candidates
    (every one, the scored by MMR, then the one without a vector)."""
    qt, qc = set_user(conn, 1, rng.standard_normal(DIM), rng.standard_normal(16))
    cands = [int(c) for c in rng.permutation(list(world.text))[:150]] + [8888]
    order = world.plain(cands, qt, qc)
    rel = {c: world.score(c, qt, qc) for c in order}
    rows = rerank(conn, "select * from rerankdb.rerank(%s, %s, %s, diversity => 0.4)", 1, cands, k)
    want = [*world.mmr(order, rel, 0.4, min(k, len(order)), use_collab=True), 8888][:k]
    assert [r[0] for r in rows] == want
    assert [r[2] for r in rows] == list(range(1, len(want) + 1))


@pytest.mark.parametrize("bad", ["-0.1", "1.5", "'NaN'", "null"])
def test_bad_diversity_is_refused(conn: Any, world: World, bad: str) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=r"diversity must be in \[0, 1\]"):
        conn.execute(f"select * from rerankdb.rerank(1, array[1, 2]::bigint[], diversity => {bad})")


def test_cold_user_keeps_the_input_order_with_diversity(conn: Any, world: World) -> None:
    rows = rerank(conn, "select item_id from rerankdb.rerank(42, array[5, 3, 9]::bigint[], diversity => 0.5)")
    assert [r[0] for r in rows] == [5, 3, 9]


# --- context -----------------------------------------------------------------


def test_context_items_are_mixed_into_the_query(conn: Any, world: World, rng: np.random.Generator) -> None:
    conn.execute("update rerankdb.settings set context_items_weight = 0.3")
    qt, qc = set_user(conn, 1, rng.standard_normal(DIM), rng.standard_normal(16))
    assert qc is not None
    context = [4, 8, 230]  # 230 has no collaborative vector
    ct = unit(np.mean([world.text[i] for i in context], axis=0))
    cc = unit(np.mean([world.collab[i] for i in context if i in world.collab], axis=0))
    qt2, qc2 = unit(0.7 * qt + 0.3 * ct), unit(0.7 * qc + 0.3 * cc)
    cands = list(world.text)
    rows = rerank(conn, "select * from rerankdb.rerank(%s, %s, 30, context_items => %s)", 1, cands, context)
    assert [r[0] for r in rows] == world.plain(cands, qt2, qc2)[:30]
    for item, score, _ in rows:
        assert score == pytest.approx(world.score(item, qt2, qc2), abs=1e-5)


def test_a_first_time_visitor_is_ranked_by_the_context_alone(
    conn: Any, world: World, rng: np.random.Generator
) -> None:
    context = [10, 11]
    ct = unit(np.mean([world.text[i] for i in context], axis=0))
    cc = unit(np.mean([world.collab[i] for i in context], axis=0))
    cands = [int(c) for c in rng.permutation(list(world.text))[:100]]
    rows = rerank(conn, "select * from rerankdb.rerank(%s, %s, context_items => %s)", 77, cands, context)
    assert [r[0] for r in rows] == world.plain(cands, ct, cc)
    assert all(r[1] is not None for r in rows)
    # Context items without vectors (or none at all): the retriever's order.
    rows = rerank(conn, "select item_id from rerankdb.rerank(%s, %s, context_items => %s)", 77, cands, [9999])
    assert [r[0] for r in rows] == cands


def test_context_items_weight_zero_keeps_the_users_order(
    conn: Any, world: World, rng: np.random.Generator
) -> None:
    conn.execute("update rerankdb.settings set context_items_weight = 0")
    set_user(conn, 1, rng.standard_normal(DIM), rng.standard_normal(16))
    cands = list(world.text)
    plain = rerank(conn, "select * from rerankdb.rerank(%s, %s)", 1, cands)
    assert (
        rerank(conn, "select * from rerankdb.rerank(%s, %s, context_items => %s)", 1, cands, [1, 2]) == plain
    )


# --- exclude_seen ------------------------------------------------------------


def test_exclude_seen_drops_positive_interactions_only(
    conn: Any, world: World, rng: np.random.Generator
) -> None:
    set_user(conn, 1, rng.standard_normal(DIM), rng.standard_normal(16))
    add_interactions(
        conn,
        [
            (1, 3, "view", None, None, T0),  # positive: dropped
            (1, 4, "dislike", None, None, T0),  # negative: kept
            (1, 5, "view", -2.0, None, T0),  # its own weight is negative: kept
            (1, 6, "view", 0.0, None, T0),  # zero: kept
            (2, 7, "purchase", None, None, T0),  # another user's: kept
            (1, 8, "skip", None, None, T0),
            (1, 8, "like", None, None, T0),  # one positive among others: dropped
        ],
    )
    cands = [3, 4, 5, 6, 7, 8, 9]
    for sql in (
        "select item_id from rerankdb.rerank(%s, %s, exclude_seen => %s)",
        "select item_id from rerankdb.rerank(%s, %s, diversity => 0.5, exclude_seen => %s)",
        "select item_id from rerankdb.rerank_scored(%s, %s, array[1,2,3,4,5,6,7], exclude_seen => %s)",
    ):
        kept = {r[0] for r in rerank(conn, sql, 1, cands, True)}
        assert kept == {4, 5, 6, 7, 9}, sql
        assert {r[0] for r in rerank(conn, sql, 1, cands, False)} == set(cands)
    cold = rerank(conn, "select item_id from rerankdb.rerank(%s, %s, exclude_seen => true)", 2, [7, 3, 9])
    assert [r[0] for r in cold] == [3, 9]  # a user without a vector: still filtered, input order
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="exclude_seen must be true or false"):
        conn.execute("select * from rerankdb.rerank(1, array[1]::bigint[], exclude_seen => null)")


# --- rerank_scored -----------------------------------------------------------


def test_rerank_scored_takes_context_and_diversity(conn: Any, world: World, rng: np.random.Generator) -> None:
    conn.execute("update rerankdb.settings set context_items_weight = 0.4")
    qt, qc = set_user(conn, 1, rng.standard_normal(DIM), rng.standard_normal(16))
    assert qc is not None
    cands = list(world.text)[:150]
    base = [float(x) for x in rng.uniform(0, 10, len(cands))]
    context = [20, 21]
    qt2 = unit(0.6 * qt + 0.4 * unit(np.mean([world.text[i] for i in context], axis=0)))
    qc2 = unit(0.6 * qc + 0.4 * unit(np.mean([world.collab[i] for i in context], axis=0)))
    lo, hi = min(base), max(base)
    final = {
        c: 0.5 * (b - lo) / (hi - lo) + 0.5 * (world.score(c, qt2, qc2) + 1) / 2
        for c, b in zip(cands, base, strict=True)
    }
    order = sorted(cands, key=lambda c: (-final[c], cands.index(c)))
    rows = rerank(
        conn, "select * from rerankdb.rerank_scored(%s, %s, %s, context_items => %s)", 1, cands, base, context
    )
    assert [r[0] for r in rows] == order
    rows = rerank(
        conn,
        "select * from rerankdb.rerank_scored(%s, %s, %s, 0.5, 12, 0.4, %s)",
        1,
        cands,
        base,
        context,
    )
    assert [r[0] for r in rows] == world.mmr(order, final, 0.4, 12, use_collab=True)[:12]
    for item, score, _ in rows:
        assert score == pytest.approx(final[item], abs=1e-5)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="diversity"):
        conn.execute(
            "select * from rerankdb.rerank_scored(1, array[1]::bigint[], array[1.0], diversity => 2)"
        )


def test_old_positional_calls_keep_working(conn: Any, world: World, rng: np.random.Generator) -> None:
    set_user(conn, 1, rng.standard_normal(DIM), rng.standard_normal(16))
    two = rerank(conn, "select * from rerankdb.rerank(1, array[1, 2, 3]::bigint[])")
    three = rerank(conn, "select * from rerankdb.rerank(1, array[1, 2, 3]::bigint[], 2)")
    assert three == two[:2]
    scored = rerank(
        conn, "select * from rerankdb.rerank_scored(1, array[1, 2]::bigint[], array[1.0, 2.0], 0.5, 1)"
    )
    assert len(scored) == 1


# --- explain -----------------------------------------------------------------


def test_explain_names_the_interactions_that_contribute_most(
    conn: Any, client: Client, world: World, rng: np.random.Generator
) -> None:
    conn.execute(
        "update rerankdb.settings set half_life = '10 days', short_half_life = '1 hour',"
        " short_weight = 0.4, collab_short_weight = 0.2"
    )
    drain(conn, None, 0.0, DIM)
    events = [
        (1, 1, "view", None, T0),
        (1, 2, "purchase", None, T0 + timedelta(days=3)),
        (1, 3, "view", None, T0 + timedelta(days=5)),
        (1, 3, "like", None, T0 + timedelta(days=5, minutes=30)),  # the same item twice: one reason
        (1, 4, "dislike", None, T0 + timedelta(days=5, minutes=40)),
        (1, 230, "view", 1.5, T0 + timedelta(days=6)),  # no collaborative vector
    ]
    add_interactions(conn, [(u, i, k, w, None, t) for u, i, k, w, t in events])
    drain(conn, None, 0.0, DIM)
    kinds = dict(conn.execute("select kind, weight from rerankdb.interaction_kinds").fetchall())
    ref = max(t for *_, t in events)

    def shares(short: float) -> dict[int, float]:
        age = {j: (ref - t).total_seconds() for j, (*_, t) in enumerate(events)}
        wt = {j: e[3] if e[3] is not None else kinds[e[2]] for j, e in enumerate(events)}
        dl = {j: 2 ** (-age[j] / (10 * 86400)) for j in age}
        ds = {j: 2 ** (-age[j] / 3600) for j in age}
        zl, zs = sum(abs(wt[j]) * dl[j] for j in age), sum(abs(wt[j]) * ds[j] for j in age)
        out: dict[int, float] = {}
        for j, e in enumerate(events):
            out[e[1]] = out.get(e[1], 0.0) + wt[j] * ((1 - short) * dl[j] / zl + short * ds[j] / zs)
        return out

    a_text, a_collab = shares(0.4), shares(0.2)

    def contribution(j: int, x: int, hybrid: bool) -> float:
        t = a_text[j] * float(world.text[j] @ world.text[x])
        if not hybrid or j not in world.collab or x not in world.collab:
            return t
        w = world.weight(x)
        return (1 - w) * t + w * a_collab[j] * float(world.collab[j] @ world.collab[x])

    targets = [50, 60, 70, 235]  # 235 has no collaborative vector
    for hybrid in (True, False):
        if not hybrid:  # a user without a collaborative vector: the text space alone
            conn.execute("update rerankdb.user_vectors set collab = null where user_id = 1")
        rows = conn.execute("select * from rerankdb.explain(1, %s, 2)", [targets]).fetchall()
        want = []
        for x in targets:
            top = sorted(a_text, key=lambda j: -contribution(j, x, hybrid))[:2]
            want += [(x, j, contribution(j, x, hybrid)) for j in top]
        assert [(r[0], r[1]) for r in rows] == [(x, j) for x, j, _ in want]
        for (_, _, got, when), (_, j, c) in zip(rows, want, strict=True):
            assert got == pytest.approx(c, abs=1e-6)
            assert when == max(t for _, i, *_, t in events if i == j)
    assert client.explain(1, [50], n=1)[0].because_item_id == rows[0][1]


def test_explain_edges(conn: Any, world: World) -> None:
    assert conn.execute("select * from rerankdb.explain(999, array[1, 2])").fetchall() == []
    assert conn.execute("select * from rerankdb.explain(1, array[]::bigint[])").fetchall() == []
    assert conn.execute("select * from rerankdb.explain(1, array[1], 0)").fetchall() == []
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="n must be >= 0"):
        conn.execute("select * from rerankdb.explain(1, array[1], -1)")


# --- recommend and similar_items with the hybrid ------------------------------


def test_recommend_finds_the_hybrid_top_k_through_both_indexes(
    conn: Any, client: Client, rng: np.random.Generator
) -> None:
    n, k = 400, 10
    text = unit(rng.standard_normal((n, DIM)))
    # Over 64-d: the index key is a truncation to the last 64 components, which training
    # orders by ascending singular value (so the first ones are weak, as here).
    collab = unit(rng.standard_normal((n, 96)) * np.linspace(0.1, 1.0, 96))
    ids = load_items(client, text)
    support = rng.integers(5, 60, n)
    conn.execute(
        "update rerankdb.item_rank r set collab = c.v, support = c.s"
        " from unnest(%s::bigint[], %s::vector[], %s::int[]) as c(id, v, s) where r.item_id = c.id",
        [ids, [Vector(v) for v in collab], support.tolist()],
    )
    conn.execute("update rerankdb.settings set collab_weight = 0.8, collab_shrink = 0")
    assert conn.execute("select rerankdb.refresh_collab_keys()").fetchone() == (n,)
    world = World(
        {i: f32(text[i - 1]) for i in ids},
        {i: f32(collab[i - 1]) for i in ids},
        dict(zip(ids, support.tolist(), strict=True)),
        collab_weight=0.8,
        shrink=0.0,
    )
    # The user's collaborative vector is item 7's: far from it in text, near in behaviour.
    qt, qc = set_user(conn, 1, rng.standard_normal(DIM), collab[6])
    add_interactions(conn, [(1, 3, "view", None, None, T0)])
    exact = world.plain([i for i in ids if i != 3], qt, qc)[:k]
    got = conn.execute("select item_id, score from rerankdb.recommend(1, %s)", [k]).fetchall()
    assert len({g for g, _ in got} & set(exact)) >= k - 1  # HNSW is approximate
    assert 7 in {g for g, _ in got}, "found through the collaborative index"
    for item, score in got:
        assert score == pytest.approx(world.score(item, qt, qc), abs=1e-5)
    assert 3 not in {g for g, _ in got}
    # similar_items: the item's own vectors as the query.
    sim = conn.execute("select item_id, score from rerankdb.similar_items(7, 5)").fetchall()
    assert 7 not in {s for s, _ in sim}
    for item, score in sim:
        assert score == pytest.approx(world.score(item, world.text[7], world.collab[7]), abs=1e-5)
    best = world.plain([i for i in ids if i != 7], world.text[7], world.collab[7])[:5]
    assert len({s for s, _ in sim} & set(best)) >= 4


def test_recommend_uses_the_collaborative_index(conn: Any, world: World, rng: np.random.Generator) -> None:
    conn.execute("set enable_seqscan = off")  # 200 rows: a scan would be cheaper; can the index serve?
    plan = conn.execute(
        "explain select item_id from rerankdb.collab_keys order by key <#> %s::vector(64) limit 10",
        [Vector(unit(rng.standard_normal(64)))],
    ).fetchall()
    assert any("collab_keys_hnsw" in r[0] for r in plan), plan


def test_training_rebuilds_the_keys_beside_the_old_ones(
    conn: Any, db_url: str, world: World, rng: np.random.Generator
) -> None:
    """The keys are rebuilt beside the old ones; a long reader of the old ones makes the swap
    give up (readers never queue behind it for long), then it goes through."""
    assert conn.execute("select count(*) from rerankdb.collab_keys").fetchone() == (len(world.collab),)
    set_user(conn, 1, rng.standard_normal(DIM), rng.standard_normal(16))
    with psycopg.connect(db.libpq_url(db_url)) as reader:
        reader.execute("set transaction isolation level repeatable read")
        before = reader.execute("select item_id from rerankdb.recommend(1, 5)").fetchall()
        # A transaction still holding the old keys: the swap gives up, nothing changes.
        conn.execute("update rerankdb.item_rank set collab = null, support = null where item_id <= 100")
        with pytest.raises(psycopg.errors.LockNotAvailable, match="the old keys stay"):
            conn.execute("select rerankdb.refresh_collab_keys()")
        assert reader.execute("select item_id from rerankdb.recommend(1, 5)").fetchall() == before
        reader.rollback()
        # Once it is done, the swap goes through, and readers see the new keys.
        assert conn.execute("select rerankdb.refresh_collab_keys()").fetchone() == (len(world.collab) - 100,)
        count = reader.execute("select count(*) from rerankdb.collab_keys").fetchone()
        assert count == (len(world.collab) - 100,)
        assert reader.execute("select count(*) from rerankdb.recommend(1, 5)").fetchone() == (5,)
    tables = conn.execute(
        "select count(*) from pg_tables where schemaname = 'rerankdb' and tablename like 'collab_keys%'"
    )
    assert tables.fetchone() == (1,), "the old table is gone"


def test_collab_key_pads_and_truncates(conn: Any) -> None:
    short = conn.execute("select rerankdb.collab_key('[3,4]'::vector)").fetchone()
    assert short is not None
    np.testing.assert_allclose(short[0].to_numpy(), [0.6, 0.8] + [0.0] * 62, atol=1e-7)
    v = np.arange(1, 101, dtype=np.float64)
    (key,) = conn.execute("select rerankdb.collab_key(%s)", [Vector(v)]).fetchone() or (None,)
    np.testing.assert_allclose(key.to_numpy(), unit(v[-64:]), atol=1e-6)


def test_binary_arrays_work_as_candidates(conn: Any, world: World, rng: np.random.Generator) -> None:
    set_user(conn, 1, rng.standard_normal(DIM), rng.standard_normal(16))
    rows = conn.execute(
        "select item_id from rerankdb.rerank(%s, %s::bigint[], 5, 0.3)",
        [1, db.BigintArray(np.arange(1, 101))],
    ).fetchall()
    assert len(rows) == 5


def test_diversity_edges(conn: Any, world: World, rng: np.random.Generator) -> None:
    set_user(conn, 1, rng.standard_normal(DIM), rng.standard_normal(16))
    q = "select item_id, score from rerankdb.rerank(1, %s::bigint[], %s, diversity => 0.5)"
    assert conn.execute(q, [[9001, 9002, 9001], None]).fetchall() == [(9001, None), (9002, None)]
    assert conn.execute(q, [[1, 2, 3], 0]).fetchall() == []
    assert conn.execute(q, [[], None]).fetchall() == []
    one = conn.execute(q, [[5, 9001], None]).fetchall()
    assert [r[0] for r in one] == [5, 9001] and one[0][1] is not None
    # context items with NULLs and unknown ids are ignored, not an error
    rows = conn.execute(
        "select item_id from rerankdb.rerank(77, array[1, 2, 3]::bigint[], context_items => array[null, 2, 9999]::bigint[])"
    ).fetchall()
    assert rows[0] == (2,)


def test_client_checks_the_options(client: Client, world: World) -> None:
    from rerankdb.errors import InvalidInputError

    for bad in (-0.1, 1.5, float("nan"), "0.3", True):
        with pytest.raises(InvalidInputError, match="diversity must be in"):
            client.rerank(1, [1, 2], diversity=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="context_items must be a sequence"):
        client.rerank(1, [1, 2], context_items="12")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="a context item"):
        client.rerank(1, [1, 2], context_items=[1, "x"])  # type: ignore[list-item]
    with pytest.raises(InvalidInputError, match="n must be an integer"):
        client.explain(1, [1], n=-1)
    assert client.rerank(1, [3, 1], context_items=[]) == client.rerank(1, [3, 1])
