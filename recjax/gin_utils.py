"""T5X-style Gin flags: `--gin_file=F` (repeatable), `--gin.KEY=VALUE` (repeatable), `--gin_search_path`.

Gin files are looked up as given, then under each search path, then under the repository's
`gin/` directory, so `--gin_file=gin/models/t5_1_1_small.gin` and `--gin_file=models/t5_1_1_small.gin`
both work from the repo root.
"""
from __future__ import annotations

import difflib
import logging
import os
import pathlib
import re
import sys
from typing import Sequence

import gin

from recjax import exit_codes
REPO_GIN_DIR = pathlib.Path(__file__).resolve().parents[1] / "gin"


class GinFlagError(ValueError):
    pass


# An unquoted string (`--gin.MODEL_DIR=runs/z`): Gin reads it as a reference it cannot resolve.
_BARE_WORD = re.compile(r"^[A-Za-z_./~-][\w./~-]*$")


def _usage_exit(message: str):
    """A malformed flag: one line, exit 2 (as argparse does for its own flags)."""
    print(exit_codes.error_line(message), file=sys.stderr)
    raise SystemExit(exit_codes.USAGE)


def split_gin_flags(argv: Sequence[str]) -> tuple[list[str], list[str], list[str], list[str]]:
    """argv -> (gin files, bindings, search paths, remaining args)."""
    files, bindings, search, rest = [], [], [], []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, value = arg.partition("=")
        takes_value = name in ("--gin_file", "--gin_search_path") or (name.startswith("--gin.") and len(name) > 6)
        if takes_value and not eq:
            if i + 1 >= len(args):
                _usage_exit(f"{name} needs a value, e.g. {name}=VALUE" +
                            (f" (quote strings: {name}=\"'text'\")" if name.startswith("--gin.") else ""))
            value, i = args[i + 1], i + 1
        if name == "--gin_file":
            files.append(value)
        elif name == "--gin_search_path":
            search.append(value)
        elif name.startswith("--gin.") and len(name) > 6:
            if _BARE_WORD.match(value.strip()) and value.strip() not in ("True", "False", "None"):
                _usage_exit(f"{name}={value}: a Gin value, not a bare word; quote strings: {name}=\"'{value}'\"")
            bindings.append(f"{name[len('--gin.'):]} = {value}")
        elif name == "--gin_bindings":  # T5X's spelling: a whole binding per flag
            bindings.append(value if eq else args[i])
        else:
            rest.append(arg)
        i += 1
    return files, bindings, search, rest


def resolve_gin_file(path: str, search_paths: Sequence[str] = ()) -> str:
    candidates = [path] + [os.path.join(p, path) for p in search_paths] + [str(REPO_GIN_DIR / path)]
    if path.startswith("gin/"):
        candidates.append(str(REPO_GIN_DIR / path[len("gin/"):]))
    for c in candidates:
        if os.path.isfile(c):
            return c
    raise GinFlagError(f"gin file {path!r} not found (looked in: {', '.join(candidates)})")


