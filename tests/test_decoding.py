"""Item-ID trie, constrained beam search and candidate scoring against exhaustive scoring.

One tiny random T5 (vocab 128) and a 40-item catalog of 1-3 token IDs that share prefixes; the
reference is `EncoderDecoderModel.score_batch` (teacher-forced full passes) of every item ID.
"""
import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recjax import network
from recjax.config import T5Config
from recjax.decoding import DecodeOptions, ItemDecoder, exclusion_matrix
from recjax.items.trie import ItemTrie
from recjax.decoding.candidate_scoring import score_candidates
from recjax.items.trie import child_node, node_edges
from recjax.model import EncoderDecoderModel
from recjax.model_inputs import shift_right

CONFIG = T5Config(vocab_size=128, emb_dim=16, num_heads=2, head_dim=8, num_encoder_layers=2,
                  num_decoder_layers=2, mlp_dim=32)
NUM_ITEMS = 40
BATCH = 4


def _catalog(seed=0):
    rng = np.random.default_rng(seed)
    seqs = set()
    while len(seqs) < NUM_ITEMS:  # tokens 3..11: many shared prefixes, some IDs prefixes of others
        seqs.add(tuple(int(t) for t in rng.integers(3, 12, size=rng.integers(1, 4))))
    return sorted(seqs)


@pytest.fixture(scope="module")
def setup():
    model = EncoderDecoderModel(CONFIG)
    params = flax.linen.meta.unbox(network.init_params(CONFIG, jax.random.PRNGKey(1)))
    trie = ItemTrie.from_token_sequences(_catalog(), CONFIG.vocab_size)
    rng = np.random.default_rng(2)
    enc = rng.integers(2, CONFIG.vocab_size, size=(BATCH, 9)).astype(np.int32)
    enc[0, 6:] = 0  # padding
    enc[2, 3:] = 0
    # Reference: every item ID scored by teacher-forced full passes, [batch, items].
    targets = np.zeros((trie.num_items, trie.depth), np.int32)
    for i in range(trie.num_items):
        seq = trie.item_sequence(i)
        targets[i, :len(seq)] = seq
    score = jax.jit(model.score_batch)
    exhaustive = np.stack([np.asarray(score(params, {
        "encoder_input_tokens": jnp.repeat(jnp.asarray(enc[b:b + 1]), trie.num_items, 0),
        "decoder_input_tokens": shift_right(jnp.asarray(targets)),
        "decoder_target_tokens": jnp.asarray(targets)})) for b in range(BATCH)])
    return model, params, trie, enc, exhaustive, targets, score


def _reference_top(scores, k, exclude=()):
    scores = scores.copy()
    scores[list(exclude)] = -np.inf
    order = np.argsort(-scores, kind="stable")[:k]
    return order[np.isfinite(scores[order])]


# ------------------------------------------------------------------------------------- trie

