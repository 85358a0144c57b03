"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""

from __future__ import annotations

from rerankdb.migrate import RevisionSql

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}

sql = RevisionSql(revision)


def upgrade() -> None:
    # Tables: sql/revisions/<revision>/up.sql.  Changed functions: edit
    # sql/functions/<name>.sql after freezing the released version (README,
    # "Changing a function or a table").
    sql.schema("up")


def downgrade() -> None:
    # Restore what the revision before shipped, e.g. RevisionSql("0004").function("rerank").
    sql.schema("down")
