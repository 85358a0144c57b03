"""Item refresh against a real database: embedding, hashes, poison items."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from rerankdb import item_refresh
from tests.worker_helpers import CATALOG, add_items, drain, status


def test_items_are_embedded_with_hash_and_model(
    conn: Any, encoder: Any, catalog: dict[int, np.ndarray]
) -> None:
    rows = conn.execute(
        "select item_id, embedding, content_sha256, model from rerankdb.item_vectors"
    ).fetchall()
    assert len(rows) == len(CATALOG)
    for item_id, emb, digest, model in rows:
        assert float(np.dot(emb.to_numpy(), catalog[item_id])) == pytest.approx(1.0, abs=1e-5)
        assert bytes(digest) == item_refresh.content_hash(CATALOG[item_id])
        assert model == encoder.name
    assert status(conn)["pending_items"] == 0


def test_unchanged_text_costs_nothing_and_changed_text_is_reembedded(
    conn: Any, encoder: Any, catalog: dict[int, np.ndarray]
) -> None:
    conn.execute("update rerankdb.items set metadata = '{\"x\": 1}' where item_id = 1")
    conn.execute("update rerankdb.items set content = content where item_id = 2")
    assert status(conn)["pending_items"] == 0, "no text change: nothing queued"
    item_refresh.requeue_all_items(conn)
    report = drain(conn, encoder)
    assert (report.items_embedded, report.items_unchanged) == (0, len(CATALOG)), "hash match: no encoding"

    conn.execute("update rerankdb.items set content = 'A cooking show about pasta' where item_id = 3")
    report = drain(conn, encoder)
    assert report.items_embedded == 1
    emb = conn.execute("select embedding from rerankdb.item_vectors where item_id = 3").fetchone()[0]
    assert float(np.dot(emb.to_numpy(), encoder.encode(["A cooking show about pasta"])[0])) > 0.9999


def test_deleted_items_lose_their_vectors(conn: Any, encoder: Any, catalog: dict[int, np.ndarray]) -> None:
    conn.execute("delete from rerankdb.items where item_id in (1, 2)")
    left = conn.execute("select item_id from rerankdb.item_vectors order by 1").fetchall()
    assert [r[0] for r in left] == [3, 4, 5, 6]


class FailingEncoder:
    """The real encoder, except that it raises on texts containing BOOM (fault injection)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name, self.dim = inner, inner.name, inner.dim

    def encode(self, texts: list[str]) -> np.ndarray:
        if any("BOOM" in t for t in texts):
            raise RuntimeError("tokenizer exploded")
        return np.asarray(self.inner.encode(texts))


def test_poison_items_are_recorded_retried_with_backoff_and_block_nothing(conn: Any, encoder: Any) -> None:
    add_items(conn, {1: "fine text", 2: "   ", 3: "BOOM goes this one", 4: "also fine"})
    report = drain(conn, FailingEncoder(encoder))
    assert (report.items_embedded, report.items_failed) == (2, 2)
    rows = conn.execute(
        "select item_id, attempts, last_error, not_before > now() from rerankdb.item_queue order by 1"
    ).fetchall()
    assert rows[0][:2] == (2, 1) and "empty content" in rows[0][2] and rows[0][3]
    assert rows[1][:2] == (3, 1) and "tokenizer exploded" in rows[1][2] and rows[1][3]
    st = status(conn)
    assert (st["failed_items"], st["pending_items"], st["set_aside_items"]) == (1, 0, 1), "blank: set aside"

    assert drain(conn, FailingEncoder(encoder)).items_failed == 0, "backing off: not retried at once"
    conn.execute("update rerankdb.item_queue set not_before = now() - interval '1 second'")
    drain(conn, FailingEncoder(encoder))
    assert conn.execute("select attempts from rerankdb.item_queue order by 1").fetchall() == [(2,), (2,)]

    conn.execute("update rerankdb.items set content = 'fixed now' where item_id = 3")  # re-queued fresh
    drain(conn, encoder)
    assert conn.execute("select item_id from rerankdb.item_queue").fetchall() == [(2,)]