def test_trie_structure_lookup_and_errors():
    seqs = [[5], [5, 6], [5, 6, 7], [8, 1], [9, 3]]  # [8, 1]: EOS already there
    trie = ItemTrie.from_token_sequences(seqs, vocab_size=16)
    # root -> 5, 8, 9; 5 -> EOS, 6; 6 -> EOS, 7; 7 -> EOS; 8 -> EOS; 9 -> 3 -> EOS
    assert trie.num_nodes == 1 + 3 + 2 + 2 + 1 + 1 + 2
    assert trie.depth == 4 and trie.root_degree == 3 and trie.max_degree == 2
    assert list(trie.edge_tokens[trie.edge_offsets[0]:trie.edge_offsets[1]]) == [5, 8, 9]
    for i, s in enumerate(seqs):
        assert trie.lookup(s) == i
        assert trie.item_sequence(i) == [t for t in s if t != 1] + [1]
    assert trie.lookup([5, 7]) == -1 and trie.lookup([6]) == -1 and trie.lookup([5, 6, 7, 7]) == -1
    assert trie.leaf_count[0] == 5 and trie.leaf_count[trie.item_paths[0, 1]] == 3  # under "5"
    with pytest.raises(ValueError, match=r"item 1 \('b'\) and item 0 \('a'\) have the same token sequence"):
        ItemTrie.from_token_sequences([[4, 4], [4, 4, 1]], 16, names=["a", "b"])
    with pytest.raises(ValueError, match="item 1: empty token sequence"):
        ItemTrie.from_token_sequences([[4], [1]], 16)
    with pytest.raises(ValueError, match="item 0: token 1 is padding, EOS"):
        ItemTrie.from_token_sequences([[4, 1, 5]], 16)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        ItemTrie.from_token_sequences([[4, 16]], 16)

    # The vectorized lookups used inside the loop agree with the host walk.
    arrays = trie.arrays()
    nodes = jnp.asarray(trie.item_paths[:, :3].clip(0))  # [items, 3]
    tokens, children, valid = node_edges(arrays, nodes, trie.max_degree + 1)
    assert tokens.shape == (5, 3, trie.max_degree + 1)
    walked = child_node(arrays, jnp.zeros(5, jnp.int32), jnp.asarray(trie.item_tokens[:, 0]), trie.root_degree)
    np.testing.assert_array_equal(walked, trie.item_paths[:, 1])
    assert int(child_node(arrays, jnp.asarray(0), jnp.asarray(6), trie.root_degree)) == -1
    assert int(child_node(arrays, jnp.asarray(-1), jnp.asarray(5), trie.root_degree)) == -1


def test_trie_of_beauty_ids_under_the_t5_vocabulary(shared_data, t5_vocab_path):
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(t5_vocab_path))
    num_items = len({item for line in (shared_data / "beauty" / "Beauty.txt").read_text().splitlines()
                     for item in line.split()[1:]})
    assert num_items == 12101
    ids = [str(i + 1) for i in range(num_items)]  # recjax's item IDs are "1".."N" (permuted)
    trie = ItemTrie.from_token_sequences([sp.encode(i) for i in ids], 32128, names=ids)
    assert (trie.num_items, trie.depth) == (12101, 4)  # 1-3 pieces + EOS
    assert trie.num_nodes == 24204 and trie.root_degree == 195 and trie.max_degree == 283
    assert trie.nbytes < 1_200_000  # 1.1 MB
    for i in (0, 11, 122, 1233, 12100):
        assert trie.lookup(sp.encode(ids[i])) == i


# ------------------------------------------------------------------------------------- network cache

