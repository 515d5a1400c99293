"""Exit codes and the one-line error report shared by every `recjax` command.

USAGE (2): the command refused its input before doing its work - bad flags (argparse's own code),
  a missing or invalid input file, a directory that is not a checkpoint, a configuration error.
FAILED (1): the work started and failed (a non-finite loss).
INTERRUPTED (130): stopped by Ctrl-C (128 + SIGINT, as shells report it).
PREEMPTED (143): `train` stopped by SIGTERM after saving its step (128 + SIGTERM); rerun to resume.
Result lines go to stdout, diagnostics and errors to stderr.
"""
from __future__ import annotations

import os
import signal
import sys
import threading

USAGE, FAILED, INTERRUPTED, PREEMPTED = 2, 1, 130, 143
_command: str | None = None  # the running `recjax <command>` (set by `run`): errors name it


def error_line(message: str) -> str:
    """`recjax COMMAND: error: MESSAGE` inside a command, `error: MESSAGE` in library use."""
    return f"recjax {_command}: error: {message}" if _command else f"error: {message}"


def first_line(error: BaseException) -> str:
    """An exception as one line: its message's first line, or its type when it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def report(command: str, error: BaseException | str, code: int = USAGE) -> int:
    """Prints `recjax COMMAND: error: ...` (one line) to stderr; returns `code`."""
    message = error if isinstance(error, str) else first_line(error)
    print(f"recjax {command}: error: {message}", file=sys.stderr)
    return code


def run(command: str, main, argv) -> int:
    """main(argv) with Ctrl-C as one line and exit code 130, every time.

    SIGINT ends the process from its signal handler (`os._exit`), as soon as the main thread runs
    Python again: raising KeyboardInterrupt instead unwinds through XLA compilation, TensorFlow's
    input threads and orbax's writers, where it was sometimes swallowed (exit 0) or crashed the
    allocator (SIGABRT). Exiting at once is as safe as SIGKILL, which a run survives exactly:
    checkpoints and outputs are written to a temporary path and renamed."""
    def interrupted(signum, frame):
        del signum, frame
        try:
            sys.stdout.flush()
        finally:
            os.write(2, f"recjax {command}: interrupted\n".encode())
            os._exit(INTERRUPTED)

    global _command
    _command = command
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, interrupted)
    try:
        return int(main(argv) or 0)
    except KeyboardInterrupt:  # a handler installed by the command itself raised it
        interrupted(signal.SIGINT, None)
        return INTERRUPTED
    finally:
        _command = None
        if previous is not None:  # in-process callers (tests, notebooks) get their handler back
            signal.signal(signal.SIGINT, previous)
