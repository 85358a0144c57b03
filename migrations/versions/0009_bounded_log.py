"""a bounded log and a fleet of workers: user snapshots for compaction (rerankdb compact),
the workers' own figures (rerankdb.workers); forget_user erases the snapshot too

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
    sql.schema("up")
    sql.function("forget_user")


def downgrade() -> None:
    sql.schema("down")
    RevisionSql("0005").function("forget_user")
