"""The network's decode path, dtype handling, logical axes and the loss against references.

Logit parity with transformers' PyTorch T5 lives in tests/test_convert.py (through the HF
mapping); scoring parity in tests/test_score.py.
"""
import flax.linen as nn
from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from recjax import network
from recjax.config import T5Config
from recjax.model import EncoderDecoderModel, LossConfig, normalized_weights, weighted_cross_entropy
from recjax.model_inputs import shift_right

CFG = T5Config(vocab_size=96, emb_dim=16, num_heads=3, head_dim=6, num_encoder_layers=2, num_decoder_layers=3,
               mlp_dim=24)


@pytest.fixture(scope="module")
def params():
    boxed = network.init_params(CFG, jax.random.PRNGKey(1))
    return boxed, nn.meta.unbox(boxed)


def _tokens(seed=0, batch=2, enc=20, dec=24):
    rng = np.random.default_rng(seed)
    enc_tokens = rng.integers(2, CFG.vocab_size, (batch, enc)).astype(np.int32)
    enc_tokens[1, enc - 5:] = 0  # padding
    targets = rng.integers(2, CFG.vocab_size, (batch, dec)).astype(np.int32)
    return jnp.asarray(enc_tokens), jnp.asarray(targets)


def test_cached_decode_equals_full_pass(params):
    _, p = params
    model = network.Transformer(CFG)
    enc, targets = _tokens()
    dec_in = shift_right(targets)
    full = model.apply({"params": p}, enc, dec_in, enable_dropout=False)  # [b, L, vocab]
    length = dec_in.shape[1]
    cache = model.init(jax.random.PRNGKey(0), enc, jnp.zeros_like(dec_in), decode=True, max_decode_length=length,
                       enable_dropout=False)["cache"]
    encoded = model.apply({"params": p}, enc, enable_dropout=False, method=model.encode)

    @jax.jit
    def step(cache, token):
        logits, mutated = model.apply({"params": p, "cache": cache}, encoded, enc, token, decode=True,
                                      max_decode_length=length, enable_dropout=False, mutable=["cache"],
                                      method=model.decode)
        return mutated["cache"], logits[:, 0]

    stepped = []
    for t in range(length):  # lengths > 16 reach the logarithmic relative-position buckets
        cache, logits = step(cache, dec_in[:, t:t + 1])
        stepped.append(logits)
    np.testing.assert_allclose(np.stack(stepped, 1), full, atol=1e-5)


def test_param_tree_is_t5x_with_logical_axes(params):
    boxed, p = params
    flat = traverse_util.flatten_dict(p, sep="/")
    assert flat["encoder/layers_0/attention/query/kernel"].shape == (16, 18)  # [embed, heads*head_dim]
    assert flat["decoder/layers_2/encoder_decoder_attention/out/kernel"].shape == (18, 16)
    assert flat["decoder/logits_dense/kernel"].shape == (16, 96)
    assert flat["encoder/relpos_bias/rel_embedding"].shape == (3, 32)
    assert "decoder/layers_0/mlp/wi_1/kernel" in flat and "token_embedder/embedding" in flat
    assert not any("bias" in k and "relpos" not in k for k in flat)  # T5 v1.1: no biases anywhere
    specs = nn.get_partition_spec(boxed)
    assert tuple(specs["encoder"]["layers_0"]["attention"]["query"]["kernel"]) == ("embed", "joined_kv")
    assert tuple(specs["encoder"]["layers_0"]["mlp"]["wo"]["kernel"]) == ("mlp", "embed")
    assert tuple(specs["token_embedder"]["embedding"]) == ("vocab", "embed")
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(p))


def test_bfloat16_compute_keeps_float32_params_and_logits(params):
    _, p = params
    enc, targets = _tokens()
    logits32 = network.Transformer(CFG).apply({"params": p}, enc, shift_right(targets), enable_dropout=False)
    logits16 = network.Transformer(CFG.replace(dtype="bfloat16")).apply({"params": p}, enc, shift_right(targets),
                                                                         enable_dropout=False)
    assert logits16.dtype == jnp.float32
    # bfloat16 has 8 mantissa bits: agreement to a few percent of the logit scale.
    assert float(jnp.max(jnp.abs(logits16 - logits32))) < 0.05 * float(jnp.max(jnp.abs(logits32))) + 0.05


