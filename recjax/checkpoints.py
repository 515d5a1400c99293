"""recjax's one checkpoint format: an orbax `CheckpointManager` directory plus the model config.

Layout (orbax names the step directories; the items are named so a trainer can add its own):

    DIR/model_config.json         the `T5Config` (recjax.config), one per directory
    DIR/<step>/params/            item "params": the param tree (orbax PyTree, OCDBT)
    DIR/<step>/opt_state/         item "opt_state": optimizer state (trainer checkpoints only)
    DIR/<step>/data_state/        item "data_state": input-pipeline position, JSON (trainer only)

`save_params` writes a params-only checkpoint (what `recjax convert` produces and a trainer can
start from); a trainer saves the full state with `open_manager` + `composite_save_args` in the
same directory, and `restore_params` reads only the params item of either kind. Every restore is
checked key by key and shape by shape against `recjax.param_tree.expected_param_shapes(config)`,
before any array is read.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
from typing import Any, Mapping, Optional, Union

import jax
import numpy as np
import orbax.checkpoint as ocp

from recjax.config import CONFIG_FILENAME, T5Config
from recjax.param_tree import (VOCAB_PARAMS, CheckpointError, flatten_params, unflatten_params,
                               validate_dtypes, validate_param_shapes)
from recjax.data import atomic
from recjax.items import record as item_record
from recjax.data.atomic import atomic_write

PARAMS_ITEM = "params"
OPT_STATE_ITEM = "opt_state"
DATA_STATE_ITEM = "data_state"
INPUT_ITERATOR_ITEM = "input_iterator"  # the Grain loader's position, one JSON file per process


class CorruptCheckpointError(CheckpointError):
    """A checkpoint step whose files are missing, truncated or unreadable (`train` falls back to
    the newest intact step)."""


# ----------------------------------------------------------------------------------------------
# Reading a step: its files checked first, storage errors turned into one line.
# ----------------------------------------------------------------------------------------------

# Files orbax writes in every PyTree item (params, opt_state) and in the JSON item (data_state).
_PYTREE_ITEM_FILES = ("_METADATA", "manifest.ocdbt")
_JSON_ITEM_FILES = ("metadata",)


def check_step_files(directory: str, step: int, items: tuple[str, ...] = (PARAMS_ITEM,)) -> None:
    """CorruptCheckpointError naming the first missing item or file of `directory/step`."""
    step_dir = os.path.join(directory, str(step))
    for item in items:
        item_dir = os.path.join(step_dir, item)
        if not os.path.isdir(item_dir):
            raise CorruptCheckpointError(f"{item_dir}: missing; checkpoint step {step} is incomplete or corrupt")
        for name in _JSON_ITEM_FILES if item == DATA_STATE_ITEM else _PYTREE_ITEM_FILES:
            if not os.path.isfile(os.path.join(item_dir, name)):
                raise CorruptCheckpointError(f"{os.path.join(item_dir, name)}: missing; checkpoint step {step} is "
                                             f"corrupt")


def _storage_error(directory: str, step: int, error: BaseException) -> CorruptCheckpointError:
    """One line from a TensorStore / orbax read error: the tensor and file it names, and its code."""
    text = str(error)
    step_dir = os.path.join(directory, str(step))
    code = re.match(r"^([A-Z_]{4,}):", text)
    tensor = re.search(r'(?:Error reading|Metadata at) "([^"/]+)', text)
    files = [f for f in re.findall(r'local file "([^"]+)"', text) if not f.endswith("/")]
    what = []
    if tensor:
        what.append(f"tensor {tensor.group(1).replace('.', '/')} cannot be read")
    if files:
        what.append(f"file {files[-1]}")
    if code:
        what.append(code.group(1))
    if not what:
        what.append(f"{type(error).__name__}: {text.strip().splitlines()[0][:200] if text.strip() else ''}".rstrip(": "))
    return CorruptCheckpointError(f"{step_dir}: checkpoint step {step} is corrupt ({', '.join(what)})")


@contextlib.contextmanager
def reading_step(directory: str, step: int, items: tuple[str, ...] = (PARAMS_ITEM,)):
    """Wraps orbax's restore of `directory/step`: missing files and unreadable tensors (truncated,
    deleted, garbled) become one CorruptCheckpointError line instead of a storage traceback."""
    check_step_files(directory, step, items)
    try:
        yield
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001  the sharded path raises a bare Exception ("Encountered error while reading array index")
        error = _storage_error(directory, step, e)
        if "cannot be read" not in str(error):  # the sharded read names no tensor: find it on the host
            error = _diagnose(directory, step, items) or error
        raise error from None


def _diagnose(directory: str, step: int, items: tuple[str, ...]) -> Optional[CorruptCheckpointError]:
    """The error that names the unreadable tensor and file of a step, found by reading its
    PyTree items into host memory (what a failed read onto a mesh does not say); None if they
    all read."""
    manager = open_manager(directory, create=False)
    try:
        for item in items:
            if item == DATA_STATE_ITEM:
                continue
            tree = manager.item_metadata(step)[item].tree
            args = jax.tree_util.tree_map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
            try:
                manager.restore(step, args=ocp.args.Composite(**{item: ocp.args.PyTreeRestore(restore_args=args)}))
            except Exception as e:  # noqa: BLE001
                return _storage_error(directory, step, e)
    except Exception as e:  # noqa: BLE001  unreadable metadata
        return _storage_error(directory, step, e)
    finally:
        manager.close()
    return None


# ----------------------------------------------------------------------------------------------
# The manager and its items.
# ----------------------------------------------------------------------------------------------

class IteratorPosition:
    """An input iterator's state as Grain's orbax handler saves and restores it (one
    `process_I-of-P.json` per process): the state is taken when the step is saved, so an
    asynchronous write stores that step's position, not a later one."""

    def __init__(self, state: Optional[dict] = None):
        self.state = state

    def get_state(self) -> bytes:
        return json.dumps(self.state).encode()

    def set_state(self, state: bytes) -> None:
        self.state = json.loads(state)

    def start_prefetch(self) -> None:  # the handler's restore calls it; a position prefetches nothing
        pass


