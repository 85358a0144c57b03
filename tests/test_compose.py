"""docker-compose.yml and the Dockerfile are for users (no Docker engine here): check
their structure, and run the login-roles script they use against the test server."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from psycopg import sql

from rerankdb import db
from rerankdb.cli import build_parser
from tests.test_citus_layout import _psql

ROOT = Path(__file__).resolve().parent.parent


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_db_service_is_pgvector_with_volume_and_healthcheck() -> None:
    db = compose()["services"]["db"]
    assert db["image"].startswith("pgvector/pgvector:")
    assert any(v.endswith(":/var/lib/postgresql/data") for v in db["volumes"])
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])


def test_migrate_is_a_real_cli_command_that_waits_for_a_healthy_db() -> None:
    services = compose()["services"]
    migrate = services["migrate"]
    assert migrate["command"][0] == "rerankdb"
    args = build_parser().parse_args(migrate["command"][1:])  # raises SystemExit if not a real command
    assert args.command == "migrate"
    assert migrate["depends_on"]["db"]["condition"] == "service_healthy"
    url = migrate["environment"]["RERANKDB_DATABASE_URL"]
    env = services["db"]["environment"]
    assert url == f"postgresql://{env['POSTGRES_USER']}@db:5432/{env['POSTGRES_DB']}", "the owner migrates"
    assert migrate["environment"]["PGPASSWORD"] == env["POSTGRES_PASSWORD"]
    assert (ROOT / migrate["build"] / "Dockerfile").is_file()


def test_worker_waits_for_db_and_migrate_and_restarts() -> None:
    services = compose()["services"]
    worker = services["worker"]
    args = build_parser().parse_args(worker["command"][1:])
    assert args.command == "worker" and not args.once
    assert worker["depends_on"]["db"]["condition"] == "service_healthy"
    assert worker["depends_on"]["roles"]["condition"] == "service_completed_successfully"
    assert services["roles"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert worker["restart"] == "unless-stopped"


def test_the_database_port_is_published_on_localhost_only() -> None:
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
    assert "ports" not in compose()["services"]["worker"], "its metrics stay inside the compose network"


def test_no_password_is_written_in_the_file() -> None:
    """Every password comes from the environment (.env), and a missing one stops compose."""
    for name, service in compose()["services"].items():
        env = service.get("environment", {})
        for key, value in env.items():
            if "PASSWORD" in key:
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", str(value)), (name, key, value)
        url = env.get("RERANKDB_DATABASE_URL", "")
        assert ":" not in url.split("//", 1)[-1].split("@")[0], f"{name}: a password in the URL"


def test_the_worker_and_the_app_are_not_the_superuser() -> None:
    services = compose()["services"]
    superuser = services["db"]["environment"]["POSTGRES_USER"]
    worker_url = services["worker"]["environment"]["RERANKDB_DATABASE_URL"]
    worker_user = worker_url.split("//", 1)[1].split("@")[0]
    assert worker_user != superuser
    assert (
        services["worker"]["environment"]["PGPASSWORD"]
        == "${RERANKDB_WORKER_PASSWORD:?set RERANKDB_WORKER_PASSWORD (e.g. in .env)}"
    )
    logins = re.findall(r"^\s*login (\S+) (\S+) ", services["roles"]["command"][0], re.MULTILINE)
    assert (worker_user, "rerankdb_worker") in logins
    assert {role for _, role in logins} == {"rerankdb_app", "rerankdb_reader", "rerankdb_worker"}
    assert superuser not in {user for user, _ in logins}
    assert "/sql/login_roles.sql" in services["roles"]["command"][0]
    assert "./sql/deploy:/sql:ro" in services["roles"]["volumes"]
    header = (ROOT / "docker-compose.yml").read_text().split("services:")[0]
    assert f"postgresql://{superuser}@" not in header, "applications are told to connect as app or reader"


def test_the_image_installs_torchs_cpu_build_and_says_how_to_get_cuda() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in text
    install = next(
        line for line in text.splitlines() if line.startswith("RUN pip install") and "torch" in line
    )
    assert '--index-url "${TORCH_INDEX_URL}"' in install
    assert re.search(r"TORCH_INDEX_URL=https://download\.pytorch\.org/whl/cu\d+", text), (
        "the CUDA way, in a comment"
    )
    assert '".[metrics]"' in text, "the worker's RERANKDB_METRICS_PORT needs prometheus_client"
    assert re.search(r"^USER (?!root)", text, re.MULTILINE)


def test_the_worker_metrics_listen_inside_the_network_only() -> None:
    env = compose()["services"]["worker"]["environment"]
    from rerankdb.config import Settings

    settings = Settings.from_env({k: str(v) for k, v in env.items()})
    assert (settings.metrics_port, settings.metrics_host) == (9100, "0.0.0.0")
    assert Settings.from_env({"RERANKDB_METRICS_PORT": "9100"}).metrics_host == "127.0.0.1"


LOGIN_ROLES = ROOT / "sql" / "deploy" / "login_roles.sql"


def run_login_roles(db_url: str, user: str, role: str, password: str) -> subprocess.CompletedProcess[str]:
    args = [_psql(), "-X", "-q", "-d", db.libpq_url(db_url), "-f", str(LOGIN_ROLES)]
    args += ["-v", f"user={user}", "-v", f"role={role}", "-v", f"password={password}"]
    return subprocess.run(args, capture_output=True, text=True, timeout=60, env=dict(os.environ))


@pytest.fixture
def login_name(conn: psycopg.Connection[Any]) -> Any:
    name = f"rerankdb_test_login_{os.getpid()}"
    yield name
    conn.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(name)))


def test_the_login_roles_script_makes_a_plain_member_of_one_role(
    db_url: str, conn: psycopg.Connection[Any], login_name: str
) -> None:
    for password in ("first", "it's 'quoted' $1 :x"):  # twice: idempotent; the password changes
        out = run_login_roles(db_url, login_name, "rerankdb_worker", password)
        assert out.returncode == 0, out.stderr
    row = conn.execute(
        "select rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolpassword is not null,"
        " pg_has_role(rolname, 'rerankdb_worker', 'member'), pg_has_role(rolname, 'rerankdb_app', 'member')"
        " from pg_authid where rolname = %s",
        (login_name,),
    ).fetchone()
    assert row == (True, False, False, False, True, True, False)
    with psycopg.connect(db.libpq_url(db_url), user=login_name) as c:
        assert c.execute("select current_user").fetchone() == (login_name,)


def test_the_login_roles_script_refuses_a_superuser_or_another_role(
    db_url: str, conn: psycopg.Connection[Any], login_name: str
) -> None:
    out = run_login_roles(db_url, "postgres", "rerankdb_worker", "x")
    assert out.returncode != 0 and "not a superuser" in out.stderr
    assert conn.execute("select rolsuper from pg_roles where rolname = 'postgres'").fetchone() == (True,)
    out = run_login_roles(db_url, login_name, "pg_write_all_data", "x")
    assert (
        out.returncode != 0 and "role must be rerankdb_app, rerankdb_reader or rerankdb_worker" in out.stderr
    )
    assert conn.execute("select count(*) from pg_roles where rolname = %s", (login_name,)).fetchone() == (0,)


def test_compose_environment_is_what_the_settings_read() -> None:
    """Every RERANKDB_* variable in the file is one the code documents and parses."""
    from rerankdb.config import Settings

    documented = (ROOT / "rerankdb" / "config.py").read_text() + (
        ROOT / "rerankdb" / "encoder.py"
    ).read_text()
    for service in compose()["services"].values():
        env = service.get("environment", {})
        for name in env:
            if name.startswith("RERANKDB_"):
                assert name in documented, name
        Settings.from_env({k: str(v) for k, v in env.items()})  # parses without error
