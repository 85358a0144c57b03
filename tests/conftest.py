"""Test fixtures: one real PostgreSQL per session, a fresh database per test.

The server is the embedded one (in a temporary directory) unless
RERANKDB_DATABASE_URL names another; its role must be allowed to create
databases.  Each test that needs the schema gets a clone of a database
migrated once per session (CREATE DATABASE ... TEMPLATE), so tests are
independent and cheap.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from rerankdb import Client, db, embedded, migrate

TEMPLATE = "rerankdb_test_template"
# The test server only holds throw-away databases: skip durability for speed.
FAST_CONF = "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"

_counter = itertools.count()


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of the test server's maintenance database."""
    given = os.environ.get("RERANKDB_DATABASE_URL")
    if given:
        yield db.with_database(given, "postgres")
        return
    home = Path(tmp_path_factory.mktemp("embedded"))
    url = embedded.start(home, extra_conf=FAST_CONF)
    yield db.with_database(url, "postgres")
    embedded.stop(home)


def _admin(server_url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(db.libpq_url(server_url), autocommit=True)


def create_database(server_url: str, template: str | None = None) -> str:
    name = f"rerankdb_test_{os.getpid()}_{next(_counter)}"
    with _admin(server_url) as conn:
        tmpl = f' template "{template}"' if template else ""
        conn.execute(f'create database "{name}"{tmpl}')
    return db.with_database(server_url, name)


def drop_database(server_url: str, url: str) -> None:
    name = url.rsplit("/", 1)[1].split("?", 1)[0]
    with _admin(server_url) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture(scope="session")
def template_url(server_url: str) -> Iterator[str]:
    with _admin(server_url) as conn:
        conn.execute(f'drop database if exists "{TEMPLATE}" with (force)')
        conn.execute(f'create database "{TEMPLATE}"')
    url = db.with_database(server_url, TEMPLATE)
    migrate.upgrade(url, dim=384)
    yield url
    with _admin(server_url) as conn:
        conn.execute(f'drop database if exists "{TEMPLATE}" with (force)')


@pytest.fixture
def empty_db_url(server_url: str) -> Iterator[str]:
    """A fresh database with nothing installed."""
    url = create_database(server_url)
    yield url
    drop_database(server_url, url)


@pytest.fixture
def db_url(server_url: str, template_url: str) -> Iterator[str]:
    """A fresh database with the rerankdb schema at head (dimension 384)."""
    url = create_database(server_url, TEMPLATE)
    yield url
    drop_database(server_url, url)


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    with db.connect(db_url, autocommit=True) as c:
        yield c


@pytest.fixture
def client(db_url: str) -> Iterator[Client]:
    with Client(db_url) as c:
        yield c


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def encoder() -> Any:
    """The real default encoder (all-MiniLM-L6-v2 from its PyPI package), loaded once."""
    from rerankdb.encoder import TransformerEncoder

    return TransformerEncoder()
