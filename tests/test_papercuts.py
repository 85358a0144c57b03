"""Never a traceback, and a RerankdbError before anything is written: the small ways in."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from rerankdb import Client, DatabaseUnavailableError, InvalidInputError, db, embedded, migrate
from rerankdb.errors import ConfigError, SchemaNotInstalledError
from tests.helpers import load_items
from tests.test_cli import cli


def test_migrate_to_an_unknown_revision_is_one_line(db_url: str) -> None:
    out = cli("migrate", "--to", "9999", url=db_url)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "9999" in out.stderr and out.stderr.startswith("rerankdb: ")


def test_a_closed_pipe_is_no_error(db_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RERANKDB_")}
    env["RERANKDB_DATABASE_URL"] = db_url
    out = subprocess.run(
        f"{sys.executable} -m rerankdb.cli status | head -1",
        shell=True,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        out.stdout.startswith("database") and "Traceback" not in out.stderr and "BrokenPipe" not in out.stderr
    )


@pytest.mark.parametrize("k", [2**31, 2**63])
def test_k_beyond_int4_is_refused_by_client_and_cli(client: Client, db_url: str, k: int) -> None:
    with pytest.raises(InvalidInputError, match="k must be an integer from 0 to 2147483647"):
        client.rerank(1, [1, 2], k)
    with pytest.raises(InvalidInputError, match="k must be an integer from 0 to 2147483647"):
        client.recommend(1, k)
    out = cli("rerank", "1", "2", "3", "-k", str(k), url=db_url)
    assert out.returncode == 1 and "k must be an integer from 0 to 2147483647" in out.stderr


def test_empty_and_underflowing_vectors(client: Client, conn: Any) -> None:
    assert client.set_item_vectors([], np.empty((0, 384))) == 0
    assert client.set_user_vectors([], np.empty((0, 384))) == 0
    with pytest.raises(InvalidInputError, match="row 0 is too small for float32"):
        client.set_user_vectors([1], np.full((1, 384), 1e-50))
    assert conn.execute("select count(*) from rerankdb.user_vectors").fetchone() == (0,)


def test_rerank_scored_takes_any_finite_scores(client: Client, rng: np.random.Generator) -> None:
    load_items(client, rng.standard_normal((3, 384)))
    got = client.rerank_scored(7, [1, 2, 3], [1.7e308, -1.7e308, 0.0], weight=0.0)
    assert [r.item_id for r in got] == [1, 3, 2]
    assert [r.score for r in got] == pytest.approx([1.0, 0.5, 0.0])


def test_a_stopped_server_fails_a_call_within_the_timeout(tmp_path: Path) -> None:
    home = tmp_path / "server"
    url = embedded.start(home, extra_conf="fsync = off\n")
    try:
        migrate.upgrade(url)
        client = Client(url, timeout=1.0)
        client.rerank(1, [1])
        embedded.stop(home)
        with pytest.raises(DatabaseUnavailableError):
            client.rerank(1, [1])
        with pytest.raises(DatabaseUnavailableError, match="within 1 s"):
            client.rerank(1, [1])  # no connection can be made now
        client.close()
    finally:
        embedded.stop(home)


def test_a_database_without_pgvector_says_what_to_run(empty_db_url: str) -> None:
    with pytest.raises(SchemaNotInstalledError, match=r"no rerankdb schema .*run `rerankdb migrate`"):
        Client(empty_db_url)


def test_migrate_with_another_dimension_is_an_error(db_url: str, empty_db_url: str) -> None:
    with pytest.raises(ConfigError, match=r"--dim asks for dimension 768, but .* installed .* dimension 384"):
        migrate.upgrade(db_url, dim=768)
    migrate.upgrade(db_url, dim=384)  # the same: fine
    out = cli("migrate", url=db_url, extra={"RERANKDB_DIM": "16"})
    assert out.returncode == 1 and "RERANKDB_DIM asks for dimension 16" in out.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("RERANKDB_")}
    alembic = [sys.executable, "-m", "alembic", "-x", f"url={db_url}", "-x", "dim=32", "upgrade", "head"]
    run = subprocess.run(alembic, cwd=Path(__file__).parent.parent, env=env, capture_output=True, text=True)
    assert run.returncode != 0 and "-x dim asks for dimension 32" in run.stderr


def test_downgrade_refuses_to_drop_the_applications_objects(db_url: str) -> None:
    with psycopg.connect(db.libpq_url(db_url), autocommit=True) as c:
        c.execute("create view public.catalog as select item_id, content from rerankdb.items")
        c.execute("create table public.orders (item_id bigint references rerankdb.items (item_id))")
    with pytest.raises(Exception, match=r"objects outside it depend on it: .*view catalog") as caught:
        migrate.downgrade(db_url)
    assert "constraint orders_item_id_fkey on table orders" in str(caught.value)
    assert migrate.current_revision(db_url) == migrate.head_revision(), "nothing was changed"
    migrate.downgrade(db_url, cascade=True)
    assert migrate.current_revision(db_url) is None
    with psycopg.connect(db.libpq_url(db_url)) as c:
        assert c.execute("select to_regclass('public.catalog'), to_regclass('public.orders')").fetchone() == (
            None,
            "orders",
        ), "the forced cascade takes the view along (and the foreign key, not the table)"


def test_demo_keep_says_how_to_find_its_database_again(server_url: str, tmp_path: Path) -> None:
    out = cli("db", "url", "rerankdb_demo", home=tmp_path / "nothing-here")
    assert out.returncode == 1 and "not running" in out.stderr
    home = tmp_path / "server"
    embedded.start(home)
    try:
        out = cli("db", "url", "rerankdb_demo", home=home)
        assert out.returncode == 0 and "/rerankdb_demo?" in out.stdout
    finally:
        embedded.stop(home)


def test_cli_forget(db_url: str, conn: Any) -> None:
    conn.execute("insert into rerankdb.interactions (user_id, item_id) values (5, 1), (5, 2), (6, 1)")
    out = cli("forget", "5", url=db_url)
    assert out.returncode == 0 and "forgot user 5: 2 interactions deleted" in out.stdout
    assert conn.execute("select count(*) from rerankdb.interactions").fetchone() == (1,)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://nobody@127.0.0.1:1/rerankdb",
        "postgresql://nobody@/rerankdb?host=/nonexistent-socket-dir",
    ],
)
def test_a_client_on_an_unreachable_server_is_a_rerankdb_error(url: str) -> None:
    with pytest.raises(
        DatabaseUnavailableError, match=r"^cannot connect to the database: .*(refused|No such file)"
    ):
        Client(url)
    out = cli("status", url=url)
    assert out.returncode == 1 and out.stderr.startswith("rerankdb: cannot connect to the database: ")
    assert len(out.stderr.splitlines()) == 1, out.stderr
