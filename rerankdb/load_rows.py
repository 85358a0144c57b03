"""One record of a load file, checked and typed (:mod:`rerankdb.load`).

The checks a single write makes (types, dimensions, finite numbers, known
kinds), made in Python before a row is COPYed, so that an error names its
line and field.  A record's nulls are missing values.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import numpy as np

INT8_MIN, INT8_MAX = -(2**63), 2**63 - 1
MAX_WEIGHT = 1e6  # as rerankdb.interaction_problem checks
ITEM_FIELDS = ("item_id", "content", "metadata", "embedding")
INTERACTION_FIELDS = ("user_id", "item_id", "kind", "weight", "context", "occurred_at")


class BadField(Exception):
    """A field of a record that rerankdb cannot take; the line is refused."""

    def __init__(self, field: str | None, message: str) -> None:
        self.field = field
        self.message = message


def _int8(raw: Any, name: str) -> int:
    if type(raw) is str:  # the usual case (CSV), first: int() takes the surrounding spaces
        try:
            value = int(raw)
        except ValueError:
            raise BadField(name, f"expected an integer, got {raw!r}") from None
        if not INT8_MIN <= value <= INT8_MAX:
            raise BadField(name, f"{value} does not fit a bigint")
        return value
    if isinstance(raw, str):
        try:
            raw = int(raw.strip())
        except ValueError:
            raise BadField(name, f"expected an integer, got {raw!r}") from None
    if isinstance(raw, bool) or not isinstance(raw, (int, np.integer)):
        raise BadField(name, f"expected an integer, got {raw!r}")
    if not INT8_MIN <= int(raw) <= INT8_MAX:
        raise BadField(name, f"{raw} does not fit a bigint")
    return int(raw)


def _text(raw: Any, name: str) -> str:
    if not isinstance(raw, str):
        raise BadField(name, f"expected a string, got {raw!r}")
    if "\x00" in raw:
        raise BadField(name, "contains a NUL character, which PostgreSQL text cannot hold")
    return raw


def _metadata(raw: Any) -> dict[str, Any]:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise BadField("metadata", f"expected a JSON object, got {raw[:60]!r}") from None
    if not isinstance(raw, dict):
        raise BadField("metadata", f"expected a JSON object, got {raw!r}")
    try:
        json.dumps(raw, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise BadField("metadata", f"not JSON: {exc}") from None
    return raw


def _embedding(raw: Any, dim: int) -> np.ndarray:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise BadField("embedding", f"expected a list of {dim} numbers like [0.1, -0.2, ...]") from None
    if isinstance(raw, (str, bytes, dict)) or not hasattr(raw, "__len__"):
        raise BadField("embedding", f"expected a list of {dim} numbers, got {type(raw).__name__}")
    try:
        arr = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise BadField("embedding", f"expected a list of {dim} numbers, got non-numbers") from None
    if arr.ndim != 1 or arr.shape[0] != dim:
        got = arr.shape[0] if arr.ndim == 1 else f"shape {arr.shape}"
        raise BadField("embedding", f"expected {dim} numbers (the installed dimension), got {got}")
    if not np.isfinite(arr).all():
        raise BadField("embedding", "must be finite (no NaN or infinity)")
    if np.abs(arr).max() > np.finfo(np.float32).max:
        raise BadField("embedding", "has values beyond float32 range")
    out = arr.astype(np.float32)
    if not out.any():
        raise BadField("embedding", "is a zero vector (or rounds to one in float32): it has no direction")
    return out


def _weight(raw: Any) -> float:
    if isinstance(raw, str):
        try:
            raw = float(raw)
        except ValueError:
            raise BadField("weight", f"expected a number, got {raw!r}") from None
    if isinstance(raw, bool) or not isinstance(raw, (int, float, np.number)):
        raise BadField("weight", f"expected a number, got {raw!r}")
    value = float(raw)
    if not math.isfinite(value) or abs(value) > MAX_WEIGHT:
        raise BadField("weight", f"must be between -1e6 and 1e6, got {raw!r}")
    return value


def _time(raw: Any) -> datetime:
    """ISO 8601 (no offset: UTC), or seconds since the epoch."""
    if isinstance(raw, datetime):
        return raw if raw.tzinfo else raw.replace(tzinfo=timezone.utc)
    if isinstance(raw, str):
        text = raw.strip()
        if text[4:5] == "-":  # 2026-01-31...: ISO 8601 first, without a failed float() per row
            try:
                t = datetime.fromisoformat(text)
                return t if t.tzinfo else t.replace(tzinfo=timezone.utc)
            except ValueError:
                pass
        try:
            raw = float(text)
        except ValueError:
            try:
                t = datetime.fromisoformat(text)
            except ValueError:
                raise BadField(
                    "occurred_at",
                    f"expected an ISO 8601 time (2026-01-31T12:00:00Z) or seconds since the epoch, got {text!r}",
                ) from None
            return t if t.tzinfo else t.replace(tzinfo=timezone.utc)
    if isinstance(raw, bool) or not isinstance(raw, (int, float, np.number)):
        raise BadField("occurred_at", f"expected a time, got {raw!r}")
    try:
        return datetime.fromtimestamp(float(raw), tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise BadField(
            "occurred_at",
            f"{raw!r} seconds since the epoch is beyond the calendar (milliseconds? divide by 1000)",
        ) from None


_AS_SET: dict[tuple[str, ...], frozenset[str]] = {
    names: frozenset(names)
    for names in (ITEM_FIELDS, INTERACTION_FIELDS, ("item_id", "content"), ("user_id", "item_id"))
}


def _fields(record: dict[str, Any], allowed: tuple[str, ...], required: tuple[str, ...]) -> dict[str, Any]:
    """The record without its nulls (a null is a missing value), once its fields are known."""
    keys = record.keys()
    if keys <= _AS_SET[allowed] and keys >= _AS_SET[required] and not any(v is None for v in record.values()):
        return record  # nothing to drop, nothing unknown or missing
    record = {k: v for k, v in record.items() if v is not None}
    unknown = sorted(set(record) - set(allowed))
    if unknown:
        raise BadField(unknown[0], f"unknown field; expected {', '.join(allowed)}")
    for name in required:
        if name not in record:
            raise BadField(name, "missing (required)")
    return record


def item_row(record: dict[str, Any], dim: int) -> tuple[Any, ...]:
    """(item_id, content, metadata, embedding) from a record, or BadField."""
    record = _fields(record, ITEM_FIELDS, ("item_id", "content"))
    return (
        _int8(record["item_id"], "item_id"),
        _text(record["content"], "content"),
        _metadata(record["metadata"]) if "metadata" in record else None,
        _embedding(record["embedding"], dim) if "embedding" in record else None,
    )


def interaction_row(record: dict[str, Any], kinds: set[str]) -> tuple[Any, ...]:
    """(user_id, item_id, kind, weight, context, occurred_at) from a record, or BadField."""
    record = _fields(record, INTERACTION_FIELDS, ("user_id", "item_id"))
    kind = _text(record.get("kind", "view"), "kind")
    if kind not in kinds:
        raise BadField("kind", f"unknown kind {kind!r}; known: {', '.join(sorted(kinds))}")
    return (
        _int8(record["user_id"], "user_id"),
        _int8(record["item_id"], "item_id"),
        kind,
        _weight(record["weight"]) if "weight" in record else None,
        _text(record["context"], "context") if "context" in record else None,
        _time(record["occurred_at"]) if "occurred_at" in record else None,
    )


def csv_interactions(
    header: list[str], kinds: set[str]
) -> Callable[[list[str]], tuple[Any, ...] | None] | None:
    """For CSV records under ``header``: :func:`interaction_row`'s tuple straight from the
    cells, without a dict per record, for the usual record (cells that are plain numbers, a
    known kind, ...); None for any other, which the caller then checks as a record (and so
    gets the same tuple, or the error that names the field).  None for an unusual header."""
    names = set(header)
    if len(names) != len(header) or not names <= _AS_SET[INTERACTION_FIELDS] or "user_id" not in names:
        return None
    if "item_id" not in names:
        return None
    at = {name: i for i, name in enumerate(header)}
    iu, ii = at["user_id"], at["item_id"]
    ik, iw, ic, it = (at.get(n) for n in ("kind", "weight", "context", "occurred_at"))

    def convert(cells: list[str]) -> tuple[Any, ...] | None:
        try:
            user, item = int(cells[iu]), int(cells[ii])
            kind = cells[ik] or "view" if ik is not None else "view"
            weight = float(cells[iw]) if iw is not None and cells[iw] else None
            when = _time(cells[it]) if it is not None and cells[it] else None
        except (ValueError, BadField):
            return None
        context = cells[ic] or None if ic is not None else None
        if not (INT8_MIN <= user <= INT8_MAX and INT8_MIN <= item <= INT8_MAX) or kind not in kinds:
            return None
        if "\x00" in kind or (context is not None and "\x00" in context):
            return None
        if weight is not None and not (math.isfinite(weight) and abs(weight) <= MAX_WEIGHT):
            return None
        return (user, item, kind, weight, context, when)

    return convert
