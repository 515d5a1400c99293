"""What `recjax eval`, `infer` and `score` share to feed a model: token ids with EOS, SeqIO's
trimming, length buckets and padded batches (placed on the mesh by `recjax.partitioning.Partitioner`).

- `encode(tokenizer, text, length)`: SentencePiece ids + EOS, trimmed as SeqIO's
  `append_eos_after_trim` trims (the first length-1 tokens, then EOS), so a served input equals
  the training input token for token.
- `bucket_length`: padded lengths are powers of two up to 128, then multiples of 64 (few compiled
  shapes, little padding); `decode_batches` pads encoder inputs for decoding / candidate scoring,
  sorted by length; `recjax.scoring.make_batches` pads (input, target) pairs with it.

Per-line JSONL records (read, error records, atomic write) live in `recjax.data.jsonl`.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Optional

import numpy as np

from recjax.config import EOS_ID


def trim(tokens: Sequence[int] | np.ndarray, length: Optional[int]) -> np.ndarray:
    """Token ids (EOS last) cut to `length` as SeqIO's append_eos_after_trim does."""
    tokens = np.asarray(tokens, np.int32)
    if length is None or len(tokens) <= length:
        return tokens
    return np.append(tokens[:length - 1], EOS_ID).astype(np.int32)


def encode(tokenizer, text: str, length: Optional[int] = None) -> np.ndarray:
    """SentencePiece ids of `text` + EOS, trimmed to `length` ([n] int32)."""
    return trim(list(tokenizer.EncodeAsIds(text)) + [EOS_ID], length)


def bucket_length(length: int, minimum: int = 8, maximum: Optional[int] = None) -> int:
    """The padded length of a sequence: the next power of two >= minimum up to 128, then the next
    multiple of 64; capped at `maximum`."""
    length = max(int(length), 1)
    bucket = max(minimum, 1 << (length - 1).bit_length()) if length <= 128 else -(-length // 64) * 64
    return min(bucket, maximum) if maximum is not None else bucket


def input_bucket(length: int) -> int:
    """Padded encoder length when decoding: 32, 64, 128, then multiples of 64."""
    return bucket_length(length, minimum=32)


def decode_batches(examples: Sequence[dict], batch_size: int,
                   inputs_length: Optional[int]) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yields (rows, padded_rows, encoder_input_tokens [batch_size, bucket]) over examples (each
    with token ids `inputs`, EOS included) sorted by length; `rows` are the example indices of the
    real rows, `padded_rows` the batch's (the padding rows repeat the first one)."""
    inputs = [trim(ex["inputs"], inputs_length) for ex in examples]
    order = np.argsort([len(x) for x in inputs], kind="stable")
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        padded_rows = np.concatenate([rows, np.full(batch_size - len(rows), rows[0])])
        enc = np.zeros((batch_size, input_bucket(max(len(inputs[r]) for r in rows))), np.int32)
        for i, r in enumerate(padded_rows):
            enc[i, :len(inputs[r])] = inputs[r]
        yield rows, padded_rows, enc


def num_batches(n: int, batch_size: int) -> int:
    return -(-n // batch_size)


def shift_right(targets: np.ndarray, segment_ids: Optional[np.ndarray] = None) -> np.ndarray:
    """Decoder inputs [b, l] of targets [b, l]: shifted right with T5's start id 0, and 0 at each
    packed segment's start (seqio.utils.make_autoregressive_inputs)."""
    shifted = np.zeros_like(targets)
    shifted[:, 1:] = targets[:, :-1]
    if segment_ids is not None:
        previous = np.zeros_like(segment_ids)
        previous[:, 1:] = segment_ids[:, :-1]
        shifted *= (segment_ids == previous)
    return shifted
