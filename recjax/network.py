"""FLAN-T5 / T5 v1.1 encoder-decoder in Flax linen, with T5X's parameter tree.

What makes it T5 v1.1 (and FLAN-T5): RMSNorm without bias or mean subtraction, no biases
anywhere, gated-GELU MLP (`wi_0`, `wi_1`, `wo`), one relative-position bias per stack shared by
its layers, no runtime 1/sqrt(head_dim) attention scaling (folded into the query initializer, as
T5X does), and untied float32 `logits_dense`. Parameter names equal T5X's, so a T5X checkpoint
loads without renaming; every param and the main activations carry logical axis names that
`recjax.partitioning` maps onto a `(data, model)` mesh.

Activations use `config.dtype` (bfloat16 on accelerators); params are float32; softmax and
normalization statistics are float32.
"""
from __future__ import annotations

import functools
import operator
from typing import Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from recjax.config import T5Config

Array = jax.Array
# Additive bias that removes a position from attention (T5X uses the same magnitude).
_MASK_BIAS = -1e10

default_kernel_init = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")


def _constrain(x: Array, axes: tuple[str, ...]) -> Array:
    """Logical sharding constraint; a no-op outside a mesh with axis rules."""
    return nn.with_logical_constraint(x, axes)


def _activation(name: str) -> Callable[[Array], Array]:
    table = {"gelu": nn.gelu, "relu": nn.relu, "linear": lambda x: x, "silu": nn.silu}
    if name not in table:
        raise ValueError(f"unknown MLP activation {name!r}; expected one of {sorted(table)}")
    return table[name]


class LayerNorm(nn.Module):
    """T5's RMSNorm: scale only, statistics in float32."""

    epsilon: float = 1e-6
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        x = jnp.asarray(x, jnp.float32)
        mean2 = jnp.mean(jnp.square(x), axis=-1, keepdims=True)
        y = jnp.asarray(x * jax.lax.rsqrt(mean2 + self.epsilon), self.dtype)
        scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
                           (x.shape[-1],), jnp.float32)
        return y * jnp.asarray(scale, self.dtype)


class Dense(nn.Module):
    """Bias-free dense layer with a 2-D `[in, out]` kernel (T5X's stored layout)."""

    features: int
    kernel_axes: tuple[str, str]
    dtype: jnp.dtype = jnp.float32
    kernel_init: Callable = default_kernel_init

    @nn.compact
    def __call__(self, x: Array) -> Array:
        kernel = self.param("kernel", nn.with_logical_partitioning(self.kernel_init, self.kernel_axes),
                            (x.shape[-1], self.features), jnp.float32)
        # A 2-D dot over [tokens, in]: with "...i,io->...o" XLA:CPU fuses the backward pass's
        # elementwise producers into a transposed copy of the cotangent that costs 10x the dot.
        x2 = jnp.asarray(x, self.dtype).reshape(-1, x.shape[-1])  # [tokens, in]
        y = jax.lax.dot_general(x2, jnp.asarray(kernel, self.dtype), (((1,), (0,)), ((), ())))
        return y.reshape(x.shape[:-1] + (self.features,))


class Embed(nn.Module):
    """Token embedding `[vocab, embed]`; `attend` gives tied logits (v1.0-style models only)."""

    num_embeddings: int
    features: int
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        self.embedding = self.param(
            "embedding", nn.with_logical_partitioning(nn.initializers.normal(stddev=1.0), ("vocab", "embed")),
            (self.num_embeddings, self.features), jnp.float32)

    def __call__(self, tokens: Array) -> Array:
        # tokens: [batch, length] -> [batch, length, embed]
        return jnp.take(jnp.asarray(self.embedding, self.dtype), tokens, axis=0)

    def attend(self, query: Array) -> Array:
        return jnp.einsum("...e,ve->...v", query, jnp.asarray(self.embedding, self.dtype))


