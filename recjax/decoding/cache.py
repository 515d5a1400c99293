"""The network's decoding cache: a zero cache from shapes alone, and beam reordering.

Self-attention leaves (`cached_key`/`cached_value` [rows, max_len, heads, head_dim], a scalar
`cache_index`) have one row per decoder row. Cross-attention leaves (the projected encoder states
[batch, enc_len, heads, head_dim], created by the first decoding step) have one row per encoder
input, shared by all its decoder rows, so reordering beams leaves them alone.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from recjax.decoding.beam_search import gather_beams
from recjax.network import Transformer

_CROSS_ATTENTION = "encoder_decoder_attention"


def init_decode_cache(module: Transformer, batch: int, encoder_input_tokens: jax.Array, max_decode_len: int):
    """A zero self-attention cache for `batch` decoder rows (shapes from an abstract init: no compute)."""
    def init(enc):
        return module.init(jax.random.PRNGKey(0), enc, jnp.zeros((batch, max_decode_len), jnp.int32),
                           decode=True, max_decode_length=max_decode_len, enable_dropout=False)["cache"]
    shapes = jax.eval_shape(init, jax.ShapeDtypeStruct((batch,) + encoder_input_tokens.shape[1:], jnp.int32))
    return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def reorder_beams(cache, parents: jax.Array, width: int, batch_size: int):
    """Rows [batch * width] -> [batch * k] by parents [batch, k] (`gather_beams`) on the
    self-attention leaves; the cross-attention leaves stay one row per batch element."""
    def reorder(path, x):
        if any(getattr(p, "key", None) == _CROSS_ATTENTION for p in path):
            return x
        return gather_beams(x, parents, batch_size, width)
    return jax.tree_util.tree_map_with_path(reorder, cache)
