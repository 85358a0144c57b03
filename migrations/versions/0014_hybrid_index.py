"""one HNSW index that ranks by rerank's score itself: rerankdb.hybrid_keys, one halfvec key
per item that carries every space with the item's weights, built in bulk after a training or a
tune (rerankdb.refresh_hybrid_keys) and searched by nearest for recommend and similar_items,
with the items embedded since scored beside it (rerankdb.hybrid_keys_fresh)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

from __future__ import annotations

from rerankdb.migrate import RevisionSql

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

sql = RevisionSql(revision)

# Changed in place (create or replace keeps their grants); the revision that shipped each before.
FUNCTIONS = {
    "recommend": "0011",
    "similar_items": "0010",
    "sync_item_rank": "0005",
    "refresh_collab_keys": "0013",
}
NEW_FUNCTIONS = ("hybrid_key", "swap_in_next", "refresh_hybrid_keys", "nearest")
# Replaced by a new signature (up.sql drops the old one), restored on the way down.
DROPPED = {"nearest": "0007"}


def upgrade() -> None:
    sql.schema("up")
    for name in NEW_FUNCTIONS:
        sql.function(name)
    for name in FUNCTIONS:
        sql.function(name)
    sql.schema("grants")


def downgrade() -> None:
    sql.schema("down")
    for name, owner in {**FUNCTIONS, **DROPPED}.items():
        RevisionSql(owner).function(name)
    sql.schema("down_grants")
