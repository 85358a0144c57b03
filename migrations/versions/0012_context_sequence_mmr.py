"""rerank's context items get the sequence space too (a first-time visitor's context is
scored in every space); rerank's diversity reads each candidate once (rerankdb.mmr); the log's
inserts are checked and queued, and its deletes queue their rebuilds, per statement, not per row

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
    "diversify": "0008",
    "enqueue_user_rebuild": "0005",
    "check_interaction": "0010",
}
NEW_FUNCTIONS = (
    "mmr",
    "enqueue_interactions",
    "enqueue_user_rebuilds",
    "refuse_interaction",
    "check_interactions",
)
# Dropped by this revision (its up.sql), restored on the way down.
DROPPED = {"enqueue_interaction": "0009"}


def upgrade() -> None:
    for name in NEW_FUNCTIONS:
        sql.function(name)
    for name in FUNCTIONS:
        sql.function(name)
    sql.schema("up")
    sql.schema("grants")


def downgrade() -> None:
    for name, owner in {**FUNCTIONS, **DROPPED}.items():
        RevisionSql(owner).function(name)
    sql.schema("down")
