"""Model selection while training (#22 item 4): the best checkpoint on validation, and early
stopping, as every reference recommender result is selected.

`train` evaluates on validation every `eval_period` steps (the evaluator's users: all, or a seeded
sample fixed for the whole run). After each evaluation the metric `best_metric` (default: the
retrieval task's NDCG@10) is compared with the best so far; an improvement writes the params to
MODEL_DIR/best/ (a params-only checkpoint, one step: the step it was taken at) and best.json; after
`patience` evaluations without improvement the run stops. What the selection has seen is saved
with every checkpoint, so a resumed run selects exactly as an uninterrupted one.

    recjax eval --checkpoint MODEL_DIR --step best ...   (also infer and export)
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping, Optional, Sequence

import jax

from recjax import checkpoints
from recjax.config import T5Config
from recjax.data.atomic import atomic_write

BEST_SUBDIR, BEST_FILE = checkpoints.BEST_SUBDIR, checkpoints.BEST_FILE
# Metrics where lower is better; every other one (hit, ndcg, hr, ...) is better higher.
LOWER_IS_BETTER = ("rmse", "mae", "loss")


def lower_is_better(metric: str) -> bool:
    return metric.rpartition("/")[2].endswith(LOWER_IS_BETTER)


def resolve_metric(metric: str, keys: Sequence[str]) -> str:
    """The evaluation key `metric` names: itself ("beauty_retrieval/ndcg@10"), or "KIND/name" for
    the one task of that kind ("retrieval/ndcg@10"); one line naming what exists otherwise."""
    if metric in keys:
        return metric
    kind, _, name = metric.rpartition("/")
    matches = [k for k in keys if k.rpartition("/")[2] == name and (not kind or k.rpartition("/")[0].endswith(
        "_" + kind) or k.rpartition("/")[0] == kind)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ValueError(f"train_lib.train.best_metric {metric!r}: the evaluation has no such metric; it has "
                         f"{', '.join(sorted(keys))}")
    raise ValueError(f"train_lib.train.best_metric {metric!r} names several metrics ({', '.join(sorted(matches))}); "
                     "name the task")


# best_metric = "auto": the first of these whose kind the evaluator scores.
AUTO_METRICS = ("retrieval/ndcg@10", "ranking/ndcg@10", "rating/rmse")


def auto_metric(task_names: Optional[Sequence[str]]) -> str:
    """The metric "auto" stands for, given the evaluated tasks (unknown: retrieval's NDCG@10)."""
    for metric in AUTO_METRICS:
        kind = metric.partition("/")[0]
        if task_names is None or any(t.endswith("_" + kind) for t in task_names):
            return metric
    return AUTO_METRICS[0]


def check_metric_tasks(metric: str, task_names: Sequence[str]) -> None:
    """Before any work: the task or kind part of `metric` must name one of the evaluated tasks."""
    kind = metric.rpartition("/")[0]
    if kind and not any(t == kind or t.endswith("_" + kind) for t in task_names):
        raise ValueError(f"train_lib.train.best_metric {metric!r}: no evaluated task is {kind!r} or of kind {kind!r}; "
                         f"the evaluator scores {', '.join(task_names)}")


@dataclasses.dataclass
class Selection:
    """The state of model selection: saved with each checkpoint (`state()`), restored on resume."""

    metric: str  # as configured ("retrieval/ndcg@10")
    patience: Optional[int]  # evaluations without improvement before stopping; None: never stop
    key: Optional[str] = None  # the evaluation key it resolved to
    best_value: Optional[float] = None
    best_step: Optional[int] = None
    since_best: int = 0  # evaluations since the best one
    history: list = dataclasses.field(default_factory=list)  # [(step, value)]

    def __post_init__(self):
        if self.patience is not None and (isinstance(self.patience, bool) or not isinstance(self.patience, int)
                                          or self.patience < 1):
            raise ValueError(f"train_lib.train.patience must be a positive int or None, got {self.patience!r}")
        if not isinstance(self.metric, str) or not self.metric:
            raise ValueError(f"train_lib.train.best_metric must be a metric name such as 'retrieval/ndcg@10', "
                             f"got {self.metric!r}")

    @property
    def stopped(self) -> bool:
        return self.patience is not None and self.since_best >= self.patience

    def update(self, step: int, results: Mapping[str, float]) -> bool:
        """Takes an evaluation; True when it is the best so far (the caller saves the params)."""
        self.key = self.key or resolve_metric(self.metric, list(results))
        value = float(results[self.key])
        self.history.append((int(step), value))
        better = (self.best_value is None or
                  (value < self.best_value if lower_is_better(self.key) else value > self.best_value))
        if better:
            self.best_value, self.best_step, self.since_best = value, int(step), 0
        else:
            self.since_best += 1
        return better

    def state(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def restore(cls, metric: str, patience: Optional[int], state: Optional[Mapping[str, Any]]) -> "Selection":
        """A selection resumed from a checkpoint's state (its metric must be the run's); fresh without one."""
        selection = cls(metric, patience)
        if state:
            if state.get("metric") != metric:
                raise ValueError(f"train_lib.train.best_metric is {metric!r} but this run selected by "
                                 f"{state.get('metric')!r} so far; keep it (or start a new MODEL_DIR)")
            selection.key, selection.best_value = state.get("key"), state.get("best_value")
            selection.best_step, selection.since_best = state.get("best_step"), int(state.get("since_best", 0))
            selection.history = [tuple(h) for h in state.get("history", [])]
        return selection

    def summary(self) -> str:
        if self.best_step is None:
            return ""
        return f"best {self.key} {self.best_value:.4f} at step {self.best_step}"


def save_best(model_dir: str, params: Any, config: T5Config, step: int, selection: Selection,
              item_ids: Optional[Mapping[str, Any]]) -> str:
    """Writes the best params to MODEL_DIR/best (replacing the previous best) and best.json."""
    directory = os.path.join(model_dir, BEST_SUBDIR)
    if jax.process_index() == 0:
        checkpoints.write_config(directory, config)
        checkpoints.check_item_ids(directory, item_ids, write=True)
    manager = checkpoints.open_manager(directory)
    try:
        # A resumed run may find a best of a later step (evaluated after its last checkpoint) or of
        # this one: the new best replaces whatever is there.
        if step in manager.all_steps():
            manager.delete(step)
        manager.save(step, args=checkpoints.composite_save_args(params), force=True)
        manager.wait_until_finished()
        for old in manager.all_steps():
            if old != step:
                manager.delete(old)
    finally:
        manager.close()
    if jax.process_index() == 0:
        atomic_write(os.path.join(directory, BEST_FILE), json.dumps(
            {"step": step, "metric": selection.key, "value": selection.best_value,
             "history": selection.history}, indent=1) + "\n")
    return directory
