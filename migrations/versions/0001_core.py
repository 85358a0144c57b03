"""core: schema, tables, vector tables of the install dimension, ranking functions

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from rerankdb.migrate import RevisionSql, execute, guard_dependents, install_dim

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

sql = RevisionSql(revision)
FUNCTIONS = ["normalize_embedding", "dimension", "rerank", "nearest", "recommend", "similar_items"]


def upgrade() -> None:
    sql.schema("up")
    execute("insert into rerankdb.config (dim) values (:dim)", dim=install_dim())
    for name in FUNCTIONS:
        sql.function(name)
    sql.schema("dimension")  # vector(dim) columns, the HNSW index, the normalizing triggers


def downgrade() -> None:
    guard_dependents()  # down drops the schema with CASCADE: never the application's objects
    sql.schema("down")
