"""Losses shared by the neural baselines."""
from __future__ import annotations

import jax.numpy as jnp
import optax

LOSSES = ("bce", "ce", "sampled")


def sampled_softmax(pos_logits: jnp.ndarray, neg_logits: jnp.ndarray, positives: jnp.ndarray,
                    sampled: jnp.ndarray) -> jnp.ndarray:
    """Cross-entropy of the positive against items sampled once per batch (the eSASRec benchmark's
    sampled softmax); a sampled item equal to the position's positive is masked out.

    pos_logits [...], neg_logits [..., num_negatives], positives [...] and sampled [num_negatives]
    item tokens -> per-position loss [...]."""
    neg_logits = jnp.where(sampled == positives[..., None], -1e9, neg_logits)
    logits = jnp.concatenate([pos_logits[..., None], neg_logits], -1)  # [..., 1 + num_negatives]
    return optax.softmax_cross_entropy_with_integer_labels(logits, jnp.zeros(positives.shape, jnp.int32))
