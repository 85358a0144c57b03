"""trust: bad rows refused or set aside, deleted interactions followed, least-privilege roles

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

from rerankdb.migrate import RevisionSql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

sql = RevisionSql(revision)
FUNCTIONS = [
    # new (interaction_problem, a SQL function, after the columns it reads)
    "check_interaction",
    "enqueue_user_rebuild",
    "forget_user",
    "counts",
    "_check_vector_arguments",
    "set_item_vectors",
    "set_user_vectors",
    # now security definer
    "dimension",
    "rerank",
    "rerank_scored",
    "recommend",
    "similar_items",
    "enqueue_item",
    "enqueue_interaction",
    "release_deferred",
    "sync_item_rank",
]


def upgrade() -> None:
    for name in FUNCTIONS:
        sql.function(name)
    sql.schema("up")
    sql.function("interaction_problem")  # these two read the new columns
    sql.function("status_view")
    sql.schema("roles")


def downgrade() -> None:
    sql.schema("down")
    for name, owner in [
        ("dimension", "0001"),
        ("rerank", "0004"),
        ("rerank_scored", "0003"),
        ("recommend", "0004"),
        ("similar_items", "0001"),
        ("enqueue_item", "0002"),
        ("enqueue_interaction", "0002"),
        ("release_deferred", "0002"),
        ("sync_item_rank", "0003"),
        ("status_view", "0002"),
    ]:
        RevisionSql(owner).function(name)
