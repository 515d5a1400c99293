"""`recjax train --gin_file=F [--gin_file=G] --gin.KEY=VALUE ...`: fine-tune from Gin files.

The run's Gin files set macros T5X users know: MODEL_DIR, MIXTURE_OR_TASK_NAME,
TASK_FEATURE_LENGTHS, TRAIN_STEPS, BATCH_SIZE, INITIAL_CHECKPOINT_PATH,
DROPOUT_RATE (see gin/runs/finetune.gin). Multi-host flags: --coordinator_address,
--num_processes, --process_id (TPU VMs need none).
"""
from __future__ import annotations

import argparse
import os
import sys

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

    try:
        return gin_utils.run_with_gin_errors(run, argv)
    except train_lib.Preempted as e:
        print(f"recjax train: {gin_utils.first_line(e)}", file=sys.stderr, flush=True)
        return exit_codes.PREEMPTED
    except train_lib.NonFiniteLossError as e:
        print(exit_codes.error_line(gin_utils.first_line(e)), file=sys.stderr)
        return exit_codes.FAILED
    except train_lib.CheckpointSaveError as e:
        print(exit_codes.error_line(gin_utils.first_line(e)), file=sys.stderr)
        sys.stderr.flush()
        # orbax's failed write futures would each log their traceback when collected at exit
        os._exit(exit_codes.FAILED)
