"""Records from a file, streamed: JSON Lines, CSV, or Parquet (with pyarrow).

Each record comes with the line it starts on (Parquet: its row number, from
1), so that an error can name it, and each file can be read a second time for
just the lines a load refused (:func:`copy_lines`, the reject file: JSON Lines
and CSV records copied byte for byte).  Memory stays bounded: one line, or one
Parquet batch, at a time.  A file that cannot be read to its end (a truncated
or corrupt gzip stream, bytes that are not UTF-8) is an error naming the line.

Values are as the file holds them (CSV: strings, an empty cell is missing);
turning them into typed columns is the loader's job (:mod:`rerankdb.load`).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import secrets
import stat
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from rerankdb.errors import InvalidInputError

FORMATS = ("jsonl", "csv", "parquet")
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet"}
PARQUET_BATCH = 8192


@dataclass(frozen=True)
class Record:
    """One record: its line, and its fields (None when the line is not a record at all)."""

    line: int
    fields: dict[str, Any] | None
    error: str | None = None  # why fields is None


def detect_format(path: Path, given: str | None = None) -> str:
    """``given``, else the format the file name says (``.jsonl``, ``.csv``, ``.parquet``, each maybe ``.gz``)."""
    if given is not None:
        if given not in FORMATS:
            raise InvalidInputError(f"format must be one of {', '.join(FORMATS)}, got {given!r}")
        return given
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    fmt = _SUFFIXES.get(suffixes[-1] if suffixes else "")
    if fmt is None:
        raise InvalidInputError(
            f"cannot tell the format of {path.name}: name it .jsonl, .csv or .parquet "
            "(optionally .gz), or say it (--format jsonl|csv|parquet)"
        )
    return fmt


def _open_text(path: Path) -> IO[str]:
    if path.suffix.lower() == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return path.open(encoding="utf-8-sig", newline="")  # -sig: a byte order mark is not a field name


def check_input(path: Path) -> os.stat_result:
    """The file's state before it is read; an error if it is not something to read records from.

    A regular file, or a pipe (``<(zcat items.jsonl.gz)``: read once, so no
    reject file).
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InvalidInputError(f"no such file: {path}") from None
    except OSError as exc:
        raise InvalidInputError(f"cannot read {path}: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise InvalidInputError(f"{path} is a directory; expected a file of records")
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode)):
        raise InvalidInputError(f"{path} is not a regular file; expected a file of records")
    if not os.access(path, os.R_OK):
        raise InvalidInputError(f"cannot read {path}: permission denied")
    return st


def unchanged(path: Path, before: os.stat_result) -> bool:
    """Whether a regular file is as it was (same file, size and modification time)."""
    if not stat.S_ISREG(before.st_mode):
        return True
    try:
        now = path.stat()
    except OSError:
        return False
    same = ("st_dev", "st_ino", "st_size", "st_mtime_ns")
    return all(getattr(now, a) == getattr(before, a) for a in same)


def _gzipped(path: Path) -> bool:
    """Whether a regular file not named .gz starts as gzip does (for a clearer error)."""
    try:
        if path.suffix.lower() == ".gz" or not stat.S_ISREG(path.stat().st_mode):
            return False  # a pipe cannot be read again
        with path.open("rb") as f:
            return f.read(2) == b"\x1f\x8b"
    except OSError:
        return False


def _text_lines(path: Path) -> Iterator[str]:
    """The file's lines as they are (line ends kept); a read error names the line it stopped at."""
    n = 0
    try:
        with _open_text(path) as f:
            for text in f:
                yield text
                n += 1  # lines read whole: an error stops at line n + 1
    except gzip.BadGzipFile as exc:
        if n == 0 and "Not a gzipped file" in str(exc):
            raise InvalidInputError(
                f"{path} is not a gzip file (its name ends in .gz): compress it, or name it without .gz"
            ) from None
        raise InvalidInputError(f"{path}: corrupt gzip stream at line {n + 1} ({exc})") from None
    except EOFError:
        raise InvalidInputError(
            f"{path}: truncated gzip stream at line {n + 1} (the file ends before its compressed "
            "data does: was it copied completely?)"
        ) from None
    except zlib.error as exc:
        raise InvalidInputError(f"{path}: corrupt gzip stream at line {n + 1} ({exc})") from None
    except UnicodeDecodeError as exc:
        if n == 0 and _gzipped(path):
            raise InvalidInputError(f"{path} is gzip-compressed: name it with .gz at the end") from None
        raise InvalidInputError(f"{path} is not UTF-8 text: line {n + 1}: {exc}") from None


