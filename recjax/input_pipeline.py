"""Task/mixture -> batches of model features, with a resumable position: through SeqIO (the
default, T5X's) or through Grain (`DatasetConfig.loader = 'grain'`, `recjax.grain_loader`: no
TensorFlow), from the same registration.

The dataset is a deterministic function of (task, split, seed), so a resumed run sees exactly the
batches an uninterrupted run would. Grain's iterator state is saved with each checkpoint and
restored (no replay); SeqIO's dataset is rebuilt and the batches already consumed are skipped.

Multi-host: SeqIO: every process builds the same global batch stream and keeps its own contiguous
rows (`process_index`-th slice). Grain: process p reads examples p, p + P, ... only. Either way P
processes train on the same global batches (as sets of examples) as one process, unpacked.
"""
from __future__ import annotations

import dataclasses
import sys
from typing import Iterator, Mapping, Optional, Union

import gin
import jax
import numpy as np

from recjax.config import padded_vocab_size

LOADERS = ("seqio", "grain")


@gin.configurable
@dataclasses.dataclass(frozen=True)
class DatasetConfig:
    """What T5X's `utils.DatasetConfig` holds, for one dataset split."""

    mixture_or_task_name: str
    task_feature_lengths: Mapping[str, int]
    split: str = "train"
    batch_size: int = 32  # global, over all processes
    shuffle: bool = True
    seed: Optional[int] = 0
    pack: Union[bool, str] = False  # True or "t5": T5's packing; "first_fit": Grain's (grain loader only)
    num_epochs: Optional[int] = None  # None: repeat forever (training)
    loader: str = "seqio"  # or "grain": no TensorFlow or SeqIO (recjax.grain_loader)

    def __post_init__(self):
        check_loader(self.loader, self.pack)


def check_loader(loader: str, pack: Union[bool, str]) -> None:
    """One line for an unknown loader or packing, or one the loader does not do."""
    if loader == "numpy":
        raise ValueError("loader 'numpy' is now 'grain': the TensorFlow-free loader is built on Grain "
                         "(set loader = 'grain')")
    if loader not in LOADERS:
        raise ValueError(f"DatasetConfig.loader must be one of {LOADERS}, got {loader!r}")
    if pack not in (False, True, None, "t5", "first_fit"):
        raise ValueError(f"pack must be False, True (= 't5') or one of ('t5', 'first_fit'), got {pack!r}")
    if pack == "first_fit" and loader != "grain":
        raise ValueError("pack = 'first_fit' needs loader = 'grain' (SeqIO packs the T5 way only: pack = True)")


def _seqio():
    """seqio, with TensorFlow's accelerators hidden before any TF op (TF must not claim the
    accelerator JAX uses); a one-line error where it is not installed."""
    try:
        import seqio
        import tensorflow as tf
    except ImportError as e:
        raise ValueError(f"the SeqIO input path needs {e.name}, which is not installed here; "
                         "set DatasetConfig.loader = 'grain' (the TensorFlow-free loader)") from None
    from recjax import tf_import

    tf_import.hide_accelerators(tf)
    return seqio


def get_mixture_or_task(name: str):
    seqio = _seqio()
    try:
        return seqio.get_mixture_or_task(name)
    except ValueError:
        import tasks

        raise tasks.unknown_task_error(name, list(seqio.TaskRegistry.names()) + list(seqio.MixtureRegistry.names())) from None


def check_vocabulary_fits(name: str, model_vocab_size: int) -> None:
    """One-line error when the task's vocabulary has ids the model cannot embed (a dataset with
    structured item IDs grows the vocabulary past FLAN-T5's 32,128)."""
    import tasks

    needed = max(tasks.dataset_of(task).vocab_size for task, _ in _members(name))
    if needed > model_vocab_size:
        padded = padded_vocab_size(needed)
        raise ValueError(f"{name}: its vocabulary has {needed} ids but the model's vocab_size is {model_vocab_size}; "
                         f"set VOCAB_SIZE = {padded} (T5Config.vocab_size, padded to a multiple of 128)")


def _members(name: str) -> list[tuple[str, float]]:
    """The tasks (with rates) of a registered task or mixture; one-line error for an unknown name."""
    import tasks

    try:
        return tasks.mixture_members(name)
    except ValueError:
        if tasks.seqio_available():
            get_mixture_or_task(name)  # a name SeqIO knows from elsewhere, or SeqIO's message with its names
        raise tasks.unknown_task_error(name) from None


