"""Records from a file, streamed: JSON Lines, CSV, or Parquet (with pyarrow).

Each record comes with the line it starts on (Parquet: its row number, from
1), so that an error can name it, and each file can be read a second time for
just the lines a load refused (:func:`copy_lines`, the reject file).  Memory
stays bounded: one line, or one Parquet batch, at a time.

Values are as the file holds them (CSV: strings, an empty cell is missing);
turning them into typed columns is the loader's job (:mod:`rerankdb.load`).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
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


def read_records(path: Path, fmt: str) -> Iterator[Record]:
    """Every record of the file, in order."""
    if not path.is_file():
        raise InvalidInputError(f"no such file: {path}")
    if fmt == "jsonl":
        yield from _jsonl(path)
    elif fmt == "csv":
        yield from _csv(path)
    else:
        yield from _parquet(path)


def _jsonl(path: Path) -> Iterator[Record]:
    with _open_text(path) as f:
        try:
            for n, text in enumerate(f, start=1):
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
        except UnicodeDecodeError as exc:
            raise InvalidInputError(f"{path} is not UTF-8 text: {exc}") from None


def _csv(path: Path) -> Iterator[Record]:
    csv.field_size_limit(2**31 - 1)  # a long text or a wide embedding is one field, not an error
    with _open_text(path) as f:
        reader = csv.reader(f, strict=True)
        try:
            header = next(reader, None)
            if header is None:
                return
            header = [h.strip() for h in header]
            start = reader.line_num + 1
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    yield Record(start, None, f"not CSV ({exc})")
                    start = reader.line_num + 1
                    continue
                line, start = start, reader.line_num + 1
                if not row:
                    continue
                if len(row) != len(header):
                    yield Record(line, None, f"expected {len(header)} fields (the header's), got {len(row)}")
                    continue
                yield Record(line, {h: v for h, v in zip(header, row, strict=True) if v != ""})
        except UnicodeDecodeError as exc:
            raise InvalidInputError(f"{path} is not UTF-8 text: {exc}") from None


def csv_header(path: Path) -> list[str]:
    with _open_text(path) as f:
        return next(csv.reader(f), [])


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
    """Write the records on ``lines`` to ``out`` in the file's own format
    (Parquet: as JSON Lines); return how many.  For a reject file."""
    if not lines:
        return 0
    written = 0
    if fmt == "jsonl":
        with _open_text(path) as f:
            for n, text in enumerate(f, start=1):
                if n in lines:
                    out.write(text if text.endswith("\n") else text + "\n")
                    written += 1
        return written
    if fmt == "csv":
        writer = csv.writer(out)
        with _open_text(path) as f:
            reader = csv.reader(f)
            header = next(reader, [])
            writer.writerow(header)
            start = reader.line_num + 1
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    return written
                except csv.Error:
                    row = ["?"]  # unreadable as CSV: its line number stands in the error list
                line, start = start, reader.line_num + 1
                if line in lines:
                    writer.writerow(row)
                    written += 1
    for rec in _parquet(path):
        if rec.line in lines and rec.fields is not None:
            plain = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in rec.fields.items()}
            out.write(json.dumps(plain, default=str) + "\n")
            written += 1
    return written
