"""Settings from RERANKDB_* variables: defaults, parsing, and clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from rerankdb.config import Settings
from rerankdb.errors import ConfigError


def test_defaults() -> None:
    s = Settings.from_env({"HOME": "/home/x"})
    assert (s.database_url, s.dim, s.context_weight, s.poll_seconds, s.rebuild_cron) == (
        None,
        384,
        0.5,
        1.0,
        None,
    )
    assert s.train_cron == "0 4 * * *"
    assert Settings.from_env({"RERANKDB_TRAIN_CRON": "off"}).train_cron is None
    assert s.home.name == "rerankdb"
    assert s.tune_after_train is False
    assert (s.read_url, s.compact_cron, s.retain_days, s.metrics_port) == (None, None, 365.0, None)
    assert s.metrics_host == "127.0.0.1"


def test_values_are_parsed() -> None:
    s = Settings.from_env(
        {
            "RERANKDB_DATABASE_URL": "postgresql://u@h/db",
            "RERANKDB_HOME": "/tmp/rr",
            "RERANKDB_DIM": "768",
            "RERANKDB_TUNE_AFTER_TRAIN": "on",
            "RERANKDB_CONTEXT_WEIGHT": "0",
            "RERANKDB_POLL_SECONDS": "0.25",
            "RERANKDB_REBUILD_CRON": "0 3 * * *",
            "RERANKDB_READ_URL": "postgresql://u@replica/db",
            "RERANKDB_COMPACT_CRON": "30 4 * * 0",
            "RERANKDB_RETAIN_DAYS": "90",
            "RERANKDB_METRICS_PORT": "9108",
            "RERANKDB_METRICS_HOST": "0.0.0.0",
        }
    )
    assert s.metrics_host == "0.0.0.0"
    assert (s.read_url, s.compact_cron, s.retain_days, s.metrics_port) == (
        "postgresql://u@replica/db",
        "30 4 * * 0",
        90.0,
        9108,
    )
    assert s.database_url == "postgresql://u@h/db" and s.home == Path("/tmp/rr")
    assert (s.dim, s.context_weight, s.poll_seconds, s.tune_after_train) == (768, 0.0, 0.25, True)
    assert s.rebuild_cron == "0 3 * * *"


def test_encoder_settings_are_read_here_too() -> None:
    s = Settings.from_env(
        {"RERANKDB_MODEL": "/models/e5", "RERANKDB_ENCODER_BACKEND": "bf16", "RERANKDB_MAX_LENGTH": "128"}
    )
    assert (s.model, s.encoder_backend, s.max_length) == (Path("/models/e5"), "bf16", 128)
    d = Settings.from_env({})
    assert (d.model, d.encoder_backend, d.max_length) == (None, "fp32", 256)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("RERANKDB_DIM", "abc", "RERANKDB_DIM must be an integer"),
        ("RERANKDB_DIM", "5000", "between 1 and 2000"),
        ("RERANKDB_HALF_LIFE_DAYS", "30", "RERANKDB_HALF_LIFE_DAYS is no longer read.*rerankdb.settings"),
        ("RERANKDB_TUNE_AFTER_TRAIN", "sometimes", "RERANKDB_TUNE_AFTER_TRAIN must be on or off"),
        ("RERANKDB_CONTEXT_WEIGHT", "lots", "RERANKDB_CONTEXT_WEIGHT must be a number"),
        ("RERANKDB_POLL_SECONDS", "0", "RERANKDB_POLL_SECONDS must be a finite number >= 0.01"),
        ("RERANKDB_POLL_SECONDS", "inf", "must be a finite number"),
        ("RERANKDB_REBUILD_CRON", "every night", "must be a crontab line"),
        ("RERANKDB_MAX_LENGTH", "0", "RERANKDB_MAX_LENGTH must be a positive integer"),
        ("RERANKDB_MAX_LENGTH", "long", "RERANKDB_MAX_LENGTH must be an integer"),
        ("RERANKDB_METRICS_HOST", "0.0.0.0/0", "RERANKDB_METRICS_HOST must be an address or host name"),
        ("RERANKDB_COMPACT_CRON", "weekly", "RERANKDB_COMPACT_CRON must be a crontab line"),
        ("RERANKDB_RETAIN_DAYS", "0.5", "RERANKDB_RETAIN_DAYS must be a finite number >= 1"),
        ("RERANKDB_RETAIN_DAYS", "forever", "RERANKDB_RETAIN_DAYS must be a number"),
        (
            "RERANKDB_RETAIN_DAYS",
            "1000000",
            "RERANKDB_RETAIN_DAYS must be a finite number >= 1 and <= 100000",
        ),
        ("RERANKDB_METRICS_PORT", "70000", "RERANKDB_METRICS_PORT must be a TCP port"),
        ("RERANKDB_METRICS_PORT", "http", "RERANKDB_METRICS_PORT must be an integer"),
        ("RERANKDB_ENCODER_BACKEND", "int8", "RERANKDB_ENCODER_BACKEND must be one of fp32, bf16"),
    ],
)
def test_bad_values_are_refused_clearly(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({name: value})
