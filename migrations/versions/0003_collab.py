"""collab: collaborative vectors beside text vectors, settings, hybrid rerank, rerank_scored

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

from rerankdb.migrate import apply_sql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql("functions/sync_item_rank.sql")
    apply_sql("schema/0003_collab.sql")
    apply_sql("functions/rerank.0003.sql")  # frozen: revision 0004 applies functions/rerank.sql
    apply_sql("functions/rerank_scored.sql")


def downgrade() -> None:
    apply_sql("functions/rerank.0001.sql")
    apply_sql("schema/0003_down.sql")
