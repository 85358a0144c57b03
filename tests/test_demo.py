"""`rerankdb demo`, run as a newcomer runs it (on the test server)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import psycopg

from rerankdb import db
from rerankdb.sample_catalog import TOPICS, catalog


def test_sample_catalog_is_reproducible_and_covers_every_topic() -> None:
    items = catalog()
    assert items == catalog()
    assert len(items) == 320 and len({i for i, _, _ in items}) == 320
    assert {t for _, t, _ in items} == {t.name for t in TOPICS}


def run_demo(server_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RERANKDB_")}
    env["RERANKDB_DATABASE_URL"] = db.with_database(server_url, "postgres")
    return subprocess.run(
        [sys.executable, "-m", "rerankdb.cli", "demo", "--database", "rerankdb_demo_test", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def demo_db_exists(server_url: str) -> bool:
    with psycopg.connect(db.libpq_url(server_url), autocommit=True) as c:
        return (
            c.execute("select 1 from pg_database where datname = 'rerankdb_demo_test'").fetchone() is not None
        )


def test_demo_shows_before_after_live_move_and_sql(server_url: str) -> None:
    out = run_demo(server_url)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    # Not a terminal: one line for the embedding (a terminal gets a bar ending in 320/320).
    assert "  items: 320 of 320 items in " in text and "\r" not in text
    assert "Reranked for Ada" in text
    after_live = text.split("The ranking ", 1)[1]
    delay = after_live.split(" ms after the INSERT committed", 1)[0]
    assert float(delay) >= 0
    first_row = after_live.splitlines()[2].split()
    assert first_row[0] == "1" and "[cooking]" in after_live.splitlines()[2], "cookbooks moved cooking up"
    long_only = text.split("With the long-term vector alone her top 3 would be:", 1)[1].splitlines()[1]
    assert "[cooking]" not in long_only, "the short-term vector is what puts the newest interest first"
    assert "select * from rerankdb.rerank(1, array[" in text
    why = text.split("Why (rerankdb.explain", 1)[1].splitlines()[1]
    assert "because of 205 [cooking]" in why, "the live purchase explains the new top item"
    topics = text.split("with diversity => 0.3 (MMR) it covers ", 1)[1]
    plain_n = int(text.split("Her top 6 covers ", 1)[1].split()[0])
    assert int(topics.split(":")[0]) > plain_n, "diversity spreads the top 6 over more topics"
    visitor = text.split("ranks by the page alone. Top 3:", 1)[1].splitlines()[1]
    assert "[hiking]" in visitor, "the visitor's page leads"
    assert not demo_db_exists(server_url), "cleaned up by default"


def test_demo_keep_leaves_the_database(server_url: str) -> Any:
    out = run_demo(server_url, "--keep")
    assert out.returncode == 0, out.stderr
    assert "Kept: database 'rerankdb_demo_test'" in out.stdout
    assert demo_db_exists(server_url)
    # What it says to run reaches the kept database: the CLI (which otherwise uses
    # the database `rerankdb`) through the variable it prints, psql through the URL.
    kept = out.stdout.split("Kept: database", 1)[1]
    url = kept.split("export RERANKDB_DATABASE_URL='", 1)[1].split("'", 1)[0]
    assert url == db.with_database(server_url, "rerankdb_demo_test")
    assert f"psql '{url}'" in kept
    command = kept.split("rerankdb rerank ", 1)[1].splitlines()[0].split()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RERANKDB_")}
    env["RERANKDB_DATABASE_URL"] = url
    ranked = subprocess.run(
        [sys.executable, "-m", "rerankdb.cli", "rerank", *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ranked.returncode == 0, ranked.stderr
    rows = ranked.stdout.splitlines()[1:]
    assert len(rows) == len(command) - 1 and all(r.split()[2] != "-" for r in rows), ranked.stdout
    with psycopg.connect(db.libpq_url(server_url), autocommit=True) as c:
        c.execute("drop database rerankdb_demo_test with (force)")
