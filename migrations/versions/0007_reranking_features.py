"""reranking features: diversity (MMR), context items, exclude_seen, explain; recommend with the hybrid

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

from rerankdb.migrate import RevisionSql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

sql = RevisionSql(revision)


def upgrade() -> None:
    sql.function("collab_key")  # the keys of the new index
    sql.schema("up")  # drops the old signatures of rerank, rerank_scored, nearest
    sql.function("diversify")
    sql.function("rerank")
    sql.function("rerank_scored")
    sql.function("explain")
    sql.function("nearest")
    sql.function("recommend")
    sql.function("similar_items")
    sql.function("refresh_collab_keys")
    sql.schema("grants")


def downgrade() -> None:
    sql.schema("down")
    RevisionSql("0006").function("rerank")
    RevisionSql("0005").function("rerank_scored")
    RevisionSql("0001").function("nearest")
    RevisionSql("0006").function("recommend")
    RevisionSql("0005").function("similar_items")
    sql.schema("down_grants")
