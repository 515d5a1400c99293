"""`train`: the Gin-configured training loop (T5X's `train.py` in recjax's terms).

Each run writes to MODEL_DIR:
    config.gin            the operative Gin config (what was actually used)
    checkpoints/          orbax CheckpointManager: params, optimizer state, input position
    metrics.jsonl         one JSON object per logged step / validation
    train/, validation/   TensorBoard event files
A run restarted with the same MODEL_DIR resumes from its newest checkpoint; killed at any moment
it ends with the parameters an uninterrupted run would have.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import signal
import sys
import threading
import time
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import gin
import jax
import numpy as np
import optax
import orbax.checkpoint as ocp
from tqdm import tqdm

from recjax import checkpoints
from recjax import model_selection
from recjax import progress as progress_bars
from recjax.exit_codes import first_line
from recjax.config import T5Config
from recjax.data.atomic import atomic_write
from recjax.model import EncoderDecoderModel, LossConfig
from recjax.partitioning import Partitioner
from recjax.trainer import Trainer, TrainState

CHECKPOINT_SUBDIR = "checkpoints"


class NonFiniteLossError(FloatingPointError):
    pass


class Preempted(RuntimeError):
    """SIGTERM stopped the run after saving its step; str(e) names the step and where it is."""


class _Preemption:
    """SIGTERM (a preemptible VM's or a scheduler's notice) sets a flag that the step loop reads
    between steps: the run saves the step it is at and stops, instead of dying mid-step and
    losing everything since its last checkpoint. In-process callers get their handler back."""

    def __init__(self):
        self.event = threading.Event()
        self._previous = None

    def __enter__(self) -> "_Preemption":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, lambda signum, frame: self.event.set())
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def requested(self) -> bool:
        """Whether to stop now; with several processes, all stop at the same step when any one
        got the signal (one small all-gather per step)."""
        local = self.event.is_set()
        if jax.process_count() == 1:
            return local
        from jax.experimental import multihost_utils

        return bool(np.max(multihost_utils.process_allgather(np.int32(local))))


class CheckpointSaveError(RuntimeError):
    """Writing a checkpoint failed (a full disk, ...); str(e) names the step and the reason."""


def check_writable(model_dir: str) -> None:
    """Refuses (one line) a MODEL_DIR that cannot be written, before any work: a probe file is
    created and removed in it, or in its nearest existing parent (root ignores permission bits,
    a read-only filesystem it does not)."""
    probe_dir = os.path.abspath(model_dir)
    while not os.path.isdir(probe_dir):
        parent = os.path.dirname(probe_dir)
        if parent == probe_dir or os.path.lexists(probe_dir):
            raise ValueError(f"{model_dir}: MODEL_DIR cannot be created ({probe_dir} is not a directory)")
        probe_dir = parent
    probe = os.path.join(probe_dir, f".recjax-write-probe-{os.getpid()}")
    try:
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as e:
        raise ValueError(f"{model_dir}: MODEL_DIR is not writable ({probe_dir}: {e.strerror})") from None


def _save_failed(step: Optional[int], ckpt_dir: str, error: BaseException) -> CheckpointSaveError:
    """The step a failed write belongs to: orbax raises an asynchronous save's error at the next
    save, so the step is read off the path the error names when it names one."""
    text = first_line(error)
    named = re.search(re.escape(os.path.abspath(ckpt_dir)) + r"/(\d+)(?:\.orbax-checkpoint-tmp|/)", text)
    step = int(named.group(1)) if named else step
    return CheckpointSaveError(f"saving checkpoint step {step} in {ckpt_dir} failed: {text}")


def _check_saved(manager: ocp.CheckpointManager, step: Optional[int], ckpt_dir: str) -> None:
    """An asynchronous save that failed is reported with the step it was saving, as soon as the
    background write has failed (checked every step), not at the next save."""
    if step is None:
        return
    try:
        manager.check_for_errors()
    except Exception as e:  # orbax re-raises the background thread's error
        raise _save_failed(step, ckpt_dir, e) from None


class MetricsWriter:
    """JSONL log + TensorBoard scalars (process 0 only)."""

    def __init__(self, model_dir: str):
        self.enabled = jax.process_index() == 0
        self.jsonl_path = os.path.join(model_dir, "metrics.jsonl")
        self._writers: dict[str, Any] = {}
        self.model_dir = model_dir

    def write(self, step: int, split: str, metrics: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), "split": split, **{k: float(v) for k, v in metrics.items()}}
        with open(self.jsonl_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if split not in self._writers:
            from tensorboardX import SummaryWriter
            self._writers[split] = SummaryWriter(os.path.join(self.model_dir, split))
        for k, v in metrics.items():
            self._writers[split].add_scalar(k, float(v), int(step))
        self._writers[split].flush()

    def drop_after(self, step: int) -> None:
        """Forget rows past `step`: a run killed between logging and checkpointing logged steps that
        its resumption trains again (and logs again)."""
        if not self.enabled or not os.path.exists(self.jsonl_path):
            return
        with open(self.jsonl_path, encoding="utf-8") as f:
            lines = f.readlines()
        kept = [line for line in lines if line.strip() and json.loads(line)["step"] <= step]
        if len(kept) != len(lines):
            atomic_write(self.jsonl_path, "".join(kept))

    def last_rows(self) -> dict[str, dict]:
        """The last logged row of each split."""
        rows: dict[str, dict] = {}
        if os.path.exists(self.jsonl_path):
            with open(self.jsonl_path, encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        row = json.loads(line)
                        rows[row["split"]] = row
        return rows

    def close(self) -> None:
        for w in self._writers.values():
            w.close()


def _restore_newest_intact(manager: ocp.CheckpointManager, ckpt_dir: str, trainer: Trainer):
    """(step, state, data_state) of the newest checkpoint that reads back whole, or None when there
    is none. A corrupt step (a truncated or deleted file, a missing _METADATA) is said in one line
    and moved aside to `corrupt-STEP` (so a later save of that step does not collide with it);
    the run resumes from the step before it."""
    steps = sorted(manager.all_steps(), reverse=True)
    for i, step in enumerate(steps):
        try:
            with checkpoints.reading_step(ckpt_dir, step, (checkpoints.PARAMS_ITEM, checkpoints.OPT_STATE_ITEM,
                                                           checkpoints.DATA_STATE_ITEM)):
                state, data_state = _restore_train_state(manager, step, trainer)
            if i:
                manager.reload()  # forget the steps moved aside
            return step, state, data_state
        except checkpoints.CorruptCheckpointError as e:
            aside = os.path.join(ckpt_dir, f"corrupt-{step}")
            if jax.process_index() == 0:
                os.rename(os.path.join(ckpt_dir, str(step)), aside)
            following = (f"resuming from step {steps[i + 1]}, the newest before it" if i + 1 < len(steps)
                         else "no checkpoint before it: starting from scratch")
            print(f"warning: {e}; moved it aside to {aside}; {following}", file=sys.stderr, flush=True)
    if steps:
        manager.reload()
    return None


def _restore_train_state(manager: ocp.CheckpointManager, step: int, trainer: Trainer) -> tuple[TrainState, dict]:
    def restore_args(abstract, shardings):
        return jax.tree.map(lambda a, s: ocp.ArrayRestoreArgs(sharding=s, global_shape=a.shape, dtype=a.dtype),
                            abstract, shardings)

    state = trainer.abstract_state
    restored = manager.restore(step, args=ocp.args.Composite(**{
        checkpoints.PARAMS_ITEM: ocp.args.PyTreeRestore(
            item=state.params, restore_args=restore_args(state.params, trainer.state_shardings.params)),
        checkpoints.OPT_STATE_ITEM: ocp.args.PyTreeRestore(
            item=state.opt_state, restore_args=restore_args(state.opt_state, trainer.state_shardings.opt_state)),
        checkpoints.DATA_STATE_ITEM: ocp.args.JsonRestore(),
    }))
    data_state = dict(restored[checkpoints.DATA_STATE_ITEM])
    data_state["iterator_state"] = checkpoints.restore_iterator_state(manager, step)
    return trainer.state_from_arrays(step, restored[checkpoints.PARAMS_ITEM],
                                     restored[checkpoints.OPT_STATE_ITEM]), data_state


def _evaluate_loss(trainer: Trainer, params, cfg, num_batches: int) -> dict[str, float]:
    from recjax.input_pipeline import BatchIterator

    totals: dict[str, float] = {}
    for i, batch in enumerate(BatchIterator(cfg)):
        if i >= num_batches:
            break
        sums = jax.device_get(trainer.eval_step(params, trainer.shard_batch(batch)))
        for k, v in sums.items():
            totals[k] = totals.get(k, 0.0) + float(v)
    tokens = max(totals.get("target_tokens", 0.0), 1.0)
    return {"loss": totals.get("loss_sum", 0.0) / tokens, "accuracy": totals.get("correct_tokens", 0.0) / tokens}


@dataclasses.dataclass(frozen=True)
class TrainSetup:
    """What shapes the train step, from `train`'s (Gin-bound) arguments: `train` builds its
    Trainer from it, and `recjax plan` compiles the same step from it
    (`train(setup_only=True)`), so the two cannot drift apart."""

    model_config: T5Config
    loss_config: LossConfig
    optimizer: optax.GradientTransformation
    batch_size: int
    task_feature_lengths: Mapping[str, int]
    mesh_shape: tuple[int, int]
    sharding_strategy: str
    num_microbatches: int
    pack: bool
    seed: int

    def __post_init__(self):
        _check_counts(batch_size=self.batch_size, num_microbatches=self.num_microbatches)
        lengths = self.task_feature_lengths
        if not isinstance(lengths, Mapping) or not {"inputs", "targets"} <= set(lengths):
            raise ValueError(f"train_lib.train.task_feature_lengths must map 'inputs' and 'targets' to lengths, "
                             f"got {lengths!r}")
        if len(tuple(self.mesh_shape)) != 2:
            raise ValueError(f"train_lib.train.mesh_shape must be (data, model), got {self.mesh_shape!r}")

    def batch_shapes(self) -> dict[str, tuple[int, int]]:
        """The features of SeqIO's EncDecFeatureConverter for one global batch."""
        lengths = self.task_feature_lengths
        enc, dec = (self.batch_size, int(lengths["inputs"])), (self.batch_size, int(lengths["targets"]))
        shapes = {"encoder_input_tokens": enc, "decoder_input_tokens": dec,
                  "decoder_target_tokens": dec, "decoder_loss_weights": dec}
        if self.pack:
            shapes.update(encoder_segment_ids=enc, encoder_positions=enc,
                          decoder_segment_ids=dec, decoder_positions=dec)
        return shapes

    def partitioner(self, devices=None, mesh_shape=None) -> Partitioner:
        """The run's sharding strategy on its mesh (`mesh_shape`, or another such as `recjax
        plan --mesh`, over `devices`, default all)."""
        return Partitioner.create(self.mesh_shape if mesh_shape is None else mesh_shape, self.sharding_strategy,
                                  devices=devices)

    def make_trainer(self, partitioner: Partitioner) -> Trainer:
        """The partitioned train step; the batch is checked against the mesh and the microbatches
        before any input pipeline starts."""
        trainer = Trainer(EncoderDecoderModel(self.model_config, self.loss_config), self.optimizer, partitioner,
                          num_microbatches=self.num_microbatches, seed=self.seed)
        trainer.check_batch_size(self.batch_size)
        return trainer


