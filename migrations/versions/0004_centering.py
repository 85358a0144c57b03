"""centering: rank and recommend by how a user differs from the average user

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

from rerankdb.migrate import apply_sql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql("schema/0004_centering.sql")
    apply_sql("functions/refresh_centers.sql")
    apply_sql("functions/center.sql")
    apply_sql("functions/rerank.sql")
    apply_sql("functions/recommend.sql")


def downgrade() -> None:
    apply_sql("functions/rerank.0003.sql")
    apply_sql("functions/recommend.0001.sql")
    apply_sql("schema/0004_down.sql")