def relative_position_bucket(relative_position: np.ndarray, bidirectional: bool, num_buckets: int,
                             max_distance: int) -> np.ndarray:
    """T5's bucketing of `memory_position - query_position` (T5X's formula, float32 + eps)."""
    ret = 0
    n = -relative_position
    if bidirectional:
        num_buckets //= 2
        ret += (n < 0).astype(np.int32) * num_buckets
        n = np.abs(n)
    else:
        n = np.maximum(n, 0)
    max_exact = num_buckets // 2
    is_small = n < max_exact
    val_if_large = max_exact + (
        np.log(n.astype(np.float32) / max_exact + np.finfo(np.float32).eps)
        / np.log(max_distance / max_exact) * (num_buckets - max_exact)).astype(np.int32)
    val_if_large = np.minimum(val_if_large, num_buckets - 1)
    return ret + np.where(is_small, n, val_if_large)


class RelativePositionBiases(nn.Module):
    """One learned bias per (head, bucket), shared by all layers of a stack."""

    num_buckets: int
    max_distance: int
    num_heads: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, q_len: int, k_len: int, bidirectional: bool) -> Array:
        context = np.arange(q_len, dtype=np.int32)[:, None]
        memory = np.arange(k_len, dtype=np.int32)[None, :]
        buckets = relative_position_bucket(memory - context, bidirectional, self.num_buckets, self.max_distance)
        rel_embedding = self.param(
            "rel_embedding",
            nn.with_logical_partitioning(nn.initializers.variance_scaling(1.0, "fan_avg", "uniform"),
                                         ("heads", "relpos_buckets")),
            (self.num_heads, self.num_buckets), jnp.float32)
        # A one-hot contraction, as T5X does, not a gather: the gather's gradient is a scatter-add
        # behind a transposed reduction that XLA:CPU runs 3x slower than this (benchmarks/RESULTS.md).
        one_hot = jnp.asarray(buckets)[None] == jnp.arange(self.num_buckets, dtype=jnp.int32)[:, None, None]
        values = jax.lax.dot_general(jnp.asarray(rel_embedding, self.dtype), one_hot.astype(self.dtype),
                                     (((1,), (0,)), ((), ())))  # [heads, q_len, k_len]
        return values[None]  # [1, heads, q_len, k_len]


def _attention_logits(spec: str, query: Array, key: Array) -> Array:
    """Query-key logits in float32, for a stable softmax under bfloat16 compute.

    float32 inputs skip `preferred_element_type`: XLA:CPU takes a 2-3x slower dot path when asked
    for a float32 result of float32 operands.
    """
    if query.dtype == jnp.float32 and key.dtype == jnp.float32:
        return jnp.einsum(spec, query, key)
    return jnp.einsum(spec, query, key, preferred_element_type=jnp.float32)


def _grouped_attention(query: Array, key: Array, value: Array, mask: Optional[Array], dtype) -> Array:
    """Attention of g consecutive query rows to one key/value row (beams sharing their encoder).

    query [b_kv * g, q, heads, d]; key, value [b_kv, k, heads, d]; mask [b_kv or 1, 1, q or 1, k]
    or None. Returns [b_kv * g, q, heads, d]. Decoding only: no bias, no dropout.
    """
    b_kv, groups = key.shape[0], query.shape[0] // key.shape[0]
    if b_kv * groups != query.shape[0]:
        raise ValueError(f"attention: query batch {query.shape[0]} is not a multiple of key batch {b_kv}")
    query = query.reshape((b_kv, groups) + query.shape[1:])  # [b_kv, g, q, heads, d]
    logits = _attention_logits("bgqhd,bkhd->bghqk", query, key)
    if mask is not None:
        logits = logits + jnp.where(mask[:, None] > 0, 0.0, _MASK_BIAS).astype(jnp.float32)
    weights = jax.nn.softmax(logits).astype(dtype)  # [b_kv, g, heads, q, k]
    out = jnp.einsum("bghqk,bkhd->bgqhd", weights, value)
    return out.reshape((b_kv * groups,) + out.shape[2:])


