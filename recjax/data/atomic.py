"""Write a directory under a temporary name beside it, rename it into place when complete."""
from __future__ import annotations

import contextlib
import os
import shutil
import uuid


@contextlib.contextmanager
def atomic_directory(out_dir: str, overwrite: bool = False):
    """Yields a fresh temporary directory next to `out_dir`; on normal exit it becomes `out_dir`
    (replacing an existing one only if `overwrite`), on an exception it is removed."""
    out_dir = os.path.abspath(out_dir)
    if os.path.exists(out_dir) and not overwrite:
        raise FileExistsError(f"{out_dir}: already exists (pass --overwrite to replace it)")
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    tmp = os.path.join(parent, f".{os.path.basename(out_dir)}.tmp-{tag}")
    os.makedirs(tmp)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if os.path.exists(out_dir):
        old = os.path.join(parent, f".{os.path.basename(out_dir)}.old-{tag}")
        os.rename(out_dir, old)
    os.rename(tmp, out_dir)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def atomic_write(path: str, data: bytes | str) -> None:
    """Writes a file under a temporary name beside `path` and renames it into place: readers see
    the old file or the whole new one, never half of it."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
