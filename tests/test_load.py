"""Bulk loading from files: formats, strictness, reject files, the index rebuilt once, roles."""

from __future__ import annotations

import csv
import gzip
import json
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from rerankdb import Client, load
from rerankdb.cli import main
from rerankdb.errors import InvalidInputError, PermissionDeniedError
from rerankdb.load import LoadError, LoadFailedError
from tests.helpers import unit

DIM = 384


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def items(n: int, rng: np.random.Generator, *, start: int = 1, embed: bool = True) -> list[dict[str, Any]]:
    out = []
    for i in range(start, start + n):
        row: dict[str, Any] = {"item_id": i, "content": f"item {i}", "metadata": {"n": i}}
        if embed:
            row["embedding"] = rng.standard_normal(DIM).round(5).tolist()
        out.append(row)
    return out


def counts(conn: psycopg.Connection[Any]) -> tuple[int, int, int]:
    row = conn.execute(
        "select (select count(*) from rerankdb.items), (select count(*) from rerankdb.item_vectors),"
        " (select count(*) from rerankdb.item_queue)"
    ).fetchone()
    assert row is not None
    return row


def stored(conn: psycopg.Connection[Any], item_id: int) -> np.ndarray:
    row = conn.execute(
        "select embedding from rerankdb.item_vectors where item_id = %s", (item_id,)
    ).fetchone()
    assert row is not None
    return np.asarray(row[0].to_list())


def index_valid(conn: psycopg.Connection[Any]) -> bool | None:
    row = conn.execute(
        "select indisvalid from pg_index where indexrelid = to_regclass('rerankdb.item_vectors_embedding_hnsw')"
    ).fetchone()
    return None if row is None else bool(row[0])


def test_items_with_and_without_embeddings(
    client: Client, conn: psycopg.Connection[Any], tmp_path: Path, rng: np.random.Generator
) -> None:
    rows = items(5, rng) + items(3, rng, start=6, embed=False)
    report = client.load_items(write_jsonl(tmp_path / "items.jsonl", rows))
    assert (report.rows, report.with_embedding, report.rejected, report.index) == (8, 5, 0, "incremental")
    # The five with vectors are stored (unit length) and not queued; the three others wait for the worker.
    assert counts(conn) == (8, 5, 3)
    for r in rows[:5]:
        np.testing.assert_allclose(stored(conn, r["item_id"]), unit(np.asarray(r["embedding"])), atol=1e-6)
    assert conn.execute("select metadata from rerankdb.items where item_id = 2").fetchone() == ({"n": 2},)
    assert client.rerank(0, [1, 2]) is not None


