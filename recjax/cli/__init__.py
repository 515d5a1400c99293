"""The binaries: `recjax <command> ...` dispatches to `recjax/cli/<command>.py`, T5X style.

Each command module is a thin parser over library functions and exposes
`main(argv: list[str]) -> int | None`; no command imports another. `python -m recjax.<command>`
runs the same command (recjax/<command>.py calls `main([command, ...])`). Modules are imported
lazily so `recjax --help` stays fast.
"""
from __future__ import annotations

import importlib
import os
import sys

from recjax import exit_codes, tf_import
from recjax.cli import stderr

# command -> one-line description; the module is recjax.cli.<command>.
COMMANDS = {
    "prepare": "raw interaction files -> a prepared dataset",
    "stats": "print statistics of a prepared dataset",
    "index": "re-write a prepared dataset's item IDs under another scheme (collaborative, semantic)",
    "inspect": "print rendered examples and token-length percentiles of a SeqIO task",
    "train": "fine-tune from a Gin file (T5X style --gin_file / --gin.KEY=VALUE)",
    "eval": "metrics of a checkpoint on a task or mixture",
    "compare": "paired comparison of two evaluations' predictions (bootstrap CI, McNemar)",
    "infer": "JSONL of user histories in, JSONL of recommendations out",
    "score": "JSONL of {inputs, targets} in, log-likelihood of each target out",
    "convert": "HF or T5X checkpoint -> recjax (orbax) checkpoint",
    "export": "recjax checkpoint -> HF directory (and a bf16 params-only checkpoint)",
    "plan": "compile a Gin config for a mesh on abstract shapes; print per-device memory",
    "baseline": "train and evaluate popularity / SASRec / BERT4Rec on the same splits",
}


def _usage() -> str:
    width = max(len(c) for c in COMMANDS)
    lines = ["usage: recjax <command> [args...]", "", "commands:"]
    lines += [f"  {c.ljust(width)}  {d}" for c, d in COMMANDS.items()]
    lines += ["", "`recjax <command> --help` for the flags of one command; `--verbose` (or RECJAX_VERBOSE=1)",
              "keeps TensorFlow's start-up log lines, hidden by default."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    command, rest = argv[0], argv[1:]
    # --verbose (anywhere) or RECJAX_VERBOSE=1: keep TensorFlow's start-up log lines.
    verbose = "--verbose" in rest or os.environ.get("RECJAX_VERBOSE", "") not in ("", "0")
    rest = [a for a in rest if a != "--verbose"]
    tf_import.install(quiet=not verbose)
    stderr.quiet_storage_threads()
    if command not in COMMANDS:
        print(f"recjax: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(f"recjax.cli.{command}")
    except ModuleNotFoundError as e:
        if e.name == f"recjax.cli.{command}":
            print(f"recjax: command {command!r} is not implemented yet", file=sys.stderr)
            return 2
        raise
    return exit_codes.run(command, module.main, rest)

