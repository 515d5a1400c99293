"""`recjax eval --gin_file=... [--checkpoint DIR] [--step N] [--split S] [--output_dir DIR]`.

Metrics of a checkpoint on a SeqIO task or mixture (its recommendation tasks): writes
`metrics.json`, `report.md` and `metrics.png` into the output directory and prints the table.
The Gin files register the dataset's tasks (gin/tasks/*.gin) and set the run (gin/runs/eval.gin:
CHECKPOINT_PATH, MIXTURE_OR_TASK_NAME, EVAL_OUTPUT_DIR, SPLIT, EVAL_BATCH_SIZE, ...); the flags
override those macros. Example:

    recjax eval --gin_file=gin/tasks/beauty.gin --gin_file=gin/runs/eval.gin \\
      --checkpoint runs/beauty --gin.MIXTURE_OR_TASK_NAME="'beauty_rec'" --output_dir runs/beauty/eval

The checkpoint is a recjax checkpoint directory (`recjax convert`, or a train run's MODEL_DIR /
its checkpoints/ folder); the newest step unless --step. Params are restored straight onto the
mesh with the shardings of SHARDING_STRATEGY; the batch is split over the mesh's data axis.
"""
from __future__ import annotations

import argparse

from recjax import gin_utils
from recjax.cli.arguments import step_arg

FLAG_MACROS = {"checkpoint": "CHECKPOINT_PATH", "step": "CHECKPOINT_STEP", "split": "SPLIT",
               "output_dir": "EVAL_OUTPUT_DIR", "task": "MIXTURE_OR_TASK_NAME", "predictions": "PREDICTIONS_PATH"}


def _import_gin_configurables():
    import gin  # noqa: F401

    import recjax.evaluation  # noqa: F401  (EvalOptions)


def _register_gin():
    import gin

    from recjax.evaluation.checkpoint import evaluate_checkpoint

    # The Gin name users bind (gin/runs/eval.gin): recjax.eval.evaluate_checkpoint.*
    return gin.external_configurable(evaluate_checkpoint, module="recjax.eval")


def main(argv: list[str]) -> int:
    files, bindings, search, rest = gin_utils.split_gin_flags(argv)
    parser = argparse.ArgumentParser(prog="recjax eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="checkpoint directory (CHECKPOINT_PATH)")
    parser.add_argument("--step", type=step_arg, help="checkpoint step, or 'best' (default: the newest)")
    parser.add_argument("--split", help="validation or test (SPLIT)")
    parser.add_argument("--output_dir", help="where the report goes (EVAL_OUTPUT_DIR)")
    parser.add_argument("--task", help="task or mixture name (MIXTURE_OR_TASK_NAME)")
    parser.add_argument("--predictions", help="also write every evaluated user's ranked items here (JSONL)")
    args = parser.parse_args(rest)
    if not files:
        parser.error("at least one --gin_file is required (the dataset's gin/tasks/*.gin and gin/runs/eval.gin)")
    for flag, macro in FLAG_MACROS.items():
        value = getattr(args, flag)
        if value is not None:
            bindings.append(f"{macro} = {value!r}")

    def run(_):
        _import_gin_configurables()
        configurable = _register_gin()
        gin_utils.parse_and_finalize(files, bindings, search)
        configurable()
        return 0

    return gin_utils.run_with_gin_errors(run, argv)