def item_handlers() -> dict[str, Any]:
    """The handler of each item a recjax checkpoint step may hold."""
    import grain

    return {PARAMS_ITEM: ocp.PyTreeCheckpointHandler(), OPT_STATE_ITEM: ocp.PyTreeCheckpointHandler(),
            DATA_STATE_ITEM: ocp.JsonCheckpointHandler(), INPUT_ITERATOR_ITEM: grain.checkpoint.CheckpointHandler()}


def has_item(directory: str, step: int, item: str) -> bool:
    return os.path.isdir(os.path.join(directory, str(step), item))


def open_manager(directory: str, *, create: bool = True, max_to_keep: Optional[int] = None,
                 save_interval_steps: int = 1) -> ocp.CheckpointManager:
    """The orbax manager of a recjax checkpoint directory, with a handler for each named item.

    `create=False` opens an existing directory for reading (orbax's read_only mode only adds
    warnings; a manager that is not asked to save writes nothing).
    """
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=create,
                                           save_interval_steps=save_interval_steps)
    return ocp.CheckpointManager(os.path.abspath(directory), item_handlers=item_handlers(), options=options)


def composite_save_args(params: Any, opt_state: Any = None, data_state: Optional[dict] = None,
                        iterator_state: Optional[dict] = None) -> ocp.args.Composite:
    """Save args for one step: params, and for a trainer the optimizer and data-pipeline state
    (the batches consumed; on the Grain path also the iterator's position)."""
    items = {PARAMS_ITEM: ocp.args.PyTreeSave(params)}
    if opt_state is not None:
        items[OPT_STATE_ITEM] = ocp.args.PyTreeSave(opt_state)
    if data_state is not None:
        items[DATA_STATE_ITEM] = ocp.args.JsonSave(data_state)
    if iterator_state is not None:
        import grain

        items[INPUT_ITERATOR_ITEM] = grain.checkpoint.CheckpointSave(IteratorPosition(iterator_state))
    return ocp.args.Composite(**items)


def restore_iterator_state(manager: ocp.CheckpointManager, step: int) -> Optional[dict]:
    """This process's saved input-iterator position of `step`, None where the step has none."""
    if not has_item(str(manager.directory), step, INPUT_ITERATOR_ITEM):
        return None
    import grain

    restored = manager.restore(step, args=ocp.args.Composite(**{
        INPUT_ITERATOR_ITEM: grain.checkpoint.CheckpointRestore(IteratorPosition())}))
    return restored[INPUT_ITERATOR_ITEM].state


