"""Outputs appear whole or not at all: a file or directory is written under a temporary name beside
its destination and renamed into place when complete.

Temporary names carry the writing process's id (`.NAME.tmp-PID-TAG`, `NAME.tmp-PID`): a run killed
with SIGKILL cannot clean up after itself, so the next write of the same destination removes the
temporaries whose process is gone, and says so on stderr.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import uuid
from typing import Iterator


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temporaries(destination: str) -> list[str]:
    """Removes the temporaries of `destination` (directories `.NAME.tmp-PID-TAG` / `.NAME.old-PID-TAG`,
    files `NAME.tmp-PID`) left by processes that no longer run; returns their paths."""
    destination = os.path.abspath(destination)
    parent, name = os.path.split(destination)
    if not os.path.isdir(parent):
        return []
    pattern = re.compile(rf"^(?:\.{re.escape(name)}\.(?:tmp|old)-(\d+)?.*|{re.escape(name)}\.tmp-(\d+)(?:\..*)?)$")
    removed = []
    for entry in sorted(os.listdir(parent)):
        match = pattern.match(entry)
        if not match:
            continue
        pid = match.group(1) or match.group(2)
        if pid is not None and _alive(int(pid)):
            continue  # a write in progress
        path = os.path.join(parent, entry)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
        removed.append(path)
        print(f"removed {path}: a temporary left by an interrupted run", file=sys.stderr)
    return removed


@contextlib.contextmanager
def atomic_directory(out_dir: str, overwrite: bool = False) -> Iterator[str]:
    """Yields a fresh temporary directory next to `out_dir`; on normal exit it becomes `out_dir`
    (replacing an existing one only if `overwrite`), on an exception it is removed."""
    out_dir = os.path.abspath(out_dir)
    if os.path.lexists(out_dir) and not overwrite:
        raise FileExistsError(f"{out_dir}: already exists (pass --overwrite to replace it)")
    parent, name = os.path.split(out_dir)
    os.makedirs(parent, exist_ok=True)
    remove_stale_temporaries(out_dir)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp = os.path.join(parent, f".{name}.tmp-{tag}")
    os.makedirs(tmp)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if os.path.lexists(out_dir):
        old = os.path.join(parent, f".{name}.old-{tag}")
        os.rename(out_dir, old)
    os.rename(tmp, out_dir)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def atomic_write(path: str, data: bytes | str) -> None:
    """Writes a file under a temporary name beside `path` and renames it into place: readers see
    the old file or the whole new one, never half of it."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    remove_stale_temporaries(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
