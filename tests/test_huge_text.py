"""Huge texts: bounded work in the encoder, the queries, the drain and the fold."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pytest

from rerankdb import item_refresh, user_refresh
from rerankdb.drain import FIRST_ROUND_TEXTS
from rerankdb.encoder import CHARS_PER_TOKEN, TransformerEncoder
from tests.worker_helpers import (
    CATALOG,
    CONTEXT_WEIGHT,
    T0,
    add_interactions,
    add_items,
    drain,
    running,
    user_vectors,
    wait_for,
)

PROSE = (
    "The crew of a damaged starship drifts toward an uncharted moon, where a quiet botanist "
    "discovers that the forests remember every visitor. Meanwhile, in a small harbour town, "
    "two rival bakers compete for the affection of a retired detective who hates bread. "
)
MB10 = 10 * 1024 * 1024


def huge(seed: int = 0) -> str:
    """A 10 MB text of ordinary prose (a different start per seed)."""
    head = f"story number {seed}: "
    return (head + PROSE * (MB10 // len(PROSE) + 1))[:MB10]


class RecordingTokenizer:
    """The encoder's tokenizer, recording the longest text it is given."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.longest = 0
        self.calls = 0

    def __call__(self, texts: Any, *args: Any, **kwargs: Any) -> Any:
        batch = [texts] if isinstance(texts, str) else list(texts)
        self.longest = max([self.longest, *(len(t) for t in batch)])
        self.calls += 1
        return self.inner(texts, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def recorded(encoder: Any, monkeypatch: pytest.MonkeyPatch) -> RecordingTokenizer:
    rec = RecordingTokenizer(encoder.tokenizer)
    monkeypatch.setattr(encoder, "tokenizer", rec)
    return rec


def uncut(enc: TransformerEncoder, text: str) -> np.ndarray:
    """The embedding of the whole text, tokenized whole and truncated (no character bound)."""
    import torch

    tokens = enc.tokenizer([text], truncation=True, max_length=enc.max_length, return_tensors="pt")
    with torch.inference_mode():
        hidden = enc.model(**tokens).last_hidden_state.float()
    mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1)
    return torch.nn.functional.normalize(pooled, dim=1)[0].numpy()


# --- the encoder -----------------------------------------------------------------


def test_the_budget_covers_the_longest_token_of_the_vocabulary(encoder: Any) -> None:
    longest = max(len(t.removeprefix("##")) for t in encoder.tokenizer.get_vocab() if not t.startswith("["))
    assert longest + 1 <= CHARS_PER_TOKEN  # a word piece and the whitespace before it
    assert encoder.max_chars == encoder.max_length * CHARS_PER_TOKEN == 5120


def test_the_cut_leaves_normal_texts_as_they_were(encoder: Any) -> None:
    # Short texts, and a 30 KB one whose first 5,120 characters hold far more than 256 tokens.
    texts = [*CATALOG.values(), PROSE, PROSE * 120]
    for text in texts:
        np.testing.assert_array_equal(encoder.encode([text])[0], uncut(encoder, text))


def test_a_10mb_text_embeds_as_its_first_budget_characters(
    encoder: Any, recorded: RecordingTokenizer
) -> None:
    text = huge()
    v = encoder.encode([text, "a short one"])
    assert recorded.longest <= encoder.max_chars
    np.testing.assert_array_equal(v[0], encoder.encode([text[: encoder.max_chars]])[0])
    np.testing.assert_allclose(v[0], uncut(encoder, text[:20_000]), atol=1e-6)  # what the whole text gives


def test_a_batch_is_bounded_by_its_padded_tokens(encoder: Any) -> None:
    small = TransformerEncoder(batch_tokens=512)
    texts = [PROSE * 40, "short", PROSE, *CATALOG.values(), PROSE * 3, "a"]
    sizes = [(len(idx), batch["input_ids"].shape) for idx, batch in small._batches(texts, "pt")]
    assert all(shape[0] * shape[1] <= 512 for _, shape in sizes)
    assert sum(n for n, _ in sizes) == len(texts) and len(sizes) > 1
    np.testing.assert_allclose(small.encode(texts), encoder.encode(texts), atol=1e-5)


# --- the queries -----------------------------------------------------------------


def test_an_item_text_is_fetched_only_as_far_as_the_encoder_reads_it(conn: Any, encoder: Any) -> None:
    text = huge()
    add_items(conn, {60001: text})
    ((item_id, fetched, digest, _, _),) = conn.execute(
        item_refresh.Q["item_texts"], {"items": [60001], "max_chars": encoder.max_chars}
    ).fetchall()
    assert item_id == 60001 and fetched == text[: encoder.max_chars]
    assert bytes(digest) == hashlib.sha256(text.encode()).digest()  # the hash is of all of it


