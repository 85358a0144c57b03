"""centering: rank and recommend by how a user differs from the average user

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

from rerankdb.migrate import RevisionSql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

sql = RevisionSql(revision)


def upgrade() -> None:
    sql.schema("up")
    for name in ("refresh_centers", "center", "rerank", "recommend"):
        sql.function(name)


def downgrade() -> None:
    RevisionSql("0003").function("rerank")  # what 0003 had
    RevisionSql("0001").function("recommend")
    sql.schema("down")
