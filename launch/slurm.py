r"""Train on GPU nodes under SLURM: write an sbatch script (N nodes x G GPUs, one process per node)
and submit it.

    python launch/slurm.py --nodes 2 --gpus_per_node 8 --partition gpu --time 24:00:00 \
        --venv .venv -- --gin_file=gin/experiments/beauty_xl_rec_aux.gin \
        --gin.INITIAL_CHECKPOINT_PATH="'checkpoints/flan_t5_xl'" --gin.MESH_SHAPE="(-1, 2)"

The script `srun`s one task per node; each task sees all of its node's G GPUs and runs
`recjax train --multihost ARGS` from this checkout (a filesystem the nodes share). The
environment `recjax.multihost` reads is set in the script:
    RECJAX_COORDINATOR_ADDRESS  the first node of the allocation, port --port
    RECJAX_NUM_PROCESSES        the number of nodes
    RECJAX_PROCESS_ID           SLURM_PROCID of the task
--dry_run prints the script and the sbatch command and writes nothing.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys

if __package__ in (None, ""):  # run as `python launch/slurm.py`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from launch.common import REPO_ROOT, LaunchError, Runner, split_train_args, train_command, write_text_atomic  # noqa: E402

DEFAULT_PORT = 12345


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="launch/slurm.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                usage="%(prog)s --nodes N --gpus_per_node G [options] -- RECJAX_TRAIN_FLAGS...")
    p.add_argument("--nodes", type=int, required=True)
    p.add_argument("--gpus_per_node", type=int, required=True)
    p.add_argument("--job_name", default="recjax")
    p.add_argument("--partition", default=None)
    p.add_argument("--account", default=None)
    p.add_argument("--time", default="24:00:00", help="wall-clock limit (default 24:00:00)")
    p.add_argument("--cpus_per_task", type=int, default=None, help="CPUs per node's task (input pipeline)")
    p.add_argument("--mem", default=None, help="memory per node, e.g. 0 (all) or 400G")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"coordinator port (default {DEFAULT_PORT})")
    p.add_argument("--venv", default=None, help="virtual environment to activate on each node")
    p.add_argument("--install", action="store_true",
                   help="pip install -e '.[cuda]' (setup.py's CUDA 12 extra) into the environment before training")
    p.add_argument("--setup", action="append", default=[], metavar="SHELL_LINE",
                   help="shell line run before training, e.g. 'module load cuda/12.4' (repeatable)")
    p.add_argument("--script", default=None, help="where to write the script (default runs/slurm/JOB_NAME.sbatch)")
    p.add_argument("--log_dir", default="runs/slurm/logs", help="SLURM output files (default runs/slurm/logs)")
    p.add_argument("--dry_run", action="store_true", help="print the script and the sbatch command; write nothing")
    return p


def sbatch_script(args: argparse.Namespace, train: list[str]) -> str:
    if args.nodes < 1 or args.gpus_per_node < 1:
        raise LaunchError(f"--nodes and --gpus_per_node must be >= 1, got {args.nodes} and {args.gpus_per_node}")
    log_dir = os.path.join(REPO_ROOT, args.log_dir) if not os.path.isabs(args.log_dir) else args.log_dir
    directives = [f"--job-name={args.job_name}", f"--nodes={args.nodes}", "--ntasks-per-node=1",
                  f"--gpus-per-node={args.gpus_per_node}", f"--time={args.time}",
                  f"--output={os.path.join(log_dir, '%x-%j.out')}"]
    for flag, value in (("--partition", args.partition), ("--account", args.account),
                        ("--cpus-per-task", args.cpus_per_task), ("--mem", args.mem)):
        if value is not None:
            directives.append(f"{flag}={value}")
    lines = ["#!/bin/bash", *[f"#SBATCH {d}" for d in directives],
             "# Written by launch/slurm.py: one recjax process per node, each using all of its node's GPUs.",
             "set -euo pipefail", f"cd {shlex.quote(REPO_ROOT)}"]
    if args.venv:
        venv = args.venv if os.path.isabs(args.venv) else os.path.join(REPO_ROOT, args.venv)
        lines.append(f"source {shlex.quote(os.path.join(venv, 'bin', 'activate'))}")
    lines += list(args.setup)
    if args.install:  # once, from the batch host: the checkout and the venv are on the shared filesystem
        lines.append("python3 -m pip install -q -e '.[cuda]'")
    lines += [
        "# recjax.multihost reads these; the process id is set per task below.",
        # `sed -n 1p` reads every line: `head -n 1` could end scontrol with SIGPIPE, which pipefail
        # turns into a failed script on a long node list.
        'COORDINATOR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | sed -n 1p)"',
        f'export RECJAX_COORDINATOR_ADDRESS="$COORDINATOR:{args.port}"',
        'export RECJAX_NUM_PROCESSES="$SLURM_NNODES"',
        f"TRAIN=({shlex.join(train)})",
        f"srun --nodes={args.nodes} --ntasks-per-node=1 --kill-on-bad-exit=1 \\",
        "  bash -c 'export RECJAX_PROCESS_ID=\"$SLURM_PROCID\"; exec \"$@\"' recjax-task \"${TRAIN[@]}\"",
    ]
    return "\n".join(lines) + "\n"


def script_path(args: argparse.Namespace) -> str:
    path = args.script or os.path.join("runs", "slurm", f"{args.job_name}.sbatch")
    return path if os.path.isabs(path) else os.path.join(REPO_ROOT, path)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    own, train_args = split_train_args(argv)
    args = _parser().parse_args(own)
    runner = Runner(args.dry_run)
    try:
        script = sbatch_script(args, train_command(train_args, multihost=True))
        path = script_path(args)
        if args.dry_run:
            print(f"# sbatch script ({path}, not written in a dry run):")
            print(script, end="")
        else:
            write_text_atomic(path, script, mode=0o755)
            os.makedirs(args.log_dir if os.path.isabs(args.log_dir) else os.path.join(REPO_ROOT, args.log_dir),
                        exist_ok=True)
            print(f"# wrote {path}")
        runner.run(["sbatch", path], "submit it")
    except LaunchError as e:
        print(f"launch/slurm.py: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
