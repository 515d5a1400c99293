"""Log-likelihood of C candidate targets per encoder input, encoder run once per input.

Ranking (100 candidate IDs per user) and the rating expectation (the 5 rating strings) score many
short targets against one input. `EncoderDecoderModel.score_batch` would run the encoder, and
project the encoder states for the cross-attention, once per (input, candidate) pair; here both
happen once per input: the targets are decoded step by step over the KV cache with the decoder
rows of one input sharing its encoder row (the network's grouped cross-attention). Step 0 (the
start token, the same for every candidate) runs on one row per input.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from recjax.config import DECODER_START_ID
from recjax.decoding.model_api import DecodingModel


def score_candidates(model: DecodingModel, params, encoder_input_tokens: jax.Array, candidates: jax.Array,
                     start_id: int = DECODER_START_ID) -> jax.Array:
    """Summed log p(candidate | input) [batch, C], equal to `score_batch` on each pair.

    encoder_input_tokens int32 [batch, enc_len]; candidates int32 [batch, C, length], each a target
    token sequence with EOS, 0-padded (padding positions are not scored). Traceable (jit it).
    """
    batch, num_cand, length = candidates.shape
    encoded = model.encode(params, encoder_input_tokens)  # [batch, enc_len, embed]

    def step(tokens, targets, cache):
        """tokens [rows, 1] in, log p(targets [rows, n]) [rows, n] out (normalizer over the vocab,
        without materializing the [rows, vocab] log-softmax)."""
        logits, cache = model.logits_from_slice(params, cache, encoded, encoder_input_tokens, tokens, length)
        logits = logits.astype(jnp.float32)  # [rows, vocab]
        normalizer = jax.nn.logsumexp(logits, axis=-1, keepdims=True)
        return jnp.take_along_axis(logits, targets, axis=1) - normalizer, cache

    cache = model.init_decode_cache(batch, encoder_input_tokens, length)
    first, cache = step(jnp.full((batch, 1), start_id, jnp.int32), candidates[:, :, 0], cache)  # [batch, C]
    # Every candidate continues from the one start row of its input.
    cache = model.reorder_cache(cache, jnp.zeros((batch, num_cand), jnp.int32), 1, batch)
    total = jnp.where(candidates[:, :, 0] > 0, first, 0.0)
    targets = candidates.reshape(batch * num_cand, length)  # [rows, length]

    def body(carry, t):
        total, cache = carry
        target = jnp.take(targets, t, axis=1)  # [rows]
        ll, cache = step(jnp.take(targets, t - 1, axis=1)[:, None], target[:, None], cache)  # [rows, 1]
        return (total + jnp.where(target > 0, ll[:, 0], 0.0).reshape(batch, num_cand), cache), None

    if length > 1:
        (total, _), _ = jax.lax.scan(body, (total, cache), jnp.arange(1, length))
    return total
