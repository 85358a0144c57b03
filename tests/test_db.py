"""Creating and dropping databases: names are identifiers, never pasted into SQL."""

from __future__ import annotations

import psycopg
import pytest

from rerankdb import db


def exists(server_url: str, name: str) -> bool:
    with psycopg.connect(db.libpq_url(server_url), autocommit=True) as c:
        return c.execute("select 1 from pg_database where datname = %s", [name]).fetchone() is not None


def test_odd_names_are_quoted_as_identifiers(server_url: str) -> None:
    name = 'rerankdb test "quoted"; drop database postgres; --'
    url = db.create_database(server_url, name)
    try:
        with psycopg.connect(db.libpq_url(url)) as c:
            assert c.execute("select current_database()").fetchone() == (name,)
        assert db.ensure_database(server_url, name) == url, "exists: kept"
    finally:
        db.drop_database(server_url, name)
    assert not exists(server_url, name) and exists(server_url, "postgres")


def test_template_replace_and_refusal(server_url: str, template_url: str) -> None:
    name = "rerankdb_test_clone"
    url = db.create_database(server_url, name, template="rerankdb_test_template")
    try:
        with db.connect(url) as c:
            assert c.execute("select rerankdb.dimension()").fetchone() == (384,)
        with pytest.raises(psycopg.errors.DuplicateDatabase):
            db.create_database(server_url, name)
        db.create_database(server_url, name, replace=True)
        with psycopg.connect(db.libpq_url(url)) as c:
            assert c.execute("select to_regnamespace('rerankdb')").fetchone() == (None,), "replaced: empty"
    finally:
        db.drop_database(server_url, name)
    db.drop_database(server_url, name)  # a missing database is not an error
