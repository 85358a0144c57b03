"""least privilege by list: each role executes exactly the functions it calls (the worker
no longer forget_user); NULL options are errors in every public function (recommend's
exclude_seen); interaction times: the milliseconds hint only for what looks like
milliseconds; items with blank content set aside for good, out of the status view's lag

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-09
"""

from __future__ import annotations

from rerankdb.migrate import RevisionSql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

sql = RevisionSql(revision)

# Changed in place (create or replace keeps their grants); the revision that shipped each before.
FUNCTIONS = {
    "interaction_problem": "0005",
    "check_interaction": "0005",
    "recommend": "0007",  # exclude_seen NULL: an error, no longer "keep the seen"
    "similar_items": "0008",
    "rerank": "0008",  # the contract headers: the NULL rule
    "rerank_scored": "0007",
    "explain": "0007",
    "status_view": "0009",  # one column more, at the end: set_aside_items
}


def upgrade() -> None:
    for name in FUNCTIONS:
        sql.function(name)
    sql.schema("up")  # the grants, by list


def downgrade() -> None:
    sql.schema("down")  # drops the status view: a view loses no column by replacement
    for name, owner in FUNCTIONS.items():
        RevisionSql(owner).function(name)
    sql.schema("down_grants")
