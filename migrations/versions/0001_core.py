"""core: schema, tables, vector tables of the install dimension, ranking functions

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from rerankdb.migrate import apply_sql, execute, install_dim

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

FUNCTIONS = [
    "functions/normalize_embedding.sql",
    "functions/dimension.sql",
    "functions/rerank.0001.sql",  # frozen: later revisions apply functions/rerank.sql
    "functions/nearest.sql",
    "functions/recommend.0001.sql",  # frozen: revision 0004 applies functions/recommend.sql
    "functions/similar_items.sql",
]


def upgrade() -> None:
    apply_sql("schema/0001_core.sql")
    execute("insert into rerankdb.config (dim) values (:dim)", dim=install_dim())
    for name in FUNCTIONS:
        apply_sql(name)
    apply_sql("schema/0001_dimension.sql")


def downgrade() -> None:
    apply_sql("schema/0001_down.sql")
