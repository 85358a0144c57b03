"""short-term intent: a second, short half-life user vector blended in at query time; half-lives in settings

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from rerankdb.migrate import RevisionSql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

sql = RevisionSql(revision)


def upgrade() -> None:
    sql.function("blend")
    sql.function("notice_half_life_changed")
    sql.schema("up")
    sql.function("rerank")  # these read the new columns
    sql.function("recommend")
    sql.function("set_user_vectors")  # clears the short-term vector it would contradict


def downgrade() -> None:
    sql.schema("down")
    RevisionSql("0005").function("rerank")
    RevisionSql("0005").function("recommend")
    RevisionSql("0005").function("set_user_vectors")
