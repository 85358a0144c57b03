"""Test fixtures: one real PostgreSQL per session, a fresh database per test.

The server is the embedded one (in a temporary directory) unless
RERANKDB_DATABASE_URL names another; its role must be allowed to create
databases.  Each test that needs the schema gets a clone of a database
migrated once per session (CREATE DATABASE ... TEMPLATE), so tests are
independent and cheap.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import psycopg
import pytest
from psycopg import sql

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


def _fresh_name() -> str:
    return f"rerankdb_test_{os.getpid()}_{next(_counter)}"


@pytest.fixture(scope="session")
def template_url(server_url: str) -> Iterator[str]:
    url = db.create_database(server_url, TEMPLATE, replace=True)
    migrate.upgrade(url, dim=384)
    yield url
    db.drop_database(server_url, TEMPLATE)


@pytest.fixture
def empty_db_url(server_url: str) -> Iterator[str]:
    """A fresh database with nothing installed."""
    name = _fresh_name()
    yield db.create_database(server_url, name)
    db.drop_database(server_url, name)


@pytest.fixture
def db_url(server_url: str, template_url: str) -> Iterator[str]:
    """A fresh database with the rerankdb schema at head (dimension 384)."""
    name = _fresh_name()
    yield db.create_database(server_url, name, template=TEMPLATE)
    db.drop_database(server_url, name)


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


@pytest.fixture
def catalog(conn: Any, encoder: Any) -> dict[int, np.ndarray]:
    """Six items with real texts, embedded by the worker; their vectors by id."""
    from tests.worker_helpers import CATALOG, add_items, drain

    add_items(conn, CATALOG)
    report = drain(conn, encoder)
    assert report.items_embedded == len(CATALOG)
    return {i: encoder.encode([t])[0] for i, t in CATALOG.items()}


# --- roles: a login user in one of rerankdb's roles (tests/test_roles.py, test_tune.py) ---

_role_names = itertools.count()
PASSWORD = "rerankdb-test"


def as_user(url: str, user: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{user}:{PASSWORD}@{host}"))


@contextmanager
def logins(conn: psycopg.Connection[Any], url: str) -> Iterator[Callable[[str], str]]:
    """make(role) -> the URL of a new LOGIN user that is a member of ``role`` only; the
    users go at the end (on Citus, the role and its membership reach every node)."""
    made: list[str] = []

    def make(role: str) -> str:
        name = f"rerankdb_test_{role}_{os.getpid()}_{next(_role_names)}"
        conn.execute(
            sql.SQL("create role {} login password {} in role {}").format(
                sql.Identifier(name), sql.Literal(PASSWORD), sql.Identifier(role)
            )
        )
        made.append(name)
        return as_user(url, name)

    try:
        yield make
    finally:
        for name in made:
            conn.execute(sql.SQL("drop owned by {}").format(sql.Identifier(name)))
            conn.execute(sql.SQL("drop role {}").format(sql.Identifier(name)))


@pytest.fixture
def login(conn: psycopg.Connection[Any], db_url: str) -> Iterator[Callable[[str], str]]:
    """login(role) -> the URL of a new LOGIN user that is a member of ``role`` only."""
    with logins(conn, db_url) as make:
        yield make


# --- the contract tests run on both clients: AsyncClient behind a blocking face ---


class Blocking:
    """An AsyncClient whose coroutine methods run to completion on a private event loop,
    so that a test written for Client runs unchanged on AsyncClient."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        from rerankdb import AsyncClient

        self._runner = asyncio.Runner()
        self._async = AsyncClient(url, **kwargs)
        self._runner.run(self._async.open())

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._async, name)
        if not inspect.iscoroutinefunction(attr):
            return attr
        return lambda *args, **kwargs: self._runner.run(attr(*args, **kwargs))

    def close(self) -> None:
        self._runner.run(self._async.close())
        self._runner.close()

    def __enter__(self) -> Blocking:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


CLIENTS = {"Client": Client, "AsyncClient": Blocking}


@pytest.fixture(params=sorted(CLIENTS))
def any_client(request: pytest.FixtureRequest, db_url: str) -> Iterator[Any]:
    """Client, then AsyncClient (run to completion): the same contract for both."""
    with CLIENTS[request.param](db_url) as c:
        yield c