def _check_counts(**counts: Any) -> None:
    """Step counts and sizes come from Gin (e.g. `--gin.TRAIN_STEPS=None`): refuse anything but a
    positive int before any work, naming the binding."""
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"train_lib.train.{name} must be a positive int, got {value!r}")


@gin.configurable(denylist=["extra_callbacks"])
def train(model_dir: str = gin.REQUIRED,
          mixture_or_task_name: str = gin.REQUIRED,
          task_feature_lengths: Mapping[str, int] = gin.REQUIRED,
          train_steps: int = gin.REQUIRED,
          batch_size: int = 32,
          model_config: T5Config = gin.REQUIRED,
          loss_config: LossConfig = LossConfig(),
          optimizer: Optional[optax.GradientTransformation] = None,
          task_setup: Any = None,
          mesh_shape: Sequence[int] = (-1, 1),
          sharding_strategy: str = "data_parallel",
          num_microbatches: int = 1,
          initial_checkpoint_path: Optional[str] = None,
          pack: bool = False,
          seed: int = 0,
          loader: str = "seqio",
          checkpoint_period: int = 1000,
          keep_checkpoints: Optional[int] = 3,
          async_checkpointing: bool = True,
          log_period: int = 10,
          eval_period: Optional[int] = None,
          eval_split: str = "validation",
          eval_batches: int = 8,
          evaluator: Optional[Callable[..., Mapping[str, float]]] = None,
          best_metric: Optional[str] = "auto",
          patience: Optional[int] = None,
          progress: bool = True,
          extra_callbacks: Sequence[Callable[[int, TrainState, dict], None]] = (),
          setup_only: bool = False) -> Union[TrainState, TrainSetup]:
    """Trains `model_config` on a SeqIO task or mixture; returns the final TrainState (with
    `setup_only`, the run's `TrainSetup` instead, untrained: what `recjax plan` compiles).

    `task_setup` is whatever registers the tasks (a Gin reference such as
    `@tasks.register_dataset()`, evaluated when `train` is called). `evaluator`, when given, is
    called as `evaluator(params=..., step=...)` every `eval_period` steps and at the end and its
    metrics are logged under the evaluator's `split` (`validation` when it has none); with an
    evaluator, the params of the best evaluation by `best_metric` ("KIND/metric" or "TASK/metric";
    "auto": retrieval NDCG@10, else ranking NDCG@10, else rating RMSE; None: no selection) are kept in MODEL_DIR/best, and `patience` evaluations without
    improvement stop the run (recjax.model_selection).
    `loader`: "seqio" (default) or "grain", the TensorFlow-free input path (recjax.grain_loader:
    the same tasks without TensorFlow or SeqIO installed; its position is saved with every
    checkpoint, so a resume does not replay the stream). `pack`: False, True / "t5" (T5's
    packing), or "first_fit" (Grain's; grain loader only).
    """
    del task_setup  # it acted when Gin evaluated it
    if not setup_only:
        _check_counts(train_steps=train_steps, batch_size=batch_size, num_microbatches=num_microbatches,
                      checkpoint_period=checkpoint_period, log_period=log_period, eval_batches=eval_batches)
        if eval_period is not None:
            _check_counts(eval_period=eval_period)
        selecting = _check_selection(evaluator, eval_period, best_metric, patience)
    setup = TrainSetup(model_config, loss_config if loss_config is not None else LossConfig(),
                       optimizer if optimizer is not None else _default_optimizer(), batch_size,
                       dict(task_feature_lengths) if isinstance(task_feature_lengths, Mapping) else task_feature_lengths,
                       tuple(mesh_shape), sharding_strategy, num_microbatches, pack, seed)
    if setup_only:
        return setup
    # The input pipeline is imported here, not with this module: the set-up and the model side
    # (`recjax plan`, checkpoints, decoding) work without it; its SeqIO path imports TensorFlow.
    from recjax.input_pipeline import BatchIterator, DatasetConfig, check_vocabulary_fits

    check_vocabulary_fits(mixture_or_task_name, model_config.vocab_size)
    trainer = setup.make_trainer(setup.partitioner())  # checks the batch before the input pipeline starts
    train_cfg = DatasetConfig(mixture_or_task_name, dict(task_feature_lengths), "train", batch_size,
                              shuffle=True, seed=seed, pack=pack, loader=loader)

    # Nothing is written into MODEL_DIR before the first step has run (a run that fails earlier
    # leaves no config behind to refuse the next attempt); another model's MODEL_DIR is refused now.
    ckpt_dir = os.path.join(model_dir, CHECKPOINT_SUBDIR)
    check_writable(model_dir)
    checkpoints.check_config(ckpt_dir, model_config)
    item_ids = _item_ids_record(mixture_or_task_name)
    checkpoints.check_item_ids(ckpt_dir, item_ids, write=False)
    run = _RunDirectory(model_dir, ckpt_dir, keep_checkpoints, async_checkpointing)
    writer = MetricsWriter(model_dir)
    batches = None
    try:
        start, state, data_state = _restore_or_initialise(run, trainer, model_config, initial_checkpoint_path, seed)
        selection = (model_selection.Selection.restore(selecting, patience, data_state.get("selection"))
                     if selecting else None)
        if start >= train_steps or (selection is not None and selection.stopped):
            _say_finished(model_dir, start, train_steps, writer, selection)
            return state
        writer.drop_after(start)
        batches = BatchIterator(train_cfg, batches_consumed=int(data_state.get("batches_consumed", 0)),
                                iterator_state=data_state.get("iterator_state"))

        def eval_config() -> DatasetConfig:
            return DatasetConfig(mixture_or_task_name, dict(task_feature_lengths), eval_split, batch_size,
                                 shuffle=False, seed=seed, num_epochs=1, loader=loader)

        actions = _PeriodicActions(run, writer, trainer, batches, train_steps, checkpoint_period, log_period,
                                   eval_period, eval_config, eval_batches, evaluator, selection,
                                   (model_config, item_ids), last_saved=start if start > 0 else None)
        began = time.time()
        with _Preemption() as preemption:
            state = _step_loop(trainer, state, batches, start, train_steps, actions, run, model_config, item_ids,
                               extra_callbacks, progress, preemption)
        end = int(state.step)
        if end != actions.last_saved:  # stopped early between checkpoints: its step is the run's end
            actions.save(end, state)
        run.finish(actions.saving)
        if jax.process_index() == 0:
            print(run_summary(model_dir, end, end - start, time.time() - began, actions.last_metrics,
                              actions.last_evaluation, selection, actions.stop_reason), flush=True)
        return state
    finally:
        if batches is not None:
            batches.close()
        run.close()
        writer.close()


