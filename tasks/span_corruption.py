"""T5's span corruption (the MLM objective) in numpy, on token ids.

A port of `t5.data.preprocessors.random_spans_noise_mask` and of the inputs/targets construction
of `span_corruption` (noise_density 0.15, mean_noise_span_length 3.0): t5 is not installed (it
drags in mesh-tensorflow and a TF pin), and recjax draws the randomness from its own per-example
numpy stream so masks are fresh each epoch and deterministic given the seed.
"""
from __future__ import annotations

import numpy as np

NOISE_DENSITY = 0.15
MEAN_NOISE_SPAN_LENGTH = 3.0


def _random_segmentation(num_items: int, num_segments: int, rng: np.random.Generator) -> np.ndarray:
    """Lengths of a uniformly random partition of num_items into num_segments non-empty parts."""
    first_in_segment = np.zeros(num_items, dtype=np.int64)
    cut_points = rng.choice(np.arange(1, num_items), size=num_segments - 1, replace=False)
    first_in_segment[cut_points] = 1
    segment_id = np.cumsum(first_in_segment)  # [num_items]
    return np.bincount(segment_id, minlength=num_segments)  # [num_segments]


def random_spans_noise_mask(length: int, rng: np.random.Generator,
                            noise_density: float = NOISE_DENSITY,
                            mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH) -> np.ndarray:
    """bool [length]: True on noise tokens. Spans alternate non-noise, noise, ... starting with
    non-noise; the number of noise tokens is round(length * noise_density) (at least 1, at most
    length - 1) in round(num_noise / mean_noise_span_length) spans, as T5 does."""
    orig_length = length
    length = max(length, 2)  # a 1-token text still gets one noise and one non-noise token
    num_noise_tokens = int(round(length * noise_density))
    num_noise_tokens = min(max(num_noise_tokens, 1), length - 1)
    num_noise_spans = max(int(round(num_noise_tokens / mean_noise_span_length)), 1)
    num_nonnoise_tokens = length - num_noise_tokens
    num_noise_spans = min(num_noise_spans, num_nonnoise_tokens)
    noise_lengths = _random_segmentation(num_noise_tokens, num_noise_spans, rng)
    nonnoise_lengths = _random_segmentation(num_nonnoise_tokens, num_noise_spans, rng)
    interleaved = np.stack([nonnoise_lengths, noise_lengths], axis=1).reshape(-1)  # [2 * spans]
    span_starts = np.cumsum(interleaved)[:-1]
    span_start_indicator = np.zeros(length, dtype=np.int64)
    span_start_indicator[span_starts] = 1
    is_noise = np.cumsum(span_start_indicator) % 2 == 1  # [length]
    return is_noise[:orig_length]


def max_corruptible_length(num_sentinels: int, noise_density: float = NOISE_DENSITY,
                           mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH) -> int:
    """Longest token sequence whose span count stays within `num_sentinels`."""
    return int((num_sentinels - 0.5) * mean_noise_span_length / noise_density)


def _noise_span_to_unique_sentinel(tokens: np.ndarray, mask: np.ndarray, sentinels: np.ndarray) -> np.ndarray:
    """Replaces each run of masked tokens by one sentinel (the k-th run gets sentinels[k])."""
    previous = np.concatenate([[False], mask[:-1]])  # [length]
    first = mask & ~previous
    subsequent = mask & previous
    span_index = np.maximum(np.cumsum(first) - 1, 0)  # [length]
    return np.where(first, sentinels[np.minimum(span_index, len(sentinels) - 1)], tokens)[~subsequent]


def span_corrupt(tokens: np.ndarray, rng: np.random.Generator, sentinel_ids: np.ndarray,
                 noise_density: float = NOISE_DENSITY,
                 mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets) int32 of T5 span corruption of `tokens` [length].

    inputs: the non-noise tokens with the k-th noise span replaced by sentinel k; targets: the
    non-noise spans replaced by sentinels, i.e. `<s0> noise_0 <s1> noise_1 ...` (T5's layout: the
    text starts with non-noise, so the sentinels of inputs and targets pair up).
    sentinel_ids[k] is the id of `<extra_id_k>`.
    """
    tokens = np.asarray(tokens, dtype=np.int32)  # [length]
    if len(tokens) == 0:
        return tokens, tokens
    noise = random_spans_noise_mask(len(tokens), rng, noise_density, mean_noise_span_length)
    sentinels = np.asarray(sentinel_ids, dtype=np.int32)
    num_spans = int((noise & ~np.concatenate([[False], noise[:-1]])).sum())
    if num_spans > len(sentinels):
        raise ValueError(f"span corruption needs {num_spans} sentinels, the vocabulary has {len(sentinels)}: "
                         f"shorten the text (max {max_corruptible_length(len(sentinels))} tokens)")
    inputs = _noise_span_to_unique_sentinel(tokens, noise, sentinels)
    targets = _noise_span_to_unique_sentinel(tokens, ~noise, sentinels)
    return inputs.astype(np.int32), targets.astype(np.int32)
