r"""Train on a Cloud TPU VM or pod slice: create (or reuse) it, install recjax on every worker, run
the same `recjax train` on all of them.

    python launch/tpu_vm.py --name my-tpu --zone us-central2-b --accelerator_type v4-32 \
        --copy data/beauty --copy checkpoints/flan_t5_xl \
        -- --gin_file=gin/experiments/beauty_xl_rec_aux.gin \
           --gin.INITIAL_CHECKPOINT_PATH="'checkpoints/flan_t5_xl'"

Steps (each a `gcloud compute tpus tpu-vm` command, printed before it runs; --dry_run only prints):
  1. `describe` the TPU; `create` it if it does not exist (unless --no_create).
  2. Install: this checkout (without .git, .venv, data/, runs/, outputs/) as a tarball copied with
     `scp --worker=all` and unpacked over ~/recjax, or `git clone --repo_url [--ref]` there (an
     existing clone is fetched and checked out); then `pip install -e '.[tpu]'`. An existing
     ~/recjax is updated, never deleted, so its data and runs/ survive a relaunch.
  3. `--copy LOCAL[:REMOTE]` files or directories (prepared data, vocabulary, a converted
     checkpoint) to every worker, REMOTE relative to the remote checkout (default: LOCAL).
  4. `ssh --worker=all` runs `recjax train --multihost ARGS` from the remote checkout on every
     worker; `jax.distributed.initialize()` finds the other workers itself on TPU VMs.
     --detach LOG runs it under nohup (log on each worker) and returns at once.
On a pod slice (several workers) MODEL_DIR must be storage every worker sees (a bucket or a
mounted filesystem): orbax writes one checkpoint from all of them. The TPU is left running:
delete it with
    gcloud compute tpus tpu-vm delete NAME --zone ZONE
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile

if __package__ in (None, ""):  # run as `python launch/tpu_vm.py`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from launch.common import REPO_ROOT, LaunchError, Runner, split_train_args, train_command  # noqa: E402

DEFAULT_VERSION = "tpu-ubuntu2204-base"
EXTRA = "tpu"  # setup.py's extra: jax[tpu] at the jax pin of the worker's Python, with libtpu
REMOTE_DIR = "recjax"  # the checkout on each worker, relative to the home directory
# Left out of the copied checkout: top-level directories, and names anywhere in the tree.
TARBALL_EXCLUDES_TOP = (".git", ".venv", "data", "runs", "outputs")
TARBALL_EXCLUDES_ANYWHERE = ("__pycache__", ".pytest_cache", "*.tar.gz")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="launch/tpu_vm.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                usage="%(prog)s --name NAME --zone ZONE [options] -- RECJAX_TRAIN_FLAGS...")
    p.add_argument("--name", required=True, help="TPU VM name")
    p.add_argument("--zone", required=True)
    p.add_argument("--project", default=None, help="GCP project (default: gcloud's configured one)")
    p.add_argument("--accelerator_type", default=None, help="e.g. v4-8, v4-32, v5litepod-16 (needed to create)")
    p.add_argument("--version", default=DEFAULT_VERSION, help=f"TPU software version (default {DEFAULT_VERSION})")
    p.add_argument("--spot", action="store_true", help="create a Spot TPU")
    p.add_argument("--no_create", action="store_true", help="fail instead of creating a missing TPU")
    p.add_argument("--repo_url", default=None, help="git clone this URL on every worker instead of copying "
                   "this checkout")
    p.add_argument("--ref", default=None, help="branch, tag or commit to check out (with --repo_url)")
    p.add_argument("--jax_tpu", default="", help="an extra pip requirement installed with recjax[tpu] "
                   "(e.g. 'jax[tpu]==0.11.2' to override the pin; default: none)")
    p.add_argument("--skip_install", action="store_true", help="the workers already have recjax installed")
    p.add_argument("--copy", action="append", default=[], metavar="LOCAL[:REMOTE]",
                   help="file or directory to copy to every worker (repeatable)")
    p.add_argument("--detach", default=None, metavar="LOG", help="run training under nohup, logging to LOG "
                   "(relative to the remote checkout) on each worker, and return")
    p.add_argument("--dry_run", action="store_true", help="print every command, run none")
    return p


class TpuVm:
    """The gcloud commands for one TPU VM."""

    def __init__(self, name: str, zone: str, project: str | None):
        self.name, self.zone, self.project = name, zone, project

    def _cmd(self, verb: str, *args: str) -> list[str]:
        location = [f"--zone={self.zone}"] + ([f"--project={self.project}"] if self.project else [])
        return ["gcloud", "compute", "tpus", "tpu-vm", verb, *args, *location]

    def describe(self) -> list[str]:
        return self._cmd("describe", self.name, "--format=value(state)")

    def create(self, accelerator_type: str, version: str, spot: bool) -> list[str]:
        return self._cmd("create", self.name, f"--accelerator-type={accelerator_type}", f"--version={version}",
                         *(["--spot"] if spot else []))

    def scp(self, local: str, remote: str, recurse: bool = False) -> list[str]:
        return self._cmd("scp", *(["--recurse"] if recurse else []), local, f"{self.name}:{remote}", "--worker=all")

    def ssh(self, command: str) -> list[str]:
        return self._cmd("ssh", self.name, "--worker=all", f"--command={command}")


def tarball_path(name: str) -> str:
    return os.path.join(tempfile.gettempdir(), f"recjax-{name}.tar.gz")


def tar_command(path: str) -> list[str]:
    """A gzip tarball of this checkout's working tree (what the workers install)."""
    excludes = [f"--exclude=./{e}" for e in TARBALL_EXCLUDES_TOP] + [f"--exclude={e}" for e in TARBALL_EXCLUDES_ANYWHERE]
    return ["tar", "-czf", path, *excludes, "-C", REPO_ROOT, "."]