# Fields that change how a model trains or computes, not its parameters: a run may resume with
# another value (e.g. --gin.DROPOUT_RATE, ACTIVATION_DTYPE).
TRAINING_ONLY_FIELDS = ("dropout_rate", "dtype")


def check_config(directory: str, config: T5Config) -> None:
    """Refuses (one line naming the fields that differ) a directory whose model_config.json holds
    another model; writes nothing."""
    path = os.path.join(directory, CONFIG_FILENAME)
    if not os.path.exists(path):
        return
    existing, ours = T5Config.load(path).to_dict(), config.to_dict()
    differ = [k for k in ours if k not in TRAINING_ONLY_FIELDS and existing.get(k) != ours[k]]
    if differ:
        shown = "; ".join(f"{k} {existing.get(k)!r} there, {ours[k]!r} here" for k in differ)
        raise CheckpointError(f"{path}: holds a different model config ({shown}); use a new directory")


def write_config(directory: str, config: T5Config) -> None:
    """Writes model_config.json; refuses to put a second, different model in one directory
    (`check_config`); an existing one that differs in training-only fields is kept."""
    check_config(directory, config)
    if os.path.exists(os.path.join(directory, CONFIG_FILENAME)):
        return
    os.makedirs(directory, exist_ok=True)
    config.save(directory)


def save_params(directory: str, params: Mapping[str, Any], config: T5Config, step: int = 0) -> str:
    """Writes a params-only checkpoint at `step` (+ model_config.json); returns the step directory.

    `params` is the nested param dict (numpy or jax arrays, any float dtype); it is checked
    against `config` first, so an invalid checkpoint is never written.
    """
    flat = flatten_params(params)
    validate_param_shapes({k: tuple(np.shape(v)) for k, v in flat.items()}, config, source="params to save")
    validate_dtypes({k: v.dtype for k, v in flat.items()}, source="params to save")
    write_config(directory, config)
    return save_param_tree(directory, unflatten_params(flat), step)


def save_param_tree(directory: str, params: Any, step: int = 0) -> str:
    """Writes any param tree as the `params` item of `step` in the one checkpoint layout (a T5's
    adds model_config.json through `save_params`; the baselines' networks have no T5Config);
    returns the step directory."""
    manager = open_manager(directory)
    try:
        manager.save(step, args=composite_save_args(params), force=True)
        manager.wait_until_finished()
    finally:
        manager.close()
    return os.path.join(os.path.abspath(directory), str(step))


def restore_param_tree(directory: str, abstract_params: Any = None) -> Any:
    """The `params` item of the newest step of `directory` (`save_param_tree`'s layout), laid out
    like `abstract_params` when given (arrays or ShapeDtypeStructs), else numpy arrays."""
    manager = open_manager(directory, create=False)
    try:
        step = manager.latest_step()
        if step is None:
            raise CheckpointError(f"{os.path.abspath(directory)}: no checkpoint steps found")
        if abstract_params is None:
            item = ocp.args.PyTreeRestore()
        else:  # each array with the sharding and dtype of its template
            item = ocp.args.PyTreeRestore(item=abstract_params,
                                          restore_args=ocp.checkpoint_utils.construct_restore_args(abstract_params))
        with reading_step(os.path.abspath(directory), step):
            return manager.restore(step, args=ocp.args.Composite(**{PARAMS_ITEM: item}))[PARAMS_ITEM]
    finally:
        manager.close()


def check_item_ids(directory: str, record: Optional[Mapping[str, Any]], *, write: bool = False) -> None:
    """Refuses (one line) to use a checkpoint with a dataset whose item IDs differ from those it
    was trained on (another scheme, another seed, another catalog); with `write`, records them
    when the checkpoint has no record yet."""
    if record is None:
        return
    path = os.path.join(directory, item_record.ITEM_IDS_FILE)
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            problem = item_record.mismatch(json.load(f), record)
        if problem:
            raise CheckpointError(f"{directory}: {problem}")
    elif write:
        os.makedirs(directory, exist_ok=True)
        atomic_write(path, json.dumps(dict(record), indent=2))