def test_a_context_is_fetched_only_as_far_as_the_encoder_reads_it(conn: Any, catalog: Any) -> None:
    text = huge()
    add_interactions(conn, [(7, 1, "like", None, text, T0)])
    ids = [r[0] for r in conn.execute("select interaction_id from rerankdb.interactions")]
    with conn.transaction():
        params = {"ids": ids, "users": [7], "max_chars": 5120}
        (row,) = conn.execute(user_refresh.Q["claim_interactions_by_id"], params).fetchall()
    assert row[3] == text[:5120]


def test_an_item_claim_stops_at_its_budget_of_characters(conn: Any, encoder: Any) -> None:
    add_items(conn, {i: huge(i)[:9000] for i in range(1, 6)} | {9: "short"})
    b = item_refresh.refresh_items(conn, encoder, chars=2 * encoder.max_chars)
    # Each text counts as far as the encoder reads it: two fill the budget.
    assert b.embedded == 2 and b.chars == 2 * encoder.max_chars
    assert item_refresh.refresh_items(conn, encoder, chars=1).embedded == 1  # the first one always


# --- through the worker ------------------------------------------------------------


def test_a_10mb_item_and_a_10mb_context_fold_through_the_worker(
    db_url: str, conn: Any, encoder: Any, catalog: dict[int, np.ndarray], recorded: RecordingTokenizer
) -> None:
    item_text, context = huge(1), huge(2)
    add_items(conn, {60001: item_text})
    add_interactions(conn, [(7, 1, "like", None, context, T0), (8, 60001, "like", None, None, T0)])
    with running(db_url, encoder):
        assert wait_for(lambda: user_vectors(conn).keys() >= {7, 8}, timeout=120)
    assert 0 < recorded.longest <= encoder.max_chars
    cut = encoder.max_chars
    item = conn.execute("select embedding from rerankdb.item_vectors where item_id = 60001").fetchone()[0]
    np.testing.assert_allclose(item.to_numpy(), encoder.encode([item_text[:cut]])[0], atol=1e-5)
    expected = catalog[1] + CONTEXT_WEIGHT * encoder.encode([context[:cut]])[0]
    got = user_vectors(conn)[7]
    np.testing.assert_allclose(got, expected / np.linalg.norm(expected), atol=1e-5)
    # A rebuild from the log reads the context the same way.
    user_refresh.rebuild_users(conn, encoder, CONTEXT_WEIGHT, 384, [7, 8])
    np.testing.assert_allclose(user_vectors(conn)[7], got, atol=1e-5)


def test_a_fold_does_not_wait_for_a_backlog_of_items(conn: Any, encoder: Any, catalog: Any) -> None:
    """Another user's interaction is folded before a backlog of long item texts is all embedded."""
    backlog = 3 * FIRST_ROUND_TEXTS
    add_items(conn, {100 + i: (f"text {i}. " + PROSE * 30) for i in range(backlog)})
    add_interactions(conn, [(9, 1, "like", None, None, T0)])
    queued_at_fold: list[int] = []

    def before_commit() -> None:
        queued_at_fold.append(conn.execute("select count(*) from rerankdb.item_queue").fetchone()[0])

    from rerankdb.drain import drain as drain_all

    report = drain_all(conn, encoder, CONTEXT_WEIGHT, 384, before_commit=before_commit)
    assert report.items_embedded == backlog and report.interactions_folded == 1
    assert queued_at_fold and queued_at_fold[0] > 0, "the fold waited for every item"


def test_a_fold_batch_bounds_the_contexts_it_encodes(
    conn: Any, encoder: Any, catalog: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = user_refresh.CONTEXT_TEXTS + 4
    add_interactions(conn, [(200 + k, 1, "like", None, f"{k} " + PROSE * 40, T0) for k in range(n)])
    add_interactions(conn, [(300, 2, "like", None, None, T0)])
    encoded: list[int] = []
    real = encoder.encode

    def counting(texts: list[str]) -> np.ndarray:
        encoded.append(sum(len(t) for t in texts))
        return real(texts)

    monkeypatch.setattr(encoder, "encode", counting)
    report = drain(conn, encoder)
    assert report.interactions_folded == n + 1
    assert len(encoded) >= 2 and max(encoded) <= user_refresh.CONTEXT_TEXTS * encoder.max_chars


def test_the_context_budget_keeps_the_first_row_and_counts_distinct_contexts() -> None:
    rows = [(1, 1, 1.0, "aaaa", 0.0, 1, 0), (2, 2, 1.0, "aaaa", 0.0, 1, 0), (3, 3, 1.0, None, 0.0, 1, 0)]
    rows += [(4, 4, 1.0, "bbbbbb", 0.0, 1, 0), (5, 5, 1.0, "c", 0.0, 1, 0)]
    seen: set[str] = set()
    assert user_refresh.within_context_budget(rows, seen, 5, first=True) == rows[:3]
    assert user_refresh.within_context_budget(rows[3:], set(), 2, first=True) == rows[3:4]
    assert user_refresh.within_context_budget(rows[3:], {"xxxx"}, 5, first=False) == []
    assert user_refresh.within_context_budget(rows, set(), None, first=True) == rows
