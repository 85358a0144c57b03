"""SQL that Python sends lives in sql/queries/: every statement named once, used, and reviewable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rerankdb.sqlfiles import parse_queries, queries

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "rerankdb"
QUERY_FILES = sorted((ROOT / "sql" / "queries").glob("*.sql"))
# The product's modules; bench/ and eval/ are tools that measure it.
MODULES = sorted(PACKAGE.glob("*.py"))


def names_used(source: str) -> set[str]:
    return set(re.findall(r'Q\[f?"([a-z_{}]+)"\]', source))


@pytest.mark.parametrize("file", QUERY_FILES, ids=lambda p: p.name)
def test_each_queries_file_belongs_to_a_module_that_uses_every_statement(file: Path) -> None:
    module = PACKAGE / f"{file.stem}.py"
    assert module.is_file(), f"sql/queries/{file.name} has no module rerankdb/{file.stem}.py"
    source = module.read_text(encoding="utf-8")
    assert f'queries("{file.stem}")' in source
    defined = set(queries(file.stem))
    used = names_used(source)
    # One f-string name stands for a family: Q[f"upsert_{of}_vectors"].
    patterns = [re.compile(u.replace("{of}", "[a-z]+") + "$") for u in used]
    unused = {d for d in defined if not any(p.match(d) for p in patterns)}
    assert not unused, f"statements in {file.name} that {module.name} never sends: {sorted(unused)}"
    missing = {u for u in used if "{" not in u} - defined
    assert not missing, f"{module.name} sends statements {file.name} does not define: {sorted(missing)}"


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.name)
def test_no_statement_is_written_inline(module: Path) -> None:
    source = module.read_text(encoding="utf-8")
    inline = re.findall(r'(?:execute|copy)\(\s*f?["\']', source)
    assert not inline, f"{module.name} sends SQL written in Python: move it to sql/queries/"


def test_sections_drop_their_description_and_trailing_semicolon() -> None:
    q = parse_queries(
        "-- file header\n\n-- name: one\n-- what it does\n-- and why\nselect 1;\n\n"
        "-- name: two\nselect %(x)s\n  -- an inner comment stays\n  from t\n"
    )
    assert dict(q) == {"one": "select 1", "two": "select %(x)s\n  -- an inner comment stays\n  from t"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("-- name: a\nselect 1\n-- name: a\nselect 2\n", "query 'a' is defined twice"),
        ("-- name: a\n-- only a description\n", "query 'a' is empty"),
    ],
)
def test_bad_files_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_queries(text, "x.sql")


def test_an_unknown_name_says_which_file() -> None:
    with pytest.raises(KeyError, match=r"no query named 'nope' in sql/queries/client.sql"):
        queries("client")["nope"]