def _process_split(cfg: DatasetConfig, process_index: Optional[int], process_count: Optional[int]) -> tuple[int, int]:
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    if cfg.batch_size % process_count:
        raise ValueError(f"batch size {cfg.batch_size} is not divisible by the {process_count} processes")
    return process_index, process_count


def grain_batches(cfg: DatasetConfig, *, process_index: Optional[int] = None,
                  process_count: Optional[int] = None):
    """The Grain loader's batches for this process (a grain.IterDataset; `iter()` it)."""
    from recjax import grain_loader

    process_index, process_count = _process_split(cfg, process_index, process_count)
    _members(cfg.mixture_or_task_name)  # a clear error for an unknown name
    return grain_loader.batches(cfg.mixture_or_task_name, dict(cfg.task_feature_lengths), split=cfg.split,
                                batch_size=cfg.batch_size, shuffle=cfg.shuffle, seed=int(cfg.seed or 0),
                                pack=cfg.pack, num_epochs=cfg.num_epochs, process_index=process_index,
                                process_count=process_count)


def build_dataset(cfg: DatasetConfig, *, process_index: Optional[int] = None,
                  process_count: Optional[int] = None, skip_batches: int = 0):
    """Batched model features for this process (a tf.data.Dataset): [global_batch / process_count, length] each."""
    process_index, process_count = _process_split(cfg, process_index, process_count)
    seqio = _seqio()
    get_mixture_or_task(cfg.mixture_or_task_name)  # a clear error for an unknown name
    import tasks

    if any(tasks.dataset_of(t).process_block for t, _ in _members(cfg.mixture_or_task_name)):
        raise ValueError(f"{cfg.mixture_or_task_name}: registered with users='per_process', which only the Grain "
                         "loader reads (DatasetConfig.loader = 'grain')")
    ds = seqio.get_dataset(
        cfg.mixture_or_task_name, task_feature_lengths=dict(cfg.task_feature_lengths), dataset_split=cfg.split,
        shuffle=cfg.shuffle, num_epochs=cfg.num_epochs, use_cached=False, seed=cfg.seed,
        feature_converter=seqio.EncDecFeatureConverter(pack=bool(cfg.pack)))
    ds = ds.batch(cfg.batch_size, drop_remainder=cfg.num_epochs is None)
    if skip_batches:
        ds = ds.skip(skip_batches)
    local = cfg.batch_size // process_count
    if process_count > 1:
        start = process_index * local
        ds = ds.map(lambda b: {k: v[start:start + local] for k, v in b.items()})
    return ds.prefetch(2)


class BatchIterator:
    """Numpy batches plus the count consumed, which is what a checkpoint stores, and on the Grain
    path the iterator's position (`iterator_state`, restored with `iterator_state=` instead of
    replaying the stream; without it, a resume at batch k replays k batches)."""

    def __init__(self, cfg: DatasetConfig, batches_consumed: int = 0, iterator_state: Optional[dict] = None,
                 **kwargs):
        self.cfg = cfg
        self.batches_consumed = batches_consumed
        if cfg.loader == "grain":
            self._grain = iter(grain_batches(cfg, **kwargs))
            if iterator_state is not None:
                self._grain.set_state(iterator_state)
            elif batches_consumed:  # a checkpoint without the Grain position (written by the SeqIO path)
                print(f"warning: no Grain position saved with this checkpoint: replaying {batches_consumed} batches",
                      file=sys.stderr, flush=True)
                for _ in range(batches_consumed):
                    next(self._grain)
            self._it = self._grain
        else:
            self._grain = None
            self._it = build_dataset(cfg, skip_batches=batches_consumed, **kwargs).as_numpy_iterator()

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        batch = next(self._it)
        self.batches_consumed += 1
        return batch

    def close(self) -> None:
        """Releases the tf.data iterator (and its generator threads) now, not at interpreter exit."""
        self._it = None
        if self._grain is not None and hasattr(self._grain, "close"):
            self._grain.close()
        self._grain = None

    def state(self) -> dict:
        return {"batches_consumed": self.batches_consumed, "mixture_or_task_name": self.cfg.mixture_or_task_name,
                "seed": self.cfg.seed}

    def iterator_state(self) -> Optional[dict]:
        """The Grain iterator's position after the batches consumed (JSON), None on SeqIO."""
        return None if self._grain is None else self._grain.get_state()
