"""Exit codes and the one-line error report shared by every `recjax` command.

USAGE (2): the command refused its input before doing its work - bad flags (argparse's own code),
  a missing or invalid input file, a directory that is not a checkpoint, a configuration error.
FAILED (1): the work started and failed (a non-finite loss).
INTERRUPTED (130): stopped by Ctrl-C (128 + SIGINT, as shells report it).
Result lines go to stdout, diagnostics and errors to stderr.
"""
from __future__ import annotations

import os
import sys

USAGE, FAILED, INTERRUPTED = 2, 1, 130


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
    """main(argv) with Ctrl-C as one line and exit code 130. The process ends with os._exit: the
    command's own cleanup (finally blocks: checkpoint writes, input threads) has run by then, and
    interpreter teardown with TensorFlow / XLA threads mid-compilation can crash (SIGSEGV)."""
    try:
        return int(main(argv) or 0)
    except KeyboardInterrupt:
        print(f"recjax {command}: interrupted", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(INTERRUPTED)
