"""BERT4Rec: bidirectional transformer trained on the cloze task (Sun et al., CIKM 2019), in Flax.

Architecture as the paper: item + learned position embeddings, LayerNorm, dropout; post-LN
transformer layers (bidirectional self-attention, GELU feed-forward of 4 x hidden); an output
projection (dense + GELU + LayerNorm) whose result is dotted with the shared item embeddings plus a
per-item bias, softmax over ALL items. Training: every item of a training sequence is replaced by
[mask] with probability `mask_prob` (at least one per sequence), and with probability
`mask_last_prob` a sequence instead gets only its last item masked (the paper's extra samples
that match the test-time task); cross-entropy at the masked positions. Scoring: [mask] appended
to the history, the distribution at that position.

`loss = "sampled"`: instead of the softmax over all items, the positive against `num_negatives`
items drawn uniformly once per batch (as SASRec's sampled softmax): ~47x less output-layer work
per masked position on Beauty (257 vs 12,101 logits), which is what makes BERT4Rec converge on a
CPU budget. Scoring is over all items either way.

Efficiency: the full-vocabulary softmax is computed only at masked positions, gathered into a
fixed budget of `max_predictions_per_batch` rows ([budget, num_items] logits instead of
[batch, width, num_items]); masked positions beyond the budget stay masked in the input but are
not predicted (counted in `overflow`). The default budget is 1.5x the expected count.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import numpy as np
import optax

from recjax.baselines.losses import sampled_softmax
from recjax.baselines.sequences import PAD_TOKEN, bucket_width, bucketed_batch_orders, group_by_width, left_pad


class BERT4RecLayer(nn.Module):
    hidden_dim: int
    num_heads: int
    dropout_rate: float

    @nn.compact
    def __call__(self, x, mask, deterministic: bool):
        # x: [batch, length, hidden]; mask: [batch, 1, 1, length] (padding keys hidden)
        attended = nn.MultiHeadDotProductAttention(
            num_heads=self.num_heads, qkv_features=self.hidden_dim, dropout_rate=self.dropout_rate,
            name="attention")(x, mask=mask, deterministic=deterministic)
        x = nn.LayerNorm(epsilon=1e-12, name="attention_norm")(
            x + nn.Dropout(self.dropout_rate)(attended, deterministic=deterministic))
        h = nn.gelu(nn.Dense(4 * self.hidden_dim, name="mlp_in")(x))
        h = nn.Dense(self.hidden_dim, name="mlp_out")(h)
        return nn.LayerNorm(epsilon=1e-12, name="mlp_norm")(
            x + nn.Dropout(self.dropout_rate)(h, deterministic=deterministic))


class BERT4RecNetwork(nn.Module):
    num_items: int
    max_len: int
    hidden_dim: int
    num_layers: int
    num_heads: int
    dropout_rate: float

    def setup(self):
        init = nn.initializers.truncated_normal(0.02)
        # tokens: 0 pad, 1..N items, N+1 [mask]
        self.token_embedding = nn.Embed(self.num_items + 2, self.hidden_dim, embedding_init=init)
        self.position_embedding = nn.Embed(self.max_len, self.hidden_dim, embedding_init=init)
        self.input_norm = nn.LayerNorm(epsilon=1e-12)
        self.input_dropout = nn.Dropout(self.dropout_rate)
        self.layers = [BERT4RecLayer(self.hidden_dim, self.num_heads, self.dropout_rate, name=f"layer_{i}")
                       for i in range(self.num_layers)]
        self.output_dense = nn.Dense(self.hidden_dim, kernel_init=init)
        self.output_norm = nn.LayerNorm(epsilon=1e-12)
        self.output_bias = self.param("output_bias", nn.initializers.zeros, (self.num_items,))

    def __call__(self, tokens, deterministic: bool = True):
        """tokens: [batch, length] -> projected hidden states [batch, length, hidden]."""
        length = tokens.shape[1]
        # The last column is position max_len - 1 at any width (see sequences.py).
        positions = jnp.arange(self.max_len - length, self.max_len)
        x = self.token_embedding(tokens) + self.position_embedding(positions)[None]
        x = self.input_dropout(self.input_norm(x), deterministic=deterministic)  # [batch, length, hidden]
        mask = (tokens != PAD_TOKEN)[:, None, None, :]  # [batch, 1, 1, length]
        for layer in self.layers:
            x = layer(x, mask, deterministic)
        return self.output_norm(nn.gelu(self.output_dense(x)))

    def logits(self, hidden):
        """hidden [..., hidden] -> logits over items 0..N-1 [..., num_items]."""
        return hidden @ self.token_embedding.embedding[1:self.num_items + 1].T + self.output_bias

    def item_logits(self, hidden, items):
        """hidden [n, hidden], items [n, m] (0-based) -> logits of those items [n, m]."""
        emb = self.token_embedding.embedding[items + 1]  # [n, m, hidden]
        return jnp.einsum("nh,nmh->nm", hidden, emb) + self.output_bias[items]


@gin.configurable
class BERT4Rec:
    """BERT4Rec hyper-parameters + the hooks `train_loop` needs (see `train_loop.NeuralRecommender`)."""

    name = "bert4rec"

    def __init__(self, num_items: int, max_len: int = 50, hidden_dim: int = 64, num_layers: int = 2,
                 num_heads: int = 2, dropout_rate: float = 0.1, mask_prob: float = 0.6,
                 mask_last_prob: float = 0.1, learning_rate: float = 1e-4, weight_decay: float = 0.01,
                 warmup_steps: int = 100, decay_steps: int = 0, clip_norm: float = 5.0, batch_size: int = 256,
                 max_predictions_per_batch: int | None = None, loss: str = "ce", num_negatives: int = 256):
        if not 0.0 < mask_prob <= 1.0:
            raise ValueError(f"BERT4Rec.mask_prob must be in (0, 1], got {mask_prob}")
        if loss not in ("ce", "sampled"):
            raise ValueError(f"BERT4Rec.loss must be 'ce' or 'sampled', got {loss!r}")
        if loss == "sampled" and not 1 <= num_negatives < num_items:
            raise ValueError(f"BERT4Rec.num_negatives must be in [1, {num_items}), got {num_negatives}")
        self.loss_type, self.num_negatives = loss, num_negatives
        self.num_items = num_items
        self.mask_token = num_items + 1
        self.max_len = max_len
        self.mask_prob = mask_prob
        self.mask_last_prob = mask_last_prob
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.warmup_steps = warmup_steps
        self.decay_steps = decay_steps
        self.clip_norm = clip_norm
        self.batch_size = batch_size
        self.max_predictions_per_batch = max_predictions_per_batch
        self.overflow = 0  # masked positions dropped from the loss because the budget was full
        self.network = BERT4RecNetwork(num_items, max_len, hidden_dim, num_layers, num_heads, dropout_rate)

    def init_params(self, rng: jax.Array):
        return self.network.init(rng, jnp.ones((1, self.max_len), jnp.int32))["params"]

    def optimizer(self) -> optax.GradientTransformation:
        """Clipping at global norm `clip_norm`, AdamW with linear warm-up then (if decay_steps) linear
        decay to 0, as the paper."""
        if self.decay_steps:
            schedule = optax.join_schedules(
                [optax.linear_schedule(0.0, self.learning_rate, max(self.warmup_steps, 1)),
                 optax.linear_schedule(self.learning_rate, 0.0, self.decay_steps)],
                [max(self.warmup_steps, 1)])
        else:
            schedule = optax.linear_schedule(0.0, self.learning_rate, max(self.warmup_steps, 1))
        # No decay on biases and LayerNorm scales (BERT convention).
        decay_mask = lambda p: jax.tree_util.tree_map_with_path(
            lambda path, _: getattr(path[-1], "key", "") in ("kernel", "embedding"), p)
        return optax.chain(
            optax.clip_by_global_norm(self.clip_norm),
            optax.adamw(schedule, b1=0.9, b2=0.999, eps=1e-6, weight_decay=self.weight_decay,
                        mask=decay_mask))

    def _budget(self, lengths: np.ndarray) -> int:
        """Masked positions predicted per batch of rows with these lengths (1.5x the expectation)."""
        if self.max_predictions_per_batch:
            return int(self.max_predictions_per_batch)
        expected = self.batch_size * float(np.mean(np.maximum(lengths * self.mask_prob, 1.0)))
        width = int(lengths.max())
        return int(min(self.batch_size * width, -(-int(1.5 * expected + 16) // 64) * 64))

    def epoch_batches(self, train_sequences: Sequence[np.ndarray],
                      rng: np.random.Generator) -> Iterator[dict[str, np.ndarray]]:
        """One epoch of cloze batches over users with >= 1 training item."""
        seqs = [s for s in train_sequences if len(s) >= 1]
        lengths = np.array([min(len(s), self.max_len) for s in seqs], np.int64)
        budgets = {w: self._budget(lengths[rows]) for w, rows in group_by_width(lengths, self.max_len).items()}
        for width, rows in bucketed_batch_orders(lengths, self.max_len, self.batch_size, rng):
            budget = budgets[width]
            labels = left_pad([seqs[r] for r in rows], width)  # [batch, width]
            real = labels != PAD_TOKEN
            masked = real & (rng.random(labels.shape) < self.mask_prob)
            last_only = rng.random(len(rows)) < self.mask_last_prob  # [batch]
            masked[last_only] = False
            masked[last_only, -1] = True
            masked[~masked.any(1), -1] = True  # at least one prediction per sequence
            inputs = np.where(masked, self.mask_token, labels).astype(np.int32)
            pos_rows, pos_cols = np.nonzero(masked)
            self.overflow += max(0, pos_rows.size - budget)
            pos_rows, pos_cols = pos_rows[:budget], pos_cols[:budget]
            n = pos_rows.size
            pad = budget - n
            batch = {
                "inputs": inputs,
                "pred_rows": np.pad(pos_rows, (0, pad)).astype(np.int32),  # [budget]
                "pred_cols": np.pad(pos_cols, (0, pad)).astype(np.int32),  # [budget]
                "pred_labels": np.pad(labels[pos_rows, pos_cols] - 1, (0, pad)).astype(np.int32),
                "pred_weights": (np.arange(budget) < n).astype(np.float32),  # [budget]
            }
            if self.loss_type == "sampled":  # [num_negatives] 0-based items shared by the batch
                batch["sampled"] = rng.integers(0, self.num_items, size=self.num_negatives, dtype=np.int32)
            yield batch

    def loss(self, params, batch, dropout_rng):
        hidden = self.network.apply({"params": params}, batch["inputs"], deterministic=False,
                                    rngs={"dropout": dropout_rng})  # [batch, length, hidden]
        picked = hidden[batch["pred_rows"], batch["pred_cols"]]  # [budget, hidden]
        labels = batch["pred_labels"]  # [budget]
        if self.loss_type == "ce":
            logits = self.network.apply({"params": params}, picked, method=BERT4RecNetwork.logits)
            ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)  # [budget]
        else:
            sampled = batch["sampled"]  # [num_negatives]
            items = jnp.concatenate([labels[:, None], jnp.broadcast_to(sampled, (labels.shape[0], sampled.shape[0]))], 1)
            logits = self.network.apply({"params": params}, picked, items, method=BERT4RecNetwork.item_logits)
            ce = sampled_softmax(logits[:, 0], logits[:, 1:], labels, sampled)  # [budget]
        w = batch["pred_weights"]
        return jnp.sum(ce * w) / jnp.maximum(w.sum(), 1.0)

    def token_lengths(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """[users] number of tokens `history_tokens` needs per history (history + [mask])."""
        return np.array([min(len(h) + 1, self.max_len) for h in histories], np.int64)

    def history_tokens(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """[users, width]: the last width-1 history items, then [mask]; width = bucket of the longest."""
        width = bucket_width(int(self.token_lengths(histories).max()), self.max_len)
        tokens = np.zeros((len(histories), width), np.int32)
        tokens[:, :-1] = left_pad(histories, width - 1)
        tokens[:, -1] = self.mask_token
        return tokens

    def scores(self, params, tokens):
        """tokens [batch, width] ending in [mask] -> scores of every item [batch, num_items]."""
        hidden = self.network.apply({"params": params}, tokens, deterministic=True)[:, -1]  # [batch, hidden]
        return self.network.apply({"params": params}, hidden, method=BERT4RecNetwork.logits)
