"""Progress bars that update in a terminal and in a log file.

tqdm redraws its line with carriage returns and moves the cursor for nested bars. In a terminal
that is what a user wants; in a log file (`recjax train ... 2> train.log`) it leaves one endless
line of redraws and escape codes that `tail -f` shows only when the run ends. `bar` keeps tqdm in a
terminal and, on any other stream, writes one plain line per update (at most one every
`RECJAX_PROGRESS_SECONDS`, default 30), with no carriage return or cursor escape.
"""
from __future__ import annotations

import os
import re
import sys
from typing import Any, Iterable, Optional, TextIO

from tqdm import tqdm

LOG_INTERVAL_SECONDS = 30.0
_ESCAPES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def log_interval() -> float:
    value = os.environ.get("RECJAX_PROGRESS_SECONDS")
    try:
        return float(value) if value else LOG_INTERVAL_SECONDS
    except ValueError:
        return LOG_INTERVAL_SECONDS


class LogLines:
    """A text stream for tqdm that turns each redraw into one line: carriage returns and cursor
    escapes dropped, blank redraws (a bar clearing itself) skipped, flushed at once."""

    def __init__(self, stream: TextIO):
        self._stream = stream

    def write(self, text: str) -> int:
        line = _ESCAPES.sub("", text).replace("\r", "").strip()
        if line:
            self._stream.write(line + "\n")
            self._stream.flush()
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return False


def bar(iterable: Optional[Iterable] = None, *, total: Optional[int] = None, desc: str = "", unit: str = "it",
        initial: int = 0, leave: bool = True, disable: bool = False, file: Optional[TextIO] = None,
        **kwargs: Any) -> tqdm:
    """A tqdm bar on `file` (default: sys.stderr as it is now): redrawn in place in a terminal,
    one line per update (at most every `log_interval()` seconds) elsewhere."""
    stream = file if file is not None else sys.stderr
    if _isatty(stream):
        try:  # a terminal that reports no size (a bare pty) gets a fixed width, not an empty bar
            sized = os.get_terminal_size(stream.fileno()).columns > 0
        except (AttributeError, OSError, ValueError):
            sized = False
        width = {"dynamic_ncols": True} if sized else {"ncols": 100}
        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, leave=leave, disable=disable,
                    file=stream, **width, **kwargs)
    interval = log_interval()
    return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, leave=leave, disable=disable,
                file=LogLines(stream), ncols=100, ascii=True, mininterval=interval, maxinterval=max(interval, 1.0),
                **kwargs)
