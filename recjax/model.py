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
from typing import Mapping, Optional, Union

import gin
import jax
import jax.numpy as jnp

from recjax.config import T5Config
from recjax.network import Transformer

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
    """Holds the network and the loss settings; pure functions of (params, batch)."""

    def __init__(self, config: T5Config, loss: LossConfig = LossConfig()):
        self.config = config
        self.loss_config = loss
        self.module = Transformer(config)

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

    def loss_fn(self, params, batch: Batch, dropout_rng: Optional[Array] = None) -> tuple[Array, dict]:
        """Scalar loss and metrics (loss and z-loss divided by the normalizing factor)."""
        weights, divisor = normalized_weights(batch, self.loss_config.loss_normalizing_factor)
        loss_sum, sums = self.loss_sums(params, dict(batch, decoder_loss_weights=weights), dropout_rng)
        divisor = 1.0 if divisor is None else divisor
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


def sequence_log_likelihood(logits: Array, targets: Array) -> Array:
    """logits [b, l, vocab], targets [b, l] (0 = padding) -> summed log p(target) per row [b]."""
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    token_ll = jnp.take_along_axis(log_probs, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
    return jnp.sum(token_ll * (targets > 0), axis=-1)


def shift_right(targets: Array, bos_id: int = 0) -> Array:
    """Decoder inputs from targets: prepend the start id (T5 uses the pad id 0), drop the last."""
    return jnp.concatenate([jnp.full(targets.shape[:-1] + (1,), bos_id, targets.dtype), targets[..., :-1]], axis=-1)