class _RunDirectory:
    """MODEL_DIR's checkpoints: one orbax manager, opened when the directory exists (a resumed
    run) or once the first step has run; failed asynchronous saves reported with their step."""

    def __init__(self, model_dir: str, ckpt_dir: str, keep_checkpoints: Optional[int], async_checkpointing: bool):
        self.model_dir, self.ckpt_dir = model_dir, ckpt_dir
        self._keep, self._async = keep_checkpoints, async_checkpointing
        self.manager = self._open() if os.path.isdir(ckpt_dir) else None

    def _open(self) -> ocp.CheckpointManager:
        return ocp.CheckpointManager(
            os.path.abspath(self.ckpt_dir), item_handlers=checkpoints.item_handlers(),
            options=ocp.CheckpointManagerOptions(max_to_keep=self._keep, enable_async_checkpointing=self._async))

    def first_step_ran(self, model_config: T5Config, item_ids) -> None:
        """The run's directory is written once its first step has run: config, item IDs, config.gin."""
        if jax.process_index() == 0:
            checkpoints.write_config(self.ckpt_dir, model_config)
            checkpoints.check_item_ids(self.ckpt_dir, item_ids, write=True)
            atomic_write(os.path.join(self.model_dir, "config.gin"), gin.operative_config_str())
        if self.manager is None:
            self.manager = self._open()

    def check_saved(self, step: Optional[int]) -> None:
        _check_saved(self.manager, step, self.ckpt_dir)

    def save(self, step: int, state: TrainState, data_state: dict, iterator_state: Optional[dict]) -> None:
        try:
            self.manager.save(step, args=checkpoints.composite_save_args(state.params, state.opt_state, data_state,
                                                                         iterator_state))
        except Exception as e:  # OSError, or TensorStore's ValueError (RESOURCE_EXHAUSTED: ...)
            raise _save_failed(step, self.ckpt_dir, e) from None

    def finish(self, saving: Optional[int]) -> None:
        """Waits for the last asynchronous save; a failure is reported with its step."""
        try:
            self.manager.wait_until_finished()
        except Exception as e:
            raise _save_failed(saving, self.ckpt_dir, e) from None
        self.check_saved(saving)

    def close(self) -> None:
        if self.manager is not None:
            self.manager.close()


