"""worker: item and interaction queues, user state, status view

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

from rerankdb.migrate import RevisionSql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

sql = RevisionSql(revision)
FUNCTIONS = ["enqueue_item", "enqueue_interaction", "release_deferred", "notify_worker"]


def upgrade() -> None:
    for name in FUNCTIONS:  # before the tables: the triggers in "up" call them
        sql.function(name)
    sql.schema("up")
    sql.function("status_view")


def downgrade() -> None:
    sql.schema("down")
