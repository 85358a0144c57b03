"""worker: item and interaction queues, user state, status view

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

from rerankdb.migrate import apply_sql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

FUNCTIONS = [
    "functions/enqueue_item.sql",
    "functions/enqueue_interaction.sql",
    "functions/release_deferred.sql",
    "functions/notify_worker.sql",
]


def upgrade() -> None:
    for name in FUNCTIONS:
        apply_sql(name)
    apply_sql("schema/0002_worker.sql")
    apply_sql("functions/status_view.sql")


def downgrade() -> None:
    apply_sql("schema/0002_down.sql")
