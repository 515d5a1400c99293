"""The encoder-decoder model wrapper: teacher-forced loss and per-example target scoring.

Mirrors T5X's `EncoderDecoderModel`: the batch holds the features of SeqIO's
`EncDecFeatureConverter` (`encoder_input_tokens`, `decoder_input_tokens`,
`decoder_target_tokens`, `decoder_loss_weights`, and with packing the `*_segment_ids` /
`*_positions`); the loss is cross entropy with z-loss and label smoothing, normalized by a
`loss_normalizing_factor` as T5X allows.
"""
from __future__ import annotations

import dataclasses
import enum
from typing import Any, Mapping, Optional, Union

import gin
import jax
import jax.numpy as jnp

from recjax.config import T5Config
from recjax.decoding.beam_search import gather_beams
from recjax.network import Transformer, init_params

Array = jax.Array
Batch = Mapping[str, Array]


class LossNormalizingFactor(enum.Enum):
    """What the summed token loss is divided by (T5X's options)."""

    NUM_REAL_TARGET_TOKENS = "num_real_target_tokens"  # tokens with weight > 0 in this batch
    NUM_TOTAL_TARGET_TOKENS = "num_total_target_tokens"  # batch * target length, padding included
    AVERAGE_PER_SEQUENCE = "average_per_sequence"  # each sequence's mean loss, summed


LossNormalizer = Union[None, float, int, str, LossNormalizingFactor]


def cross_entropy_with_logits(logits: Array, soft_targets: Array, z_loss: float) -> tuple[Array, Array]:
    """Per-token cross entropy and the z-loss term (which keeps log Z near 0), both [b, l]."""
    log_z = jax.nn.logsumexp(logits, axis=-1, keepdims=True)  # [b, l, 1]
    loss = -jnp.sum(soft_targets * (logits - log_z), axis=-1)
    log_z = jnp.squeeze(log_z, -1)
    total_z_loss = z_loss * jnp.square(log_z)
    return loss + total_z_loss, total_z_loss


def weighted_cross_entropy(logits: Array, targets: Array, weights: Optional[Array], *, label_smoothing: float = 0.0,
                           z_loss: float = 0.0) -> tuple[Array, Array, Array]:
    """Summed loss, summed z-loss and summed weight over the batch.

    logits: [b, l, vocab] float32; targets: [b, l] int; weights: [b, l] or None (all ones).
    Label smoothing subtracts the entropy of the smoothed distribution, so a perfect model has loss 0.
    """
    vocab = logits.shape[-1]
    confidence = 1.0 - label_smoothing
    low_confidence = label_smoothing / (vocab - 1)
    normalizing_constant = -(confidence * jnp.log(confidence)
                             + (vocab - 1) * low_confidence * jnp.log(low_confidence + 1e-20))
    soft_targets = jax.nn.one_hot(targets, vocab, dtype=logits.dtype) * (confidence - low_confidence) + low_confidence
    token_loss, token_z_loss = cross_entropy_with_logits(logits, soft_targets, z_loss)
    token_loss = token_loss - normalizing_constant
    if weights is None:
        weights = jnp.ones(targets.shape, logits.dtype)
    weights = weights.astype(logits.dtype)
    return jnp.sum(token_loss * weights), jnp.sum(token_z_loss * weights), jnp.sum(weights)


def _parse_normalizer(value: LossNormalizer) -> Union[None, float, LossNormalizingFactor]:
    if value is None or isinstance(value, LossNormalizingFactor):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return LossNormalizingFactor(str(value).lower())
    except ValueError:
        options = [f.value for f in LossNormalizingFactor]
        raise ValueError(f"loss_normalizing_factor {value!r}: expected a number, None or one of {options}") from None


def normalized_weights(batch: Batch, normalizer: LossNormalizer) -> tuple[Array, Optional[float]]:
    """Loss weights [b, l] after the factor's per-sequence rescaling, and a constant divisor if any."""
    targets = batch["decoder_target_tokens"]
    weights = batch.get("decoder_loss_weights")
    if weights is None:
        weights = (targets > 0).astype(jnp.float32)
    weights = weights.astype(jnp.float32)
    factor = _parse_normalizer(normalizer)
    if factor is None:
        return weights, None
    if isinstance(factor, float):
        return weights, factor
    if factor is LossNormalizingFactor.NUM_REAL_TARGET_TOKENS:
        return weights, jnp.maximum(jnp.sum(weights), 1.0)
    if factor is LossNormalizingFactor.NUM_TOTAL_TARGET_TOKENS:
        return weights, float(targets.size)
    # AVERAGE_PER_SEQUENCE: each sequence's tokens share weight 1 (by segment when packed).
    segments = batch.get("decoder_segment_ids")
    # The rescaled weights sum to 1 per sequence, so their total is the number of sequences.
    if segments is None:
        per_seq = jnp.sum(weights, axis=-1, keepdims=True)  # [b, 1]
        per_token = weights / jnp.maximum(per_seq, 1e-8)
    else:
        seg_onehot = jax.nn.one_hot(segments, segments.shape[-1] + 1) * weights[..., None]  # [b, l, segs]
        seg_count = jnp.sum(seg_onehot, axis=1, keepdims=True)  # [b, 1, segs]
        per_token = jnp.sum(seg_onehot / jnp.maximum(seg_count, 1e-8), axis=-1)  # [b, l]
    return per_token, jnp.maximum(jnp.sum(per_token), 1.0)


