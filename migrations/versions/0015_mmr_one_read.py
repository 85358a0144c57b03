"""MMR in one read: rerankdb.mmr takes the candidates by bound from its caller's one read,
brings an item up to date only when it could still win and returns the indexes it chooses;
rerank and diversify rank the rest themselves

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06
"""

from __future__ import annotations

from rerankdb.migrate import RevisionSql

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

sql = RevisionSql(revision)

# Changed in place (create or replace keeps their grants); the revision that shipped each before.
FUNCTIONS = {"rerank": "0012", "diversify": "0012"}
# Replaced by a new signature (up.sql drops the old one), restored on the way down.
DROPPED = {"mmr": "0012"}


def upgrade() -> None:
    sql.schema("up")
    sql.function("mmr")
    for name in FUNCTIONS:
        sql.function(name)
    sql.schema("grants")


def downgrade() -> None:
    sql.schema("down")
    for name, owner in {**DROPPED, **FUNCTIONS}.items():
        RevisionSql(owner).function(name)
    sql.schema("down_grants")
