"""`evaluate_checkpoint`: what `recjax eval` runs. The checkpoint is restored onto the mesh
(`recjax.restore`), checked against the task's item IDs, evaluated on a task or mixture, and the
report written (metrics.json, report.md, metrics.png, and optionally every user's predictions)."""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Optional, Sequence


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
    from recjax.evaluation import report
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