@gin.configurable
@dataclasses.dataclass(frozen=True)
class LossConfig:
    label_smoothing: float = 0.0
    z_loss: float = 1e-4  # T5X's default
    # T5X semantics: None sums the token losses; a number divides by that constant.
    loss_normalizing_factor: LossNormalizer = "num_real_target_tokens"


class EncoderDecoderModel:
    """The one gateway to the network (T5X's `EncoderDecoderModel`): every application of the
    Transformer goes through it. Training uses the loss; decoding algorithms
    (`recjax.decoding`) get its functions: `encode`, `init_decode_cache`, `logits_from_slice`,
    `reorder_cache`, `prefix_log_probs`, and build beam search, best-first search and candidate
    scoring from them without importing the network. Models with the same config and loss are
    equal (and hash equal), so compiled functions cached per model are shared between them."""

    def __init__(self, config: T5Config, loss: LossConfig = LossConfig()):
        self.config = config
        self.loss_config = loss
        self.module = Transformer(config)

    def __eq__(self, other) -> bool:
        return (isinstance(other, EncoderDecoderModel) and self.config == other.config
                and self.loss_config == other.loss_config)

    def __hash__(self) -> int:
        return hash((self.config, self.loss_config))

    # ------------------------------------------------------------------ parameters
    def init_params(self, rng: Array):
        """Random params as `nn.LogicallyPartitioned` boxes (their logical axes name the shardings)."""
        return init_params(self.config, rng)

    def abstract_params(self):
        """Shapes and logical axes of the params, nothing computed (`jax.eval_shape` of init)."""
        return jax.eval_shape(self.init_params, jax.random.PRNGKey(0))

    # ------------------------------------------------------------------ teacher forcing
    def logits(self, params, batch: Batch, *, dropout_rng: Optional[Array] = None) -> Array:
        """Teacher-forced logits [b, dec_len, vocab]."""
        rngs = {"dropout": dropout_rng} if dropout_rng is not None else None
        return self.module.apply(
            {"params": params}, batch["encoder_input_tokens"], batch["decoder_input_tokens"],
            batch["decoder_target_tokens"], batch.get("encoder_segment_ids"), batch.get("decoder_segment_ids"),
            enable_dropout=dropout_rng is not None, rngs=rngs)

    def loss_sums(self, params, batch: Batch, dropout_rng: Optional[Array] = None) -> tuple[Array, dict]:
        """Weighted sums over the batch: `batch["decoder_loss_weights"]` is used as given.

        Splitting a batch into microbatches and adding their sums gives the whole batch's sums,
        which is what exact gradient accumulation needs.
        """
        cfg = self.loss_config
        logits = self.logits(params, batch, dropout_rng=dropout_rng)
        targets = batch["decoder_target_tokens"]
        loss_sum, z_loss_sum, _ = weighted_cross_entropy(
            logits, targets, batch["decoder_loss_weights"], label_smoothing=cfg.label_smoothing, z_loss=cfg.z_loss)
        real = targets > 0
        sums = {
            "z_loss": z_loss_sum,
            "correct_tokens": jnp.sum((jnp.argmax(logits, -1) == targets) & real),
            "target_tokens": jnp.sum(real),
        }
        return loss_sum, sums

    def normalize(self, batch: Batch, factor: LossNormalizer = "config") -> tuple[dict, Union[Array, float]]:
        """The one loss normalisation: the batch with its loss weights rescaled for `factor` (default:
        the config's loss_normalizing_factor) and the divisor of the summed loss (1.0 for none).
        loss_fn, the trainer's microbatched gradient (divisor taken over the whole batch) and the
        validation loss all use it."""
        factor = self.loss_config.loss_normalizing_factor if factor == "config" else factor
        weights, divisor = normalized_weights(batch, factor)
        return dict(batch, decoder_loss_weights=weights), (1.0 if divisor is None else divisor)

    def loss_fn(self, params, batch: Batch, dropout_rng: Optional[Array] = None) -> tuple[Array, dict]:
        """Scalar loss and metrics (loss and z-loss divided by the normalizing factor)."""
        batch, divisor = self.normalize(batch)
        loss_sum, sums = self.loss_sums(params, batch, dropout_rng)
        metrics = {
            "loss": loss_sum / divisor,
            "z_loss": sums["z_loss"] / divisor,
            "accuracy": sums["correct_tokens"] / jnp.maximum(sums["target_tokens"], 1),
            "target_tokens": sums["target_tokens"],
        }
        return loss_sum / divisor, metrics

    def score_batch(self, params, batch: Batch) -> Array:
        """Summed log-likelihood of each example's target tokens [b] (padding excluded)."""
        logits = self.logits(params, batch)
        return sequence_log_likelihood(logits, batch["decoder_target_tokens"])

    # ------------------------------------------------------------------ decoding
    def encode(self, params, encoder_input_tokens: Array) -> Array:
        """Encoder states [b, enc_len, emb_dim] of int32 tokens [b, enc_len] (no dropout)."""
        return self.module.apply({"params": params}, encoder_input_tokens, enable_dropout=False,
                                 method=Transformer.encode)

    def init_decode_cache(self, batch: int, encoder_input_tokens: Array, max_decode_len: int):
        """A zero self-attention cache for `batch` decoder rows (shapes from an abstract init: no compute)."""
        def init(enc):
            return self.module.init(jax.random.PRNGKey(0), enc, jnp.zeros((batch, max_decode_len), jnp.int32),
                                    decode=True, max_decode_length=max_decode_len, enable_dropout=False)["cache"]
        shapes = jax.eval_shape(init, jax.ShapeDtypeStruct((batch,) + encoder_input_tokens.shape[1:], jnp.int32))
        return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    def logits_from_slice(self, params, cache, encoded: Array, encoder_input_tokens: Array, tokens: Array,
                          max_decode_len: int) -> tuple[Array, Any]:
        """One decoding step over the KV cache: tokens [rows, 1] -> (logits [rows, vocab], cache).
        rows may be g times the encoder batch: rows i*g .. i*g+g-1 share encoder row i (beams,
        candidates), whose cross-attention keys/values are projected once at step 0 and cached."""
        logits, mutated = self.module.apply({"params": params, "cache": cache}, encoded, encoder_input_tokens, tokens,
                                            decode=True, max_decode_length=max_decode_len, enable_dropout=False,
                                            mutable=["cache"], method=Transformer.decode)
        return logits[:, -1], mutated["cache"]

    def reorder_cache(self, cache, parents: Array, width: int, batch_size: int):
        """Cache rows [batch * width] -> [batch * k] by parents [batch, k] on the self-attention
        leaves; the cross-attention leaves stay one row per encoder input."""
        def reorder(path, x):
            if any(getattr(p, "key", None) == _CROSS_ATTENTION for p in path):
                return x
            return gather_beams(x, parents, batch_size, width)
        return jax.tree_util.tree_map_with_path(reorder, cache)

    def prefix_log_probs(self, params, encoded: Array, encoder_input_tokens: Array, prefixes: Array,
                         positions: Array, next_tokens: Array) -> Array:
        """log p(next token | prefix) for prefixes decoded teacher-forced, the output layer only at
        each prefix's last position. encoded [b, enc_len, emb]; prefixes [b, p, depth] decoder
        inputs (start token, then the prefix, 0-padded); positions [b, p] the prefix lengths;
        next_tokens [b, p, width] -> [b, p, width] float32."""
        b, p, depth = prefixes.shape
        logits = self.module.apply({"params": params}, jnp.repeat(encoded, p, axis=0),
                                   jnp.repeat(encoder_input_tokens, p, axis=0), prefixes.reshape(b * p, depth),
                                   enable_dropout=False, positions=positions.reshape(b * p),
                                   method=Transformer.decode)[:, 0]  # [b * p, vocab]
        logits = logits.astype(jnp.float32)
        log_probs = logits - jax.nn.logsumexp(logits, axis=-1, keepdims=True)
        return jnp.take_along_axis(log_probs, next_tokens.reshape(b * p, -1), axis=1).reshape(next_tokens.shape)


_CROSS_ATTENTION = "encoder_decoder_attention"  # the network's cross-attention cache (one row per input)


def sequence_log_likelihood(logits: Array, targets: Array) -> Array:
    """logits [b, l, vocab], targets [b, l] (0 = padding) -> summed log p(target) per row [b]."""
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    token_ll = jnp.take_along_axis(log_probs, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
    return jnp.sum(token_ll * (targets > 0), axis=-1)