def test_csv_gzip_and_parquet_load_the_same(
    client: Client, conn: psycopg.Connection[Any], tmp_path: Path, rng: np.random.Generator
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = items(4, rng)
    path = tmp_path / "items.csv.gz"
    with gzip.open(path, "wt", newline="") as f:
        w = csv.writer(f)
        w.writerow(["item_id", "content", "metadata", "embedding"])
        for r in rows[:2]:
            w.writerow([r["item_id"], r["content"], json.dumps(r["metadata"]), json.dumps(r["embedding"])])
        w.writerow([3, "multi\nline, with a comma", "", ""])  # no metadata, no embedding: queued
    assert client.load_items(path).rows == 3
    table = pa.table(
        {
            "item_id": [4],
            "content": ["four"],
            "embedding": pa.array([rows[3]["embedding"]], type=pa.list_(pa.float32())),
        }
    )
    pq.write_table(table, tmp_path / "more.parquet")
    assert client.load_items(tmp_path / "more.parquet").with_embedding == 1
    assert counts(conn) == (4, 3, 1)
    assert conn.execute("select content, metadata from rerankdb.items where item_id = 3").fetchone() == (
        "multi\nline, with a comma",
        {},
    )
    np.testing.assert_allclose(stored(conn, 4), unit(np.asarray(rows[3]["embedding"])), atol=1e-6)


@pytest.mark.parametrize(
    ("line", "field", "message"),
    [
        ('{"item_id": "x", "content": "a"}', "item_id", "expected an integer"),
        ('{"item_id": 1.5, "content": "a"}', "item_id", "expected an integer"),
        ('{"item_id": 99999999999999999999, "content": "a"}', "item_id", "does not fit a bigint"),
        ('{"item_id": 7}', "content", "missing"),
        ('{"item_id": 7, "content": 3}', "content", "expected a string"),
        ('{"item_id": 7, "content": "a\\u0000b"}', "content", "NUL"),
        ('{"item_id": 7, "content": "a", "metadata": [1]}', "metadata", "JSON object"),
        ('{"item_id": 7, "content": "a", "embedding": [1, 2, 3]}', "embedding", "expected 384 numbers"),
        ('{"item_id": 7, "content": "a", "embedding": "oops"}', "embedding", "list of 384 numbers"),
        ('{"item_id": 7, "content": "a", "itemid": 3}', "itemid", "unknown field"),
        ("{not json", None, "not JSON"),
        ("[1, 2]", None, "expected a JSON object"),
    ],
)
def test_a_bad_line_names_line_and_field_and_writes_nothing(
    client: Client,
    conn: psycopg.Connection[Any],
    tmp_path: Path,
    rng: np.random.Generator,
    line: str,
    field: str | None,
    message: str,
) -> None:
    good = [json.dumps(r) for r in items(3, rng)]
    path = tmp_path / "items.jsonl"
    path.write_text("\n".join([good[0], good[1], line, good[2]]) + "\n")
    with pytest.raises(LoadError, match=message) as err:
        client.load_items(path)
    text = str(err.value)
    assert "items.jsonl line 3" in text and "nothing was written" in text
    if field is not None:
        assert f"field {field}" in text
    assert counts(conn) == (0, 0, 0)


def test_embedding_values_are_checked(client: Client, conn: psycopg.Connection[Any], tmp_path: Path) -> None:
    zero = {"item_id": 1, "content": "a", "embedding": [0.0] * DIM}
    nan = {"item_id": 2, "content": "b", "embedding": [1.0] * (DIM - 1) + [float("nan")]}
    for row, message in ((zero, "zero vector"), (nan, "finite")):
        with pytest.raises(LoadError, match=message):
            client.load_items(write_jsonl(tmp_path / "x.jsonl", [row]))
    assert counts(conn) == (0, 0, 0)


def test_duplicate_item_in_one_file(client: Client, conn: psycopg.Connection[Any], tmp_path: Path) -> None:
    rows = [{"item_id": 1, "content": "a"}, {"item_id": 2, "content": "b"}, {"item_id": 1, "content": "c"}]
    with pytest.raises(LoadError, match=r"line 3, field item_id: item 1 is also on line 1"):
        client.load_items(write_jsonl(tmp_path / "d.jsonl", rows))
    assert counts(conn) == (0, 0, 0)
    report = client.load_items(write_jsonl(tmp_path / "d.jsonl", rows), reject_file=tmp_path / "bad.jsonl")
    assert (report.rows, report.rejected) == (2, 1)
    assert conn.execute("select content from rerankdb.items where item_id = 1").fetchone() == ("a",)
    assert json.loads((tmp_path / "bad.jsonl").read_text()) == rows[2]


def test_reject_file_keeps_the_bad_lines_in_the_files_format(
    client: Client, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    path = tmp_path / "items.csv"
    path.write_text('item_id,content\n1,one\nx,two\n3,"three\nlines"\n4\n5,five\n')
    report = client.load_items(path, reject_file=tmp_path / "rejects.csv")
    assert (report.rows, report.rejected) == (3, 2)
    assert [(r.line, r.field) for r in report.errors] == [(3, "item_id"), (6, None)]
    assert "expected 2 fields" in report.errors[1].message
    assert (tmp_path / "rejects.csv").read_text().splitlines() == ["item_id,content", "x,two", "4"]
    assert counts(conn)[0] == 3
    # The reject file, mended, loads.
    (tmp_path / "rejects.csv").write_text("item_id,content\n2,two\n4,four\n")
    assert client.load_items(tmp_path / "rejects.csv").rows == 2
    assert counts(conn)[0] == 5


def test_reload_updates_and_requeues_only_changed_text(
    client: Client, conn: psycopg.Connection[Any], tmp_path: Path, rng: np.random.Generator
) -> None:
    client.load_items(write_jsonl(tmp_path / "a.jsonl", items(3, rng, embed=False)))
    conn.execute("delete from rerankdb.item_queue")  # as if the worker had embedded them
    changed = items(3, rng, embed=False)
    changed[1]["content"] = "new text"
    assert client.load_items(write_jsonl(tmp_path / "b.jsonl", changed)).rows == 3
    assert conn.execute("select array_agg(item_id) from rerankdb.item_queue").fetchone() == ([2],)


def test_interactions(client: Client, conn: psycopg.Connection[Any], tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text(
        "user_id,item_id,kind,weight,context,occurred_at\n"
        "1,10,like,,,2026-01-02T03:04:05Z\n"
        "1,11,,2.5,searched for tea,1767000000\n"
        "2,10,purchase,,,2026-01-02 03:04:05\n"
        "2,12,,,,\n"
    )
    report = client.load_interactions(path)
    assert (report.rows, report.rejected) == (4, 0)
    got = conn.execute(
        "select user_id, item_id, kind, weight, context, occurred_at from rerankdb.interactions order by interaction_id"
    ).fetchall()
    utc = timezone.utc
    assert got[0] == (1, 10, "like", None, None, datetime(2026, 1, 2, 3, 4, 5, tzinfo=utc))
    assert got[1][2:5] == ("view", 2.5, "searched for tea")
    assert got[1][5] == datetime.fromtimestamp(1767000000, tz=utc)
    assert got[2][5] == datetime(2026, 1, 2, 3, 4, 5, tzinfo=utc)  # no offset: UTC
    assert abs(got[3][5] - datetime.now(utc)) < timedelta(minutes=5)  # none: now
    # Queued for folding, as any insert.
    assert conn.execute("select count(*) from rerankdb.interaction_queue").fetchone() == (4,)


@pytest.mark.parametrize(
    ("row", "field", "message"),
    [
        ({"user_id": 1, "item_id": 2, "kind": "nope"}, "kind", "unknown kind 'nope'; known: add_to_cart"),
        ({"user_id": 1, "item_id": 2, "weight": "heavy"}, "weight", "expected a number"),
        ({"user_id": 1, "item_id": 2, "weight": 1e7}, "weight", "between -1e6 and 1e6"),
        ({"user_id": 1, "item_id": 2, "occurred_at": "yesterday"}, "occurred_at", "ISO 8601"),
        ({"user_id": 1, "item_id": 2, "occurred_at": 1e300}, "occurred_at", "beyond the calendar"),
        ({"user_id": 1, "item_id": 2, "occurred_at": "2999-01-01T00:00:00Z"}, "occurred_at", "in the future"),
        ({"user_id": 1, "item_id": 2, "occurred_at": 1767000000000}, "occurred_at", "milliseconds"),
        ({"user_id": 1, "item_id": 2, "occurred_at": 1767000000 + 10**8}, "occurred_at", "in the future"),
        ({"item_id": 2}, "user_id", "missing"),
    ],
)
def test_bad_interactions(
    client: Client,
    conn: psycopg.Connection[Any],
    tmp_path: Path,
    row: dict[str, Any],
    field: str,
    message: str,
) -> None:
    rows = [{"user_id": 1, "item_id": 1}, row, {"user_id": 1, "item_id": 3}]
    path = write_jsonl(tmp_path / "log.jsonl", rows)
    with pytest.raises(LoadError, match=message) as err:
        client.load_interactions(path)
    assert f"line 2, field {field}" in str(err.value)
    assert conn.execute("select count(*) from rerankdb.interactions").fetchone() == (0,)
    report = client.load_interactions(path, reject_file=tmp_path / "bad.jsonl")
    assert (report.rows, report.rejected) == (2, 1)
    assert json.loads((tmp_path / "bad.jsonl").read_text()) == row


def test_index_rebuilt_once_and_readers_keep_working(
    client: Client, conn: psycopg.Connection[Any], tmp_path: Path, rng: np.random.Generator
) -> None:
    client.load_items(write_jsonl(tmp_path / "a.jsonl", items(50, rng)))
    client.set_user_vectors([1], rng.standard_normal((1, DIM)))
    path = write_jsonl(tmp_path / "b.jsonl", items(300, rng, start=51))
    errors: list[BaseException] = []
    calls = [0]
    done = threading.Event()

    def reader() -> None:
        with Client(client.url) as r:
            while not done.is_set():
                try:
                    assert len(r.recommend(1, k=5, exclude_seen=False)) == 5
                    assert len(r.rerank(1, list(range(1, 60)))) == 59
                    calls[0] += 1
                except BaseException as exc:
                    errors.append(exc)
                    return

    t = threading.Thread(target=reader)
    t.start()
    try:
        report = client.load_items(path, index="rebuild")
    finally:
        done.set()
        t.join()
    assert errors == [] and calls[0] > 0
    assert (report.index, report.rows) == ("rebuilt", 300)
    assert index_valid(conn) is True
    assert counts(conn) == (350, 350, 0)
    # The rebuilt index serves the nearest-neighbour search.
    q = unit(rng.standard_normal(DIM))
    client.set_user_vectors([2], q[None, :])
    top = client.recommend(2, k=1, exclude_seen=False)[0].item_id
    conn.execute("set enable_seqscan = off")
    plan = conn.execute(
        "explain select item_id from rerankdb.item_vectors order by embedding <#> %s::vector limit 1",
        (str(q.tolist()),),
    ).fetchall()
    assert "item_vectors_embedding_hnsw" in str(plan)
    assert top is not None


def test_a_failed_load_still_rebuilds_the_index(
    client: Client, conn: psycopg.Connection[Any], tmp_path: Path, rng: np.random.Generator
) -> None:
    # An item id that the database refuses only at write time: a trigger of the DBA's.
    conn.execute(
        "create function public.refuse() returns trigger language plpgsql as $$ begin"
        " if new.item_id = 3 then raise exception 'refused by a trigger'; end if; return new; end $$"
    )
    conn.execute(
        "create trigger refuse before insert on rerankdb.items for each row execute function public.refuse()"
    )
    with pytest.raises(LoadFailedError, match=r"a\.jsonl: nothing was loaded: refused by a trigger") as err:
        client.load_items(write_jsonl(tmp_path / "a.jsonl", items(5, rng)), index="rebuild")
    assert isinstance(err.value.__cause__, psycopg.errors.RaiseException) and err.value.committed is None
    assert counts(conn) == (0, 0, 0)
    assert index_valid(conn) is True


def test_a_missing_or_invalid_index_is_repaired_by_the_next_load(
    client: Client, conn: psycopg.Connection[Any], tmp_path: Path, rng: np.random.Generator
) -> None:
    conn.execute("drop index rerankdb.item_vectors_embedding_hnsw")  # a load killed after its drop
    assert client.status().text_index == "missing"
    assert client.load_items(write_jsonl(tmp_path / "a.jsonl", items(2, rng))).index == "rebuilt"
    assert index_valid(conn) is True
    assert client.status().text_index == "valid"


def test_auto_rebuilds_only_large_loads(
    client: Client, tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(load, "REBUILD_MIN", 10)
    assert client.load_items(write_jsonl(tmp_path / "a.jsonl", items(9, rng))).index == "incremental"
    # 20 more into a table of 9: over a fifth of the 29 rows, so rebuilt.
    assert client.load_items(write_jsonl(tmp_path / "b.jsonl", items(20, rng, start=10))).index == "rebuilt"
    # 10 more into 29: still over a fifth of 39.
    assert client.load_items(write_jsonl(tmp_path / "c.jsonl", items(10, rng, start=30))).index == "rebuilt"
    # 10 into 39 (a fifth of 49 is 9.8): rebuilt; 10 into 99 would not be.
    for start in range(40, 100, 10):
        client.load_items(write_jsonl(tmp_path / "d.jsonl", items(10, rng, start=start)), index="incremental")
    assert (
        client.load_items(write_jsonl(tmp_path / "e.jsonl", items(10, rng, start=100))).index == "incremental"
    )


def test_app_role_loads_through_the_index(
    conn: psycopg.Connection[Any], login: Callable[[str], str], tmp_path: Path, rng: np.random.Generator
) -> None:
    url = login("rerankdb_app")
    with Client(url) as app:
        with pytest.raises(PermissionDeniedError, match=r"owner of rerankdb\.item_vectors"):
            app.load_items(write_jsonl(tmp_path / "a.jsonl", items(3, rng)), index="rebuild")
        report = app.load_items(write_jsonl(tmp_path / "a.jsonl", items(3, rng)))
        assert (report.rows, report.index) == (3, "incremental")
        assert (
            app.load_interactions(write_jsonl(tmp_path / "l.jsonl", [{"user_id": 1, "item_id": 1}])).rows == 1
        )
    assert counts(conn) == (3, 3, 0)
    assert index_valid(conn) is True


def test_parquet_without_pyarrow_says_how_to_get_it(
    client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins

    real = builtins.__import__

    def no_pyarrow(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("pyarrow"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    (tmp_path / "x.parquet").write_bytes(b"PAR1")
    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    with pytest.raises(InvalidInputError, match=r"needs pyarrow: pip install 'rerankdb\[parquet\]'"):
        client.load_items(tmp_path / "x.parquet")


def test_reject_file_problems_are_found_before_loading(
    client: Client, conn: psycopg.Connection[Any], tmp_path: Path, rng: np.random.Generator
) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", items(2, rng))
    with pytest.raises(InvalidInputError, match="must not be the file being loaded"):
        client.load_items(path, reject_file=path)
    with pytest.raises(InvalidInputError, match="cannot write the reject file"):
        client.load_items(path, reject_file=tmp_path / "no" / "such" / "dir.jsonl")
    assert counts(conn) == (0, 0, 0)
    assert len(path.read_text().splitlines()) == 2  # the input is untouched


def test_null_is_missing_and_long_csv_fields_are_fields(
    client: Client, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    rows = [{"item_id": 1, "content": "a", "metadata": None, "embedding": None}]
    assert client.load_items(write_jsonl(tmp_path / "n.jsonl", rows)).rows == 1
    with pytest.raises(LoadError, match="field content: missing"):
        client.load_items(write_jsonl(tmp_path / "m.jsonl", [{"item_id": 2, "content": None}]))
    log = [{"user_id": 1, "item_id": 1, "weight": None, "kind": None, "occurred_at": None}]
    assert client.load_interactions(write_jsonl(tmp_path / "l.jsonl", log)).rows == 1
    assert conn.execute("select kind, weight from rerankdb.interactions").fetchone() == ("view", None)
    long_text = "word " * 100_000  # beyond the csv module's default field limit
    (tmp_path / "long.csv").write_text(f"item_id,content\n3,{long_text}\n")
    assert client.load_items(tmp_path / "long.csv").rows == 1


def test_a_byte_order_mark_is_not_a_field(client: Client, tmp_path: Path) -> None:
    (tmp_path / "bom.csv").write_bytes("\ufeffitem_id,content\n1,one\n".encode())
    assert client.load_items(tmp_path / "bom.csv").rows == 1


def test_file_problems(client: Client, tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(InvalidInputError, match="no such file"):
        client.load_items(tmp_path / "missing.jsonl")
    (tmp_path / "items.txt").write_text("")
    with pytest.raises(InvalidInputError, match=r"cannot tell the format of items\.txt"):
        client.load_items(tmp_path / "items.txt")
    (tmp_path / "bin.jsonl").write_bytes(b"\xff\xfe{}\n")
    with pytest.raises(InvalidInputError, match="not UTF-8"):
        client.load_items(tmp_path / "bin.jsonl")
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(InvalidInputError, match="not a Parquet file"):
        client.load_items(tmp_path / "bad.parquet")
    with pytest.raises(
        InvalidInputError, match="build memory must be a PostgreSQL size with its unit, like 1GB"
    ):
        client.load_items(tmp_path / "empty.jsonl", build_memory="lots")
    with pytest.raises(InvalidInputError, match="index must be one of"):
        client.load_items(tmp_path / "items.txt", index="sometimes")
    assert client.load_items(tmp_path / "empty.jsonl").rows == 0


def test_cli_load(
    db_url: str,
    conn: psycopg.Connection[Any],
    tmp_path: Path,
    rng: np.random.Generator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RERANKDB_DATABASE_URL", db_url)
    path = write_jsonl(tmp_path / "i.jsonl", [*items(2, rng), {"item_id": "bad", "content": "x"}])
    assert main(["load", "items", str(path)]) == 1
    assert "i.jsonl line 3, field item_id: expected an integer" in capsys.readouterr().err
    assert main(["load", "items", str(path), "--reject-file", str(tmp_path / "r.jsonl")]) == 0
    out = capsys.readouterr()
    assert "loaded 2 items" in out.out and "2 with embeddings" in out.out
    assert "rejected 1 lines" in out.err and "line 3, field item_id" in out.err
    log = write_jsonl(tmp_path / "l.jsonl", [{"user_id": 1, "item_id": 1, "kind": "like"}])
    assert main(["load", "interactions", str(log)]) == 0
    assert "loaded 1 interactions" in capsys.readouterr().out
    assert counts(conn)[:2] == (2, 2)


def test_brought_vectors_are_not_replaced_by_the_worker(
    client: Client, conn: psycopg.Connection[Any], tmp_path: Path, rng: np.random.Generator, encoder: Any
) -> None:
    """Revision 0008: set_item_vectors (and so a load) takes the items off the embedding queue."""
    from rerankdb.drain import drain

    rows = items(2, rng)
    client.load_items(write_jsonl(tmp_path / "a.jsonl", rows))
    client.upsert_items([{"item_id": 3, "content": "a documentary about whales"}])
    client.set_item_vectors([3], np.ones((1, DIM)))
    assert drain(conn, encoder, 0.0, DIM).items_embedded == 0
    np.testing.assert_allclose(stored(conn, 1), unit(np.asarray(rows[0]["embedding"])), atol=1e-6)
    np.testing.assert_allclose(stored(conn, 3), unit(np.ones(DIM)), atol=1e-6)
    # A change of text queues the item again: the worker embeds the new text.
    client.upsert_items([{"item_id": 3, "content": "a film about the sea"}])
    assert drain(conn, encoder, 0.0, DIM).items_embedded == 1


def test_the_load_reports_what_it_queued(
    db_url: str,
    conn: psycopg.Connection[Any],
    tmp_path: Path,
    rng: np.random.Generator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RERANKDB_DATABASE_URL", db_url)
    catalog = [*items(2, rng), *items(3, rng, start=3, embed=False)]
    path = write_jsonl(tmp_path / "c.jsonl", catalog)
    assert main(["load", "items", str(path)]) == 0
    assert "loaded 5 items (5 new or changed, 2 with embeddings, 3 queued for the worker's encoder)" in (
        capsys.readouterr().out
    )
    conn.execute("delete from rerankdb.item_queue")  # as if the worker had embedded them
    # The same catalog again: nothing changed, nothing queued.
    assert main(["load", "items", str(path)]) == 0
    assert "loaded 5 items (0 new or changed, 2 with embeddings, 0 queued for the worker's encoder)" in (
        capsys.readouterr().out
    )
    assert counts(conn) == (5, 2, 0)
    # New metadata changes an item but queues nothing; new text queues it.
    catalog[2]["metadata"] = {"new": True}
    catalog[3]["content"] = "new text"
    with Client(db_url) as client:
        report = client.load_items(write_jsonl(tmp_path / "d.jsonl", catalog))
    assert (report.rows, report.changed, report.queued) == (5, 2, 1)
    assert conn.execute("select array_agg(item_id) from rerankdb.item_queue").fetchone() == ([4],)


def test_a_large_load_queues_its_users_for_one_rebuild_each(
    db_url: str,
    conn: psycopg.Connection[Any],
    catalog: dict[int, np.ndarray],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A load of BY_USER_MIN rows or more: a user whose log it at least doubles is rebuilt
    from the log (one queue row), the others' rows are queued; each row counts once."""
    from tests.worker_helpers import T0, add_interactions, assert_matches_rebuild, drain, state_counts

    monkeypatch.setattr(load, "BY_USER_MIN", 5)
    monkeypatch.setenv("RERANKDB_DATABASE_URL", db_url)
    add_interactions(conn, [(3, i, "view", None, None, T0) for i in (1, 2, 3, 4, 5, 6)])  # a longer log
    drain(conn, None, 0.0)
    conn.execute("insert into rerankdb.items (item_id, content) values (77, 'no vector yet')")
    rows = [(1, 1), (1, 2), (1, 77), (2, 3), (2, 4), (3, 5), (3, 6)]
    path = tmp_path / "history.csv"
    path.write_text("user_id,item_id,occurred_at\n" + "".join(f"{u},{i},1767000000\n" for u, i in rows))
    assert main(["load", "interactions", str(path)]) == 0
    assert "loaded 7 interactions (2 users queued for the worker to rebuild from their log)" in (
        capsys.readouterr().out
    )
    queued = "select user_id, item_id, deferred from rerankdb.interaction_queue order by 1, 2"
    assert conn.execute(queued).fetchall() == [(3, 5, False), (3, 6, False)]
    assert conn.execute("select user_id from rerankdb.user_rebuild_queue order by 1").fetchall() == [
        (1,),
        (2,),
    ]
    report = drain(conn, None, 0.0)
    assert (report.users_rebuilt, report.interactions_folded) == (2, 2)
    assert state_counts(conn) == {1: 2, 2: 2, 3: 8}
    assert conn.execute(queued).fetchall() == [(1, 77, True)]  # waits for its item's vector
    conn.execute(
        "select rerankdb.set_item_vectors(array[77]::bigint[], array[%s::vector])",
        [unit(np.random.default_rng(77).standard_normal(DIM)).tolist()],
    )
    drain(conn, None, 0.0)
    assert state_counts(conn) == {1: 3, 2: 2, 3: 8}
    assert conn.execute(queued).fetchall() == []
    assert_matches_rebuild(conn, None, 0.0)
    # A small load is queued row by row, as any insert.
    small = tmp_path / "small.csv"
    small.write_text("user_id,item_id\n4,1\n4,2\n")
    assert load.load_interactions(conn, small).users_queued == 0
    assert conn.execute(queued).fetchall() == [(4, 1, False), (4, 2, False)]