class MultiHeadAttention(nn.Module):
    """T5 attention: no 1/sqrt(d) at runtime; an optional KV cache for step-by-step decoding."""

    num_heads: int
    head_dim: int
    dtype: jnp.dtype = jnp.float32
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, inputs_q: Array, inputs_kv: Array, mask: Optional[Array], bias: Optional[Array],
                 *, decode: bool = False, deterministic: bool = True, cache_kv: bool = False) -> Array:
        # inputs_q: [batch, q_len, embed]; inputs_kv: [batch, kv_len, embed]
        # mask: [batch, 1, q_len, kv_len] (1 = attend) or None; bias: [1, heads, q_len, kv_len] or None
        # cache_kv (cross-attention while decoding): project inputs_kv once, on the first call with
        # a mutable "cache", and reuse the cached keys/values after. inputs_kv may then have
        # batch / g rows (beam search): decoder rows i*g .. i*g+g-1 attend to its row i.
        joined = self.num_heads * self.head_dim
        # T5X folds the attention scaling into the query initializer instead of the forward pass.
        query_init = nn.initializers.variance_scaling(1.0 / self.head_dim, "fan_in", "truncated_normal")
        project = functools.partial(Dense, joined, ("embed", "joined_kv"), self.dtype)
        split = lambda x: x.reshape(x.shape[:2] + (self.num_heads, self.head_dim))
        query = split(project(kernel_init=query_init, name="query")(inputs_q))  # [b, q, heads, kv]
        if cache_kv and self.has_variable("cache", "cached_key"):
            key = self.get_variable("cache", "cached_key")  # [b_kv, k, heads, kv]
            value = self.get_variable("cache", "cached_value")
        else:
            key = split(project(name="key")(inputs_kv))  # [b, k, heads, kv]
            value = split(project(name="value")(inputs_kv))
            # Not at init: its params are not the ones decoding will run with.
            if cache_kv and not self.is_initializing() and self.is_mutable_collection("cache"):
                self.put_variable("cache", "cached_key", key)
                self.put_variable("cache", "cached_value", value)
        query = _constrain(query, ("batch", "length", "heads", "kv"))
        key = _constrain(key, ("batch", "length", "heads", "kv"))
        value = _constrain(value, ("batch", "length", "heads", "kv"))

        if decode:
            is_initialized = self.has_variable("cache", "cached_key")
            cached_key = self.variable("cache", "cached_key", jnp.zeros, key.shape, key.dtype)
            cached_value = self.variable("cache", "cached_value", jnp.zeros, value.shape, value.dtype)
            cache_index = self.variable("cache", "cache_index", lambda: jnp.array(0, dtype=jnp.int32))
            if is_initialized:
                # One new token per call: write its key/value at `cache_index`.
                _, max_length, _, _ = cached_key.value.shape
                if query.shape[1] != 1:
                    raise ValueError(f"decode step expects one token per call, got {query.shape[1]}")
                index = cache_index.value
                key = jax.lax.dynamic_update_slice(cached_key.value, key, (0, index, 0, 0))
                value = jax.lax.dynamic_update_slice(cached_value.value, value, (0, index, 0, 0))
                cached_key.value, cached_value.value = key, value
                cache_index.value = index + 1
                mask = (jnp.arange(max_length) <= index)[None, None, None, :]  # [1, 1, 1, max_len]
                if bias is not None:  # bias was built for [max_len, max_len]: keep the current row.
                    bias = jax.lax.dynamic_slice_in_dim(bias, index, 1, axis=2)

        if key.shape[0] != query.shape[0]:
            out = _grouped_attention(query, key, value, mask, self.dtype)
        else:
            logits = _attention_logits("bqhd,bkhd->bhqk", query, key)
            if mask is not None:
                logits = logits + jnp.where(mask > 0, 0.0, _MASK_BIAS).astype(jnp.float32)
            if bias is not None:
                logits = logits + jnp.asarray(bias, jnp.float32)
            weights = jax.nn.softmax(logits).astype(self.dtype)  # [b, heads, q, k]
            if not deterministic and self.dropout_rate > 0:
                weights = nn.Dropout(rate=self.dropout_rate)(weights, deterministic=False)
            out = jnp.einsum("bhqk,bkhd->bqhd", weights, value)
        out = out.reshape(out.shape[:2] + (joined,))  # [b, q, heads*kv]
        return Dense(inputs_q.shape[-1], ("joined_kv", "embed"), self.dtype, name="out")(out)