def test_cached_grouped_decoding_equals_full_pass(setup):
    """Step-by-step decoding with g decoder rows per encoder row (the beam layout, cross-attention
    keys/values cached at step 0) gives the teacher-forced logits of the expanded batch."""
    model, params, trie, enc, _, targets, _ = setup
    g, length = 3, trie.depth
    dec_targets = jnp.asarray(targets[:BATCH * g])  # [batch * g, length]
    dec_inputs = shift_right(dec_targets)
    full = model.logits(params, {"encoder_input_tokens": jnp.repeat(jnp.asarray(enc), g, 0),
                                 "decoder_input_tokens": dec_inputs, "decoder_target_tokens": dec_targets})

    @jax.jit
    def stepwise(params, enc):
        encoded = model.encode(params, enc)
        cache = model.init_decode_cache(BATCH, enc, length)
        out = []
        for t in range(length):
            if t == 1:  # expand the self-attention cache to the g rows per input, as beam search does
                cache = model.reorder_cache(cache, jnp.zeros((BATCH, g), jnp.int32), 1, BATCH)
            tokens = dec_inputs[::g, t:t + 1] if t == 0 else dec_inputs[:, t:t + 1]
            logits, cache = model.logits_from_slice(params, cache, encoded, enc, tokens, length)
            logits = logits[:, None]  # [rows, 1, vocab]
            out.append(jnp.repeat(logits, g, 0) if t == 0 else logits)
        cross = cache["decoder"]["layers_0"]["encoder_decoder_attention"]["cached_key"]
        return jnp.concatenate(out, axis=1), cross.shape

    logits, cross_shape = stepwise(params, jnp.asarray(enc))
    assert cross_shape == (BATCH, enc.shape[1], CONFIG.num_heads, CONFIG.head_dim)  # one row per input
    # Step 0 ran on row i*g only, the same start token for all g rows. Positions after EOS are
    # padding in the full pass (masked differently), so only real target positions compare.
    real = np.asarray(dec_targets) > 0
    assert real.sum() > 2 * BATCH * g
    np.testing.assert_allclose(np.asarray(logits)[real], np.asarray(full)[real], atol=3e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------- beam search

def test_constrained_top_k_equals_exhaustive_scoring(setup):
    """beam >= items: the constrained top-k is the exhaustive top-k, in order, with the same
    log-probabilities; history exclusion (including whole subtrees) removes exactly those items."""
    model, params, trie, enc, exhaustive, _, _ = setup
    best = [_reference_top(exhaustive[b], NUM_ITEMS) for b in range(BATCH)]
    # Exclude all items under the best item's first token for user 2 (a dead subtree).
    first_tok = trie.item_tokens[best[2][0], 0]
    subtree = [i for i in range(NUM_ITEMS) if trie.item_tokens[i, 0] == first_tok]
    histories = [[], [int(best[1][0]), int(best[1][3]), int(best[1][0])], subtree, list(range(0, NUM_ITEMS, 3))]
    decoder = ItemDecoder(model, trie, DecodeOptions(beam_size=NUM_ITEMS + 2, top_k=NUM_ITEMS))
    out = decoder(params, enc, decoder.exclusion(histories, width=NUM_ITEMS))
    # The generic hook path (mask over the whole vocabulary) gives the same beams.
    dense = ItemDecoder(model, trie, DecodeOptions(beam_size=NUM_ITEMS + 2, top_k=NUM_ITEMS, sparse_trie=False))
    dense_out = dense(params, enc, decoder.exclusion(histories, width=NUM_ITEMS))
    np.testing.assert_array_equal(dense_out.items, out.items)
    np.testing.assert_allclose(dense_out.log_probs, out.log_probs, atol=1e-5)
    for b in range(BATCH):
        want = _reference_top(exhaustive[b], NUM_ITEMS, histories[b])
        got = out.items[b][out.items[b] >= 0]
        np.testing.assert_array_equal(got, want, err_msg=f"user {b}")
        np.testing.assert_allclose(out.log_probs[b, :len(want)], exhaustive[b, want], atol=2e-5)
        assert np.all(np.diff(out.scores[b, :len(want)]) <= 0)
        assert np.isneginf(out.scores[b, len(want):]).all()  # empty slots once the catalog runs out
        for slot, item in enumerate(got):  # the returned tokens are the item's
            assert out.sequences[b, slot, :len(trie.item_sequence(item))].tolist() == trie.item_sequence(item)
    assert len(want) == NUM_ITEMS - len(set(histories[3]))


def test_exclusion_matrix():
    m = exclusion_matrix([[3, 1, 3], [], [7]], width=4)
    np.testing.assert_array_equal(m, [[1, 3, -1, -1], [-1, -1, -1, -1], [7, -1, -1, -1]])
    with pytest.raises(ValueError, match="more than the exclusion width 1"):
        exclusion_matrix([[1, 2]], width=1)


def test_unconstrained_mode_and_length_penalty(setup):
    """Free generation: every returned sequence's log-prob is its teacher-forced score, scores are
    log-prob / ((5 + len) / 6) ** alpha sorted best first, items are looked up in the trie."""
    model, params, trie, enc, exhaustive, _, score = setup
    alpha = 0.6
    decoder = ItemDecoder(model, trie, DecodeOptions(beam_size=6, top_k=4, constrained=False,
                                                            exclude_history=False, alpha=alpha))
    out = decoder(params, enc)
    assert out.sequences.shape == (BATCH, 4, trie.depth + 4)
    rows = [(b, k) for b in range(BATCH) for k in range(4) if np.isfinite(out.scores[b, k])]
    assert rows, "free generation finished no sequence"
    seqs = np.stack([out.sequences[b, k] for b, k in rows])
    ref = np.asarray(score(params, {"encoder_input_tokens": jnp.asarray(np.stack([enc[b] for b, _ in rows])),
                                    "decoder_input_tokens": shift_right(jnp.asarray(seqs)),
                                    "decoder_target_tokens": jnp.asarray(seqs)}))
    got = np.array([out.log_probs[b, k] for b, k in rows])
    np.testing.assert_allclose(got, ref, atol=2e-5)
    lengths = np.array([int(np.argmax(s == 1)) + 1 for s in seqs])
    np.testing.assert_allclose([out.scores[b, k] for b, k in rows], got / ((5 + lengths) / 6) ** alpha, rtol=1e-5)
    for b in range(BATCH):
        finite = out.scores[b][np.isfinite(out.scores[b])]
        assert np.all(np.diff(finite) <= 0)
    for (b, k), s in zip(rows, seqs):
        assert out.items[b, k] == trie.lookup(s[:int(np.argmax(s == 1)) + 1].tolist())


def test_score_candidates_equals_score_batch(setup):
    model, params, trie, enc, exhaustive, targets, _ = setup
    rng = np.random.default_rng(3)
    cand_items = np.stack([rng.permutation(NUM_ITEMS)[:7] for _ in range(BATCH)])  # [batch, 7]
    candidates = jnp.asarray(targets[cand_items])  # [batch, 7, depth]
    got = jax.jit(lambda p, e, c: score_candidates(model, p, e, c))(params, jnp.asarray(enc), candidates)
    np.testing.assert_allclose(np.asarray(got), np.take_along_axis(exhaustive, cand_items, 1), atol=2e-5)


# -------------------------------------------------------------------------------- exact search

@pytest.mark.parametrize("per_step", [1, 5])
def test_best_first_search_is_the_exhaustive_top_k(setup, per_step):
    """Best-first over the trie returns exactly the exhaustive top-k (order and log-probs), with
    history exclusion (a whole dead subtree included), and expands far fewer prefixes than the
    trie has nodes; a k beyond what is left returns every remaining item, then -1."""
    from recjax.decoding.best_first import BestFirstSearch

    model, params, trie, enc, exhaustive, _, _ = setup
    best = [_reference_top(exhaustive[b], NUM_ITEMS) for b in range(BATCH)]
    first_tok = trie.item_tokens[best[2][0], 0]
    subtree = [i for i in range(NUM_ITEMS) if trie.item_tokens[i, 0] == first_tok]
    histories = [[], [int(best[1][0]), int(best[1][3])], subtree, list(range(0, NUM_ITEMS, 3))]
    out = BestFirstSearch(model, trie, top_k=10, prefixes_per_step=per_step)(params, enc, histories)
    for b in range(BATCH):
        want = _reference_top(exhaustive[b], 10, histories[b])
        np.testing.assert_array_equal(out.items[b], want, err_msg=f"user {b}")
        np.testing.assert_allclose(out.log_probs[b], exhaustive[b, want], atol=2e-5)
    assert (out.expansions > 0).all() and (out.expansions < trie.num_nodes).all(), out.expansions
    everything = BestFirstSearch(model, trie, top_k=NUM_ITEMS, prefixes_per_step=per_step)(params, enc, histories)
    left = _reference_top(exhaustive[3], NUM_ITEMS, histories[3])
    np.testing.assert_array_equal(everything.items[3, :len(left)], left)
    assert (everything.items[3, len(left):] == -1).all() and np.isneginf(everything.log_probs[3, len(left):]).all()
