"""The TensorFlow-free input path, on Grain: the tasks of `tasks.register_dataset` as random-access
Grain datasets, whose iterator position is saved in every checkpoint (a resumed run restores it
instead of replaying the stream).

Chosen in Gin with `DatasetConfig.loader = 'grain'` (`train_lib.train.loader`): for GPU hosts with
a CUDA jax and no TensorFlow, and for runs long enough that replaying a SeqIO stream on resume
costs. The pipeline, from the same registration as SeqIO's tasks:

  source    `TaskSource`: index i of a task is example i mod n of epoch i // n (n examples per
            epoch). An epoch is the blocks of `ExampleBuilder.epoch_blocks` (users in a seeded
            order, `users_per_chunk` to a block, rows shuffled inside the block), located by
            their sizes without building them; a block is built and tokenized when one of its
            examples is read (SeqIO's source builds the same blocks in the same order).
  shuffle   a window shuffle of `shuffle_buffer_size` examples when the registration has one
            (the random-access form of tf.data's shuffle buffer): the examples of each window of
            an epoch in a seeded order, windows never straddling epochs
  mix       `grain.MapDataset.mix` by the mixture's rates (exact proportions, deterministic)
  shard     process p of P reads examples p, p + P, ... (a global batch is the same examples
            as one process's, in another row order)
  convert   pad (EncDecFeatureConverter(pack=False)); or pack: "t5", T5's greedy packing of
            consecutive windows of max(lengths) examples (as seqio.EncDecFeatureConverter(pack=True)),
            or "first_fit", Grain's first-fit packing into batch-size bins (fuller rows)
  batch     batch_size / P rows per process

With `shuffle_buffer_size=None` a single task gives SeqIO's batches array for array, packed ("t5")
or not; with a window shuffle or a mixture the examples of an epoch are SeqIO's, their order is
Grain's (tests/test_grain_loader.py).
"""
from __future__ import annotations

import collections
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Optional, Union

import grain
import numpy as np

from recjax import model_inputs
from recjax.config import EOS_ID
from tasks.examples import token_pairs

PACKINGS = ("t5", "first_fit")
SHUFFLE_STREAM = 7_340_035  # the seed stream of window shuffles
# Examples are read synchronously: building them is Python (the GIL), and Grain's per-element
# prefetch costs more than it overlaps (a 512-element buffer polls every pending read for every
# element: 1,400 packed windows/s against 7,500 without it). Whole batches are prefetched instead,
# BATCH_PREFETCH ahead in one thread, which overlaps reading with the device step (JAX releases
# the GIL while it computes).
READ_OPTIONS = grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)
BATCH_PREFETCH = 2


def packing(pack: Union[bool, str]) -> Optional[str]:
    """DatasetConfig.pack -> None (padded rows), "t5" or "first_fit"; one line for anything else."""
    if pack is False or pack is None:
        return None
    if pack is True:
        return "t5"
    if pack not in PACKINGS:
        raise ValueError(f"pack must be False, True (= 't5') or one of {PACKINGS}, got {pack!r}")
    return pack


