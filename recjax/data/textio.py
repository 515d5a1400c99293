"""Line-by-line reading of raw text files (plain or gzip) with errors that name file and line.

Lines are decoded one at a time so a bad byte is reported with its line number, and a truncated
gzip stream is reported with the last line read instead of a bare EOFError.
"""
from __future__ import annotations

import gzip
import json
import os
import zlib
from typing import Iterator

from recjax.data.errors import DataError, at, preview


def require_file(path: str, what: str) -> str:
    if not os.path.isfile(path):
        raise DataError(f"{path}: missing required file ({what})")
    return path


def iter_lines(path: str, encoding: str = "utf-8", skip_blank: bool = True, open_binary=None) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, line without the line ending) of a text or .gz file.

    `open_binary`: a callable returning a binary stream, for files inside archives (`path` then only
    names the file in messages). Raises DataError for an empty file, a byte that is not `encoding`,
    a corrupt or truncated gzip.
    """
    if open_binary is None:
        open_binary = (lambda: gzip.open(path, "rb")) if path.endswith(".gz") else (lambda: open(path, "rb"))
    lineno = 0
    seen_content = False
    try:
        with open_binary() as f:
            for lineno, raw in enumerate(f, start=1):
                try:
                    line = raw.decode(encoding)
                except UnicodeDecodeError as e:
                    raise at(path, lineno, f"byte 0x{raw[e.start]:02x} at column {e.start + 1} is not valid {encoding.upper()} (expected {encoding} text)") from None
                line = line.rstrip("\r\n")
                if skip_blank and not line.strip():
                    continue
                seen_content = True
                yield lineno, line
    except EOFError:
        raise at(path, lineno + 1, f"truncated gzip file: stream ends inside line {lineno + 1} (re-download or re-compress it)") from None
    except (gzip.BadGzipFile, zlib.error) as e:
        raise at(path, lineno + 1, f"corrupt gzip data ({e}); expected a gzip-compressed text file") from None
    if not seen_content:
        raise DataError(f"{path}: empty file (expected at least one record)")


def json_object(path: str, lineno: int | None, line: str) -> dict:
    """One line of a JSON-lines file as a dict, or DataError "path:line: expected a JSON object..."."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise at(path, lineno, f"expected a JSON object per line, got {preview(line)} ({e.msg} at column {e.colno})") from None
    if not isinstance(record, dict):
        raise at(path, lineno, f"expected a JSON object per line, got {preview(line)}")
    return record
