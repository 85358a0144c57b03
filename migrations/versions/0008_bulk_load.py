"""bulk loading: set_item_vectors takes the items it writes off the embedding queue;
the app role may check interactions by line

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

from rerankdb.migrate import RevisionSql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

sql = RevisionSql(revision)


def upgrade() -> None:
    sql.function("set_item_vectors")
    sql.schema("up")  # the app role may check interactions by line


def downgrade() -> None:
    sql.schema("down")
    RevisionSql("0005").function("set_item_vectors")