class TaskSource(grain.MapDataset):
    """One task's examples of one split, epoch after epoch, by index: {"inputs", "targets"} int32
    token ids, EOS appended after trimming to `lengths`; with `shuffle_window`, shuffled inside
    each window of that many examples of an epoch."""

    _CACHED = 4  # windows' permutations kept; blocks kept: enough for the blocks one window spans

    def __init__(self, task_name: str, split: str, lengths: Mapping[str, int], *, seed: int, shuffle: bool,
                 num_epochs: Optional[int], shuffle_window: Optional[int] = None):
        super().__init__()
        import tasks

        self._builder = tasks.dataset_of(task_name).builder
        kind = tasks.kind_of(task_name)
        self._kind, self._stream = kind.name, kind.stream
        self._window = shuffle_window if shuffle and shuffle_window and shuffle_window > 1 else None
        self._split, self._seed, self._shuffle = split, seed, shuffle
        self._lengths = {k: int(lengths[k]) for k in ("inputs", "targets")}
        self._per_epoch = self._builder.num_examples(self._kind, split)
        if not self._per_epoch:
            raise ValueError(f"task {task_name!r} has no {split!r} examples")
        self._len = sys.maxsize if num_epochs is None else self._per_epoch * num_epochs
        self._lock = threading.Lock()
        self._plans: collections.OrderedDict = collections.OrderedDict()  # epoch -> (starts, blocks)
        self._blocks: collections.OrderedDict = collections.OrderedDict()  # (epoch, block) -> examples
        self._permutations: collections.OrderedDict = collections.OrderedDict()  # (epoch, window) -> order
        self._cached_blocks = 4

    def __len__(self) -> int:
        return self._len

    def __str__(self) -> str:
        return f"TaskSource({self._kind}, {self._split})"

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        if not 0 <= index < self._len:
            raise IndexError(f"{self}: index {index} out of range")
        epoch, j = divmod(int(index), self._per_epoch)
        with self._lock:
            if self._window is not None:
                j = self._shuffled(epoch, j)
            starts, blocks = self._plan(epoch)
            b = int(np.searchsorted(starts, j, side="right")) - 1
            return self._block(epoch, b, blocks[b])[j - int(starts[b])]

    def _shuffled(self, epoch: int, j: int) -> int:
        """Position j of an epoch -> the example it reads: a seeded permutation of its window (the
        epoch's last window is shorter)."""
        window, offset = divmod(j, self._window)
        key = (epoch, window)
        if key not in self._permutations:
            size = min(self._window, self._per_epoch - window * self._window)
            rng = np.random.default_rng([self._seed, SHUFFLE_STREAM, self._stream, epoch, window])
            self._permutations[key] = rng.permutation(size)
            if len(self._permutations) > self._CACHED:
                self._permutations.popitem(last=False)
        return window * self._window + int(self._permutations[key][offset])

    def _plan(self, epoch: int):
        if epoch not in self._plans:
            blocks = self._builder.epoch_blocks(self._kind, self._split, epoch, self._seed, self._shuffle)
            counts = self._builder.examples_per_user(self._kind, self._split)
            sizes = [int(counts[users].sum()) for users, _ in blocks]
            self._plans[epoch] = (np.cumsum([0] + sizes[:-1]), blocks)
            # Reads are near-sequential, but a shuffle window reads every block it overlaps in any
            # order: keep them all built (blocks of one example a user are small).
            spans = -(-(self._window or 1) // max(int(np.median(sizes)), 1)) + 2
            self._cached_blocks = max(self._cached_blocks, spans)
            if len(self._plans) > 2:
                self._plans.popitem(last=False)
        return self._plans[epoch]

    def _block(self, epoch: int, b: int, block) -> list[dict[str, np.ndarray]]:
        key = (epoch, b)
        if key in self._blocks:
            self._blocks.move_to_end(key)
            return self._blocks[key]
        users, order = block
        chunk = self._builder.tokenize(self._kind, self._builder.build_block(
            self._kind, self._split, epoch, self._seed, users, order))
        examples = [{key: model_inputs.trim(np.append(ids, EOS_ID).astype(np.int32), self._lengths[key])
                     for key, ids in pair.items()} for pair in token_pairs(chunk)]
        self._blocks[key] = examples
        if len(self._blocks) > self._cached_blocks:
            self._blocks.popitem(last=False)
        return examples


def examples(name: str, split: str, lengths: Mapping[str, int], *, seed: int, shuffle: bool,
             num_epochs: Optional[int]) -> grain.MapDataset:
    """A task's examples, or a mixture's by its rates, as one random-access dataset. A finite
    mixture (num_epochs set) ends when its first task ends."""
    import tasks

    members = tasks.mixture_members(name)
    parts = [TaskSource(task, split, lengths, seed=seed, shuffle=shuffle, num_epochs=num_epochs,
                        shuffle_window=tasks.dataset_of(task).shuffle_buffer_size) for task, _ in members]
    if len(parts) == 1:
        return parts[0]
    return grain.MapDataset.mix(parts, [float(rate) for _, rate in members])


def batches(name: str, lengths: Mapping[str, int], *, split: str, batch_size: int, shuffle: bool, seed: int,
            pack: Union[bool, str], num_epochs: Optional[int], process_index: int = 0,
            process_count: int = 1) -> grain.IterDataset:
    """This process's batches of model features ([batch_size / process_count, length] each); its
    iterator's `get_state()` is the position a checkpoint keeps."""
    lengths = {k: int(lengths[k]) for k in ("inputs", "targets")}
    ds = examples(name, split, lengths, seed=seed, shuffle=shuffle, num_epochs=num_epochs)
    if not _per_process(name, process_index, process_count, num_epochs) and process_count > 1:
        ds = ds[process_index::process_count]
    local = batch_size // process_count
    rows = ds.to_iter_dataset(READ_OPTIONS)
    drop = num_epochs is None  # a partial last batch only where the stream ends
    packed = packing(pack)
    if packed is None:
        batched = rows.batch(local, drop_remainder=drop, batch_fn=lambda chunk: pad(chunk, lengths))
        return grain.experimental.ThreadPrefetchIterDataset(batched, prefetch_buffer_size=BATCH_PREFETCH)
    if packed == "t5":
        window = max(lengths.values())
        rows = grain.experimental.FlatMapIterDataset(
            rows.batch(window, batch_fn=list).map(lambda chunk: pack_window(chunk, lengths)), _Rows(window))
    else:
        rows = grain.experimental.FirstFitPackIterDataset(rows, length_struct=lengths, num_packing_bins=local,
                                                          seed=seed, shuffle_bins=shuffle)
        rows = rows.map(lambda row: _first_fit_features(row, lengths))
    batched = rows.batch(local, drop_remainder=drop, batch_fn=_stack)
    return grain.experimental.ThreadPrefetchIterDataset(batched, prefetch_buffer_size=BATCH_PREFETCH)


def _per_process(name: str, process_index: int, process_count: int, num_epochs: Optional[int]) -> bool:
    """Whether NAME's examples already are this process's (tasks.register_dataset(users='per_process')):
    then each process reads its own users' examples instead of every P-th example."""
    import tasks

    blocks = {tasks.dataset_of(task).process_block for task, _ in tasks.mixture_members(name)}
    if blocks == {None}:
        return False
    if blocks != {(process_index, process_count)}:
        raise ValueError(f"{name}: registered with users='per_process' for (process, processes) {sorted(blocks, key=str)}, "
                         f"read by process {process_index} of {process_count}")
    if num_epochs is not None:
        raise ValueError(f"{name}: users='per_process' reads each process's own users, so a finite pass "
                         f"(num_epochs={num_epochs}) would end at a different step on each process; evaluate "
                         "with users='all'")
    return True


class _Rows(grain.experimental.FlatMapTransform):
    """A packed window's rows, one by one (a window of W examples packs into at most W rows)."""

    def __init__(self, max_fan_out: int):
        self.max_fan_out = max_fan_out

    def flat_map(self, element):
        return element


def _stack(rows: Sequence[dict]) -> dict[str, np.ndarray]:
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


def pad(examples: Sequence[dict], lengths: Mapping[str, int]) -> dict[str, np.ndarray]:
    """EncDecFeatureConverter(pack=False) of a batch of examples: [batch, length] int32 each."""
    batch = len(examples)
    enc = np.zeros((batch, lengths["inputs"]), np.int32)
    dec = np.zeros((batch, lengths["targets"]), np.int32)
    for row, ex in enumerate(examples):
        inputs, targets = ex["inputs"][:lengths["inputs"]], ex["targets"][:lengths["targets"]]
        enc[row, :len(inputs)], dec[row, :len(targets)] = inputs, targets
    return {"encoder_input_tokens": enc, "decoder_target_tokens": dec,
            "decoder_input_tokens": model_inputs.shift_right(dec), "decoder_loss_weights": (dec != 0).astype(np.int32)}


def pack_window(window: Sequence[dict], lengths: Mapping[str, int]) -> list[dict[str, np.ndarray]]:
    """T5's greedy packing (seqio.utils.trim_and_pack_dataset) of one window of examples: each
    example joins the open packed row if every feature still fits, otherwise the open row is
    written and a new one starts; the window ends by writing its open row. Converted rows
    ([length] each)."""
    keys = ("inputs", "targets")
    rows: list[dict[str, list]] = []
    partial: dict[str, list] = {k: [] for k in keys}
    positions: dict[str, list] = {k: [] for k in keys}
    for ex in window:
        trimmed = {k: np.asarray(ex[k][:lengths[k]]) for k in keys}
        seqs = {k: trimmed[k][:np.count_nonzero(trimmed[k])].tolist() for k in keys}  # as seqio strips padding
        if any(len(partial[k]) + len(seqs[k]) > lengths[k] for k in keys):
            rows.append({**partial, **{k + "_positions": positions[k] for k in keys}})
            partial, positions = {k: [] for k in keys}, {k: [] for k in keys}
        for k in keys:
            partial[k] = partial[k] + seqs[k]
            positions[k] = positions[k] + list(range(len(seqs[k])))
    rows.append({**partial, **{k + "_positions": positions[k] for k in keys}})
    return [_t5_features({k: np.asarray(row[k], np.int32) for k in keys},
                         {k: np.asarray(row[k + "_positions"], np.int32) for k in keys}, None, lengths)
            for row in rows]


def _first_fit_features(row: dict[str, np.ndarray], lengths: Mapping[str, int]) -> dict[str, np.ndarray]:
    """A row of Grain's FirstFitPackIterDataset -> the packed features of EncDecFeatureConverter."""
    keys = ("inputs", "targets")
    return _t5_features({k: row[k] for k in keys}, {k: row[k + "_positions"] for k in keys},
                        {k: row[k + "_segment_ids"] for k in keys}, lengths)


def _t5_features(tokens: Mapping[str, np.ndarray], positions: Mapping[str, np.ndarray],
                 segments: Optional[Mapping[str, np.ndarray]], lengths: Mapping[str, int]) -> dict[str, np.ndarray]:
    """Packed tokens with per-segment positions -> encoder/decoder features: segment ids (1, 2, ...
    per row, 0 on padding; numbered from positions where not given), decoder inputs shifted right
    inside each segment, loss weights on the non-padding targets."""
    out = {}
    for key, prefix in (("inputs", "encoder"), ("targets", "decoder")):
        padded, pos = np.zeros(lengths[key], np.int32), np.zeros(lengths[key], np.int32)
        padded[:len(tokens[key])], pos[:len(positions[key])] = tokens[key], positions[key]
        if segments is None:
            seg = np.cumsum(pos == 0).astype(np.int32) * (padded != 0)
        else:
            seg = np.zeros(lengths[key], np.int32)
            seg[:len(segments[key])] = segments[key]
        out[f"{prefix}_segment_ids"], out[f"{prefix}_positions"] = seg.astype(np.int32), pos * (seg != 0)
        out["encoder_input_tokens" if key == "inputs" else "decoder_target_tokens"] = padded
    dec, seg = out["decoder_target_tokens"][None], out["decoder_segment_ids"][None]
    out["decoder_input_tokens"] = model_inputs.shift_right(dec, seg)[0]
    out["decoder_loss_weights"] = (out["decoder_target_tokens"] != 0).astype(np.int32)
    return out
