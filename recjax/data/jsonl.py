"""JSONL in and out for the serving commands (`infer`, `score`): every input line stands alone.

A line that is not UTF-8, too long or not a JSON object becomes that line's error record; the
other lines are still answered. Outputs are written whole or not at all (`atomic_write`).
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any, Optional

from recjax.data.atomic import atomic_write

MAX_LINE_BYTES = 1 << 20  # 1 MiB: far above any real request, far below what exhausts memory


class LineError(ValueError):
    """Why one input line cannot be answered (one line of text, no line number); `user` is the
    line's "user" field when it could be read, echoed in the error record."""

    def __init__(self, reason: str, user: Any = None):
        super().__init__(reason)
        self.user = user


def read_lines(path: str, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[tuple[int, Optional[str], Optional[str]]]:
    """(line number, text, None) for each non-blank line of `path`, or (line number, None, reason)
    for a line that is not UTF-8 or longer than `max_line_bytes`. Line numbers count blank lines."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if len(raw) > max_line_bytes:
                yield number, None, f"line is {len(raw):,} bytes, more than the {max_line_bytes:,} one line may hold"
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield number, None, f"not UTF-8 text (byte 0x{raw[e.start]:02x} at column {e.start + 1})"
                continue
            if text.strip():
                yield number, text, None


def parse_object(text: str, expected: str) -> dict:
    """One line's JSON object; LineError naming the column of malformed JSON (1-based, in the line)
    or what was `expected` instead of a non-object."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise LineError(f"not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(obj, dict):
        raise LineError(f"expected a JSON object with {expected}, got {type(obj).__name__}")
    return obj


def error_record(line: int, error: LineError | str) -> dict:
    record: dict[str, Any] = {"line": line}
    user = getattr(error, "user", None)
    if user is not None:
        record["user"] = user
    record["error"] = str(error)
    return record


def write_jsonl(path: str, records: Iterable[dict]) -> None:
    """One JSON object per line, written atomically (the old file or the whole new one)."""
    atomic_write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