def resolve_checkpoint_dir(path: str) -> str:
    """A recjax checkpoint directory, or a train run's MODEL_DIR holding one in checkpoints/."""
    if os.path.isfile(os.path.join(path, CONFIG_FILENAME)):
        return path
    nested = os.path.join(path, "checkpoints")
    if os.path.isfile(os.path.join(nested, CONFIG_FILENAME)):
        return nested
    raise CheckpointError(f"{path}: not a recjax checkpoint directory (no {CONFIG_FILENAME} in it or in "
                          f"{nested}); convert HF/T5X checkpoints with `recjax convert`")


def latest_step(directory: str) -> Optional[int]:
    """The newest step in a recjax checkpoint directory, or None if it holds none."""
    if not os.path.isdir(directory):
        return None
    manager = open_manager(directory, create=False)
    try:
        return manager.latest_step()
    finally:
        manager.close()


# A train run keeps the best checkpoint on validation in MODEL_DIR/best (recjax.model_selection):
# --step best of eval, infer, score and export.
BEST = "best"
BEST_SUBDIR = "best"
BEST_FILE = "best.json"


def best_directory(path: str) -> str:
    """MODEL_DIR/best of a train run (`path` = MODEL_DIR, or its checkpoints/ folder); one line
    when the run kept none."""
    path = os.path.abspath(path)
    if os.path.basename(path) == "checkpoints":
        path = os.path.dirname(path)
    best = os.path.join(path, BEST_SUBDIR)
    if not os.path.isfile(os.path.join(best, BEST_FILE)):
        raise CheckpointError(f"{path}: no best checkpoint ({os.path.join(best, BEST_FILE)} missing); train keeps one "
                              "when it evaluates on validation (eval_period with an evaluator, gin/runs/validation.gin)")
    return best


class Checkpoint:
    """A recjax checkpoint resolved once per command: its directory (a converted checkpoint, or a
    train run's MODEL_DIR holding it in checkpoints/), model config and steps, read through one
    orbax manager.

        with Checkpoint("runs/beauty") as ckpt:
            params, step = ckpt.restore_params(shardings=partitioner.param_shardings(...))
    """

    def __init__(self, path: str):
        path = os.path.abspath(path)
        if not os.path.isdir(path):
            raise CheckpointError(f"{path}: no such checkpoint directory (not a recjax checkpoint: convert HF/T5X "
                                  f"checkpoints with `recjax convert`, or pass a train run's MODEL_DIR)")
        self.directory = resolve_checkpoint_dir(path)
        self.config = T5Config.load(os.path.join(self.directory, CONFIG_FILENAME))
        self._manager = open_manager(self.directory, create=False)
        self._path, self._best = path, None

    def __enter__(self) -> "Checkpoint":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._manager.close()
        if self._best is not None:
            self._best.close()

    def best(self) -> "Checkpoint":
        """The run's best checkpoint on validation (MODEL_DIR/best); one line when it kept none."""
        if self._best is None:
            self._best = Checkpoint(best_directory(self._path))
        return self._best

    def step(self, step: Union[int, str, None] = None) -> int:
        """`step` if the checkpoint holds it, else (None) the newest, or ('best') the step of the
        run's best checkpoint; one line when there is none."""
        if step == BEST:
            return self.best().step()
        steps = self._manager.all_steps()
        if not steps:
            raise CheckpointError(f"{self.directory}: no checkpoint steps found")
        if step is None:
            return max(steps)
        if step not in steps:
            raise CheckpointError(f"{self.directory}: no step {step}; steps present: {sorted(steps)}")
        return step

    def check_item_ids(self, record: Optional[Mapping[str, Any]]) -> None:
        """One-line error when a dataset writes items differently from the training data."""
        check_item_ids(self.directory, record)

    def restore_params(self, step: Union[int, str, None] = None, *,
                       shardings: Any = None) -> tuple[dict[str, Any], int]:
        """(params, step): the params item (of a params-only or a full train-state checkpoint) of
        `step` (default: the newest; 'best': the run's best checkpoint), validated against the config. Numpy arrays in the stored
        dtype, or, with `shardings` (a tree of `jax.sharding.Sharding` matching the params), jax
        arrays laid out on the mesh directly."""
        if step == BEST:
            return self.best().restore_params(None, shardings=shardings)
        directory, manager = self.directory, self._manager
        step = self.step(step)
        item_dir = os.path.join(directory, str(step), PARAMS_ITEM)
        if not os.path.isdir(item_dir):
            raise CheckpointError(f"{item_dir}: missing; step {step} has no '{PARAMS_ITEM}' item")
        with reading_step(directory, step):
            metadata = manager.item_metadata(step)[PARAMS_ITEM]
        flat_meta = flatten_params(metadata.tree)
        validate_param_shapes({k: tuple(m.shape) for k, m in flat_meta.items()}, self.config, source=item_dir)
        validate_dtypes({k: m.dtype for k, m in flat_meta.items()}, source=item_dir)
        if shardings is None:
            flat_args = {k: ocp.RestoreArgs(restore_type=np.ndarray) for k in flat_meta}
        else:
            flat_shardings = flatten_params(shardings)
            flat_args = {k: ocp.ArrayRestoreArgs(sharding=flat_shardings[k], global_shape=tuple(m.shape),
                                                 dtype=m.dtype) for k, m in flat_meta.items()}
        with reading_step(directory, step):
            restored = manager.restore(step, args=ocp.args.Composite(
                **{PARAMS_ITEM: ocp.args.PyTreeRestore(restore_args=unflatten_params(flat_args))}))
        return dict(restored[PARAMS_ITEM]), step


