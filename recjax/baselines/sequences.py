"""Turning variable-length item sequences into fixed-shape token matrices and batch orders.

Token convention shared by SASRec and BERT4Rec: token 0 is padding, item index i is token i + 1
(so item indices 0..N-1 occupy tokens 1..N); BERT4Rec's [mask] is token N + 1. Sequences are
LEFT-padded and keep their most recent items, so the last column is always the latest item.
Batches are cut to a bucket width (8, 16, 32, ... <= max_len); the networks give the last column
position max_len - 1 whatever the width, and padding keys are masked out of attention, so a row
gets the same outputs at width 8 as at width max_len (tests check this).
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

PAD_TOKEN = 0


def left_pad(sequences: Sequence[np.ndarray], length: int, offset: int = 1) -> np.ndarray:
    """[n, length] int32: the last `length` entries of each sequence plus `offset`, 0-padded left."""
    out = np.zeros((len(sequences), length), dtype=np.int32)  # [n, length]
    for row, seq in enumerate(sequences):
        tail = np.asarray(seq, dtype=np.int64)[-length:] if length > 0 else np.zeros(0, np.int64)
        if tail.size:
            out[row, length - tail.size:] = tail + offset
    return out


def batch_orders(num_rows: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """One epoch of row indices in shuffled batches of exactly `batch_size` (one compiled shape):
    the last batch is filled up with random rows from earlier in the permutation."""
    if num_rows <= 0:
        raise ValueError("no training rows (every training sequence is too short)")
    order = rng.permutation(num_rows)
    num_batches = -(-num_rows // batch_size)
    fill = num_batches * batch_size - num_rows
    if fill:
        order = np.concatenate([order, rng.choice(num_rows, size=fill, replace=fill > num_rows)])
    yield from order.reshape(num_batches, batch_size)


def fixed_size_batches(rows: np.ndarray, batch_size: int) -> Iterator[tuple[np.ndarray, int]]:
    """Evaluation order over `rows`: (row indices [batch_size], number of real rows); the last
    batch repeats rows[0] as filler so every batch has one shape."""
    rows = np.asarray(rows)
    for start in range(0, rows.size, batch_size):
        chunk = rows[start:start + batch_size]
        real = chunk.size
        if real < batch_size:
            chunk = np.concatenate([chunk, np.full(batch_size - real, rows[0], dtype=rows.dtype)])
        yield chunk, real


# Token widths that batches are cut to. Most Amazon users have < 8 items, so padding every row to
# max_len (50) wastes most of the attention work; a few widths keep the compiled shapes few.
BUCKET_WIDTHS = (8, 16, 32, 64, 128, 256, 512)


def bucket_width(length: int, max_len: int) -> int:
    """The smallest bucket width >= length, capped at max_len."""
    for width in BUCKET_WIDTHS:
        if width >= length:
            return min(width, max_len)
    return max_len


def group_by_width(lengths: Sequence[int] | np.ndarray, max_len: int) -> dict[int, np.ndarray]:
    """width -> row indices whose token length fits it (lengths already include any [mask])."""
    widths = np.array([bucket_width(min(int(n), max_len), max_len) for n in lengths], dtype=np.int64)
    return {int(w): np.nonzero(widths == w)[0] for w in np.unique(widths)}


def bucketed_batch_orders(lengths: Sequence[int] | np.ndarray, max_len: int, batch_size: int,
                          rng: np.random.Generator) -> Iterator[tuple[int, np.ndarray]]:
    """One epoch of (width, row indices [batch_size]): each bucket shuffled and cut into full
    batches (the last one filled up from the same bucket), the batches of all buckets shuffled."""
    batches = []
    for width, rows in group_by_width(lengths, max_len).items():
        batches += [(width, rows[b]) for b in batch_orders(rows.size, batch_size, rng)]
    for i in rng.permutation(len(batches)):
        yield batches[i]
