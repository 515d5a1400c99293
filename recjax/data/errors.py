"""Errors raised on bad input: one line naming the file, the line and what was expected."""
from __future__ import annotations


class DataError(ValueError):
    """Raw input does not have the expected form. str(e) is a complete one-line message."""


def at(path, line: int | None, message: str) -> DataError:
    """DataError "path:line: message" (or "path: message" when the line is unknown)."""
    where = f"{path}:{line}" if line is not None else f"{path}"
    return DataError(f"{where}: {message}")


def preview(text, limit: int = 60) -> str:
    """A short repr of offending text for error messages."""
    text = text if isinstance(text, str) else repr(text)
    return repr(text if len(text) <= limit else text[:limit] + "...")


class NotPreparedError(ValueError):
    """`directory` is not (or not a complete) prepared dataset."""