def install_command(jax_tpu: str, repo_url: str | None, ref: str | None) -> str:
    """The shell command each worker runs to get recjax (from the copied tarball or a clone).

    An existing checkout is updated in place, never deleted: on a reused TPU it may hold copied
    data and a run's checkpoints (runs/), which the tarball leaves out.
    """
    if repo_url:
        fetch = (f"if [ -d {REMOTE_DIR}/.git ]; then git -C {REMOTE_DIR} fetch -q --tags origin; "
                 f"else git clone -q {shlex.quote(repo_url)} {REMOTE_DIR}; fi && ")
        fetch += (f"git -C {REMOTE_DIR} checkout -q {shlex.quote(ref)}" if ref
                  else f"git -C {REMOTE_DIR} pull -q --ff-only")
    else:
        fetch = f"mkdir -p {REMOTE_DIR} && tar -xzf recjax.tar.gz -C {REMOTE_DIR}"
    extra = f" {shlex.quote(jax_tpu)}" if jax_tpu else ""
    return f"{fetch} && python3 -m pip install -q -e {shlex.quote(f'./{REMOTE_DIR}[{EXTRA}]')}{extra}"


def parse_copy(spec: str) -> tuple[str, str]:
    local, sep, remote = spec.partition(":")
    remote = remote if sep else local
    if not local:
        raise LaunchError(f"--copy {spec!r}: expected LOCAL[:REMOTE]")
    if os.path.isabs(remote) or ".." in remote.split("/"):
        raise LaunchError(f"--copy {spec!r}: REMOTE must be a path inside the remote checkout (relative, no '..'); "
                          f"give it as LOCAL:REMOTE")
    return local, os.path.normpath(remote)


def run_command(train: list[str], detach: str | None) -> str:
    """What every worker runs: `recjax train ...` from the checkout, with pip's script directory on PATH."""
    command = shlex.join(train)
    if detach:
        command = f"nohup {command} > {shlex.quote(detach)} 2>&1 < /dev/null &"
    return f'cd {REMOTE_DIR} && export PATH="$HOME/.local/bin:$PATH" && {command}'


def launch(args: argparse.Namespace, train_args: list[str], runner: Runner) -> None:
    train = train_command(train_args, multihost=True)  # checks the train flags before touching anything
    copies = [parse_copy(c) for c in args.copy]
    for local, _ in copies:
        if not runner.dry_run and not os.path.exists(local):
            raise LaunchError(f"--copy {local}: no such file or directory")
    tpu = TpuVm(args.name, args.zone, args.project)

    exists = runner.succeeds(tpu.describe(), "does the TPU exist? (reused if so)")
    if exists is False and args.no_create:
        raise LaunchError(f"TPU {args.name!r} not found in {args.zone} (and --no_create was given)")
    if not exists:
        if args.accelerator_type and not args.no_create:
            note = "create it (only when the describe above fails)" if exists is None else "create it"
            runner.run(tpu.create(args.accelerator_type, args.version, args.spot), note)
        elif exists is None:  # dry run: say what a real run would do
            print("# (a real run stops here if the TPU does not exist: "
                  f"{'--no_create' if args.no_create else 'no --accelerator_type to create it with'})", file=runner.out)
        else:
            raise LaunchError(f"TPU {args.name!r} not found in {args.zone}; give --accelerator_type to create it")

    if not args.skip_install:
        if not args.repo_url:
            tarball = tarball_path(args.name)
            runner.run(tar_command(tarball), "pack this checkout")
            runner.run(tpu.scp(tarball, "recjax.tar.gz"), "copy it to every worker")
        runner.run(tpu.ssh(install_command(args.jax_tpu, args.repo_url, args.ref)), "install on every worker")

    if copies:
        parents = sorted({os.path.dirname(remote) for _, remote in copies} - {""})
        if parents:
            runner.run(tpu.ssh(f"mkdir -p {' '.join(shlex.quote(f'{REMOTE_DIR}/{p}') for p in parents)}"),
                       "make the directories the copies go to")
        for local, remote in copies:
            runner.run(tpu.scp(local, f"{REMOTE_DIR}/{remote}", recurse=True), f"copy {local}")

    runner.run(tpu.ssh(run_command(train, args.detach)), "train on every worker")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    own, train_args = split_train_args(argv)
    args = _parser().parse_args(own)
    try:
        launch(args, train_args, Runner(args.dry_run))
    except LaunchError as e:
        print(f"launch/tpu_vm.py: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
