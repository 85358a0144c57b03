"""The log's queue without a foreign key: rerankdb.unqueue_interactions takes a deleted
row's queue row in one set per statement (a truncate: the whole queue; an update of the
key: the row follows); rebuilds drop queue rows whose log row is gone

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06
"""

from __future__ import annotations

from rerankdb.migrate import RevisionSql

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

sql = RevisionSql(revision)


def upgrade() -> None:
    sql.function("unqueue_interactions")  # before up.sql: its triggers call it
    sql.schema("up")
    sql.schema("grants")


def downgrade() -> None:
    sql.schema("down")
