"""What the launchers share: splitting off the `recjax train` arguments, and running (or, with
--dry_run, only printing) each command in order."""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from typing import Optional, Sequence, TextIO

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class LaunchError(RuntimeError):
    """A launcher cannot go on; str(e) is one line."""


def split_train_args(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """`[launcher flags] -- [recjax train flags]` -> (launcher flags, train flags)."""
    argv = list(argv)
    if "--" not in argv:
        return argv, []
    i = argv.index("--")
    return argv[:i], argv[i + 1:]


def train_command(train_args: Sequence[str], *, multihost: bool) -> list[str]:
    """The `recjax train` command every process runs."""
    if not any(a == "--gin_file" or a.startswith("--gin_file=") for a in train_args):
        raise LaunchError("no `recjax train` flags after `--` (expected at least --gin_file=...)")
    return ["recjax", "train"] + (["--multihost"] if multihost else []) + list(train_args)


class Runner:
    """Runs commands one after another, stopping at the first failure; with dry_run only prints them.

    Every command is printed first as `$ <shell-quoted command>`, so a dry run's output is the
    exact list of what a real run executes.
    """

    def __init__(self, dry_run: bool, out: Optional[TextIO] = None):
        self.dry_run = dry_run
        self.out = out or sys.stdout

    def show(self, cmd: Sequence[str], note: str = "") -> None:
        if note:
            print(f"# {note}", file=self.out)
        print(f"$ {shlex.join(cmd)}", file=self.out, flush=True)

    def run(self, cmd: Sequence[str], note: str = "", *, check: bool = True) -> int:
        self.show(cmd, note)
        if self.dry_run:
            return 0
        rc = subprocess.run(list(cmd)).returncode
        if check and rc != 0:
            raise LaunchError(f"command failed with exit status {rc}: {shlex.join(cmd)}")
        return rc

    def succeeds(self, cmd: Sequence[str], note: str = "") -> Optional[bool]:
        """Runs a probe (output hidden); whether it exited 0, or None in a dry run."""
        self.show(cmd, note)
        if self.dry_run:
            return None
        return subprocess.run(list(cmd), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def write_text_atomic(path: str, text: str, mode: int = 0o644) -> None:
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
