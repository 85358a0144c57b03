"""collab: collaborative vectors beside text vectors, settings, hybrid rerank, rerank_scored

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

from rerankdb.migrate import RevisionSql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

sql = RevisionSql(revision)


def upgrade() -> None:
    sql.function("sync_item_rank")
    sql.schema("up")
    sql.function("rerank")
    sql.function("rerank_scored")


def downgrade() -> None:
    RevisionSql("0001").function("rerank")  # what 0002 had
    sql.schema("down")
