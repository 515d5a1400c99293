"""stderr without the noise of orbax's and TensorStore's background threads: when a checkpoint
write or read fails (a full disk, a truncated tensor file), each of them logs or prints the same
error with a traceback, dozens in all, after the command has said what went wrong in one line."""
from __future__ import annotations

import logging
import re
import sys
import threading


class _DropCheckpointThreadNoise(logging.Filter):
    """orbax writes checkpoints in threads and asyncio tasks; when a write fails (a full disk),
    each of them logs the same error with a traceback, dozens in all. The trainer reports the
    failure itself in one line (train_lib.CheckpointSaveError), so these records are dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "asyncio" and record.levelno >= logging.ERROR:
            return False
        return not (record.levelno >= logging.ERROR and "orbax" in (record.pathname or ""))


# The lines of the "Event loop is closed" traceback that TensorStore's callback threads print.
_CLOSED_LOOP_LINE = re.compile(r'^(  File ".*/asyncio/base_events\.py", line \d+, in (call_soon_threadsafe|_check_closed)'
                               r"|    self\._check_closed\(\)|    raise RuntimeError\('Event loop is closed'\)"
                               r"|RuntimeError: Event loop is closed)\s*$")


class _DropClosedLoopTracebacks:
    """sys.stderr without the "RuntimeError: Event loop is closed" tracebacks that TensorStore's
    callbacks print (from C++ threads, so no hook sees them) once orbax has closed the event loop
    of a failed write. Every other line, tracebacks included, passes through unchanged."""

    def __init__(self, stream):
        self._stream, self._partial, self._block, self._after_noise = stream, "", None, False

    def write(self, text: str) -> int:
        # A line ends at "\n"; a progress bar's redraw ends at "\r" and must show at once (a
        # terminal), so it passes through unless a traceback is being held.
        self._partial += text
        *pieces, self._partial = re.split(r"(?<=[\r\n])", self._partial)
        for piece in pieces:
            if piece.endswith("\n"):
                self._line(piece)
            elif self._block is None:
                self._stream.write(piece)
                self._stream.flush()
            else:
                self._block.append(piece)
        return len(text)

    def _line(self, line: str) -> None:
        if _CLOSED_LOOP_LINE.match(line) or (self._after_noise and not line.strip()):
            # Several threads print the same traceback at once, interleaved line by line: their
            # lines are dropped wherever they stand (and a blank line right after them).
            self._after_noise = True
            return
        self._after_noise = False
        if self._block is None and line.startswith("Traceback (most recent call last):"):
            self._block = [line]
            return
        if self._block is None:
            self._stream.write(line)
            return
        self._block.append(line)
        if not line[:1].isspace() and not line.startswith(("Traceback", "During handling", "The above exception")):
            block, self._block = self._block, None  # the exception line ends the traceback
            if all(b.startswith("Traceback (most recent call last):") for b in block[:-1]):
                block = block[-1:]  # a noise traceback's header whose lines were all dropped
            if line.strip() != "RuntimeError: Event loop is closed":
                self._stream.write("".join(block))

    def __getattr__(self, name):  # flush, fileno, isatty, encoding, ...
        return getattr(self._stream, name)


def quiet_storage_threads() -> None:
    """Installed by the dispatcher for every command (a corrupt or unwritable checkpoint is one
    line in train, eval, infer, score and export alike); installing it twice changes nothing."""
    if isinstance(sys.stderr, _DropClosedLoopTracebacks):
        return
    try:  # absl's logger class first: its records then name the orbax frame that logged, not absl's
        import absl.logging  # noqa: F401
    except ImportError:
        pass
    sys.stderr = _DropClosedLoopTracebacks(sys.stderr)
    noise = _DropCheckpointThreadNoise()
    for name in ("asyncio", "absl", ""):
        logging.getLogger(name).addFilter(noise)
    default_hook = threading.excepthook

    def hook(args):  # orbax's helper threads, after their event loop closed on a failed write
        if isinstance(args.exc_value, RuntimeError) and "Event loop is closed" in str(args.exc_value):
            return
        default_hook(args)

    threading.excepthook = hook
    default_unraisable = sys.unraisablehook

    def unraisable(report):  # orbax's read coroutines, collected after a corrupt step failed to read
        text = str(report.exc_value)
        if "Event loop is closed" in text or "Encountered error while reading array index" in text:
            return
        default_unraisable(report)

    sys.unraisablehook = unraisable

