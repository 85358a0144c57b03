"""a bounded log and a fleet of workers: user snapshots for compaction (rerankdb compact),
the workers' own figures (rerankdb.workers); forget_user erases the snapshot too; the
status view shows the last compaction; workers claim interactions by partition of users

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

from rerankdb.migrate import RevisionSql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

sql = RevisionSql(revision)


def upgrade() -> None:
    sql.function("enqueue_interaction")  # the queue row carries its user: before up, which backfills
    sql.schema("up")
    sql.function("forget_user")
    sql.function("status_view")  # two columns more: the last compaction


def downgrade() -> None:
    sql.schema("down")  # drops the status view: a view loses no column by replacement
    RevisionSql("0005").function("forget_user")
    RevisionSql("0005").function("status_view")
    RevisionSql("0005").function("enqueue_interaction")
    sql.schema("down_grants")
