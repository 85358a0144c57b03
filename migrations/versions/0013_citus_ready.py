"""ready for Citus: the log and its queue keyed by (interaction_id, user_id); a fold's
partition of users is a range of hashint8(user_id) (a Citus shard); the log's queue trigger
runs per row too (Citus allows only row triggers on a distributed table); explain reads the
queue by user; set_item_vectors and refresh_collab_keys do on Citus what triggers and a table
swap do on one node; an upsert's DO UPDATE takes its time from the row proposed (Citus
refuses a volatile function there)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

from __future__ import annotations

from rerankdb.migrate import RevisionSql

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

sql = RevisionSql(revision)

# Changed in place (create or replace keeps their grants); the revision that shipped each before.
FUNCTIONS = {
    "enqueue_interactions": "0012",
    "explain": "0011",
    "refresh_collab_keys": "0007",
    "set_item_vectors": "0008",
    "set_user_vectors": "0006",
    "enqueue_user_rebuild": "0012",
    "enqueue_user_rebuilds": "0012",
}


def upgrade() -> None:
    for name in FUNCTIONS:
        sql.function(name)
    sql.schema("up")


def downgrade() -> None:
    for name, owner in FUNCTIONS.items():
        RevisionSql(owner).function(name)
    sql.schema("down")
