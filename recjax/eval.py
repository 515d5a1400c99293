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
import dataclasses
import os
import sys
import time
from typing import Any, Optional, Sequence

from recjax import gin_utils

FLAG_MACROS = {"checkpoint": "CHECKPOINT_PATH", "step": "CHECKPOINT_STEP", "split": "SPLIT",
               "output_dir": "EVAL_OUTPUT_DIR", "task": "MIXTURE_OR_TASK_NAME", "predictions": "PREDICTIONS_PATH"}


def _import_gin_configurables():
    import gin  # noqa: F401

    import recjax.evaluation  # noqa: F401  (EvalOptions)


def evaluate_checkpoint(checkpoint_path: str, mixture_or_task_name: str, output_dir: str, *,
                        split: str = "test", step: Optional[int] = None, options=None,
                        mesh_shape: Sequence[int] = (-1, 1), sharding_strategy: str = "data_parallel",
                        task_setup: Any = None, predictions_path: Optional[str] = None) -> dict:
    """Evaluates and writes the report; returns {task: {metric: value}}. `predictions_path`: a
    JSONL file with one line per evaluated example of the retrieval and ranking tasks (`task`,
    `user`, `target`, `target_rank` (0-based, -1 when not returned), `ranked` item IDs, best
    first), for paired comparisons (`recjax compare`)."""
    del task_setup  # registered the tasks when Gin evaluated it
    import jax

    import tasks
    from recjax import report
    from recjax.checkpoints import Checkpoint
    from recjax.evaluation import EvalOptions, evaluate_tasks
    from recjax.partitioning import Partitioner
    from recjax.restore import restore_model

    options = options if options is not None else EvalOptions()
    start = time.time()
    partitioner = Partitioner.create(mesh_shape, sharding_strategy)
    mesh = partitioner.mesh
    with Checkpoint(checkpoint_path) as checkpoint:
        checkpoint.check_item_ids(tasks.item_ids_record(mixture_or_task_name))
        model, params, step = restore_model(checkpoint, partitioner, step)
    results = evaluate_tasks(model, params, mixture_or_task_name, split, options=options, partitioner=partitioner)
    info = {"checkpoint": os.path.abspath(checkpoint_path), "step": step, "mixture_or_task": mixture_or_task_name,
            "split": split, "wall_seconds": round(time.time() - start, 1),
            "devices": f"{len(jax.devices())} x {jax.devices()[0].device_kind}",
            "mesh": dict(mesh.shape), "sharding_strategy": sharding_strategy,
            "options": dataclasses.asdict(options), "model_config": model.config.to_dict()}
    if jax.process_index() == 0:
        paths = report.write_report(output_dir, results, info)
        if predictions_path:
            report.write_predictions(predictions_path, results)
            print(f"wrote {predictions_path}")
        for r in results:
            shown = ", ".join(f"{k}={v:.4f}" for k, v in r.metrics.items() if not k.startswith("num_"))
            print(f"{r.task}: {shown} ({r.num_examples:,} examples, {r.seconds:.1f} s)")
        print(f"wrote {paths['metrics']} and {paths['report']} ({info['wall_seconds']} s in all)")
    return {r.task: r.metrics for r in results}


def _register_gin():
    import gin

    return gin.external_configurable(evaluate_checkpoint, module="recjax.eval")


def main(argv: list[str]) -> int:
    files, bindings, search, rest = gin_utils.split_gin_flags(argv)
    parser = argparse.ArgumentParser(prog="recjax eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="checkpoint directory (CHECKPOINT_PATH)")
    parser.add_argument("--step", type=int, help="checkpoint step (default: the newest)")
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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
