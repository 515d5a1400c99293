"""The TensorFlow-free input path: the batches of `recjax.input_pipeline`'s SeqIO path, built from
the same registration (`tasks.register_dataset`) with numpy and SentencePiece alone.

Chosen in Gin with `DatasetConfig.loader = 'numpy'`: for GPU hosts with a CUDA jax and no
TensorFlow (its wheels are large and fight JAX over CUDA libraries). Step for step it is SeqIO's
pipeline for the recjax tasks:

  source      `ExampleBuilder.iter_chunks` per epoch (the e-th pass over a task is epoch e), users
              sharded by row, seeded shuffle of users and examples inside the source
  tokenize    `ExampleBuilder.token_chunks`, the one tokenization of every path
  EOS         `append_eos_after_trim` to the task feature lengths
  shuffle     a shuffle buffer of `shuffle_buffer_size` when the task has one (see below)
  mix         a mixture draws each example's task with probability proportional to its rate
  convert     `EncDecFeatureConverter`: trim and pad, or T5's greedy packing of consecutive
              windows of max(lengths) examples with segment ids and positions, decoder inputs
              shifted right inside each segment, loss weights on the non-padding targets
  batch       `batch_size` rows (the last partial one dropped when repeating forever)

Where SeqIO draws with TensorFlow's random ops, the same draws cannot be replayed here: with a
shuffle buffer (`register_dataset(shuffle_buffer_size=N)`) or a mixture of several tasks, the
examples and their distribution are the same but their order differs. With
`shuffle_buffer_size=None` (the source's own seeded shuffle only), a task gives SeqIO's batches
array for array, packed or not (tests/test_numpy_loader.py checks it on Beauty).
"""
from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from typing import Optional

import numpy as np

from recjax import model_inputs
from recjax.config import EOS_ID
from tasks.examples import META_STRING_FEATURES

MIXTURE_STREAM = 7_340_033  # the numpy seed stream of mixture draws (not SeqIO's)
SHUFFLE_STREAM = 7_340_035  # ... and of shuffle buffers


def task_examples(task_name: str, split: str, lengths: Mapping[str, int], *, seed: int, shuffle: bool,
                  num_epochs: Optional[int], shard_index: int = 0, num_shards: int = 1) -> Iterator[dict]:
    """{"inputs", "targets"} int32 token ids (EOS appended after trimming) of one task, epoch after epoch."""
    import tasks

    registered = tasks.dataset_of(task_name)
    kind = tasks.kind_of(task_name)
    stream = _task_stream(registered.builder, kind, split, lengths, seed, shuffle, num_epochs, shard_index, num_shards)
    buffer = registered.shuffle_buffer_size
    if shuffle and buffer is not None and buffer > 1:
        stream = shuffle_buffer(stream, buffer, np.random.default_rng([seed, SHUFFLE_STREAM, kind.stream]))
    return stream


def _task_stream(builder, kind, split, lengths, seed, shuffle, num_epochs, shard_index, num_shards):
    for epoch in itertools.count() if num_epochs is None else range(num_epochs):
        for chunk in builder.token_chunks(kind.name, split, epoch, seed, shuffle, shard_index, num_shards):
            ids = _split_tokens(chunk)
            for inputs, targets in zip(ids["inputs"], ids["targets"]):
                yield {"inputs": model_inputs.trim(np.append(inputs, EOS_ID), lengths["inputs"]),
                       "targets": model_inputs.trim(np.append(targets, EOS_ID), lengths["targets"])}


def _split_tokens(chunk: dict) -> dict[str, list[np.ndarray]]:
    """`token_chunks` columns -> one int32 id array per example, for inputs and targets."""
    return {key: np.split(chunk[key + "_values"], np.cumsum(chunk[key + "_lengths"])[:-1])
            for key in ("inputs", "targets")}


def task_rows(task_name: str, split: str) -> Iterator[dict]:
    """Every example of a task's split in order (no shuffle; the registration's seed), as the
    SeqIO task gives it without trimming: `inputs` / `targets` int32 ids with EOS, their
    `*_pretokenized` text and the metadata features (`task`, `template`, `user`, `target_id`,
    `history_ids`, `candidate_ids`). What the evaluator reads."""
    import tasks

    registered = tasks.dataset_of(task_name)
    kind = tasks.kind_of(task_name)
    builder = registered.builder
    for chunk in builder.token_chunks(kind.name, split, 0, registered.seed, False):
        ids = _split_tokens(chunk)
        for i in range(len(chunk["user"])):
            row = {key: str(chunk[key][i]) for key in META_STRING_FEATURES}
            row["user"] = np.int32(chunk["user"][i])
            for key in ("inputs", "targets"):
                row[key] = np.append(ids[key][i], EOS_ID).astype(np.int32)
                row[key + "_pretokenized"] = str(chunk[key + "_pretokenized"][i])
            yield row


