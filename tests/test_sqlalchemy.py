"""rerankdb's SQL functions through SQLAlchemy Core, as docs/python.md shows them."""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import BigInteger, bindparam, create_engine, func, select
from sqlalchemy.dialects.postgresql import ARRAY

from rerankdb import Client
from rerankdb.db import sqlalchemy_url
from tests.helpers import load_items


def test_rerank_as_a_table_valued_function(client: Client, db_url: str, rng: np.random.Generator) -> None:
    load_items(client, rng.standard_normal((5, 384)))
    client.set_user_vectors([42], rng.standard_normal((1, 384)))

    ranked = func.rerankdb.rerank(
        bindparam("user_id", type_=BigInteger),
        bindparam("candidates", type_=ARRAY(BigInteger)),
        bindparam("k"),
    ).table_valued("item_id", "score", "rank")
    stmt = select(ranked.c.item_id, ranked.c.score).order_by(ranked.c.rank)

    engine = create_engine(sqlalchemy_url(db_url))
    try:
        with engine.connect() as conn:
            rows: list[Any] = conn.execute(stmt, {"user_id": 42, "candidates": [3, 1, 5, 2], "k": 3}).all()
    finally:
        engine.dispose()
    want = client.rerank(42, [3, 1, 5, 2], k=3)
    assert [(r.item_id, r.score) for r in rows] == [(w.item_id, w.score) for w in want]
    assert len(rows) == 3
