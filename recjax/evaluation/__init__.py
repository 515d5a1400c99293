"""Evaluation: metrics of a model on the recommendation tasks of a task or mixture.

- `evaluator`: retrieval by constrained beam search (or exact best-first search) over all items,
  ranking of candidates by log-likelihood, rating; `evaluate`, `TrainEvaluator` for training;
- `checkpoint`: `evaluate_checkpoint`, what `recjax eval` runs (restore, evaluate, report);
- `report`: metrics.json, report.md, the plot and the predictions file;
- `paired`: paired comparison of two runs' predictions (`recjax compare`).
"""
from recjax.evaluation.evaluator import (EvalOptions, EvalTask, TaskResult, TrainEvaluator, catalog_of, eval_task,
                                         evaluate, evaluate_tasks, flatten_metrics, load_examples, sample_indices)

__all__ = ["EvalOptions", "EvalTask", "TaskResult", "TrainEvaluator", "catalog_of", "eval_task", "evaluate",
           "evaluate_tasks", "flatten_metrics", "load_examples", "sample_indices"]
