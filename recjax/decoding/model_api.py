"""What the decoding algorithms need of a model: functions, not the network.

`recjax.model.EncoderDecoderModel` provides them (it is the only code that applies the network);
beam search, best-first search and candidate scoring are written against this protocol, so
they work for any encoder-decoder that offers these five functions (T5X hands its decoders a
`tokens_to_logits` function the same way).
"""
from __future__ import annotations

from typing import Any, Protocol

import jax


class DecodingModel(Protocol):
    def encode(self, params, encoder_input_tokens: jax.Array) -> jax.Array:
        """int32 [batch, enc_len] -> encoder states [batch, enc_len, emb]."""

    def init_decode_cache(self, batch: int, encoder_input_tokens: jax.Array, max_decode_len: int) -> Any:
        """A zero decoding cache for `batch` decoder rows."""

    def logits_from_slice(self, params, cache, encoded: jax.Array, encoder_input_tokens: jax.Array,
                          tokens: jax.Array, max_decode_len: int) -> tuple[jax.Array, Any]:
        """One step: tokens [rows, 1] -> (logits [rows, vocab], cache); rows i*g .. i*g+g-1 share
        encoder row i."""

    def reorder_cache(self, cache, parents: jax.Array, width: int, batch_size: int) -> Any:
        """Cache rows [batch * width] -> [batch * k] by parents [batch, k]."""

    def prefix_log_probs(self, params, encoded: jax.Array, encoder_input_tokens: jax.Array, prefixes: jax.Array,
                         positions: jax.Array, next_tokens: jax.Array) -> jax.Array:
        """log p(next_tokens [b, p, width] | prefixes [b, p, depth]) -> [b, p, width]."""
