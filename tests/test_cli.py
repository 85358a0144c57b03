"""The rerankdb command line, run as a user runs it (a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rerankdb import Client, Interaction, migrate
from tests.helpers import load_items


def cli(
    *args: str, url: str | None = None, home: Path | None = None, extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RERANKDB_")} | (extra or {})
    if url:
        env["RERANKDB_DATABASE_URL"] = url
    if home:
        env["RERANKDB_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "rerankdb.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_help_lists_every_command() -> None:
    out = cli("--help")
    assert out.returncode == 0
    for command in ("migrate", "db", "rerank", "recommend", "similar", "status"):
        assert command in out.stdout


@pytest.mark.parametrize(
    ("command", "variable"),
    [
        ("migrate", "RERANKDB_DIM"),
        ("worker", "RERANKDB_ENCODER_BACKEND"),
        ("worker", "RERANKDB_POLL_SECONDS"),
    ],
)
def test_flags_name_the_variable_they_override(command: str, variable: str) -> None:
    out = cli(command, "--help")
    assert out.returncode == 0 and f"${variable}" in out.stdout


def test_a_bad_encoder_setting_is_refused_at_start_up(db_url: str) -> None:
    """A max length past the model's limit is one clear message before any work, not an error per item."""
    env_cli = cli("worker", "--once", url=db_url, extra={"RERANKDB_MAX_LENGTH": "100000"})
    assert env_cli.returncode == 1
    assert "RERANKDB_MAX_LENGTH" in env_cli.stderr and "between 1 and 512" in env_cli.stderr
    assert "Traceback" not in env_cli.stderr
    bad = cli("worker", "--once", url=db_url, extra={"RERANKDB_MAX_LENGTH": "-4"})
    assert bad.returncode == 1 and "RERANKDB_MAX_LENGTH must be a positive integer" in bad.stderr


def test_migrate_then_status(empty_db_url: str) -> None:
    out = cli("migrate", "--dim", "32", url=empty_db_url)
    assert out.returncode == 0, out.stderr
    assert f"revision {migrate.head_revision()}" in out.stdout
    out = cli("status", url=empty_db_url)
    assert out.returncode == 0, out.stderr
    assert "dimension       32" in out.stdout
    assert "items           0 (0 with vectors)" in out.stdout


def test_migrate_sql_prints_the_script_without_a_database() -> None:
    out = cli("migrate", "--sql", url="postgresql://nobody@127.0.0.1:1/none")
    assert out.returncode == 0, out.stderr
    assert "create or replace function rerankdb.rerank(" in out.stdout


def test_rerank_recommend_similar(db_url: str, rng: np.random.Generator) -> None:
    with Client(db_url) as client:
        vecs = rng.standard_normal((20, 384))
        load_items(client, vecs)
        client.set_user_vectors([1], vecs[2:3])
    out = cli("rerank", "1", "5", "3", "9", "-k", "2", url=db_url)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["rank", "item", "score"]
    assert lines[1].split() == ["1", "3", "1.0000"]
    assert len(lines) == 3
    out = cli("recommend", "1", "-k", "1", "--include-seen", url=db_url)
    assert out.stdout.splitlines()[1].split()[:2] == ["1", "3"]
    out = cli("similar", "3", "-k", "4", url=db_url)
    assert len(out.stdout.splitlines()) == 5
    out = cli("recommend", "12345", url=db_url)
    assert out.stdout.strip() == "(no rows)"


def test_rerank_options_and_explain(db_url: str, rng: np.random.Generator) -> None:
    with Client(db_url) as client:
        vecs = rng.standard_normal((20, 384))
        vecs[4] = vecs[2] + 0.01 * vecs[4]  # item 5: nearly item 3
        load_items(client, vecs)
        client.record_interactions([Interaction(1, 3, "like"), Interaction(1, 7, "view")])
    folded = cli("worker", "--once", "--no-encoder", url=db_url)
    assert folded.returncode == 0, folded.stderr

    def items(*args: str) -> list[str]:
        out = cli("rerank", "1", "5", "3", "9", "12", "-k", "2", *args, url=db_url)
        assert out.returncode == 0, out.stderr
        return [line.split()[1] for line in out.stdout.splitlines()[1:]]

    assert set(items()) == {"3", "5"}  # 5 is nearly 3
    assert "3" not in items("--exclude-seen")
    diverse = items("--diversity", "1")
    assert diverse[0] in {"3", "5"} and diverse[1] not in {"3", "5"}, "the near-copy gives way"
    out = cli("rerank", "99", "9", "12", "5", "--context", "3", url=db_url)
    assert out.stdout.splitlines()[1].split()[1] == "5", "a visitor ranked by the context"
    out = cli("explain", "1", "5", "-n", "1", url=db_url)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[1].split()[:2] == ["5", "3"], "item 5 scores because of item 3"
    out = cli("explain", "12345", "5", url=db_url)
    assert "no reasons" in out.stdout
    for bad, message in (
        (("--diversity", "2"), "diversity must be in [0, 1]"),
        (("--context", "3,x"), "expected item ids separated by commas"),
    ):
        out = cli("rerank", "1", "5", *bad, url=db_url)
        assert out.returncode in (1, 2) and message in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("rerank", "1", "abc"), "invalid int value: 'abc'"),
        (("migrate", "--dim", "0"), "--dim must be between 1 and 2000"),
        (("db", "restart"), "invalid choice: 'restart'"),
    ],
)
def test_usage_errors_are_one_line_no_traceback(args: tuple[str, ...], message: str) -> None:
    out = cli(*args, url="postgresql://nobody@127.0.0.1:1/none")
    assert out.returncode == 2
    assert message in out.stderr and "Traceback" not in out.stderr


def test_missing_schema_and_bad_k_are_clear(empty_db_url: str, db_url: str) -> None:
    out = cli("rerank", "1", "2", url=empty_db_url)
    assert out.returncode == 1
    assert "run `rerankdb migrate`" in out.stderr and "Traceback" not in out.stderr
    out = cli("recommend", "1", "-k", "-5", url=db_url)
    assert out.returncode == 1
    assert "k must be an integer from 0 to 2147483647, got -5" in out.stderr


def test_unreachable_database_is_one_line(tmp_path: Path) -> None:
    out = cli("status", url=f"postgresql://postgres@/rerankdb?host={tmp_path}")
    assert out.returncode == 1
    assert (
        out.stderr.startswith("rerankdb: cannot connect to the database:") and "Traceback" not in out.stderr
    )
    assert len(out.stderr.splitlines()) == 1, out.stderr


def test_embedded_db_start_url_stop(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert cli("db", "url", home=home).returncode == 1
    out = cli("db", "start", home=home)
    assert out.returncode == 0, out.stderr
    assert str(home / "pgdata") in out.stdout
    try:
        url = cli("db", "url", home=home).stdout.strip()
        assert url.startswith("postgresql://") and "/rerankdb" in url
        assert cli("migrate", home=home).returncode == 0
        status = cli("status", home=home)
        assert "database        embedded" in status.stdout
    finally:
        assert cli("db", "stop", home=home).stdout.strip() == "stopped"
    assert cli("db", "stop", home=home).stdout.strip() == "not running"