def read_records(path: Path, fmt: str) -> Iterator[Record]:
    """Every record of the file, in order."""
    check_input(path)
    if fmt == "jsonl":
        yield from _jsonl(path)
    elif fmt == "csv":
        yield from _csv(path)
    else:
        yield from _parquet(path)


def _jsonl(path: Path) -> Iterator[Record]:
    for n, text in enumerate(_text_lines(path), start=1):
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except ValueError as exc:
            yield Record(n, None, f"not JSON ({exc})")
            continue
        if isinstance(value, dict):
            yield Record(n, value)
        else:
            yield Record(n, None, f"expected a JSON object, got {type(value).__name__}")


def _csv_rows(path: Path) -> Iterator[tuple[int, list[str] | None, str, str]]:
    """Each CSV record, the header first: (its first line, its fields or None, why None,
    its text exactly as in the file, line ends included)."""
    csv.field_size_limit(2**31 - 1)  # a long text or a wide embedding is one field, not an error
    raw: list[str] = []

    def lines() -> Iterator[str]:
        for text in _text_lines(path):
            raw.append(text)  # the reader takes lines one by one, as many as a record needs
            yield text

    reader = csv.reader(lines(), strict=True)
    start = 1
    while True:
        row: list[str] | None
        error = ""
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            row, error = None, f"not CSV ({exc})"
        text = "".join(raw)
        raw.clear()
        line, start = start, reader.line_num + 1
        yield line, row, error, text


def csv_table(path: Path) -> Iterator[tuple[int, list[str] | None, str]]:
    """A CSV file as its header and records: first (1, the header's names, stripped, ""),
    then each record as (its first line, its cells, ""), or (line, None, why) for a line
    that is not a record of that header; blank lines are skipped.  Nothing for an empty file."""
    check_input(path)
    rows = _csv_rows(path)
    first = next(rows, None)
    if first is None:
        return
    header = [h.strip() for h in first[1] or []]
    yield 1, header, ""
    for line, row, error, _ in rows:
        if row is None:
            yield line, None, error
        elif not row:
            continue
        elif len(row) != len(header):
            yield line, None, f"expected {len(header)} fields (the header's), got {len(row)}"
        else:
            yield line, row, ""


def csv_fields(header: list[str], cells: list[str]) -> dict[str, str]:
    """A CSV record's fields by name; an empty cell is a missing value."""
    return {h: v for h, v in zip(header, cells, strict=True) if v != ""}


def _csv(path: Path) -> Iterator[Record]:
    table = csv_table(path)
    first = next(table, None)
    if first is None:
        return
    header = first[1] or []
    for line, row, error in table:
        if row is None:
            yield Record(line, None, error)
        else:
            yield Record(line, csv_fields(header, row))


def _pyarrow() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InvalidInputError(
            "reading Parquet needs pyarrow: pip install 'rerankdb[parquet]' (or pyarrow)"
        ) from None
    return pq


def _list_column(col: Any) -> list[np.ndarray | None] | None:
    """A list-of-numbers column as one float64 array per row (no Python floats), else None."""
    import pyarrow as pa

    t = col.type
    if not (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)):
        return None
    if not (pa.types.is_floating(t.value_type) or pa.types.is_integer(t.value_type)):
        return None
    valid = col.is_valid().to_numpy(zero_copy_only=False)
    if pa.types.is_fixed_size_list(t):
        values = col.flatten().to_numpy(zero_copy_only=False).astype(np.float64)
        size = t.list_size
        return [values[i * size : (i + 1) * size] if valid[i] else None for i in range(len(col))]
    offsets = col.offsets.to_numpy()
    values = col.values.to_numpy(zero_copy_only=False).astype(np.float64)
    return [values[offsets[i] : offsets[i + 1]] if valid[i] else None for i in range(len(col))]


def _parquet(path: Path) -> Iterator[Record]:
    if path.suffix.lower() == ".gz":
        raise InvalidInputError(
            f"{path}: a gzip-compressed Parquet file cannot be read as it is: gunzip it first "
            "(Parquet compresses its columns itself)"
        )
    pq = _pyarrow()
    try:
        f = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises its own ArrowInvalid and OSError
        raise InvalidInputError(f"{path} is not a Parquet file: {exc}") from None
    n = 0
    for batch in f.iter_batches(batch_size=PARQUET_BATCH):
        columns: dict[str, list[Any]] = {}
        for name, col in zip(batch.schema.names, batch.columns, strict=True):
            fast = _list_column(col)
            columns[name] = fast if fast is not None else col.to_pylist()
        for i in range(batch.num_rows):
            n += 1
            yield Record(n, {k: v[i] for k, v in columns.items() if v[i] is not None})