def _restore_or_initialise(run: _RunDirectory, trainer: Trainer, model_config: T5Config,
                           initial_checkpoint_path: Optional[str], seed: int) -> tuple[int, TrainState, dict]:
    """(step, state, data state: batches consumed, input iterator position, model selection): the
    newest intact checkpoint of the run, else a fresh state (random, or INITIAL_CHECKPOINT_PATH's
    params)."""
    restored = _restore_newest_intact(run.manager, run.ckpt_dir, trainer) if run.manager is not None else None
    if restored is not None:
        return restored
    params = None
    if initial_checkpoint_path:
        params, init_config = checkpoints.restore_initial_params(
            initial_checkpoint_path, model_config, trainer.param_shardings, seed=seed)
        if init_config.replace(dropout_rate=0.0, dtype="float32") != model_config.replace(
                dropout_rate=0.0, dtype="float32"):
            raise ValueError(f"{initial_checkpoint_path}: its model config {init_config} differs from the "
                             f"run's {model_config} (beyond dropout/dtype)")
    return 0, trainer.init_state(params), {}


class _PeriodicActions:
    """What happens every so many steps: metrics (log_period), checkpoints (checkpoint_period),
    validation loss and the evaluator (eval_period); and at the last step, all of them."""

    def __init__(self, run: _RunDirectory, writer: MetricsWriter, trainer: Trainer, batches, train_steps: int,
                 checkpoint_period: int, log_period: int, eval_period: Optional[int], eval_config: Callable,
                 eval_batches: int, evaluator, selection: Optional[model_selection.Selection], model: tuple,
                 last_saved: Optional[int]):
        self.run, self.writer, self.trainer, self.batches = run, writer, trainer, batches
        self.train_steps, self.checkpoint_period, self.log_period = train_steps, checkpoint_period, log_period
        self.eval_period, self.eval_config, self.eval_batches, self.evaluator = (eval_period, eval_config,
                                                                               eval_batches, evaluator)
        self.selection, (self.model_config, self.item_ids) = selection, model
        self.stop_reason: Optional[str] = None  # set when model selection stops the run early
        self.last_saved = last_saved
        self.saving = None  # the step whose asynchronous save may still fail
        self.last_metrics: dict[str, float] = {}  # the last logged train scalars
        self.last_evaluation: Optional[tuple[int, str, dict]] = None  # (step, split, flat metrics)
        self._window = (time.time(), 0, 0)  # start, target tokens, steps since the last log
        self._real = np.zeros(3, np.int64)  # examples, real input tokens, input slots since the last log

    def _due(self, step: int, period: Optional[int]) -> bool:
        return bool(period) and (step % period == 0 or step == self.train_steps)

    def after_step(self, step: int, state: TrainState, metrics: dict, bar, batch: Mapping[str, Any]) -> None:
        start, tokens, steps = self._window
        self._window = (start, tokens + int(metrics["target_tokens"]), steps + 1)
        self._real += real_counts(batch)
        if self._due(step, self.log_period):
            self._log(step, metrics, bar)
        # The evaluation comes first: the checkpoint of its step holds what the selection saw.
        if self._due(step, self.eval_period):
            self._evaluate(step, state)
        if self._due(step, self.checkpoint_period):
            self.save(step, state)

    def save(self, step: int, state: TrainState) -> None:
        data_state = dict(self.batches.state(), step=step)
        if self.selection is not None:
            data_state["selection"] = self.selection.state()
        self.run.save(step, state, data_state, self.batches.iterator_state())
        self.last_saved = self.saving = step

    def _log(self, step: int, metrics: dict, bar) -> None:
        start, tokens, steps = self._window
        elapsed = max(time.time() - start, 1e-9)
        scalars = {k: float(v) for k, v in jax.device_get(metrics).items()}
        # Real (non-padding) tokens and examples: what padding wastes shows as input_fill < 1. Counted
        # on this process's rows, times the processes.
        examples, inputs, slots = (int(x) * jax.process_count() for x in self._real)
        scalars.update(steps_per_sec=steps / elapsed, target_tokens_per_sec=tokens / elapsed,
                       examples_per_sec=examples / elapsed, input_tokens_per_sec=inputs / elapsed,
                       input_fill=inputs / max(slots, 1))
        self.writer.write(step, "train", scalars)
        self.last_metrics = scalars
        bar.set_postfix(loss=f"{scalars['loss']:.4f}", steps_s=f"{scalars['steps_per_sec']:.2f}",
                        ex_s=f"{scalars['examples_per_sec']:.0f}", tok_s=f"{scalars['target_tokens_per_sec']:.0f}",
                        fill=f"{scalars['input_fill']:.0%}")
        self._window = (time.time(), 0, 0)
        self._real[:] = 0

    def _evaluate(self, step: int, state: TrainState) -> None:
        self.writer.write(step, "validation", _evaluate_loss(self.trainer, state.params, self.eval_config(),
                                                             self.eval_batches))
        if self.evaluator is not None:
            results = self.evaluator(params=state.params, step=step)
            split = getattr(self.evaluator, "split", "validation")
            self.writer.write(step, split, results)
            self.last_evaluation = (step, split, dict(results))
            if self.selection is not None:
                self._select(step, state, results)
            if jax.process_index() == 0 and step != self.train_steps:  # the last one is in the run's summary
                tqdm.write(f"evaluation at step {step} ({split}): " + "; ".join(
                    f"{task} " + ", ".join(f"{m} {v:.4f}" for m, v in values.items())
                    for task, values in headline_metrics(results).items()))


    def _select(self, step: int, state: TrainState, results: Mapping[str, float]) -> None:
        selection = self.selection
        if selection.update(step, results):
            model_selection.save_best(self.run.model_dir, state.params, self.model_config, step, selection,
                                      self.item_ids)
        self.writer.write(step, "selection", {f"best/{selection.key}": selection.best_value,
                                              "best_step": selection.best_step,
                                              "evaluations_since_best": selection.since_best})
        if selection.stopped:
            self.stop_reason = (f"stopped early at step {step}: {selection.key} did not improve for "
                                f"{selection.since_best} evaluations")


