"""recommend and similar_items through the hybrid index read less: rerankdb.nearest takes
the best k + 10 by the index (it ranks by the score itself) instead of greatest(2k, 40),
builds the user's key by concatenation, and runs one statement per index it searches

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06
"""

from __future__ import annotations

from rerankdb.migrate import RevisionSql

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

sql = RevisionSql(revision)

# Changed in place (create or replace keeps their grants); the revision that shipped each before.
FUNCTIONS = {"nearest": "0014"}


def upgrade() -> None:
    for name in FUNCTIONS:
        sql.function(name)


def downgrade() -> None:
    for name, owner in FUNCTIONS.items():
        RevisionSql(owner).function(name)