class MlpBlock(nn.Module):
    """Gated MLP: product of `activations` applied to `wi_i`, then `wo`."""

    mlp_dim: int
    activations: tuple[str, ...]
    dtype: jnp.dtype = jnp.float32
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, inputs: Array, deterministic: bool = True) -> Array:
        hidden = []
        for i, act in enumerate(self.activations):
            name = "wi" if len(self.activations) == 1 else f"wi_{i}"
            hidden.append(_activation(act)(Dense(self.mlp_dim, ("embed", "mlp"), self.dtype, name=name)(inputs)))
        x = functools.reduce(operator.mul, hidden)  # [b, l, mlp]
        x = nn.Dropout(rate=self.dropout_rate, broadcast_dims=(-2,))(x, deterministic=deterministic)
        x = _constrain(x, ("batch", "length", "mlp"))
        return Dense(inputs.shape[-1], ("mlp", "embed"), self.dtype, name="wo")(x)


class EncoderLayer(nn.Module):
    config: T5Config

    @nn.compact
    def __call__(self, x: Array, mask: Array, bias: Array, deterministic: bool) -> Array:
        cfg, dtype = self.config, jnp.dtype(self.config.dtype)
        dropout = nn.Dropout(rate=cfg.dropout_rate, broadcast_dims=(-2,))
        y = LayerNorm(cfg.layer_norm_epsilon, dtype, name="pre_attention_layer_norm")(x)
        y = MultiHeadAttention(cfg.num_heads, cfg.head_dim, dtype, cfg.dropout_rate, name="attention")(
            y, y, mask, bias, deterministic=deterministic)
        x = x + dropout(y, deterministic=deterministic)
        y = LayerNorm(cfg.layer_norm_epsilon, dtype, name="pre_mlp_layer_norm")(x)
        y = MlpBlock(cfg.mlp_dim, cfg.mlp_activations, dtype, cfg.dropout_rate, name="mlp")(y, deterministic)
        x = x + dropout(y, deterministic=deterministic)
        return _constrain(x, ("batch", "length", "embed"))


class DecoderLayer(nn.Module):
    config: T5Config

    @nn.compact
    def __call__(self, x: Array, encoded: Array, self_mask: Optional[Array], self_bias: Array,
                 cross_mask: Optional[Array], deterministic: bool, decode: bool) -> Array:
        cfg, dtype = self.config, jnp.dtype(self.config.dtype)
        dropout = nn.Dropout(rate=cfg.dropout_rate, broadcast_dims=(-2,))
        attention = functools.partial(MultiHeadAttention, cfg.num_heads, cfg.head_dim, dtype, cfg.dropout_rate)
        y = LayerNorm(cfg.layer_norm_epsilon, dtype, name="pre_self_attention_layer_norm")(x)
        y = attention(name="self_attention")(y, y, self_mask, self_bias, decode=decode,
                                             deterministic=deterministic)
        x = x + dropout(y, deterministic=deterministic)
        y = LayerNorm(cfg.layer_norm_epsilon, dtype, name="pre_cross_attention_layer_norm")(x)
        y = attention(name="encoder_decoder_attention")(y, encoded, cross_mask, None, deterministic=deterministic,
                                                        cache_kv=decode)
        x = x + dropout(y, deterministic=deterministic)
        y = LayerNorm(cfg.layer_norm_epsilon, dtype, name="pre_mlp_layer_norm")(x)
        y = MlpBlock(cfg.mlp_dim, cfg.mlp_activations, dtype, cfg.dropout_rate, name="mlp")(y, deterministic)
        x = x + dropout(y, deterministic=deterministic)
        return _constrain(x, ("batch", "length", "embed"))