def _check_selection(evaluator, eval_period: Optional[int], best_metric: Optional[str],
                     patience: Optional[int]) -> Optional[str]:
    """The metric the run selects its best checkpoint by (None: no selection); one line for a
    selection it cannot make, before any work."""
    if evaluator is None or eval_period is None:
        if patience is not None:
            raise ValueError("train_lib.train.patience needs evaluations on validation: set eval_period and an "
                             "evaluator (e.g. include gin/runs/validation.gin)")
        return None
    if best_metric is None:
        if patience is not None:
            raise ValueError("train_lib.train.patience needs a best_metric to watch")
        return None
    split = getattr(evaluator, "split", "validation")
    if split != "validation":  # selecting on test would leak the test split into the model
        if best_metric == "auto" and patience is None:
            return None
        raise ValueError(f"train_lib.train.best_metric / patience select on the evaluator's split, which is "
                         f"{split!r}; model selection reads 'validation' only (set the evaluator's split)")
    names = evaluator.task_names() if callable(getattr(evaluator, "task_names", None)) else None
    if best_metric == "auto":
        best_metric = model_selection.auto_metric(names)
    model_selection.Selection(best_metric, patience)  # checks both
    if names is not None:
        model_selection.check_metric_tasks(best_metric, names)
    return best_metric