def shuffle_buffer(stream: Iterator[dict], size: int, rng: np.random.Generator) -> Iterator[dict]:
    """tf.data's shuffle: a buffer of `size` examples, each output drawn uniformly from it."""
    buffer: list[dict] = []
    for example in stream:
        if len(buffer) < size:
            buffer.append(example)
            continue
        i = int(rng.integers(size))
        yield buffer[i]
        buffer[i] = example
    order = rng.permutation(len(buffer))
    yield from (buffer[i] for i in order)


def mixture_examples(name: str, split: str, lengths: Mapping[str, int], *, seed: int, shuffle: bool,
                     num_epochs: Optional[int]) -> Iterator[dict]:
    """A task's examples, or a mixture's: each example's task drawn with probability ∝ its rate."""
    import tasks

    members = tasks.mixture_members(name)
    streams = [task_examples(task, split, lengths, seed=seed, shuffle=shuffle, num_epochs=num_epochs)
               for task, _ in members]
    if len(streams) == 1:
        yield from streams[0]
        return
    rates = np.array([rate for _, rate in members], np.float64)
    rng = np.random.default_rng([seed, MIXTURE_STREAM])
    live = list(range(len(streams)))
    while live:
        p = rates[live] / rates[live].sum()
        choice = live[int(rng.choice(len(live), p=p))]
        try:
            yield next(streams[choice])
        except StopIteration:  # a finite task ran out: the others go on
            live.remove(choice)


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


def pack(examples: Iterator[dict], lengths: Mapping[str, int]) -> Iterator[dict[str, np.ndarray]]:
    """T5's greedy packing (seqio.utils.trim_and_pack_dataset with TF ops): consecutive windows of
    max(lengths) examples; inside a window each example joins the open packed row if every feature
    still fits, otherwise the open row is written and a new one starts; each window ends by
    writing its open row. Yields converted rows ([length] each)."""
    keys = ("inputs", "targets")
    window = max(lengths[k] for k in keys)
    while True:
        chunk = list(itertools.islice(examples, window))
        if not chunk:
            return
        rows: list[dict[str, list]] = []
        partial: dict[str, list] = {k: [] for k in keys}
        positions: dict[str, list] = {k: [] for k in keys}
        for ex in chunk:
            trimmed = {k: np.asarray(ex[k][:lengths[k]]) for k in keys}
            seqs = {k: trimmed[k][:np.count_nonzero(trimmed[k])].tolist() for k in keys}  # as seqio strips padding
            if any(len(partial[k]) + len(seqs[k]) > lengths[k] for k in keys):
                rows.append({**partial, **{k + "_positions": positions[k] for k in keys}})
                partial, positions = {k: [] for k in keys}, {k: [] for k in keys}
            for k in keys:
                partial[k] = partial[k] + seqs[k]
                positions[k] = positions[k] + list(range(len(seqs[k])))
        rows.append({**partial, **{k + "_positions": positions[k] for k in keys}})
        for row in rows:
            yield _packed_features(row, lengths)


def _packed_features(row: dict[str, list], lengths: Mapping[str, int]) -> dict[str, np.ndarray]:
    out = {}
    for key, prefix in (("inputs", "encoder"), ("targets", "decoder")):
        tokens = np.zeros(lengths[key], np.int32)
        positions = np.zeros(lengths[key], np.int32)
        tokens[:len(row[key])] = row[key]
        positions[:len(row[key])] = row[key + "_positions"]
        segments = np.cumsum(positions == 0).astype(np.int32) * (tokens != 0)
        out[f"{prefix}_segment_ids"], out[f"{prefix}_positions"] = segments.astype(np.int32), positions
        out["encoder_input_tokens" if key == "inputs" else "decoder_target_tokens"] = tokens
    dec, seg = out["decoder_target_tokens"][None], out["decoder_segment_ids"][None]
    out["decoder_input_tokens"] = model_inputs.shift_right(dec, seg)[0]
    out["decoder_loss_weights"] = (out["decoder_target_tokens"] != 0).astype(np.int32)
    return out


def batches(name: str, lengths: Mapping[str, int], *, split: str, batch_size: int, shuffle: bool, seed: int,
            pack_examples: bool, num_epochs: Optional[int]) -> Iterator[dict[str, np.ndarray]]:
    """Global batches of model features (SeqIO's `get_dataset(...).batch(batch_size)`)."""
    examples = mixture_examples(name, split, lengths, seed=seed, shuffle=shuffle, num_epochs=num_epochs)
    if pack_examples:  # packed rows come converted: stack them
        rows, collate = pack(examples, lengths), lambda chunk: {k: np.stack([r[k] for r in chunk]) for k in chunk[0]}
    else:
        rows, collate = examples, lambda chunk: pad(chunk, lengths)
    while True:
        chunk = list(itertools.islice(rows, batch_size))
        if not chunk or (len(chunk) < batch_size and num_epochs is None):
            return
        yield collate(chunk)
