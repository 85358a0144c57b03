"""bulk loading and storage: set_item_vectors takes the items it writes off the embedding
queue; the app role may check interactions by line; item text vectors in halfvec as an
install option (-x storage=halfvec, RERANKDB_STORAGE)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

from rerankdb.migrate import RevisionSql, execute, install_storage

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

sql = RevisionSql(revision)
# Reads that cast item text vectors to vector (they may be halfvec now).
FUNCTIONS = ["normalize_embedding", "rerank", "diversify", "similar_items"]


def upgrade() -> None:
    sql.function("set_item_vectors")
    sql.schema("up")  # the app role may check interactions by line; config.storage
    execute("update rerankdb.config set storage = :storage", storage=install_storage())
    for name in FUNCTIONS:
        sql.function(name)
    sql.schema("storage")  # halfvec columns and index, if chosen


def downgrade() -> None:
    sql.schema("down")
    RevisionSql("0005").function("set_item_vectors")
    RevisionSql("0001").function("normalize_embedding")
    for name in ("rerank", "diversify", "similar_items"):
        RevisionSql("0007").function(name)