def real_counts(batch: Mapping[str, Any]) -> np.ndarray:
    """[examples, real input tokens, input slots] of a host batch: a packed row counts its
    segments, a padded row counts once when it has a target."""
    inputs = np.asarray(batch["encoder_input_tokens"])
    if "encoder_segment_ids" in batch:
        examples = int(np.asarray(batch["encoder_segment_ids"]).max(axis=1).sum())
    else:
        examples = int((np.asarray(batch["decoder_target_tokens"]) > 0).any(axis=1).sum())
    return np.array([examples, int((inputs > 0).sum()), inputs.size], np.int64)


def _step_loop(trainer: Trainer, state: TrainState, batches, start: int, train_steps: int,
               actions: _PeriodicActions, run: _RunDirectory, model_config: T5Config, item_ids,
               extra_callbacks, progress: bool, preemption: Optional[_Preemption] = None) -> TrainState:
    """Steps start+1 .. train_steps: a batch, the partitioned step, the finiteness check (before
    anything is saved), then the periodic actions; after SIGTERM, the step is saved and
    `Preempted` raised (at most the step in progress, an evaluation in progress and one save after
    the signal)."""
    bar = progress_bars.bar(total=train_steps, initial=start, desc="train", unit="step",
                            disable=not progress or jax.process_index() != 0)
    for step in range(start + 1, train_steps + 1):
        run.check_saved(actions.saving)
        batch = next(batches)
        state, metrics = trainer.train_step(state, trainer.shard_batch(batch))
        loss, param_norm = float(metrics["loss"]), float(metrics["param_norm"])
        if not (math.isfinite(loss) and math.isfinite(param_norm)):
            # Checked before any save, so no checkpoint ever holds non-finite params.
            what = f"loss is {loss}" if not math.isfinite(loss) else f"loss is {loss} but the updated params are {param_norm}"
            kept = (f"The last good checkpoint is step {actions.last_saved} in {run.ckpt_dir}"
                    if actions.last_saved is not None else "No checkpoint was saved yet")
            raise NonFiniteLossError(
                f"step {step}: {what}; stopped. {kept} (lower the learning rate, or check the data around "
                f"batch {batches.batches_consumed}).")
        if step == start + 1:  # the first step ran: now the run's directory is written
            run.first_step_ran(model_config, item_ids)
        bar.update(1)
        actions.after_step(step, state, metrics, bar, batch)
        for callback in extra_callbacks:
            callback(step, state, metrics)
        if actions.stop_reason:
            break
        if preemption is not None and preemption.requested():
            bar.close()
            if actions.last_saved != step:
                actions.save(step, state)
            run.finish(actions.saving)
            raise Preempted(f"preempted (SIGTERM) at step {step}: saved checkpoint step {step} in "
                            f"{os.path.abspath(run.ckpt_dir)}; run the same command to resume")
    bar.close()
    return state


