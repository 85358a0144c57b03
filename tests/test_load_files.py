"""Loads and their files: the input is never written, the reject file holds the bad
records as the file had them, and a file that cannot be read whole writes nothing."""

from __future__ import annotations

import gzip
import json
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from rerankdb import Client
from rerankdb.cli import main
from rerankdb.errors import InvalidInputError
from tests.test_load import counts, items, write_jsonl


def test_a_reject_file_that_is_the_input_by_another_name_is_refused(
    client: Client, conn: psycopg.Connection[Any], tmp_path: Path, rng: np.random.Generator
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    jsonl = write_jsonl(tmp_path / "a.jsonl", [*items(2, rng), {"item_id": "bad", "content": "x"}])
    csv = tmp_path / "a.csv"
    csv.write_text("item_id,content\n1,one\nx,two\n")
    parquet = tmp_path / "a.parquet"
    pq.write_table(pa.table({"item_id": [1, 2], "content": ["one", "two"]}), parquet)
    (tmp_path / "sub").mkdir()
    for path in (jsonl, csv, parquet):
        data = path.read_bytes()
        hard = tmp_path / f"hard-{path.name}"
        os.link(path, hard)
        soft = tmp_path / f"soft-{path.name}"
        soft.symlink_to(path)
        for reject in (hard, soft, tmp_path / "sub" / ".." / path.name, path):
            with pytest.raises(InvalidInputError, match="must not be the file being loaded"):
                client.load_items(path, reject_file=reject)
            with pytest.raises(InvalidInputError, match="must not be the file being loaded"):
                client.load_interactions(path, reject_file=reject)
        # Loading through a link, rejecting into the file itself: the same file too.
        with pytest.raises(InvalidInputError, match="must not be the file being loaded"):
            client.load_items(hard, reject_file=path)
        assert path.read_bytes() == data
    assert counts(conn) == (0, 0, 0)
    assert (
        sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    )  # no temporary file left


def test_the_csv_reject_file_holds_the_bad_records_byte_for_byte(
    client: Client, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    header = 'item_id,"content"\r\n'
    bad = [
        'x,"a ""quoted"" word, and a comma"\r\n',
        '2,"two\r\nlines, ""and"" quotes",extra\r\n',  # three fields, over two lines
        '"y" ,z\r\n',  # not CSV: text after a closing quote
    ]
    good = ['1,"one, quoted"\r\n', "3,three\r\n"]
    path = tmp_path / "items.csv"
    path.write_bytes(("\ufeff" + header + good[0] + bad[0] + bad[1] + good[1] + bad[2]).encode())
    report = client.load_items(path, reject_file=tmp_path / "rejects.csv")
    assert (report.rows, report.rejected) == (2, 3)
    assert [(r.line, r.field) for r in report.errors] == [(3, "item_id"), (4, None), (7, None)]
    assert (tmp_path / "rejects.csv").read_bytes() == (header + "".join(bad)).encode()
    assert conn.execute("select content from rerankdb.items where item_id = 1").fetchone() == ("one, quoted",)
    # The same from a gzip file, and JSON Lines lines as they are (CRLF kept).
    with gzip.open(tmp_path / "items.csv.gz", "wb") as f:
        f.write(path.read_bytes())
    client.load_items(tmp_path / "items.csv.gz", reject_file=tmp_path / "rejects2.csv")
    assert (tmp_path / "rejects2.csv").read_bytes() == (header + "".join(bad)).encode()
    lines = ['{"item_id": 5, "content": "five"}\r\n', '{"item_id": "x",   "content": "\\u00e9"}\r\n']
    (tmp_path / "items.jsonl").write_bytes("".join(lines).encode())
    client.load_items(tmp_path / "items.jsonl", reject_file=tmp_path / "rejects.jsonl")
    assert (tmp_path / "rejects.jsonl").read_bytes() == lines[1].encode()


@pytest.mark.parametrize("name", ["items.jsonl.gz", "items.csv.gz"])
def test_garbage_or_truncated_gzip_is_an_error_and_writes_nothing(
    client: Client, conn: psycopg.Connection[Any], tmp_path: Path, rng: np.random.Generator, name: str
) -> None:
    path = tmp_path / name
    path.write_bytes(b"item_id,content\n1,one\n")  # not compressed
    with pytest.raises(InvalidInputError, match=rf"{name} is not a gzip file"):
        client.load_items(path)
    if name.startswith("items.csv"):
        text = "item_id,content\n" + "".join(f"{i},item number {i}\n" for i in range(1, 5001))
    else:
        text = "".join(
            json.dumps({"item_id": i, "content": f"item number {i}"}) + "\n" for i in range(1, 5001)
        )
    whole = gzip.compress(text.encode())
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InvalidInputError, match=r"truncated gzip stream at line (\d+)") as err:
        client.load_items(path, reject_file=tmp_path / "rejects.csv")
    line = int(err.value.args[0].split("at line ")[1].split()[0])
    assert 100 < line < 5000
    corrupt = bytearray(whole)
    corrupt[-8] ^= 0xFF  # its CRC
    path.write_bytes(bytes(corrupt))
    with pytest.raises(InvalidInputError, match="corrupt gzip stream at line"):
        client.load_items(path)
    assert counts(conn) == (0, 0, 0)
    assert not (tmp_path / "rejects.csv").exists()
    # A gzip file not named .gz says so; so does a gzipped Parquet file.
    (tmp_path / "zipped.jsonl").write_bytes(whole)
    with pytest.raises(InvalidInputError, match=r"zipped\.jsonl is gzip-compressed: name it with \.gz"):
        client.load_items(tmp_path / "zipped.jsonl")
    (tmp_path / "x.parquet.gz").write_bytes(whole)
    with pytest.raises(InvalidInputError, match="gzip-compressed Parquet file"):
        client.load_items(tmp_path / "x.parquet.gz")


def test_the_cli_says_what_is_wrong_with_a_gzip_file(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RERANKDB_DATABASE_URL", db_url)
    whole = gzip.compress(b"".join(b'{"user_id": 1, "item_id": %d}\n' % i for i in range(3000)))
    (tmp_path / "log.jsonl.gz").write_bytes(whole[:-100])
    assert main(["load", "interactions", str(tmp_path / "log.jsonl.gz")]) == 1
    err = capsys.readouterr().err
    assert "log.jsonl.gz: truncated gzip stream at line" in err and "Traceback" not in err


def test_reject_file_problems_are_found_before_anything_is_written(
    client: Client, conn: psycopg.Connection[Any], tmp_path: Path, rng: np.random.Generator
) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [*items(2, rng), {"item_id": "bad", "content": "x"}])
    with pytest.raises(InvalidInputError, match=r"cannot write the reject file .*: no such directory"):
        client.load_items(path, reject_file=tmp_path / "no" / "such" / "r.jsonl")
    (tmp_path / "adir").mkdir()
    with pytest.raises(InvalidInputError, match=r"cannot write the reject file .*: it is a directory"):
        client.load_items(path, reject_file=tmp_path / "adir")
    assert counts(conn) == (0, 0, 0)
    # A load that fails leaves an earlier reject file as it was; one that succeeds replaces it.
    old = tmp_path / "r.jsonl"
    old.write_text("earlier rejects\n")
    with pytest.raises(InvalidInputError, match="changed while it was being loaded"):
        client.load_items(path, reject_file=old, progress=lambda n: _append(path))
    assert old.read_text() == "earlier rejects\n"
    path = write_jsonl(tmp_path / "b.jsonl", [*items(2, rng), {"item_id": "bad", "content": "x"}])
    assert client.load_items(path, reject_file=old).rejected == 1
    assert json.loads(old.read_text()) == {"item_id": "bad", "content": "x"}
    # Through a symbolic link: the link's target is written, the link stays.
    link = tmp_path / "link.jsonl"
    link.symlink_to(tmp_path / "target.jsonl")
    assert client.load_items(path, reject_file=link).rejected == 1
    assert link.is_symlink() and json.loads((tmp_path / "target.jsonl").read_text())["item_id"] == "bad"
    # A device: written into (bad lines dropped on purpose).
    assert client.load_items(path, reject_file=Path(os.devnull)).rejected == 1
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def _append(path: Path) -> None:
    with path.open("a") as f:
        f.write('{"item_id": 99, "content": "written while loading"}\n')


def test_a_file_changed_while_loading_writes_nothing(
    client: Client, conn: psycopg.Connection[Any], tmp_path: Path, rng: np.random.Generator
) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", items(3, rng))
    with pytest.raises(
        InvalidInputError, match=r"a\.jsonl changed while it was being loaded; nothing was written"
    ):
        client.load_items(path, progress=lambda n: _append(path))
    log = write_jsonl(tmp_path / "log.jsonl", [{"user_id": 1, "item_id": 1}])
    with pytest.raises(InvalidInputError, match="changed while it was being loaded"):
        client.load_interactions(log, progress=lambda n: _append(log))
    assert counts(conn) == (0, 0, 0)
    assert conn.execute("select count(*) from rerankdb.interactions").fetchone() == (0,)


def test_directories_pipes_and_empty_files(
    client: Client, conn: psycopg.Connection[Any], tmp_path: Path, rng: np.random.Generator
) -> None:
    (tmp_path / "dir.jsonl").mkdir()
    with pytest.raises(InvalidInputError, match=r"dir\.jsonl is a directory; expected a file"):
        client.load_items(tmp_path / "dir.jsonl")
    # A pipe is read once: it loads, but cannot feed a reject file.
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    rows = "".join(json.dumps(r) + "\n" for r in items(3, rng))

    def feed() -> None:
        with fifo.open("w") as f:
            f.write(rows)

    t = threading.Thread(target=feed)
    t.start()
    try:
        assert client.load_items(fifo, format="jsonl").rows == 3
    finally:
        t.join()
    with pytest.raises(InvalidInputError, match="is a pipe or device that can be read once"):
        client.load_items(fifo, format="jsonl", reject_file=tmp_path / "r.jsonl")
    assert not (tmp_path / "r.jsonl").exists()
    # Empty files load nothing, and say so.
    for name, data in [
        ("e.jsonl", b""),
        ("e.csv", b""),
        ("h.csv", b"item_id,content\r\n"),
        ("e.jsonl.gz", gzip.compress(b"")),
    ]:
        (tmp_path / name).write_bytes(data)
        report = client.load_items(tmp_path / name)
        assert (report.rows, report.rejected, report.changed, report.queued) == (0, 0, 0, 0)
    assert counts(conn)[0] == 3


@pytest.mark.parametrize(
    ("memory", "why"),
    [("100", ""), ("1 gb", ""), ("lots", ""), ("1kB", "outside the valid range"), ("-1MB", "")],
)
def test_a_bad_build_memory_is_refused_before_anything_is_written(
    client: Client,
    conn: psycopg.Connection[Any],
    tmp_path: Path,
    rng: np.random.Generator,
    memory: str,
    why: str,
) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", items(2, rng))
    with pytest.raises(
        InvalidInputError, match=r"build memory must be a PostgreSQL size with its unit"
    ) as err:
        client.load_items(path, build_memory=memory, index="rebuild")
    assert why in str(err.value)
    assert counts(conn) == (0, 0, 0)
    assert client.load_items(path, build_memory=" 64MB", index="rebuild").index == "rebuilt"


def test_the_csv_fast_path_gives_what_the_record_path_gives() -> None:
    """load_rows.csv_interactions converts the usual CSV record straight from its cells; any
    other it leaves (None) to interaction_row, so both paths load the same rows and errors."""
    from rerankdb.load_rows import BadField, csv_interactions, interaction_row

    kinds = {"view", "like"}
    header = ["user_id", "item_id", "kind", "weight", "context", "occurred_at"]
    usual = [
        ["1", "2", "like", "2.5", "tea", "1767000000"],
        ["1", "2", "", "", "", ""],
        [" 3 ", "4", "view", "-1e6", "", "2026-01-02T03:04:05Z"],
        ["5", "6", "", "", "", "2026-01-02 03:04:05+02:00"],
        ["5", "6", "like", "", "", "1.2e9"],
    ]
    unusual = [
        ["1", "2", "like", "nan", "", ""],
        ["1", "2", "like", "1e7", "", ""],
        ["1", "x", "", "", "", ""],
        ["", "2", "", "", "", ""],
        ["1", "2", "teleport", "", "", ""],
        ["1", "2", " like", "", "", ""],
        ["99999999999999999999", "1", "", "", "", ""],
        ["1", "2", "like", "", "a\x00b", ""],
        ["1", "2", "", "", "", "yesterday"],
        ["1", "2", "", "", "", "1e300"],
    ]
    fast = csv_interactions(header, kinds)
    assert fast is not None
    for cells in usual + unusual:
        fields = {h: v for h, v in zip(header, cells, strict=True) if v != ""}
        try:
            want = interaction_row(fields, kinds)
        except BadField:
            want = None
        got = fast(cells)
        assert got == want if cells in usual else got is None, cells
        if cells in usual:
            assert want is not None, cells
    # A header with an unknown or a repeated column, or without a required one: records only.
    assert csv_interactions(["user_id", "item_id", "price"], kinds) is None
    assert csv_interactions(["user_id", "item_id", "item_id"], kinds) is None
    assert csv_interactions(["user_id", "kind"], kinds) is None