def copy_lines(path: Path, fmt: str, lines: set[int], out: IO[str]) -> int:
    """Write the records on ``lines`` to ``out`` in the file's own format: JSON Lines and
    CSV (after the header) as the file has them, byte for byte; Parquet rows as JSON
    Lines.  Return how many.  For a reject file (``out`` opened with ``newline=""``)."""
    if not lines:
        return 0
    written = 0
    if fmt == "jsonl":
        for n, text in enumerate(_text_lines(path), start=1):
            if n in lines:
                out.write(text if text.endswith(("\n", "\r")) else text + "\n")
                written += 1
        return written
    if fmt == "csv":
        for i, (line, _, _, text) in enumerate(_csv_rows(path)):
            if i == 0 or line in lines:
                out.write(text)
                written += i > 0
        return written
    for rec in _parquet(path):
        if rec.line in lines and rec.fields is not None:
            plain = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in rec.fields.items()}
            out.write(json.dumps(plain, default=str) + "\n")
            written += 1
    return written


# -- the reject file ----------------------------------------------------------


class RejectFile:
    """The reject file: checked before anything is read or written, filled in a
    temporary file beside it before the load commits, put in place (renamed) once it
    has.  A load that fails leaves an existing reject file as it was."""

    def __init__(self, given: Path, target: Path, direct: bool) -> None:
        self.given = given  # as the caller named it
        self.target = target  # symbolic links followed
        self.direct = direct  # a device or pipe (/dev/null): written into, not replaced
        self.temp: Path | None = None

    @classmethod
    def prepare(cls, path: Path, input_stat: os.stat_result, given: Path | None) -> RejectFile | None:
        if given is None:
            return None

        def refuse(why: str) -> InvalidInputError:
            return InvalidInputError(f"cannot write the reject file {given}: {why}; nothing was written")

        # The same file by any name (a hard or symbolic link, another path): writing
        # it would destroy the input.  Compared by device and inode, not by name.
        try:
            existing: os.stat_result | None = given.stat()
        except FileNotFoundError:
            existing = None  # nothing there yet (or a dangling link: writing creates its target)
        except OSError as exc:
            raise refuse(exc.strerror or str(exc)) from None
        if existing is not None and (existing.st_dev, existing.st_ino) == (
            input_stat.st_dev,
            input_stat.st_ino,
        ):
            raise InvalidInputError(
                f"the reject file must not be the file being loaded ({given} is {path}); nothing was written"
            )
        if not stat.S_ISREG(input_stat.st_mode):
            raise InvalidInputError(
                f"a reject file needs {path} read a second time (for the bad lines), and it is a pipe "
                "or device that can be read once: save it to a file first, or load without --reject-file"
            )
        target = Path(os.path.realpath(given))
        if existing is not None and stat.S_ISDIR(existing.st_mode):
            raise refuse("it is a directory")
        if existing is not None and not stat.S_ISREG(existing.st_mode):
            if not os.access(target, os.W_OK):
                raise refuse("permission denied")
            return cls(given, target, direct=True)
        if existing is not None and not os.access(target, os.W_OK):
            raise refuse("permission denied")
        if not target.parent.is_dir():
            raise refuse(f"no such directory: {target.parent}")
        out = cls(given, target, direct=False)
        temp = target.parent / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:  # proves the directory writable; the umask sets its mode, as for any new file
            os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except OSError as exc:
            raise refuse(exc.strerror or str(exc)) from None
        out.temp = temp
        if existing is not None:
            os.chmod(temp, stat.S_IMODE(existing.st_mode))
        return out

    def write(self, path: Path, fmt: str, lines: set[int]) -> None:
        """Copy the records on ``lines`` of ``path`` (before the load commits: a failure
        here writes nothing)."""
        try:
            with (self.target if self.direct else self.temp or self.target).open(
                "w", encoding="utf-8", newline=""
            ) as out:
                copy_lines(path, fmt, lines, out)
        except OSError as exc:
            raise InvalidInputError(
                f"cannot write the reject file {self.given}: {exc.strerror or exc}; nothing was written"
            ) from None

    def put_in_place(self) -> None:
        if self.temp is not None:
            os.replace(self.temp, self.target)
            self.temp = None

    def discard(self) -> None:
        if self.temp is not None:
            self.temp.unlink(missing_ok=True)
            self.temp = None


def check_unchanged(path: Path, before: os.stat_result) -> None:
    """The file read twice (records, then the reject file's lines) must be one file."""
    if not unchanged(path, before):
        raise InvalidInputError(
            f"{path} changed while it was being loaded; nothing was written: load it again once "
            "it is complete"
        )
