"""A seqio DataSource over `ExampleBuilder`: fresh masks and negatives every epoch.

`seqio.Task.get_dataset(num_epochs=None)` repeats the source dataset; `tf.data` calls the Python
generator again at each repetition, and the generator counts its calls: pass e of one
`get_dataset` result is epoch e, drawn from `(seed, e, ...)`. Two `get_dataset` calls with the same
seed give the same stream. Evaluation splits ignore the epoch (fixed negatives).

Tokenization happens in the source, on whole chunks (`ExampleBuilder.token_chunks`: one
SentencePiece call per ~thousand examples, with the same processor that evaluation, `infer` and
`score` use; TensorFlow-Text's SentencePiece op breaks a few ties differently, e.g. "xxx", in 5 of
Beauty's 22,363 test inputs), the text kept as `inputs_pretokenized` / `targets_pretokenized` as
seqio names it; the task's preprocessors then only append EOS after trimming.

Sharding is by user (`shard_info.index::num_shards`), so any number of hosts works. The source
reports no `num_input_examples` on purpose: seqio would otherwise `cache()` small splits in
memory before the repeat and freeze epoch 0.
"""
from __future__ import annotations

import itertools
from typing import Optional

import numpy as np
import seqio
import tensorflow as tf

from tasks.examples import META_INT_FEATURES, META_STRING_FEATURES, SPLITS, ExampleBuilder


def _chunk_signature() -> dict[str, tf.TensorSpec]:
    spec = {k: tf.TensorSpec([None], tf.string) for k in META_STRING_FEATURES}
    spec.update({k: tf.TensorSpec([None], tf.int32) for k in META_INT_FEATURES})
    for key in ("inputs", "targets"):  # token ids: flat values + row lengths, made ragged in the graph
        spec[key + "_values"] = tf.TensorSpec([None], tf.int32)
        spec[key + "_lengths"] = tf.TensorSpec([None], tf.int64)
        spec[key + "_pretokenized"] = tf.TensorSpec([None], tf.string)
    return spec


def _to_ragged(chunk: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """Flat token values + row lengths -> [n, None] ragged token ids."""
    out = dict(chunk)
    for key in ("inputs", "targets"):
        out[key] = tf.RaggedTensor.from_row_lengths(out.pop(key + "_values"), out.pop(key + "_lengths"))
    return out


class EpochDataSource(seqio.DataSource):
    """Examples of one task kind of one dataset, generated per epoch by an `ExampleBuilder`."""

    def __init__(self, builder: ExampleBuilder, task: str, seed: int):
        self._builder = builder
        self._task = task
        self._seed = int(seed)
        super().__init__(splits=SPLITS, num_input_examples=None, caching_permitted=False)

    @property
    def supports_arbitrary_sharding(self) -> bool:
        return True

    @property
    def performs_internal_shuffling(self) -> bool:
        """Users and examples come in a seeded order (a Task may then skip SeqIO's buffer)."""
        return True

    def list_shards(self, split: str) -> list[str]:
        return [split]

    def num_examples(self, split: str) -> int:
        """Examples per epoch of `split` (not seqio's num_input_examples, see module doc)."""
        return self._builder.num_examples(self._task, split)

    def get_dataset(self, split: str = "train", shuffle: bool = True, seed: Optional[int] = None,
                    shard_info: Optional[seqio.ShardInfo] = None, *, sequence_length=None,
                    use_cached: bool = False, num_epochs: Optional[int] = 1) -> tf.data.Dataset:
        del sequence_length, use_cached, num_epochs  # the Task repeats; epochs are counted below
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        seed = self._seed if seed is None else int(np.asarray(seed))
        index, count = (shard_info.index, shard_info.num_shards) if shard_info else (0, 1)
        epochs = itertools.count()  # one counter per dataset: its e-th pass is epoch e
        builder, task = self._builder, self._task

        def generate():
            epoch = next(epochs)
            yield from builder.token_chunks(task, split, epoch, seed, shuffle, index, count)

        chunks = tf.data.Dataset.from_generator(generate, output_signature=_chunk_signature())
        chunks = chunks.map(_to_ragged)
        return chunks.unbatch()
