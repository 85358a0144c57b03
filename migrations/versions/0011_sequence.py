"""the sequence space: a small causal transformer over each user's newest items, its models
in rerankdb.sequence_model, item and user sequence vectors, settings.sequence_weight blended
into rerank, recommend and explain

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from __future__ import annotations

from rerankdb.migrate import RevisionSql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

sql = RevisionSql(revision)

# Changed in place (create or replace keeps their grants); the revision that shipped each before.
FUNCTIONS = {
    "rerank": "0010",
    "explain": "0010",
    "recommend": "0010",
}


def upgrade() -> None:
    sql.schema("up")
    for name in FUNCTIONS:
        sql.function(name)


def downgrade() -> None:
    for name, owner in FUNCTIONS.items():
        RevisionSql(owner).function(name)
    sql.schema("down")
