"""Item vector refresh: embed new items and items whose text changed.

Claimed items get a lease (``not_before``) in a short transaction and are
embedded outside any transaction; their vectors are written, and their queue
rows deleted, only if the text is still the one embedded and the item was not
queued again meanwhile.  Vectors remember the SHA-256 of their text and the
model, so a re-queued item whose text and model did not change costs a hash,
not an encoding.  A text that cannot be embedded is recorded with its error
and retried with exponential backoff, without holding up the others; an
empty or blank one is set aside for good (no retry, one warning) until its
content changes.  Only the part of a text the encoder reads is fetched (its
hash is the database's, of all of it), and a batch stops at a budget of
characters, so that the drain's round of items is bounded whatever the
texts' size.
Its statements are in ``sql/queries/item_refresh.sql``.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg

from rerankdb import backoff, partitions, sequence_space
from rerankdb.encoder import Encoder, text_budget
from rerankdb.sqlfiles import queries

Q = queries("item_refresh")
log = logging.getLogger(__name__)

LEASE_SECONDS = 120
MAX_BACKOFF_SECONDS = 3600


@dataclass(frozen=True)
class ItemBatch:
    embedded: int
    unchanged: int
    failed: int
    chars: int = 0  # characters of the texts embedded (as far as the encoder reads them)

    @property
    def claimed(self) -> int:
        return self.embedded + self.unchanged + self.failed


def content_hash(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def backoff_seconds(attempts: int) -> float:
    """Retry delay after the ``attempts``-th failure: 5 s, 10 s, 20 s, ... up to an hour."""
    return backoff.exponential(max(attempts, 1), first=5.0, cap=MAX_BACKOFF_SECONDS)


def _claim_items(
    conn: psycopg.Connection[Any], limit: int, max_chars: int, budget: int
) -> list[tuple[Any, ...]]:
    params = {"limit": limit, "lease": LEASE_SECONDS, "max_chars": max_chars, "budget": budget}
    with conn.transaction():
        return conn.execute(Q["claim_items"], params).fetchall()


def _encode_isolating_failures(encoder: Encoder, texts: list[str]) -> list[np.ndarray | str]:
    """Vectors, or an error message where a text could not be embedded."""
    try:
        return list(encoder.encode(texts))
    except Exception:  # one bad text must not sink the batch: find it
        out: list[np.ndarray | str] = []
        for t in texts:
            try:
                out.append(encoder.encode([t])[0])
            except Exception as exc:
                out.append(f"encoder error: {type(exc).__name__}: {exc}")
        return out


def refresh_items(
    conn: psycopg.Connection[Any], encoder: Encoder, limit: int = 256, *, chars: int | None = None
) -> ItemBatch:
    """Embed one batch of queued items (new, or whose text changed): at most ``limit``
    items, and no more once their texts hold ``chars`` characters (each counted up to
    what the encoder reads; the first item always; None: no such bound)."""
    max_chars = text_budget(encoder)
    budget = chars if chars is not None else limit * (max_chars + 1)
    citus = partitions.of(conn).citus
    claimed = _claim_items(conn, limit, max_chars, budget)
    if not claimed:
        return ItemBatch(0, 0, 0)
    enqueued = {r[0]: (r[1], r[2]) for r in claimed}
    rows = conn.execute(Q["item_texts"], {"items": list(enqueued), "max_chars": max_chars}).fetchall()
    unchanged, to_embed, errors, blank = [], [], {}, []
    for item_id, text, digest, old_hash, old_model in rows:
        digest = bytes(digest)
        if old_hash == digest and old_model == encoder.name:
            unchanged.append(item_id)
        elif not text.strip():
            blank.append(item_id)  # no retry can help: set aside until the content changes
        else:
            to_embed.append((item_id, text, digest))
    results = _encode_isolating_failures(encoder, [t for _, t, _ in to_embed]) if to_embed else []
    done = []
    for (item_id, _, digest), res in zip(to_embed, results, strict=True):
        if isinstance(res, str):
            errors[item_id] = res
        elif not np.isfinite(res).all() or not res.any():
            errors[item_id] = "encoder returned a zero or non-finite vector"
        else:
            done.append((item_id, res, digest))
    with conn.transaction():
        if done:
            conn.execute(Q["create_vector_stage"])
            conn.execute(Q["clear_vector_stage"])
            with conn.cursor().copy(Q["copy_vector_stage"]) as cp:
                cp.set_types(["int8", "vector", "bytea"])
                for row in done:
                    cp.write_row(row)
            conn.execute(Q["write_vectors"], {"model": encoder.name})
            if citus:  # what the item_vectors triggers do on one node
                written = {"items": [i for i, _, _ in done]}
                conn.execute(Q["sync_rank_of_staged"], written)
                conn.execute(Q["release_deferred_of_items"], written)
            # New items' sequence vectors: their text part, by the newest model.
            sequence_space.refresh_new_items(conn, [i for i, _, _ in done])
        finished = [i for i, _, _ in done] + unchanged
        if finished:
            conn.execute(
                Q["dequeue_items"], {"items": finished, "enqueued": [enqueued[i][0] for i in finished]}
            )
        for item_id, message in errors.items():
            attempts = enqueued[item_id][1] + 1
            conn.execute(
                Q["record_failure"],
                {
                    "attempts": attempts,
                    "error": message,
                    "backoff": backoff_seconds(attempts),
                    "item": item_id,
                    "enqueued": enqueued[item_id][0],
                },
            )
            log.warning("item %s not embedded (attempt %s): %s", item_id, attempts, message)
        for item_id in blank:
            conn.execute(Q["set_aside_item"], {"item": item_id, "enqueued": enqueued[item_id][0]})
            log.warning("item %s set aside: its content is empty, nothing to embed until it changes", item_id)
        conn.execute(Q["mark_item_refresh"], {"model": encoder.name})
    return ItemBatch(len(done), len(unchanged), len(errors) + len(blank), sum(len(t) for _, t, _ in to_embed))


def enqueue_unembedded(conn: psycopg.Connection[Any]) -> int:
    """On Citus, queue the items to embed (no vector, or one made from another text):
    there no trigger on the items (a reference table) may write the queue.  Reads every
    item's text: once per drain.  On one node the triggers queue them; this does nothing."""
    if not partitions.of(conn).citus:
        return 0
    with conn.transaction():
        return int(conn.execute(Q["enqueue_unembedded"]).rowcount)


def requeue_all_items(conn: psycopg.Connection[Any]) -> int:
    """Queue every item for embedding (after a model change); unchanged ones cost a hash."""
    cur = conn.execute(Q["requeue_all_items"])
    return int(cur.rowcount)
