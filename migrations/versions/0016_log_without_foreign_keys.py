"""The log without foreign keys: rerankdb.unqueue_interactions takes a deleted row's queue
row in one set per statement (a truncate: the whole queue; an update of the key: the row
follows); rebuilds drop queue rows whose log row is gone; rerankdb.check_interactions
checks a statement's kinds in one query, rerankdb.check_kinds keeps the kinds' rules;
a bulk load queues a user whose log it at least doubles for one rebuild, not each row

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

# New, for up.sql's triggers (created before it).
NEW = ("unqueue_interactions", "check_kinds")
# Changed in place (create or replace keeps their grants); the revision that shipped each before.
FUNCTIONS = {"check_interaction": "0012", "check_interactions": "0012", "enqueue_interactions": "0013"}


def upgrade() -> None:
    for name in (*NEW, *FUNCTIONS):
        sql.function(name)
    sql.schema("up")
    sql.schema("grants")


def downgrade() -> None:
    sql.schema("down")
    for name, owner in FUNCTIONS.items():
        RevisionSql(owner).function(name)