class _QuietIncludeMisses(logging.Filter):
    """Gin logs 'Path not found' at ERROR for each search-path miss before it finds an include."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith("Path not found:")


def _tolerant_exists(check):
    def exists(path: str) -> bool:
        try:
            return bool(check(path))
        except (TypeError, ValueError, ImportError):
            return False
    exists.recjax_tolerant = True
    return exists


def _tolerate_namespace_packages() -> None:
    """gin's package-path reader raises TypeError instead of answering False when an include's
    first folder is a plain directory in the working directory (a namespace package): e.g.
    include 'runs/finetune.gin' once a run has written ./runs/. Make its check answer False."""
    readers = gin.config._FILE_READERS  # gin has no public API to wrap a registered reader
    for i, (reader, check) in enumerate(readers):
        if reader is not open and not getattr(check, "recjax_tolerant", False):
            readers[i] = (reader, _tolerant_exists(check))


def parse_gin(files: Sequence[str], bindings: Sequence[str], search_paths: Sequence[str] = ()) -> None:
    """Parses files then bindings; an unknown configurable or parameter is one clear error."""
    logging.getLogger().addFilter(_QuietIncludeMisses())
    _tolerate_namespace_packages()
    for p in list(search_paths) + [str(REPO_GIN_DIR), os.getcwd()]:
        gin.add_config_file_search_path(p)
    resolved = [resolve_gin_file(f, search_paths) for f in files]
    try:
        gin.parse_config_files_and_bindings(resolved, bindings, finalize_config=False)
    except (ValueError, KeyError, SyntaxError, ImportError) as e:
        message = " ".join(line.strip() for line in str(e).strip().splitlines())
        raise GinFlagError(f"gin: {message}") from None
    check_macro_bindings(bindings)


def referenced_macros() -> set[str]:
    """Names of the macros (%NAME) that the parsed Gin config uses."""
    from gin import config as gin_config

    names = set()
    for ref in gin_config.iterate_references(gin_config._CONFIG):
        selector = getattr(ref, "scoped_selector", "")
        if selector.endswith("/gin.macro"):
            names.add(selector[: -len("/gin.macro")])
    return names


def check_macro_bindings(bindings: Sequence[str]) -> None:
    """A `--gin.NAME=VALUE` for a macro no Gin file uses would silently change nothing (a
    misspelling such as TRAIN_STEP): refuse it before any work, with the closest names."""
    used = None
    for binding in bindings:
        name = binding.split("=", 1)[0].strip()
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            continue  # configurable.parameter bindings: gin itself checks those
        used = referenced_macros() if used is None else used
        if name not in used:
            close = difflib.get_close_matches(name, sorted(used), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; macros in use: {', '.join(sorted(used)) or 'none'}"
            raise GinFlagError(f"--gin.{name}: no Gin file uses the macro %{name}, so it would change nothing{hint}")


# Gin appends '  In call to configurable ...' lines to an error; the reason is the first line.
first_line = exit_codes.first_line


def parse_and_finalize(files: Sequence[str], bindings: Sequence[str], search_paths: Sequence[str] = ()) -> None:
    """parse_gin, then gin.finalize(); a finalize failure (e.g. a missing required macro) is a
    GinFlagError with its first line."""
    parse_gin(files, bindings, search_paths)
    try:
        gin.finalize()
    except (ValueError, KeyError) as e:
        raise GinFlagError(first_line(e)) from None


def run_with_gin_errors(fn, argv, errors: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError)) -> int:
    """Calls fn(argv); a configuration error, or one of `errors` (bad input a binary reports), is
    a one-line message on stderr and exit code 2."""
    try:
        return int(fn(argv) or 0)
    except GinFlagError as e:
        print(exit_codes.error_line(str(e)), file=sys.stderr)
        return exit_codes.USAGE
    except errors as e:
        print(exit_codes.error_line(first_line(e)), file=sys.stderr)
        return exit_codes.USAGE
    except RuntimeError as e:
        missing = _missing_bindings_message(e)
        if missing is None:
            raise
        print(exit_codes.error_line(missing), file=sys.stderr)
        return exit_codes.USAGE


# What to add when a configurable is called without its required bindings.
_MISSING_HINTS = {"register_dataset": "include the dataset's gin/tasks/*.gin file (e.g. --gin_file=gin/tasks/beauty.gin), "
                                      "which binds them"}


def _missing_bindings_message(error: RuntimeError):
    """Gin's "Required bindings for `F` not provided in config: [...]" as one line that says what
    to add, or None for any other RuntimeError."""
    match = re.match(r"Required bindings for `([\w.]+)` not provided in config: (\[.*?\])", first_line(error))
    if not match:
        return None
    name, keys = match.groups()
    hint = _MISSING_HINTS.get(name.rsplit(".", 1)[-1], f"bind them in a Gin file or with --gin.{name}.KEY=VALUE")
    return f"{name} needs {keys}: {hint}"


def _evaluated(value):
    """A bound value with its references (`%MACRO`, `@fn()`) evaluated, as Gin would on the call."""
    if isinstance(value, gin.config.ConfigurableReference):
        return value.scoped_configurable_fn() if value.evaluate else value.scoped_configurable_fn
    if type(value) is dict:
        return {k: _evaluated(v) for k, v in value.items()}
    if type(value) in (list, tuple):
        return type(value)(_evaluated(v) for v in value)
    return value


def bound_argument(configurable: str, name: str, default=None):
    """The value the parsed Gin config binds for `configurable.name` (references evaluated), or
    `default`; GinFlagError when it is %gin.REQUIRED and unset. For inspecting what an experiment's
    files set (tests, reports); the binaries call their configurables instead."""
    try:
        bound = gin.query_parameter(f"{configurable}.{name}")
    except ValueError:
        return default
    value = _evaluated(bound)
    if value is gin.REQUIRED:
        raise GinFlagError(f"{configurable}.{name} is %gin.REQUIRED and not set (bind its macro with --gin.KEY=VALUE)")
    return value
