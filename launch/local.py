r"""Run P recjax processes on this machine, talking through a local coordinator with CPU
collectives: multi-process training (sharding, input split, checkpointing) tested without a cluster.

    python launch/local.py --num_processes 2 --devices_per_process 2 \
        -- --gin_file=gin/experiments/quickstart.gin --gin.MODEL_DIR="'outputs/two_procs'"

Process i runs
    env JAX_PLATFORMS=cpu XLA_FLAGS=--xla_force_host_platform_device_count=D \
        python -m recjax.cli train --coordinator_address=localhost:PORT --num_processes=P --process_id=i ARGS
(`recjax.multihost` picks the gloo CPU collectives). Output lines are prefixed with `[i]`. If
one process fails the others are stopped. --dry_run prints the commands and starts nothing.
"""
from __future__ import annotations

import argparse
import os
import shlex
import socket
import subprocess
import sys
import threading

if __package__ in (None, ""):  # run as `python launch/local.py`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from launch.common import REPO_ROOT, LaunchError, train_command, split_train_args  # noqa: E402


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="launch/local.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                usage="%(prog)s [--num_processes P] [options] -- RECJAX_TRAIN_FLAGS...")
    p.add_argument("--num_processes", type=int, default=2)
    p.add_argument("--devices_per_process", type=int, default=1, help="fake CPU devices in each process")
    p.add_argument("--port", type=int, default=0, help="coordinator port (default: a free one)")
    p.add_argument("--dry_run", action="store_true", help="print the commands, start nothing")
    return p


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def process_commands(num_processes: int, devices_per_process: int, port: int, train_args: list[str]) -> list[list[str]]:
    if num_processes < 1 or devices_per_process < 1:
        raise LaunchError(f"--num_processes and --devices_per_process must be >= 1, got {num_processes} "
                          f"and {devices_per_process}")
    train = train_command(train_args, multihost=False)[2:]  # the flags after `recjax train`
    env = ["env", "JAX_PLATFORMS=cpu", f"XLA_FLAGS=--xla_force_host_platform_device_count={devices_per_process}"]
    return [env + [sys.executable, "-m", "recjax.cli", "train", f"--coordinator_address=localhost:{port}",
                   f"--num_processes={num_processes}", f"--process_id={i}", *train]
            for i in range(num_processes)]


def _relay(index: int, stream, lock: threading.Lock) -> None:
    for line in iter(stream.readline, ""):
        with lock:
            sys.stdout.write(f"[{index}] {line}")
            sys.stdout.flush()
    stream.close()


def run_processes(commands: list[list[str]]) -> int:
    """Starts every command, relays their output, stops the rest when one fails; the worst exit status."""
    procs, threads, lock = [], [], threading.Lock()
    try:
        for i, cmd in enumerate(commands):
            proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            procs.append(proc)
            thread = threading.Thread(target=_relay, args=(i, proc.stdout, lock), daemon=True)
            thread.start()
            threads.append(thread)
        status = 0
        pending = list(range(len(procs)))
        while pending:
            for i in list(pending):
                try:
                    rc = procs[i].wait(timeout=0.5)
                except subprocess.TimeoutExpired:
                    continue
                pending.remove(i)
                if rc != 0 and status == 0:
                    status = rc
                    print(f"launch/local.py: process {i} exited with status {rc}; stopping the others",
                          file=sys.stderr)
                    for j in pending:
                        procs[j].terminate()
        return status
    finally:
        for proc in procs:  # only the processes started here
            if proc.poll() is None:
                proc.kill()
        for thread in threads:
            thread.join(timeout=5)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    own, train_args = split_train_args(argv)
    args = _parser().parse_args(own)
    try:
        port = args.port or free_port()
        commands = process_commands(args.num_processes, args.devices_per_process, port, train_args)
    except LaunchError as e:
        print(f"launch/local.py: error: {e}", file=sys.stderr)
        return 1
    print(f"# {args.num_processes} processes on localhost, coordinator port {port}, cwd {REPO_ROOT}")
    for cmd in commands:
        print(f"$ {shlex.join(cmd)}")
    sys.stdout.flush()
    if args.dry_run:
        return 0
    return run_processes(commands)


if __name__ == "__main__":
    sys.exit(main())