def _relpos(cfg: T5Config, name: str) -> RelativePositionBiases:
    return RelativePositionBiases(cfg.relative_attention_num_buckets, cfg.relative_attention_max_distance,
                                  cfg.num_heads, jnp.dtype(cfg.dtype), name=name)


class Encoder(nn.Module):
    config: T5Config
    shared_embedding: nn.Module

    @nn.compact
    def __call__(self, tokens: Array, mask: Array, deterministic: bool) -> Array:
        # tokens: [batch, length]; mask: [batch, 1, length, length]
        cfg = self.config
        x = self.shared_embedding(tokens.astype(jnp.int32))  # [b, l, embed]
        x = nn.Dropout(rate=cfg.dropout_rate, broadcast_dims=(-2,))(x, deterministic=deterministic)
        x = _constrain(x.astype(jnp.dtype(cfg.dtype)), ("batch", "length", "embed"))
        length = tokens.shape[-1]
        bias = _relpos(cfg, "relpos_bias")(length, length, bidirectional=True)
        for i in range(cfg.num_encoder_layers):
            x = EncoderLayer(cfg, name=f"layers_{i}")(x, mask, bias, deterministic)
        x = LayerNorm(cfg.layer_norm_epsilon, jnp.dtype(cfg.dtype), name="encoder_norm")(x)
        return nn.Dropout(rate=cfg.dropout_rate, broadcast_dims=(-2,))(x, deterministic=deterministic)


class Decoder(nn.Module):
    config: T5Config
    shared_embedding: nn.Module

    @nn.compact
    def __call__(self, encoded: Array, tokens: Array, self_mask: Optional[Array], cross_mask: Optional[Array],
                 deterministic: bool, decode: bool, max_decode_length: Optional[int],
                 positions: Optional[Array] = None) -> Array:
        # encoded: [b, enc_len, embed]; tokens: [b, dec_len] -> logits [b, dec_len, vocab] (float32);
        # with positions [b], the logits at that one position of each row only: [b, 1, vocab]
        # (the output layer is most of a short decoder's work: best-first search scores one
        # position per prefix)
        cfg = self.config
        y = self.shared_embedding(tokens.astype(jnp.int32))
        y = nn.Dropout(rate=cfg.dropout_rate, broadcast_dims=(-2,))(y, deterministic=deterministic)
        y = _constrain(y.astype(jnp.dtype(cfg.dtype)), ("batch", "length", "embed"))
        # While decoding step by step the bias covers the whole cache; attention slices its row.
        relpos_len = max_decode_length if (decode and max_decode_length) else tokens.shape[-1]
        bias = _relpos(cfg, "relpos_bias")(relpos_len, relpos_len, bidirectional=False)
        for i in range(cfg.num_decoder_layers):
            y = DecoderLayer(cfg, name=f"layers_{i}")(y, encoded, self_mask, bias, cross_mask, deterministic, decode)
        y = LayerNorm(cfg.layer_norm_epsilon, jnp.dtype(cfg.dtype), name="decoder_norm")(y)
        y = nn.Dropout(rate=cfg.dropout_rate, broadcast_dims=(-2,))(y, deterministic=deterministic)
        if positions is not None:
            y = jnp.take_along_axis(y, positions[:, None, None], axis=1)  # [b, 1, embed]
        if cfg.logits_via_embedding:
            # v1.0-style tied logits are rescaled by 1/sqrt(d_model), as T5 does.
            logits = self.shared_embedding.attend(y) / jnp.sqrt(y.shape[-1]).astype(y.dtype)
        else:
            logits = Dense(cfg.vocab_size, ("embed", "vocab"), jnp.float32, name="logits_dense")(y)
        return _constrain(jnp.asarray(logits, jnp.float32), ("batch", "length", "vocab"))


def make_attention_mask(query_valid: Array, key_valid: Array, query_segments: Optional[Array] = None,
                        key_segments: Optional[Array] = None) -> Array:
    """[batch, q] x [batch, k] validity (and equal segment ids for packing) -> [batch, 1, q, k]."""
    mask = query_valid[:, :, None] & key_valid[:, None, :]
    if query_segments is not None:
        mask = mask & (query_segments[:, :, None] == key_segments[:, None, :])
    return mask[:, None].astype(jnp.float32)


