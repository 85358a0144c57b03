"""Progress output: nothing before the first unit of work; a bar on a terminal only;
in a log, a line at most every interval and one at the end."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rerankdb.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("stream", [Terminal, io.StringIO])
def test_work_that_fails_before_its_first_unit_shows_nothing(stream: type[io.StringIO]) -> None:
    out = stream()
    with pytest.raises(RuntimeError), Progress("loading items", " rows", out) as bar:
        bar.update(0, 100)
        raise RuntimeError("a bad file")
    assert out.getvalue() == ""


def test_a_terminal_gets_a_bar() -> None:
    out = Terminal()
    with Progress("rebuilding users", " users", out) as bar:
        bar.update(5, 10)
        bar.update(10, 10)
    assert "rebuilding users" in out.getvalue() and "10/10" in out.getvalue()


def test_a_log_gets_a_line_at_most_every_interval_and_one_at_the_end() -> None:
    out = io.StringIO()
    with Progress("rebuilding users", " users", out, interval=3600) as bar:
        for done in range(1, 1001):
            bar.update(done, 1000)
    assert out.getvalue().splitlines() == [out.getvalue().strip()], "one line: the last"
    assert out.getvalue().startswith("rebuilding users: 1000 of 1000 users in ")
    assert "\r" not in out.getvalue()
    out = io.StringIO()
    with Progress("compacting", " users", out, interval=0) as bar:
        bar.update(1)
        bar.update(2)
    lines = out.getvalue().splitlines()
    assert lines[:2] == ["compacting: 1 users so far (0 s)", "compacting: 2 users so far (0 s)"]
    assert lines[2].startswith("compacting: 2 users in ")


def cli_load(db_url: str, path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RERANKDB_")}
    env["RERANKDB_DATABASE_URL"] = db_url
    return subprocess.run(
        [sys.executable, "-m", "rerankdb.cli", "load", "items", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_load_into_a_log(db_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"item_id": 1, "content": "x", "colour": "red"}) + "\n")
    out = cli_load(db_url, bad)
    assert out.returncode == 1
    assert out.stderr.startswith("rerankdb: ") and "loading items" not in out.stderr, out.stderr
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps({"item_id": i, "content": f"item {i}"}) + "\n" for i in range(3)))
    out = cli_load(db_url, good)
    assert out.returncode == 0, out.stderr
    assert "\r" not in out.stderr and out.stderr.startswith("loading items: 3 rows in "), out.stderr
    assert "loaded 3 items" in out.stdout
