"""Training loop for the neural baselines: jitted optax step, data-parallel batches, model
selection on the validation split (best NDCG@10, early stopping), test metrics of the best
parameters, and an orbax checkpoint of them.
"""
from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import gin
import jax
import numpy as np
import optax

from recjax import checkpoints
from recjax import progress as progress_bars
from recjax.partitioning import Partitioner
from recjax.baselines.evaluate import PREDICTION_DEPTH, TOP_K, full_ranking
from recjax.baselines.sequences import group_by_width

SELECTION_METRIC = "ndcg@10"


class NeuralRecommender(Protocol):
    """What `SASRec` and `BERT4Rec` provide to the loop."""

    name: str
    num_items: int
    max_len: int

    def init_params(self, rng: jax.Array) -> Any: ...
    def optimizer(self) -> optax.GradientTransformation: ...
    def epoch_batches(self, train_sequences: Sequence[np.ndarray],
                      rng: np.random.Generator) -> Iterator[dict[str, np.ndarray]]: ...
    def loss(self, params: Any, batch: dict[str, jax.Array], dropout_rng: jax.Array) -> jax.Array: ...
    def token_lengths(self, histories: Sequence[np.ndarray]) -> np.ndarray: ...
    def history_tokens(self, histories: Sequence[np.ndarray]) -> np.ndarray: ...
    def scores(self, params: Any, tokens: jax.Array) -> jax.Array: ...


@dataclasses.dataclass
class TrainResult:
    params: Any  # the parameters with the best validation NDCG@10
    valid_metrics: dict[str, float]  # of those parameters
    test_metrics: dict[str, float]  # of those parameters
    test_top: np.ndarray  # [users, PREDICTION_DEPTH] their best test items, best first
    best_epoch: int
    epochs_run: int
    steps_run: int
    stopped_because: str
    train_seconds: float  # optimisation steps and batch building, without evaluation
    eval_seconds: float
    history: list[dict[str, float]]  # one entry per validation: epoch, mean train loss, metrics


def make_train_step(model: NeuralRecommender, tx: optax.GradientTransformation):
    def step(params, opt_state, batch, dropout_rng):
        loss, grads = jax.value_and_grad(model.loss)(params, batch, dropout_rng)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss
    return jax.jit(step, donate_argnums=(0, 1))


def evaluate_model(model: NeuralRecommender, scores_fn, params: Any, histories: Sequence[np.ndarray],
                   targets: np.ndarray, parallel: Partitioner, batch_size: int,
                   return_top: bool = False):
    """Full-ranking metrics of `params` (and, with return_top, the [users, PREDICTION_DEPTH] best
    items); scores_fn = jax.jit(model.scores). Users are batched by token-width bucket so each
    bucket compiles once."""
    def score_rows(rows: np.ndarray) -> np.ndarray:
        tokens = model.history_tokens([histories[r] for r in rows])  # [batch, width]
        return np.asarray(scores_fn(params, parallel.place_batch({"t": tokens})["t"]))

    groups = list(group_by_width(model.token_lengths(histories), model.max_len).values())
    result, top = full_ranking(score_rows, histories, targets, model.num_items, batch_size, groups=groups,
                               depth=PREDICTION_DEPTH if return_top else TOP_K)
    return (result, top) if return_top else result


@gin.configurable(denylist=["model", "train_sequences", "valid_split", "test_split"])
def train_and_evaluate(model: NeuralRecommender, train_sequences: Sequence[np.ndarray],
                       valid_split: tuple[Sequence[np.ndarray], np.ndarray],
                       test_split: tuple[Sequence[np.ndarray], np.ndarray], *,
                       num_epochs: int = 200, eval_every_epochs: int = 5, patience: int = 5,
                       max_train_seconds: float | None = None, eval_batch_size: int = 1024,
                       seed: int = 0, progress: bool = True) -> TrainResult:
    """Train `model`, validate every `eval_every_epochs` epochs (and after the last one), keep the
    parameters with the best validation NDCG@10, stop after `patience` validations without
    improvement or once `max_train_seconds` of training time is spent; then test the best."""
    parallel = Partitioner.create()
    key = jax.random.PRNGKey(seed)
    params = parallel.replicate(model.init_params(key))
    tx = model.optimizer()
    opt_state = parallel.replicate(tx.init(params))
    train_step = make_train_step(model, tx)
    data_rng = np.random.default_rng(seed)
    scores_fn = jax.jit(model.scores)  # compilations shared by every validation and the test

    def validate(p) -> dict[str, float]:
        return evaluate_model(model, scores_fn, p, *valid_split, parallel, eval_batch_size)

    best = {"metrics": None, "params": None, "epoch": 0}
    history: list[dict[str, float]] = []
    train_seconds = eval_seconds = 0.0
    step = 0
    stale = 0
    stopped = f"num_epochs={num_epochs} reached"
    epochs = progress_bars.bar(range(1, num_epochs + 1), desc=f"{model.name} epochs", disable=not progress)
    epoch = 0
    for epoch in epochs:
        start = time.perf_counter()
        losses = []
        for batch in model.epoch_batches(train_sequences, data_rng):
            params, opt_state, loss = train_step(params, opt_state, parallel.place_batch(batch),
                                                 jax.random.fold_in(key, step))
            losses.append(loss)
            step += 1
        mean_loss = float(np.mean(jax.device_get(losses)))  # also waits for the epoch to finish
        if not np.isfinite(mean_loss):
            raise FloatingPointError(f"{model.name}: training loss became {mean_loss} in epoch {epoch}")
        train_seconds += time.perf_counter() - start
        out_of_time = max_train_seconds is not None and train_seconds >= max_train_seconds
        if epoch % eval_every_epochs and epoch != num_epochs and not out_of_time:
            continue
        start = time.perf_counter()
        valid = validate(params)
        eval_seconds += time.perf_counter() - start
        history.append({"epoch": epoch, "step": step, "train_loss": mean_loss, **valid})
        epochs.set_postfix(loss=f"{mean_loss:.4f}", valid_ndcg10=f"{valid[SELECTION_METRIC]:.4f}")
        if best["metrics"] is None or valid[SELECTION_METRIC] > best["metrics"][SELECTION_METRIC]:
            best = {"metrics": valid, "params": jax.device_get(params), "epoch": epoch}
            stale = 0
        else:
            stale += 1
        if stale >= patience:
            stopped = f"early stop: no better valid {SELECTION_METRIC} in {patience} validations"
            break
        if out_of_time:
            stopped = f"max_train_seconds={max_train_seconds} spent"
            break
    epochs.close()
    start = time.perf_counter()
    test, test_top = evaluate_model(model, scores_fn, parallel.replicate(best["params"]), *test_split, parallel,
                                    eval_batch_size, return_top=True)
    eval_seconds += time.perf_counter() - start
    return TrainResult(params=best["params"], valid_metrics=best["metrics"], test_metrics=test, test_top=test_top,
                       best_epoch=best["epoch"], epochs_run=epoch, steps_run=step, stopped_because=stopped,
                       train_seconds=train_seconds, eval_seconds=eval_seconds, history=history)


def save_params(directory: str, params: Any, step: int) -> str:
    """Write `params` in recjax's one checkpoint layout (`checkpoints.save_param_tree`: an orbax
    CheckpointManager directory whose step holds a `params` item)."""
    return os.path.dirname(checkpoints.save_param_tree(directory, params, step))


def restore_params(directory: str, abstract_params: Any | None = None) -> Any:
    """The latest parameters saved by `save_params` (as numpy/jax arrays)."""
    return checkpoints.restore_param_tree(directory, abstract_params)