def test_dropout_only_with_an_rng(params):
    _, p = params
    model = EncoderDecoderModel(CFG.replace(dropout_rate=0.5))
    enc, targets = _tokens()
    batch = {"encoder_input_tokens": enc, "decoder_input_tokens": shift_right(targets),
             "decoder_target_tokens": targets}
    a = model.logits(p, batch)
    b = model.logits(p, batch)
    c = model.logits(p, batch, dropout_rng=jax.random.PRNGKey(3))
    np.testing.assert_array_equal(a, b)
    assert float(jnp.max(jnp.abs(a - c))) > 1e-3


def test_weighted_cross_entropy_against_optax():
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.normal(size=(3, 5, 11)), jnp.float32)
    targets = jnp.asarray(rng.integers(0, 11, (3, 5)))
    weights = jnp.asarray(rng.integers(0, 2, (3, 5)), jnp.float32)
    ls = 0.1
    loss, z, wsum = weighted_cross_entropy(logits, targets, weights, label_smoothing=ls, z_loss=1e-3)
    soft = optax.smooth_labels(jax.nn.one_hot(targets, 11), ls * 11 / 10)  # off-value ls/(V-1), as T5X
    confidence, low = 1 - ls, ls / 10
    entropy = -(confidence * np.log(confidence) + 10 * low * np.log(low))
    log_z = jax.nn.logsumexp(logits, -1)
    expected = jnp.sum((optax.softmax_cross_entropy(logits, soft) - entropy + 1e-3 * log_z ** 2) * weights)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(z, jnp.sum(1e-3 * log_z ** 2 * weights), rtol=1e-5)
    assert float(wsum) == float(weights.sum())


def test_loss_normalizing_factors():
    targets = jnp.asarray([[5, 6, 7, 0], [8, 0, 0, 0]])
    batch = {"decoder_target_tokens": targets}
    w, d = normalized_weights(batch, "num_real_target_tokens")
    assert float(d) == 4.0
    w, d = normalized_weights(batch, "num_total_target_tokens")
    assert d == 8.0
    w, d = normalized_weights(batch, "average_per_sequence")
    np.testing.assert_allclose(w, [[1 / 3, 1 / 3, 1 / 3, 0], [1, 0, 0, 0]], rtol=1e-6)
    assert float(d) == 2.0  # two sequences
    packed = dict(batch, decoder_segment_ids=jnp.asarray([[1, 1, 2, 0], [1, 0, 0, 0]]))
    w, _ = normalized_weights(packed, "average_per_sequence")
    np.testing.assert_allclose(w, [[0.5, 0.5, 1, 0], [1, 0, 0, 0]], rtol=1e-6)
    w, d = normalized_weights(batch, 233472.0)
    assert d == 233472.0
    w, d = normalized_weights(batch, None)
    assert d is None
    with pytest.raises(ValueError, match="loss_normalizing_factor 'per_token'"):
        normalized_weights(batch, "per_token")


def test_loss_fn_is_token_mean_and_score_is_sequence_sum(params):
    _, p = params
    model = EncoderDecoderModel(CFG, LossConfig(z_loss=0.0))
    enc, targets = _tokens()
    targets = targets.at[0, 20:].set(0)
    batch = {"encoder_input_tokens": enc, "decoder_input_tokens": shift_right(targets),
             "decoder_target_tokens": targets}
    loss, metrics = model.loss_fn(p, batch)
    scores = model.score_batch(p, batch)
    np.testing.assert_allclose(loss, -jnp.sum(scores) / jnp.sum(targets > 0), rtol=1e-5)
    assert int(metrics["target_tokens"]) == int(jnp.sum(targets > 0))
