"""SASRec: self-attentive sequential recommendation (Kang & McAuley, ICDM 2018), in Flax.

Architecture as the authors' code (and its PyTorch port): item embedding (shared with the output)
scaled by sqrt(hidden) + learned positions, dropout; per block a pre-LayerNorm causal
self-attention with residual, then a LayerNorm and a point-wise two-layer ReLU feed-forward with
residual; padding positions are zeroed after every block; a final LayerNorm. Scoring: the last
position's hidden state dotted with every item embedding. Training, at every position with the
next item as the positive (`loss`):
- "bce": the paper's: one sampled item the user never interacted with as the negative, binary
  cross-entropy on the two dot-product logits (kept for reproduction);
- "ce": softmax cross-entropy over ALL items (Klenitskiy & Vasilev, RecSys 2023, "Turning
  Dross Into Gold Loss: is BERT4Rec really better than SASRec?"; RecBole's CE);
- "sampled": softmax cross-entropy over the positive and `num_negatives` items drawn uniformly
  once per batch and shared by every position (the eSASRec benchmark's sampled softmax);
  a sampled item equal to the position's positive is masked out.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import numpy as np
import optax

from recjax.baselines.losses import LOSSES, sampled_softmax
from recjax.baselines.sequences import PAD_TOKEN, bucket_width, bucketed_batch_orders, left_pad




class SASRecBlock(nn.Module):
    hidden_dim: int
    num_heads: int
    dropout_rate: float

    @nn.compact
    def __call__(self, x, mask, keep, deterministic: bool):
        # x: [batch, length, hidden]; mask: [batch, 1, length, length]; keep: [batch, length, 1]
        q = nn.LayerNorm(epsilon=1e-8, name="attention_norm")(x)
        attended = nn.MultiHeadDotProductAttention(
            num_heads=self.num_heads, qkv_features=self.hidden_dim, dropout_rate=self.dropout_rate,
            name="attention")(q, x, mask=mask, deterministic=deterministic)
        x = q + attended  # the reference adds the normalized queries, not the raw input
        x = nn.LayerNorm(epsilon=1e-8, name="mlp_norm")(x)
        h = nn.Dense(self.hidden_dim, name="mlp_in")(x)
        h = nn.Dropout(self.dropout_rate)(nn.relu(h), deterministic=deterministic)
        h = nn.Dense(self.hidden_dim, name="mlp_out")(h)
        x = x + nn.Dropout(self.dropout_rate)(h, deterministic=deterministic)
        return x * keep


class SASRecNetwork(nn.Module):
    num_items: int
    max_len: int
    hidden_dim: int
    num_blocks: int
    num_heads: int
    dropout_rate: float

    def setup(self):
        self.item_embedding = nn.Embed(self.num_items + 1, self.hidden_dim, name="item_embedding",
                                       embedding_init=nn.initializers.normal(0.02))
        self.position_embedding = nn.Embed(self.max_len, self.hidden_dim, name="position_embedding",
                                           embedding_init=nn.initializers.normal(0.02))
        self.blocks = [SASRecBlock(self.hidden_dim, self.num_heads, self.dropout_rate, name=f"block_{i}")
                       for i in range(self.num_blocks)]
        self.input_dropout = nn.Dropout(self.dropout_rate)
        self.final_norm = nn.LayerNorm(epsilon=1e-8)

    def __call__(self, tokens, deterministic: bool = True):
        """tokens: [batch, length] (left-padded, 0 = pad) -> hidden states [batch, length, hidden]."""
        length = tokens.shape[1]
        keep = (tokens != PAD_TOKEN)[..., None].astype(jnp.float32)  # [batch, length, 1]
        x = self.item_embedding(tokens) * jnp.sqrt(float(self.hidden_dim))
        # The last column is position max_len - 1 at any width (see sequences.py).
        x = x + self.position_embedding(jnp.arange(self.max_len - length, self.max_len))[None]
        x = self.input_dropout(x, deterministic=deterministic) * keep
        causal = jnp.tril(jnp.ones((length, length), dtype=bool))  # [length, length]
        # Causal, and padding keys hidden; the diagonal stays visible so no row is fully masked.
        key_ok = (tokens != PAD_TOKEN)[:, None, None, :] | jnp.eye(length, dtype=bool)[None, None]
        mask = causal[None, None] & key_ok  # [batch, 1, length, length]
        for block in self.blocks:
            x = block(x, mask, keep, deterministic)
        return self.final_norm(x)

    def item_table(self):
        """[num_items, hidden]: output embeddings of items 0..N-1 (tokens 1..N)."""
        return self.item_embedding.embedding[1:]

    def embed_tokens(self, tokens):
        return self.item_embedding(tokens)


@gin.configurable
class SASRec:
    """SASRec hyper-parameters + the hooks `train_loop` needs (see `train_loop.NeuralRecommender`)."""

    name = "sasrec"

    def __init__(self, num_items: int, max_len: int = 50, hidden_dim: int = 50, num_blocks: int = 2,
                 num_heads: int = 1, dropout_rate: float = 0.2, learning_rate: float = 1e-3,
                 adam_b1: float = 0.9, adam_b2: float = 0.98, l2_emb: float = 0.0,
                 batch_size: int = 128, loss: str = "bce", num_negatives: int = 256):
        if loss not in LOSSES:
            raise ValueError(f"SASRec.loss must be one of {LOSSES}, got {loss!r}")
        if loss == "sampled" and not 1 <= num_negatives < num_items:
            raise ValueError(f"SASRec.num_negatives must be in [1, {num_items}), got {num_negatives}")
        self.loss_type, self.num_negatives = loss, num_negatives
        self.num_items = num_items
        self.max_len = max_len
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.adam_b1, self.adam_b2 = adam_b1, adam_b2
        self.l2_emb = l2_emb
        self.network = SASRecNetwork(num_items, max_len, hidden_dim, num_blocks, num_heads, dropout_rate)

    def init_params(self, rng: jax.Array):
        return self.network.init(rng, jnp.ones((1, self.max_len), jnp.int32))["params"]

    def optimizer(self) -> optax.GradientTransformation:
        return optax.adam(self.learning_rate, b1=self.adam_b1, b2=self.adam_b2)

    def epoch_batches(self, train_sequences: Sequence[np.ndarray],
                      rng: np.random.Generator) -> Iterator[dict[str, np.ndarray]]:
        """One epoch over users with >= 2 training items: inputs seq[:-1], positives seq[1:], and
        negatives drawn uniformly from the items NOT in the user's training sequence."""
        seqs = [s for s in train_sequences if len(s) >= 2]
        input_lengths = [min(len(s) - 1, self.max_len) for s in seqs]
        for width, rows in bucketed_batch_orders(input_lengths, self.max_len, self.batch_size, rng):
            block = left_pad([seqs[r] for r in rows], width + 1)  # [batch, width + 1]
            inputs, positives = block[:, :-1], block[:, 1:]
            batch = {"inputs": inputs, "positives": positives}
            if self.loss_type == "bce":
                batch["negatives"] = self._sample_negatives(block, positives, rng)
            elif self.loss_type == "sampled":  # [num_negatives] tokens shared by the batch
                batch["sampled"] = rng.integers(1, self.num_items + 1, size=self.num_negatives, dtype=np.int32)
            yield batch

    def _sample_negatives(self, seen: np.ndarray, positives: np.ndarray,
                          rng: np.random.Generator) -> np.ndarray:
        # seen: [batch, width + 1] tokens of the user's sequence; returns [batch, width] tokens.
        neg = rng.integers(1, self.num_items + 1, size=positives.shape, dtype=np.int32)
        for _ in range(20):  # rejection sampling; collisions are rare once num_items >> length
            clash = (neg[:, :, None] == seen[:, None, :]).any(-1)  # [batch, max_len]
            if not clash.any():
                break
            neg[clash] = rng.integers(1, self.num_items + 1, size=int(clash.sum()), dtype=np.int32)
        return np.where(positives == PAD_TOKEN, PAD_TOKEN, neg).astype(np.int32)

    def loss(self, params, batch, dropout_rng):
        hidden = self.network.apply({"params": params}, batch["inputs"], deterministic=False,
                                    rngs={"dropout": dropout_rng})  # [batch, length, hidden]
        emb = lambda t: self.network.apply({"params": params}, t, method=SASRecNetwork.embed_tokens)
        positives = batch["positives"]  # [batch, length]
        weight = (positives != PAD_TOKEN).astype(jnp.float32)
        pos_logits = jnp.sum(hidden * emb(positives), -1)  # [batch, length]
        if self.loss_type == "bce":
            neg_logits = jnp.sum(hidden * emb(batch["negatives"]), -1)  # [batch, length]
            per_pos = (optax.sigmoid_binary_cross_entropy(pos_logits, jnp.ones_like(pos_logits))
                       + optax.sigmoid_binary_cross_entropy(neg_logits, jnp.zeros_like(neg_logits)))
        elif self.loss_type == "ce":
            table = self.network.apply({"params": params}, method=SASRecNetwork.item_table)  # [items, hidden]
            logits = hidden @ table.T  # [batch, length, items]
            labels = jnp.maximum(positives - 1, 0)  # token t is item t - 1
            per_pos = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        else:
            sampled = batch["sampled"]  # [num_negatives]
            per_pos = sampled_softmax(pos_logits, hidden @ emb(sampled).T, positives, sampled)  # [batch, length]
        loss = jnp.sum(per_pos * weight) / jnp.maximum(weight.sum(), 1.0)
        if self.l2_emb:
            loss = loss + self.l2_emb * jnp.sum(params["item_embedding"]["embedding"] ** 2)
        return loss

    def token_lengths(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """[users] number of tokens `history_tokens` needs per history."""
        return np.array([max(1, min(len(h), self.max_len)) for h in histories], np.int64)

    def history_tokens(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """[users, width] tokens of the most recent history items, width = the bucket of the longest."""
        return left_pad(histories, bucket_width(int(self.token_lengths(histories).max()), self.max_len))

    def scores(self, params, tokens):
        """tokens [batch, width] -> scores of every item [batch, num_items]."""
        hidden = self.network.apply({"params": params}, tokens, deterministic=True)[:, -1]  # [batch, hidden]
        table = self.network.apply({"params": params}, method=SASRecNetwork.item_table)  # [items, hidden]
        return hidden @ table.T