# The metrics a run's summary shows per task (of the many the evaluator logs), in this order.
HEADLINE_METRICS = ("hit@10", "ndcg@10", "hr@1", "rmse", "mae", "valid_id_rate")


def headline_metrics(flat: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """{"task/metric": v} -> {task: {metric: v}} for the HEADLINE_METRICS each task has."""
    out: dict[str, dict[str, float]] = {}
    for name in HEADLINE_METRICS:
        for key, value in flat.items():
            task, _, metric = key.rpartition("/")
            if metric == name:
                out.setdefault(task, {})[metric] = float(value)
    return dict(sorted(out.items()))


def run_summary(model_dir: str, step: int, steps_run: int, seconds: float, last: Mapping[str, float],
                evaluation: Optional[tuple[int, str, Mapping[str, float]]],
                selection: Optional[model_selection.Selection] = None, stop_reason: Optional[str] = None) -> str:
    """What a finished run prints: steps and time, the last loss, the headline metrics of the last
    evaluation as a table, the best checkpoint, and where everything went."""
    minutes, secs = divmod(int(round(seconds)), 60)
    lines = [f"done: step {step} ({steps_run} steps in {minutes} min {secs} s" +
             (f", {steps_run / seconds:.2f} steps/s" if seconds > 0 else "") + ")" +
             (f"; last train loss {last['loss']:.4f}" if "loss" in last else "")]
    if evaluation is not None:
        at, split, flat = evaluation
        table = headline_metrics(flat)
        columns = [m for m in HEADLINE_METRICS if any(m in v for v in table.values())]
        if table:
            lines += ["", f"evaluation at step {at} ({split}):", "| task | " + " | ".join(columns) + " |",
                      "|---" * (len(columns) + 1) + "|"]
            lines += [f"| {task} | " + " | ".join(f"{v[m]:.4f}" if m in v else "-" for m in columns) + " |"
                      for task, v in table.items()]
    if stop_reason:
        lines += ["", stop_reason]
    if selection is not None and selection.best_step is not None:
        best = os.path.join(os.path.abspath(model_dir), model_selection.BEST_SUBDIR)
        lines += ["", f"{selection.summary()}: {best} (eval, infer, export: --step best)"]
    model_dir = os.path.abspath(model_dir)
    lines += ["", f"written to {model_dir}:",
              f"  {CHECKPOINT_SUBDIR}/   orbax checkpoints (params, optimizer, input position), model_config.json, "
              "item_ids.json",
              "  config.gin     the operative Gin config",
              *(["  best/          the best checkpoint on validation (params) and best.json"]
                if selection is not None and selection.best_step is not None else []),
              "  metrics.jsonl  every logged metric (TensorBoard: tensorboard --logdir " + model_dir + ")"]
    return "\n".join(lines)


def _say_finished(model_dir: str, step: int, train_steps: int, writer: MetricsWriter,
                  selection: Optional[model_selection.Selection] = None) -> None:
    """Re-running a finished run trains nothing and says so, with its last logged metrics."""
    if jax.process_index() != 0:
        return
    if step < train_steps:  # stopped by model selection
        print(f"{model_dir}: stopped early at step {step} of {train_steps} ({selection.key} did not improve for "
              f"{selection.since_best} evaluations); nothing to train (raise train_lib.train.patience to go on)")
    else:
        print(f"{model_dir}: already at step {step} of {train_steps}; nothing to train (raise TRAIN_STEPS to go on)")
    if selection is not None and selection.best_step is not None:
        print(f"  {selection.summary()} ({os.path.join(model_dir, model_selection.BEST_SUBDIR)})")
    for split, row in sorted(writer.last_rows().items()):
        shown = ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k not in ("step", "split") and "per_sec" not in k)
        print(f"  last {split} metrics (step {row['step']}): {shown}")


def _item_ids_record(name: str):
    """The item IDs of the dataset behind NAME (tasks.register_dataset), or None for other tasks."""
    try:
        import tasks
    except ImportError:
        return None
    return tasks.item_ids_record(name)


def _default_optimizer() -> optax.GradientTransformation:
    from recjax.optimizers import adafactor
    return adafactor()
