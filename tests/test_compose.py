"""docker-compose.yml is for users (no Docker engine here): check its structure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from rerankdb.cli import build_parser

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
    assert url == (
        f"postgresql://{env['POSTGRES_USER']}:{env['POSTGRES_PASSWORD']}@db:5432/{env['POSTGRES_DB']}"
    )
    assert (ROOT / migrate["build"] / "Dockerfile").is_file()


def test_worker_waits_for_db_and_migrate_and_restarts() -> None:
    services = compose()["services"]
    worker = services["worker"]
    args = build_parser().parse_args(worker["command"][1:])
    assert args.command == "worker" and not args.once
    assert worker["depends_on"]["db"]["condition"] == "service_healthy"
    assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert worker["restart"] == "unless-stopped"
    assert (
        worker["environment"]["RERANKDB_DATABASE_URL"]
        == services["migrate"]["environment"]["RERANKDB_DATABASE_URL"]
    )


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
