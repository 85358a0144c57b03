"""The docs cannot drift: every code sample of README.md and docs/*.md runs here.

The convention (docs/development.md, "Code samples"): a fence's info string
starts with its language.  ``sql``, ``python`` and ``sh`` blocks run, in page
order, against one fresh database per page (README.md: an empty one, as a
newcomer's; docs/: a clone with the schema installed), with
RERANKDB_DATABASE_URL pointing at it and a temporary working directory:

- ``sql``: sent as one script; the rows of each statement are kept for checks.
- ``python``: executed as a script.
- ``sh``: run by bash (``set -euo pipefail``) with ``rerankdb`` on PATH.  A line
  ``rerankdb worker &`` starts no process: from there on the page has a running
  worker, and the test drains the queues after each block as that worker would.

A block that cannot run here carries ``no-run`` after its language and must be
listed in NO_RUN below with the reason; other languages (``text``, ``mermaid``)
are not code.  Nothing is skipped silently.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from rerankdb import db, docgen
from rerankdb.cli import build_parser
from tests.conftest import TEMPLATE, _fresh_name
from tests.worker_helpers import drain

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN = {"sql", "python", "sh"}
NOT_CODE = {"text", "mermaid"}
WORKER_LINE = re.compile(r"^rerankdb worker &\s*(#.*)?$")

# (page, first line of the block) -> why it does not run here.
NO_RUN: dict[tuple[str, str], str] = {
    (
        "README.md",
        "select * from rerankdb.rerank(42, array[1017, 88, 3051, 12]);",
    ): "the pitch, before any schema exists; the same call runs in 'The first five minutes'",
    (
        "README.md",
        "python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 -e '.[dev]' && .venv/bin/rerankdb demo",
    ): "creates a virtual environment and installs packages; the demo itself runs in tests/test_demo.py",
    ("README.md", ".venv/bin/python -m pytest"): "the test suite itself",
    (
        "README.md",
        'psql "$(rerankdb db url)"',
    ): "opens an interactive session; the SQL blocks that follow are what one types in it, run here",
    (
        "docs/install.md",
        "alembic -x url=postgresql://user@host/db upgrade head",
    ): "a remote server's URL; rerankdb migrate, which runs here, does the same",
    (
        "docs/install.md",
        "create role web login password '...' in role rerankdb_reader;",
    ): "creates login roles on the whole cluster; tests/test_roles.py checks what each role may do",
    (
        "docs/install.md",
        "alembic -x url=postgresql://user@host/db downgrade base",
    ): "a remote server's URL; tests/test_migrations.py downgrades to base and up again",
    ("docs/install.md", "docker compose up -d"): "needs Docker; tests/test_compose.py checks the file",
    (
        "docs/worker.md",
        "rerankdb worker",
    ): "runs until stopped; the runnable block below drains once",
    (
        "docs/worker.md",
        "RERANKDB_METRICS_PORT=9108 rerankdb worker",
    ): "runs until stopped; tests/test_worker_stats.py reads the endpoint",
    (
        "docs/python.md",
        "app_client = AsyncClient.from_env()",
    ): "a web framework's hooks (FastAPI's app is not installed); the asyncio block above runs the client",
    (
        "docs/python.md",
        "report = rr.tune(dry_run=True)",
    ): "needs an interaction log of real size; tests/test_tune.py runs the tuner",
    (
        "docs/python.md",
        "with Client(PRIMARY_URL, read_url=REPLICA_URL) as rr:",
    ): "needs a streaming replica; tests/test_replica.py starts a real one",
    (
        "docs/scaling.md",
        "RERANKDB_DATABASE_URL=postgresql://owner@coordinator/app rerankdb migrate --citus",
    ): "needs a Citus cluster; tests/test_citus.py installs on a real one the same way",
    (
        "docs/scaling.md",
        "RERANKDB_POLL_SECONDS=0.05 rerankdb worker",
    ): "runs until stopped; tests/test_citus.py runs two worker processes on a real cluster",
    (
        "docs/evaluation.md",
        "rerankdb eval movielens ../shared/datasets/ml-latest-small --out eval-out",
    ): "about 5 minutes on MovieLens data; tests/test_eval.py runs the pipeline on a small sample",
    (
        "docs/benchmarks.md",
        "python -m rerankdb.bench rerank",
    ): "benchmarks take minutes to hours and print figures; they are not tests",
    (
        "docs/development.md",
        ".venv/bin/python -m pytest",
    ): "the checks themselves, which CI runs on every change",
}


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    lang: str
    words: tuple[str, ...]
    text: str

    @property
    def key(self) -> tuple[str, str]:
        """Its page and first line, a trailing comment left out."""
        first = self.text.splitlines()[0] if self.text else ""
        return (self.page, re.split(r"\s+(?:#|--)\s", first, maxsplit=1)[0].strip())

    @property
    def runs(self) -> bool:
        return self.lang in RUN and "no-run" not in self.words


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a markdown page, in order."""
    page = path.relative_to(ROOT).as_posix()
    found: list[Block] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("```"):
            info = lines[i][3:].split()
            start = i
            i += 1
            body = []
            while i < len(lines) and lines[i] != "```":
                body.append(lines[i])
                i += 1
            assert i < len(lines), f"{page}:{start + 1}: unclosed code fence"
            lang = info[0] if info else ""
            found.append(Block(page, start + 1, lang, tuple(info[1:]), "\n".join(body)))
        i += 1
    return found


