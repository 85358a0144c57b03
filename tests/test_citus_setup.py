"""Setting up Citus when it cannot be done: each failure says what to install or point at.

No cluster needed (tests/test_citus.py has the real one): a missing or
misnamed source, a build that fails, a layout run on a server without Citus.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from rerankdb import citus
from rerankdb.errors import CitusError


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rerankdb.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_missing_source_names_the_variable_to_set(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("RERANKDB_CITUS_SOURCE", str(tmp_path / "nowhere" / "citus-14.0.1.tar.gz"))
    with pytest.raises(CitusError, match=r"RERANKDB_CITUS_SOURCE=.* is not a file"):
        citus.source_tarball()
    done = cli("citus", "up", RERANKDB_HOME=str(tmp_path), RERANKDB_CITUS_SOURCE=str(tmp_path / "no.tar.gz"))
    assert done.returncode != 0
    assert "is not a file" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "citus").exists(), "nothing created"


def test_a_source_not_named_by_its_version_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "citus.tar.gz"
    bad.write_bytes(b"")
    with pytest.raises(CitusError, match=r"expected a file named citus-<version>\.tar\.gz"):
        citus.citus_version(bad)


def _fake_source(path: Path, configure: str) -> None:
    """A tarball holding one folder with a ``configure`` script."""
    with tarfile.open(path, "w:gz") as tar:
        data = configure.encode()
        info = tarfile.TarInfo("citus-0.0.1/configure")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))


def test_a_failed_build_says_what_it_needs_and_where_its_log_is(tmp_path: Path, monkeypatch: Any) -> None:
    source = tmp_path / "citus-0.0.1.tar.gz"
    _fake_source(source, "#!/bin/sh\necho 'checking for gcc... no' && exit 1\n")
    monkeypatch.setenv("RERANKDB_CITUS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(CitusError, match=r"building Citus 0\.0\.1 .* failed") as caught:
        citus.build(source)
    message = str(caught.value)
    assert "gcc, make" in message and "checking for gcc... no" in message and "build.log" in message
    assert not list((tmp_path / "cache").glob("citus-0.0.1-pg*/BUILT")), "no build is recorded as done"


def test_the_layout_on_a_server_without_citus_says_so_and_changes_nothing(db_url: str, conn: Any) -> None:
    before = conn.execute("select count(*) from pg_trigger where not tgisinternal").fetchone()
    with pytest.raises(CitusError, match=r"needs the citus extension, 14\.0 or later"):
        citus.apply_layout(db_url)
    assert conn.execute("select count(*) from pg_trigger where not tgisinternal").fetchone() == before
    done = cli("migrate", "--citus", RERANKDB_DATABASE_URL=db_url)
    assert done.returncode != 0 and "needs the citus extension" in done.stderr


def test_migrate_citus_refuses_another_target_than_head() -> None:
    done = cli("migrate", "--citus", "--to", "0010")
    assert done.returncode != 0 and "--citus installs or upgrades to head only" in done.stderr


def test_the_printed_install_carries_the_layout_after_the_revisions() -> None:
    done = cli("migrate", "--sql", "--citus")
    assert done.returncode == 0, done.stderr
    revisions, _, layout = done.stdout.partition(
        "-- Then, with psql on the coordinator, the distributed layout:"
    )
    assert "create table rerankdb.interactions" in revisions.lower()
    assert "create_distributed_table('rerankdb.interactions'" in layout


def test_url_without_a_cluster_says_how_to_start_one(tmp_path: Path) -> None:
    done = cli("citus", "url", RERANKDB_HOME=str(tmp_path))
    assert done.returncode == 1 and "rerankdb citus up" in done.stderr
    assert cli("citus", "down", RERANKDB_HOME=str(tmp_path)).stdout.strip() == "no local cluster"