class Transformer(nn.Module):
    """FLAN-T5 encoder-decoder; the call signature follows T5X's `network.Transformer`."""

    config: T5Config

    def setup(self):
        cfg = self.config
        self.token_embedder = Embed(cfg.vocab_size, cfg.emb_dim, jnp.dtype(cfg.dtype))
        self.encoder = Encoder(cfg, self.token_embedder)
        self.decoder = Decoder(cfg, self.token_embedder)

    def encode(self, encoder_input_tokens: Array, encoder_segment_ids: Optional[Array] = None,
               enable_dropout: bool = True) -> Array:
        valid = encoder_input_tokens > 0
        mask = make_attention_mask(valid, valid, encoder_segment_ids, encoder_segment_ids)
        return self.encoder(encoder_input_tokens, mask, deterministic=not enable_dropout)

    def decode(self, encoded: Array, encoder_input_tokens: Array, decoder_input_tokens: Array,
               decoder_target_tokens: Optional[Array] = None, encoder_segment_ids: Optional[Array] = None,
               decoder_segment_ids: Optional[Array] = None, enable_dropout: bool = True,
               decode: bool = False, max_decode_length: Optional[int] = None,
               positions: Optional[Array] = None) -> Array:
        enc_valid = encoder_input_tokens > 0
        if decode:
            # Step-by-step decoding: the cache masks the future; every decoder row is real, so the
            # cross mask is the encoder padding alone, [enc_batch, 1, 1, enc_len]. The decoder
            # batch may be g times the encoder batch (beams): rows i*g .. i*g+g-1 share encoder
            # row i, whose keys/values the cross-attention projects once and caches.
            self_mask = None
            cross_mask = enc_valid[:, None, None, :].astype(jnp.float32)
        else:
            # Without targets every decoder position is real (the inputs start with pad id 0).
            if decoder_target_tokens is None:
                dec_valid = jnp.ones(decoder_input_tokens.shape, bool)
            else:
                dec_valid = decoder_target_tokens > 0
            length = decoder_input_tokens.shape[-1]
            causal = jnp.tril(jnp.ones((length, length), bool))[None, None]
            self_mask = make_attention_mask(dec_valid, dec_valid, decoder_segment_ids, decoder_segment_ids)
            self_mask = self_mask * causal
            cross_mask = make_attention_mask(dec_valid, enc_valid, decoder_segment_ids, encoder_segment_ids)
        return self.decoder(encoded, decoder_input_tokens, self_mask, cross_mask, deterministic=not enable_dropout,
                            decode=decode, max_decode_length=max_decode_length, positions=positions)

    def __call__(self, encoder_input_tokens: Array, decoder_input_tokens: Array,
                 decoder_target_tokens: Optional[Array] = None, encoder_segment_ids: Optional[Array] = None,
                 decoder_segment_ids: Optional[Array] = None, *, enable_dropout: bool = True,
                 decode: bool = False, max_decode_length: Optional[int] = None) -> Array:
        """Teacher-forced logits [batch, dec_len, vocab] (float32)."""
        encoded = self.encode(encoder_input_tokens, encoder_segment_ids, enable_dropout)
        return self.decode(encoded, encoder_input_tokens, decoder_input_tokens, decoder_target_tokens,
                           encoder_segment_ids, decoder_segment_ids, enable_dropout, decode, max_decode_length)


def init_params(config: T5Config, rng: Array, *, batch: int = 1, enc_len: int = 8, dec_len: int = 8):
    """Random params (float32, boxed with logical axis metadata) for `config`."""
    model = Transformer(config)
    tokens_enc = jnp.ones((batch, enc_len), jnp.int32)
    tokens_dec = jnp.ones((batch, dec_len), jnp.int32)
    return model.init({"params": rng, "dropout": rng}, tokens_enc, tokens_dec, enable_dropout=False)["params"]