ALL = [b for p in PAGES for b in blocks(p)]


def test_every_block_has_a_known_language_and_no_run_has_its_reason() -> None:
    for b in ALL:
        assert b.lang in RUN | NOT_CODE, f"{b.page}:{b.line}: fence language {b.lang!r} (expected one of "
        f"{sorted(RUN | NOT_CODE)})"
        assert set(b.words) <= {"no-run"}, f"{b.page}:{b.line}: unknown fence words {b.words}"
    marked = {b.key for b in ALL if b.lang in RUN and not b.runs}
    unlisted = marked - NO_RUN.keys()
    assert not unlisted, f"no-run blocks without a reason in NO_RUN: {sorted(unlisted)}"
    stale = NO_RUN.keys() - marked
    assert not stale, f"NO_RUN lists blocks that are not marked no-run (or no longer exist): {sorted(stale)}"
    runnable = sum(b.runs for b in ALL)
    assert runnable >= 25, f"only {runnable} runnable samples"
    print(f"\n{runnable} samples run, {len(marked)} marked no-run")


# --- running a page ----------------------------------------------------------------


def _run_sql(url: str, text: str) -> list[list[tuple[Any, ...]]]:
    results: list[list[tuple[Any, ...]]] = []
    with db.connect(url, autocommit=True) as conn:
        cur = conn.execute(text)
        while True:
            if cur.description is not None:
                results.append(cur.fetchall())
            if not cur.nextset():
                break
    return results


def _run_sh(text: str, env: dict[str, str], cwd: Path) -> bool:
    """Run a shell block; True if it starts a (simulated) worker."""
    worker = any(WORKER_LINE.match(line.strip()) for line in text.splitlines())
    script = "\n".join(line for line in text.splitlines() if not WORKER_LINE.match(line.strip()))
    out = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + script],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, f"exit {out.returncode}\n{out.stdout}\n{out.stderr}"
    return worker


def _check_first_five_minutes(results: list[list[tuple[Any, ...]]]) -> None:
    """After the inserts and a drain, rerank scores every candidate and puts the
    outdoor items user 42 likes before the kitchen ones the retriever put first."""
    rows = results[-1]
    assert [r[2] for r in rows] == [1, 2, 3, 4]
    assert all(r[1] is not None for r in rows), rows
    assert {r[0] for r in rows[:2]} == {2, 6}, rows
    assert {r[0] for r in rows[2:]} == {3, 4}, rows


CHECKS: dict[tuple[str, str], Callable[[list[list[tuple[Any, ...]]]], None]] = {
    ("README.md", "select * from rerankdb.rerank(42, array[3, 4, 2, 6]);"): _check_first_five_minutes,
}


