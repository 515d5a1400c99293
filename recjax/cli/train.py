"""`recjax train --gin_file=F [--gin_file=G] --gin.KEY=VALUE ...`: fine-tune from Gin files.

The run's Gin files set macros T5X users know: MODEL_DIR, MIXTURE_OR_TASK_NAME,
TASK_FEATURE_LENGTHS, TRAIN_STEPS, BATCH_SIZE, INITIAL_CHECKPOINT_PATH,
DROPOUT_RATE (see gin/runs/finetune.gin). Multi-host flags: --coordinator_address,
--num_processes, --process_id (TPU VMs need none).
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import threading

from recjax import exit_codes, gin_utils


def main(argv: list[str]) -> int:
    files, bindings, search, rest = gin_utils.split_gin_flags(argv)
    parser = argparse.ArgumentParser(prog="recjax train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--coordinator_address", default=None)
    parser.add_argument("--num_processes", type=int, default=None)
    parser.add_argument("--process_id", type=int, default=None)
    parser.add_argument("--multihost", action="store_true", help="call jax.distributed.initialize()")
    args = parser.parse_args(rest)
    if not files:
        parser.error("at least one --gin_file is required")

    from recjax import multihost
    multihost.initialize(args.coordinator_address, args.num_processes, args.process_id, force=args.multihost)

    import recjax.input_pipeline  # noqa: F401  (its configurables exist before Gin locks the config)
    import tasks  # noqa: F401  (so do the tasks' (tasks.register_dataset): the pipeline reads the registry)
    import recjax.train_lib as train_lib  # registers the configurables the gin files bind

    def run(_):
        gin_utils.parse_and_finalize(files, bindings, search)
        train_lib.train()
        return 0

    _quiet_checkpoint_threads()
    try:
        return gin_utils.run_with_gin_errors(run, argv)
    except train_lib.NonFiniteLossError as e:
        print(f"error: {gin_utils.first_line(e)}", file=sys.stderr)
        return exit_codes.FAILED
    except train_lib.CheckpointSaveError as e:
        print(f"error: {gin_utils.first_line(e)}", file=sys.stderr)
        sys.stderr.flush()
        # orbax's failed write futures would each log their traceback when collected at exit
        os._exit(exit_codes.FAILED)


class _DropCheckpointThreadNoise(logging.Filter):
    """orbax writes checkpoints in threads and asyncio tasks; when a write fails (a full disk),
    each of them logs the same error with a traceback, dozens in all. The trainer reports the
    failure itself in one line (train_lib.CheckpointSaveError), so these records are dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "asyncio" and record.levelno >= logging.ERROR:
            return False
        return not (record.levelno >= logging.ERROR and "orbax" in (record.pathname or ""))


class _DropClosedLoopTracebacks:
    """sys.stderr without the "RuntimeError: Event loop is closed" tracebacks that TensorStore's
    callbacks print (from C++ threads, so no hook sees them) once orbax has closed the event loop
    of a failed write. Every other line, tracebacks included, passes through unchanged."""

    def __init__(self, stream):
        self._stream, self._partial, self._block = stream, "", None

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
        if self._block is None and line.startswith("Traceback (most recent call last):"):
            self._block = [line]
            return
        if self._block is None:
            self._stream.write(line)
            return
        self._block.append(line)
        if not line[:1].isspace() and not line.startswith(("Traceback", "During handling", "The above exception")):
            block, self._block = self._block, None  # the exception line ends the traceback
            if line.strip() != "RuntimeError: Event loop is closed":
                self._stream.write("".join(block))

    def __getattr__(self, name):  # flush, fileno, isatty, encoding, ...
        return getattr(self._stream, name)


def _quiet_checkpoint_threads() -> None:
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

