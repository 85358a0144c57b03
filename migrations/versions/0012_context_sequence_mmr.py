"""rerank's context items get the sequence space too: a first-time visitor's context is
scored in every space

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

from __future__ import annotations

from rerankdb.migrate import RevisionSql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

sql = RevisionSql(revision)

# Changed in place (create or replace keeps their grants); the revision that shipped each before.
FUNCTIONS = {
    "rerank": "0011",
}


def upgrade() -> None:
    for name in FUNCTIONS:
        sql.function(name)


def downgrade() -> None:
    for name, owner in FUNCTIONS.items():
        RevisionSql(owner).function(name)
