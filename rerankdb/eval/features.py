"""The eval's rows for the reranking features: diversity (MMR), context items, and
recommend over the whole catalog, each through the real SQL functions.

* Diversity: NDCG@10 and the intra-list similarity (ILS@10) of the top 10 for
  a few values of ``diversity``.  ILS@10 is the mean, over users, of the mean
  similarity of the pairs in a user's top 10, with rerankdb.diversify's own
  similarity (the text cosine, or the hybrid blend where both items have a
  collaborative vector), averaged both ways.
* Context: each test user's newest history items as ``context_items``: with
  the user's own vector, and alone for a first-time visitor (a user id with
  no vector), beside the retriever's order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import psycopg

from rerankdb import db, metrics
from rerankdb.eval.movielens import LISTS, Protocol

DIVERSITIES = (0.0, 0.1, 0.2, 0.3, 0.5)
CONTEXT_ITEMS = 3  # the newest history items a test user's context holds
VISITOR = 10**12  # first-time visitors: user ids with no vector
RERANK = "select item_id from rerankdb.rerank(%s, %s::bigint[], %s, %s, %s::bigint[])"


class ItemSpace:
    """The item vectors and weights rerankdb.diversify measures similarity with."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        weight, shrink = conn.execute("select collab_weight, collab_shrink from rerankdb.settings").fetchone()  # type: ignore[misc]
        rows = conn.execute(
            "select item_id, embedding::vector, collab, support from rerankdb.item_rank", binary=True
        )
        self.row: dict[int, int] = {}
        text, collab, w = [], [], []
        for j, (item, emb, col, support) in enumerate(rows.fetchall()):
            self.row[item] = j
            text.append(emb.to_numpy())
            collab.append(None if col is None else col.to_numpy())
            w.append(0.0 if col is None else weight * support / (support + shrink))
        dims = {len(c) for c in collab if c is not None}
        k = dims.pop() if dims else 1
        self.text = np.asarray(text, dtype=np.float64)
        self.has_collab = np.array([c is not None for c in collab])
        self.collab = np.array([c if c is not None else np.zeros(k) for c in collab], dtype=np.float64)
        self.w = np.asarray(w)

    def ils(self, top: list[int], use_collab: bool = True) -> float:
        """Mean similarity of the pairs of a list (diversify's, averaged both ways)."""
        idx = np.array([self.row[i] for i in top if i in self.row])
        if len(idx) < 2:
            return 0.0
        t = self.text[idx] @ self.text[idx].T
        both = np.outer(self.has_collab[idx], self.has_collab[idx]) & use_collab
        c = self.collab[idx] @ self.collab[idx].T
        w = self.w[idx][:, None]
        sim = np.where(both, (1 - w) * t + w * c, t)
        sim = (sim + sim.T) / 2
        off = ~np.eye(len(idx), dtype=bool)
        return float(sim[off].mean())


def _ranked(
    conn: psycopg.Connection[Any],
    lists: dict[int, list[int]],
    *,
    diversity: float = 0.0,
    context: dict[int, list[int]] | None = None,
    visitor: bool = False,
) -> dict[int, list[int]]:
    out = {}
    for user, cands in lists.items():
        ctx = None if context is None else context[user]
        uid = VISITOR + user if visitor else user
        rows = conn.execute(RERANK, [uid, db.BigintArray(np.array(cands)), 10, diversity, ctx]).fetchall()
        out[user] = [r[0] for r in rows]
    return out


def _ndcg(ranked: dict[int, list[int]], targets: dict[int, int]) -> np.ndarray:
    users = sorted(ranked)
    return metrics.per_user([metrics.target_rank(ranked[u], targets[u]) for u in users])["ndcg@10"]


def diversity_sweep(
    conn: psycopg.Connection[Any], proto: Protocol, split_name: str, seed: int
) -> dict[str, dict[str, Any]]:
    """Per value of diversity, per list: NDCG@10 (with its interval) and ILS@10."""
    space = ItemSpace(conn)
    collab_users = {
        u
        for (u,) in conn.execute(
            "select user_id from rerankdb.user_vectors where collab is not null"
        ).fetchall()
    }
    targets = {s.user_id: s.target for s in proto.splits[split_name]}
    out: dict[str, dict[str, Any]] = {}
    for lam in DIVERSITIES:
        row: dict[str, Any] = {}
        for name in LISTS:
            ranked = _ranked(conn, proto.lists[split_name][name], diversity=lam)
            ndcg = _ndcg(ranked, targets)
            mean, low, high = metrics.bootstrap_ci(ndcg, seed=seed)
            ils = np.mean([space.ils(top, u in collab_users) for u, top in ranked.items()])
            row[name] = {"ndcg@10": {"mean": mean, "ci_low": low, "ci_high": high}, "ils@10": float(ils)}
        out[f"{lam:g}"] = row
    return out


def visitor_context_ndcg(
    conn: psycopg.Connection[Any], proto: Protocol, split_name: str, name: str
) -> np.ndarray:
    """Per-user NDCG@10 of list ``name`` for first-time visitors ranked by their newest
    CONTEXT_ITEMS history items alone."""
    splits = proto.splits[split_name]
    context = {s.user_id: [r.item_id for r in s.history[-CONTEXT_ITEMS:]] for s in splits}
    ranked = _ranked(conn, proto.lists[split_name][name], context=context, visitor=True)
    return _ndcg(ranked, {s.user_id: s.target for s in splits})


def context_rows(
    conn: psycopg.Connection[Any], proto: Protocol, split_name: str, seed: int
) -> dict[str, Any]:
    """NDCG@10 per list with the newest history items as context, with and without the user."""
    splits = proto.splits[split_name]
    targets = {s.user_id: s.target for s in splits}
    context = {s.user_id: [r.item_id for r in s.history[-CONTEXT_ITEMS:]] for s in splits}
    (weight,) = conn.execute("select context_items_weight from rerankdb.settings").fetchone()  # type: ignore[misc]
    methods: dict[str, dict[str, Any]] = {
        "user alone": {},
        f"user + context (newest {CONTEXT_ITEMS} items, context_items_weight {weight:.2g})": {
            "context": context
        },
        f"first-time visitor: context alone (newest {CONTEXT_ITEMS} items)": {
            "context": context,
            "visitor": True,
        },
        "first-time visitor, no context (the retriever's order)": {"visitor": True},
    }
    out: dict[str, Any] = {}
    for method, kwargs in methods.items():
        out[method] = {}
        for name in LISTS:
            ndcg = _ndcg(_ranked(conn, proto.lists[split_name][name], **kwargs), targets)
            mean, low, high = metrics.bootstrap_ci(ndcg, seed=seed)
            out[method][name] = {"mean": mean, "ci_low": low, "ci_high": high}
    return out