def test_checked_blocks_exist() -> None:
    keys = {b.key for b in ALL if b.runs}
    assert CHECKS.keys() <= keys, sorted(CHECKS.keys() - keys)


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bin/ folder with `rerankdb` (this checkout's CLI) and `python`."""
    bin_dir = tmp_path_factory.mktemp("bin")
    for name, target in (
        ("rerankdb", f'"{sys.executable}" -m rerankdb.cli'),
        ("python", f'"{sys.executable}"'),
    ):
        path = bin_dir / name
        path.write_text(f'#!/bin/sh\nexec {target} "$@"\n')
        path.chmod(0o755)
    return bin_dir


@pytest.mark.parametrize(
    "page", [p.relative_to(ROOT).as_posix() for p in PAGES if any(b.runs for b in blocks(p))]
)
def test_samples_run(
    page: str,
    server_url: str,
    template_url: str,
    encoder: Any,
    shim: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = _fresh_name()
    template = None if page == "README.md" else TEMPLATE
    url = db.create_database(server_url, name, template=template)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RERANKDB_")}
    env.update(
        RERANKDB_DATABASE_URL=url,
        RERANKDB_HOME=str(tmp_path / "home"),
        RERANKDB_TRAIN_CRON="off",
        PATH=f"{shim}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}".rstrip(os.pathsep),
    )
    for key in [k for k in os.environ if k.startswith("RERANKDB_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("RERANKDB_DATABASE_URL", url)
    monkeypatch.setenv("RERANKDB_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    worker = False
    try:
        for b in (b for b in ALL if b.page == page and b.runs):
            where = f"{b.page}:{b.line}"
            try:
                results: list[list[tuple[Any, ...]]] = []
                if b.lang == "sql":
                    results = _run_sql(url, b.text)
                elif b.lang == "python":
                    exec(compile(b.text, where, "exec"), {"__name__": "__docs__"})
                else:
                    worker = _run_sh(b.text, env, tmp_path) or worker
                if worker:
                    with db.connect(url, autocommit=True) as conn:
                        drain(conn, encoder)
                check = CHECKS.get(b.key)
                if check is not None:
                    check(results)
            except (AssertionError, Exception) as exc:
                raise AssertionError(f"{where}: the sample fails: {exc}\n---\n{b.text}") from exc
    finally:
        db.drop_database(server_url, name)


# --- generated pages and the command line ----------------------------------------


def test_generated_docs_are_current() -> None:
    stale = [str(p.relative_to(ROOT)) for p, text in docgen.outputs().items() if p.read_text() != text]
    assert not stale, f"out of date: {stale}; run python -m rerankdb.docgen --write"


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    return {name: sub for name, _, sub in docgen._subcommands(build_parser())}


def test_every_flag_has_help_and_the_top_level_help_lists_every_command() -> None:
    parser = build_parser()
    top = parser.format_help()
    for name, sub in _subparsers().items():
        assert re.search(rf"^\s+{name}\s", top, re.MULTILINE), f"rerankdb --help does not list {name}"
        for action in sub._actions:
            assert action.help and action.help != argparse.SUPPRESS, f"rerankdb {name} {action.dest}: no help"
            for flag in action.option_strings:
                assert flag in sub.format_help()


def test_cli_page_names_every_flag_and_no_other() -> None:
    # The generated part; the hand-written examples above it run as samples.
    page = (ROOT / "docs" / "cli.md").read_text().split(docgen.CLI_BEGIN, 1)[1].split(docgen.CLI_END, 1)[0]
    subs = _subparsers()
    real = {f for sub in subs.values() for a in sub._actions for f in a.option_strings}
    for name, sub in subs.items():
        section = page.split(f"### rerankdb {name}\n", 1)[1].split("\n### ", 1)[0]
        for action in docgen._options(sub):
            for flag in action.option_strings:
                assert f"`{flag}" in section or f"{flag} " in section, f"docs/cli.md: rerankdb {name} {flag}"
    mentioned = set(re.findall(r"(?<![\w-])--?[a-z][a-z-]*", page))
    assert mentioned <= real, f"docs/cli.md names flags that do not exist: {sorted(mentioned - real)}"


def test_every_page_is_linked_from_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"docs/{page.name}" in readme, f"README.md does not link docs/{page.name}"


def test_links_between_pages_resolve() -> None:
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.relative_to(ROOT)}: broken link {target}"


def test_user_pages_speak_of_now() -> None:
    words = re.compile(r"\b(stop|stops|issue|previous|turn)\b", re.IGNORECASE)
    for page in PAGES:
        for n, line in enumerate(page.read_text().splitlines(), 1):
            hit = words.search(line)
            # `rerankdb db stop` is a command, citusdata/citus#6161 a reference.
            command = "db stop" in line or "start|stop" in line
            assert hit is None or command or "citusdata/citus#" in line, (
                f"{page.relative_to(ROOT)}:{n}: {hit.group(0) if hit else ''!r} in {line.strip()!r}"
            )


def test_readme_stays_short() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 350


def test_psycopg_multi_statement_scripts_work(db_url: str) -> None:
    # _run_sql depends on it: one execute, several results.
    assert _run_sql(db_url, "select 1; select 2, 3") == [[(1,)], [(2, 3)]]
    with pytest.raises(psycopg.errors.UndefinedTable):
        _run_sql(db_url, "select * from rerankdb.no_such_table")