def restore_params(directory: str, step: Optional[int] = None, *,
                   shardings: Any = None) -> tuple[dict[str, Any], T5Config]:
    """(params, config) of a checkpoint directory or a train run's MODEL_DIR (`Checkpoint`)."""
    with Checkpoint(directory) as checkpoint:
        params, _ = checkpoint.restore_params(step, shardings=shardings)
        return params, checkpoint.config


# ----------------------------------------------------------------------------------------------
# Growing the vocabulary (item-code tokens of a structured item-ID scheme).
# ----------------------------------------------------------------------------------------------



def grow_vocabulary(params: Mapping[str, Any], config: T5Config, vocab_size: int,
                    seed: int = 0) -> tuple[dict[str, Any], T5Config]:
    """Params and config with the vocabulary grown to `vocab_size` (new item-code tokens): every
    old row is kept bit for bit, each new row is the mean of the old rows plus Gaussian noise of
    0.1x their per-dimension standard deviation (seeded), so new tokens start as "an average token"
    that training then separates."""
    if vocab_size < config.vocab_size:
        raise CheckpointError(f"vocab_size {vocab_size} is smaller than the checkpoint's {config.vocab_size}; "
                              "a vocabulary can only grow")
    flat = dict(flatten_params(params))
    rng = np.random.default_rng([seed, vocab_size])
    for name, axis in VOCAB_PARAMS.items():
        if name not in flat:
            continue
        old = np.asarray(flat[name])
        rows = np.moveaxis(old, axis, 0).astype(np.float32)  # [vocab, embed]
        new = rows.mean(0) + 0.1 * rows.std(0) * rng.standard_normal((vocab_size - len(rows), rows.shape[1]))
        grown = np.concatenate([rows, new.astype(np.float32)], 0).astype(old.dtype)
        flat[name] = np.moveaxis(grown, 0, axis)
    return unflatten_params(flat), config.replace(vocab_size=vocab_size)


def restore_initial_params(path: str, model_config: T5Config, shardings: Any, seed: int = 0):
    """INITIAL_CHECKPOINT_PATH: the params of a converted checkpoint on the run's mesh, with the
    vocabulary grown (`grow_vocabulary`) when the run's model has more ids (item-code tokens)."""
    config_path = os.path.join(path, CONFIG_FILENAME)
    config = T5Config.load(config_path) if os.path.isfile(config_path) else None
    if config is None or config.vocab_size >= model_config.vocab_size:  # equal, or refused by the caller
        return restore_params(path, shardings=shardings)
    params, config = restore_params(path)
    params, config = grow_vocabulary(params, config, model_config.vocab_size, seed)
    return jax.device_put(params, shardings), config


# ----------------------------------------------------------------------------------------------
# Writing output directories all-or-nothing.
# ----------------------------------------------------------------------------------------------

atomic_directory = atomic.atomic_directory  # one home: recjax.data.atomic
