"""The eval's baselines, on the same candidate lists (pure numpy: no database).

random; popularity (training counts); the plain mean of history item embeddings;
EASE (Steck 2019, its L2 weight chosen on the validation lists); and item-to-next
co-occurrence, the sequential one: a candidate scores by how often it followed
the user's last three items (weights 1, 1/2, 1/4) within three steps in the
training histories, ties broken by popularity.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import scipy.sparse as sp

from rerankdb.eval.movielens import LISTS, Split

Lists = dict[int, list[int]]  # user -> candidates
EASE_L2 = (50.0, 200.0, 500.0, 1000.0, 3000.0)
NEXT_STEPS = (1.0, 0.5, 0.25)  # a transition k steps later weighs NEXT_STEPS[k - 1]


def _order(cands: list[int], scores: list[float]) -> list[int]:
    """Highest score first, ties in input order."""
    return [c for _, _, c in sorted(zip((-s for s in scores), range(len(cands)), cands, strict=True))]


def random_order(lists: dict[str, Lists], seed: int) -> dict[str, Lists]:
    rng = np.random.default_rng(seed)
    return {n: {u: [int(x) for x in rng.permutation(c)] for u, c in lists[n].items()} for n in LISTS}


def popularity(lists: dict[str, Lists], pop: Counter[int]) -> dict[str, Lists]:
    return {n: {u: sorted(c, key=lambda i: -pop.get(i, 0)) for u, c in lists[n].items()} for n in LISTS}


def mean_of_history(
    lists: dict[str, Lists], splits: list[Split], vectors: dict[int, np.ndarray]
) -> dict[str, Lists]:
    history = {s.user_id: [r.item_id for r in s.history] for s in splits}
    out: dict[str, Lists] = {}
    for name in LISTS:
        out[name] = {}
        for u, cands in lists[name].items():
            seen = [vectors[i] for i in history[u] if i in vectors]
            if not seen:
                out[name][u] = list(cands)
                continue
            mean = np.mean(seen, axis=0)
            out[name][u] = _order(
                cands, [float(vectors[c] @ mean) if c in vectors else -np.inf for c in cands]
            )
    return out


class _Index:
    def __init__(self, items: list[int]) -> None:
        self.items = sorted(items)
        self.pos = {i: k for k, i in enumerate(self.items)}


def _user_matrix(splits: list[Split], index: _Index) -> tuple[sp.csr_matrix, dict[int, int]]:
    rows, cols = [], []
    user_row = {}
    for k, s in enumerate(splits):
        user_row[s.user_id] = k
        for r in s.history:
            if r.item_id in index.pos:
                rows.append(k)
                cols.append(index.pos[r.item_id])
    x = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(splits), len(index.items)))
    x.data[:] = 1.0
    return x, user_row


def ease_weights(x: sp.csr_matrix, l2: float) -> np.ndarray:
    g = (x.T @ x).toarray() + l2 * np.eye(x.shape[1])
    p = np.linalg.inv(g)
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return np.asarray(b)


def ease(lists: dict[str, Lists], splits: list[Split], items: list[int], l2: float) -> dict[str, Lists]:
    index = _Index(items)
    x, user_row = _user_matrix(splits, index)
    scores = np.asarray(x @ ease_weights(x, l2))
    return {
        n: {
            u: _order(c, [float(scores[user_row[u], index.pos[i]]) if i in index.pos else -np.inf for i in c])
            for u, c in lists[n].items()
        }
        for n in LISTS
    }


def item_to_next(
    lists: dict[str, Lists], splits: list[Split], items: list[int], pop: Counter[int]
) -> dict[str, Lists]:
    index = _Index(items)
    rows, cols, vals = [], [], []
    for s in splits:
        seq = [index.pos[r.item_id] for r in s.history if r.item_id in index.pos]
        for gap, w in enumerate(NEXT_STEPS, start=1):
            rows += seq[:-gap]
            cols += seq[gap:]
            vals += [w] * max(len(seq) - gap, 0)
    n = len(index.items)
    m = sp.csr_matrix((vals, (rows, cols)), shape=(n, n))
    out_deg = np.asarray(m.sum(axis=1)).ravel()
    p = sp.diags(1.0 / np.where(out_deg > 0, out_deg, 1.0)) @ m  # P(next = j | i)
    last = {
        s.user_id: [index.pos[r.item_id] for r in s.history if r.item_id in index.pos][-3:] for s in splits
    }
    tie = 1e-9 / (1 + max(pop.values(), default=0))
    out: dict[str, Lists] = {}
    for name in LISTS:
        out[name] = {}
        for u, cands in lists[name].items():
            q = np.zeros(n)
            for w, i in zip(NEXT_STEPS, reversed(last[u]), strict=False):
                q += w * p[i].toarray().ravel()
            out[name][u] = _order(
                cands, [(q[index.pos[c]] if c in index.pos else 0.0) + tie * pop.get(c, 0) for c in cands]
            )
    return out


def sasrec_bce(
    lists: dict[str, Lists], splits: list[Split], items: list[int], seed: int
) -> tuple[dict[str, Lists], float]:
    """SASRec as its paper trains it (Kang & McAuley 2018): binary cross-entropy with one
    uniformly sampled negative per position, learning rate 1e-3, ranked by the dot product of
    the output and the item embedding; the same blocks and dimension as rerankdb's sequence
    model, no text, and its early stop with a patience of 20 epochs (BCE rises slowly: with
    rerankdb's 5 it stopped within a few epochs, at 0.21 / 0.06 on validation).  Returns (the
    lists ranked, training seconds)."""
    import torch

    from rerankdb import sequence

    index = _Index(items)
    seqs = [[index.pos[r.item_id] + 1 for r in s.history if r.item_id in index.pos] for s in splits]
    config = sequence.SequenceConfig(
        loss="bce", lr=1e-3, patience=20, seed=seed
    )  # its paper's rate; slower to rise
    model, report = sequence.train(seqs, len(index.items), config)
    with torch.no_grad():
        table = model.item_vectors()
        users = {
            s.user_id: model.last(torch.from_numpy(sequence.windows([q], model.config.max_len)), table)[0]
            for s, q in zip(splits, seqs, strict=True)
        }
        emb = table.numpy()
    out: dict[str, Lists] = {}
    for name in LISTS:
        out[name] = {}
        for u, cands in lists[name].items():
            h = users[u].numpy()
            out[name][u] = _order(cands, [float(emb[index.pos[c] + 1] @ h) for c in cands])
    return out, report.seconds
