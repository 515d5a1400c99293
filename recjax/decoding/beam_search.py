"""Beam search under `jit`: T5X's algorithm (live and finished beams, top 2k candidates per step,
brevity penalty `alpha`) with a logit hook, over a KV cache, in one `lax.while_loop`.

Differences from T5X's `decoding.beam_search`, and why:
- Step 0 runs outside the loop on ONE row per batch element: every beam starts from the same
  decoder start token, so the first step costs 1/beam of T5X's (which runs all beams on copies).
  Its beam reordering (every parent is row 0) is what expands the cache to `beam` rows.
- A logit hook (`LogitsConstraint`) with a per-beam state, reordered with the beams: the item-ID
  trie and the history exclusion (`recjax.decoding.constraints`). Banned tokens are -inf, and a
  beam with no allowed continuation dies (-inf) instead of being carried as a large negative.
  A hook with a sparse form (`expand`: the few allowed continuations per beam, log-probabilities
  normalized over the whole vocabulary) lets the top-k run over beams * C instead of
  beams * vocab entries: the trie's C is a few hundred against T5's 32k vocabulary.
- The loop stops when, for every batch element, no live beam can still beat the worst of the
  `beam` finished ones, or no live beam is left (all dead), or at `max_decode_len`.
- `alpha` defaults to 0: item IDs all end with EOS, and a length penalty would favor long IDs.

Scores: `log_probs` is each finished sequence's summed token log-probability (EOS included), the
quantity `EncoderDecoderModel.score_batch` computes; `scores` divides it by the brevity penalty
((5 + length) / 6) ** alpha (equal to `log_probs` when alpha = 0). Sequences that reach
`max_decode_len` without EOS are not returned as finished; slots left without a finished
sequence have score -inf and `finished` False.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Protocol

import jax
import jax.numpy as jnp

from recjax.config import DECODER_START_ID, EOS_ID

PyTree = Any
# decode_step(tokens [batch * width, 1], cache, width) -> (logits [batch * width, vocab], cache)
DecodeStep = Callable[[jax.Array, PyTree, int], tuple[jax.Array, PyTree]]


class LogitsConstraint(Protocol):
    """A logit hook with per-beam state; see recjax.decoding.constraints."""

    def initial_state(self, batch_size: int) -> PyTree: ...  # leaves [batch, 1, ...]

    def apply(self, state: PyTree, log_probs: jax.Array, step) -> jax.Array: ...

    def advance(self, state: PyTree, tokens: jax.Array, step) -> PyTree: ...

    # Optional sparse form (used instead of apply/advance when present):
    # expand(state, logits [b, w, vocab], step) -> (tokens, log_probs, next_state), each [b, w, C].


class BeamSearchOutput(NamedTuple):
    sequences: jax.Array  # int32 [batch, top_k, max_decode_len], EOS included, 0 after it
    scores: jax.Array  # float32 [batch, top_k], best first (log_probs / brevity penalty)
    log_probs: jax.Array  # float32 [batch, top_k], summed token log-probabilities
    finished: jax.Array  # bool [batch, top_k], False for an empty slot
    constraint_state: PyTree  # the constraint state of each returned beam (e.g. its trie leaf)
    # float32 [batch]: the largest log-probability of a prefix the search dropped or never
    # expanded; no sequence it did not return can score higher (log-probabilities only fall as a
    # sequence grows), so with alpha = 0 the returned top-k is provably exact where
    # scores[:, k - 1] >= unexplored_bound (`certified_exact`).
    unexplored_bound: jax.Array = None


def brevity_penalty(alpha: float, length: jax.Array) -> jax.Array:
    """T5X / GNMT length penalty ((5 + length) / 6) ** alpha."""
    return jnp.power((5.0 + jnp.asarray(length, jnp.float32)) / 6.0, alpha)


def gather_beams(tree: PyTree, parents: jax.Array, batch_size: int, width: int) -> PyTree:
    """Reorder batch-leading leaves [batch * width, ...] to [batch * k, ...] by parents [batch, k].

    Scalar leaves (the cache index) are kept. Gathers within each batch element, so a batch
    sharded over a mesh stays local.
    """
    k = parents.shape[1]

    def gather(x):
        if x.ndim == 0:
            return x
        grouped = x.reshape((batch_size, width) + x.shape[1:])
        index = parents.reshape(parents.shape + (1,) * (x.ndim - 1))
        return jnp.take_along_axis(grouped, index, axis=1).reshape((batch_size * k,) + x.shape[1:])

    return jax.tree_util.tree_map(gather, tree)


def _gather_state(tree: PyTree, parents: jax.Array) -> PyTree:
    """Leaves [batch, width, ...] -> [batch, k, ...] by parents [batch, k]."""
    def gather(x):
        index = parents.reshape(parents.shape + (1,) * (x.ndim - 2))
        return jnp.take_along_axis(x, index, axis=1)
    return jax.tree_util.tree_map(gather, tree)


def _top_k(scores: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    return jax.lax.top_k(scores, k)


class _Beams(NamedTuple):
    step: jax.Array  # int32 scalar: the position the next token is written at
    live_seqs: jax.Array  # [batch, beam, max_len]
    live_log_probs: jax.Array  # [batch, beam]
    live_state: PyTree  # [batch, beam, ...]
    finished_seqs: jax.Array  # [batch, beam, max_len]
    finished_scores: jax.Array  # [batch, beam]
    finished_log_probs: jax.Array  # [batch, beam]
    finished_flags: jax.Array  # [batch, beam]
    finished_state: PyTree  # [batch, beam, ...]
    cache: PyTree  # [batch * beam, ...]
    dropped: jax.Array  # [batch] best log-prob of a candidate pruned so far (-inf: none)


def beam_search(decode_step: DecodeStep, cache: PyTree, batch_size: int, *, beam_size: int,
                max_decode_len: int, eos_id: int = EOS_ID, start_id: int = DECODER_START_ID, alpha: float = 0.0,
                top_k: Optional[int] = None, constraint: Optional[LogitsConstraint] = None,
                reorder_cache: Optional[Callable[[PyTree, jax.Array, int], PyTree]] = None) -> BeamSearchOutput:
    """Top `top_k` (default `beam_size`) sequences per batch element, best first.

    decode_step: one decoder step over a cache whose batch is `batch_size * width` rows (width 1
      at step 0, `beam_size` after). cache: the decoding cache for `batch_size` rows.
    reorder_cache(cache, parents [batch, beam], width) -> cache for batch * beam rows, row
      (i, j) taken from row (i, parents[i, j]) of the width rows of element i (default:
      `gather_beams`); at step 0 (width 1) this is what expands the cache to the beams.
    Call it inside `jit`; every argument but the arrays in `cache` is static.
    """
    beam = beam_size
    top_k = beam if top_k is None else top_k
    if not 1 <= top_k <= beam:
        raise ValueError(f"top_k must be in [1, beam_size={beam}], got {top_k}")
    if max_decode_len < 1:
        raise ValueError(f"max_decode_len must be >= 1, got {max_decode_len}")
    if reorder_cache is None:
        def reorder_cache(c, parents, width):
            return gather_beams(c, parents, batch_size, width)
    neg_inf = jnp.float32(-jnp.inf)

    def expand_step(beams: _Beams, width: int, step) -> _Beams:
        """One decoding step from `width` live beams per element to `beam` live beams."""
        last = jnp.take(beams.live_seqs, jnp.maximum(step - 1, 0), axis=2)  # [b, width]
        if not isinstance(step, jax.Array) and step == 0:
            last = jnp.full_like(last, start_id)
        logits, cache = decode_step(last.reshape(batch_size * width, 1), beams.cache, width)
        logits = logits.astype(jnp.float32).reshape(batch_size, width, -1)  # [b, width, vocab]
        if getattr(constraint, "expand", None) is not None:
            # Sparse: only each beam's allowed continuations [b, width, C] are ranked.
            tokens, log_probs, next_state = constraint.expand(beams.live_state, logits, step)
        else:
            log_probs = jax.nn.log_softmax(logits, axis=-1)
            if constraint is not None:
                log_probs = constraint.apply(beams.live_state, log_probs, step)
            tokens, next_state = None, None
        per_beam = log_probs.shape[-1]
        candidates = (beams.live_log_probs[:, :, None] + log_probs).reshape(batch_size, width * per_beam)
        if width * per_beam < 2 * beam:  # fewer continuations than 2 * beam: pad with dead ones
            candidates = jnp.pad(candidates, ((0, 0), (0, 2 * beam - width * per_beam)), constant_values=-jnp.inf)
        candidates = jnp.pad(candidates, ((0, 0), (0, 1)), constant_values=-jnp.inf)  # room for the first dropped
        # 2 * beam candidates: even if `beam` of them end here, `beam` live ones remain; the
        # (2 * beam + 1)-th is the best candidate this step drops.
        cand_log_probs, cand_index = _top_k(candidates, 2 * beam + 1)  # [b, 2beam + 1]
        dropped = jnp.maximum(beams.dropped, cand_log_probs[:, -1])
        cand_log_probs, cand_index = cand_log_probs[:, :-1], cand_index[:, :-1]  # [b, 2beam]
        cand_index = jnp.minimum(cand_index, width * per_beam - 1)  # padding slots are dead anyway
        cand_parent = cand_index // per_beam
        if tokens is None:
            cand_token = (cand_index % per_beam).astype(jnp.int32)
            cand_state = beams.live_state
            if constraint is not None:
                cand_state = constraint.advance(_gather_state(beams.live_state, cand_parent), cand_token, step)
        else:
            flat = lambda x: x.reshape((batch_size, width * per_beam) + x.shape[3:])
            pick = lambda x: jnp.take_along_axis(flat(x), cand_index.reshape(cand_index.shape + (1,) * (x.ndim - 3)),
                                                 axis=1)
            cand_token = pick(tokens).astype(jnp.int32)
            cand_state = jax.tree_util.tree_map(pick, next_state)
        cand_seqs = _gather_state(beams.live_seqs, cand_parent)  # [b, 2beam, max_len]
        cand_seqs = jax.lax.dynamic_update_index_in_dim(cand_seqs, cand_token, step, axis=2)
        is_eos = cand_token == eos_id
        alive = jnp.isfinite(cand_log_probs)

        # Finished: the best `beam` of the old finished and the candidates that end with EOS here.
        new_fin_lp = jnp.where(is_eos & alive, cand_log_probs, neg_inf)
        new_fin_scores = new_fin_lp / brevity_penalty(alpha, step + 1)
        all_scores = jnp.concatenate([beams.finished_scores, new_fin_scores], axis=1)
        fin_scores, fin_index = _top_k(all_scores, beam)  # [b, beam]
        cat = lambda old, new: _gather_state(jnp.concatenate([old, new], axis=1), fin_index)
        finished_seqs = cat(beams.finished_seqs, cand_seqs)
        finished_log_probs = cat(beams.finished_log_probs, new_fin_lp)
        finished_flags = cat(beams.finished_flags, is_eos & alive)
        finished_state = jax.tree_util.tree_map(cat, beams.finished_state, cand_state)

        # Live: the best `beam` candidates that did not end; the (beam + 1)-th is dropped.
        live_lp, live_index = _top_k(jnp.where(is_eos, neg_inf, cand_log_probs), beam + 1)  # [b, beam + 1]
        dropped = jnp.maximum(dropped, live_lp[:, -1])
        live_lp, live_index = live_lp[:, :-1], live_index[:, :-1]  # [b, beam]
        live_seqs = _gather_state(cand_seqs, live_index)
        live_state = _gather_state(cand_state, live_index)
        parents = jnp.take_along_axis(cand_parent, live_index, axis=1)  # [b, beam] in [0, width)
        cache = reorder_cache(cache, parents, width)
        return _Beams(jnp.asarray(step + 1, jnp.int32), live_seqs, live_lp, live_state, finished_seqs,
                      fin_scores, finished_log_probs, finished_flags, finished_state, cache, dropped)

    state0 = constraint.initial_state(batch_size) if constraint is not None else {}
    zeros_seq = jnp.zeros((batch_size, 1, max_decode_len), jnp.int32)
    fin_state0 = jax.tree_util.tree_map(lambda x: jnp.repeat(x, beam, axis=1), state0)
    beams = _Beams(
        step=jnp.asarray(0, jnp.int32), live_seqs=zeros_seq,
        live_log_probs=jnp.zeros((batch_size, 1), jnp.float32), live_state=state0,
        finished_seqs=jnp.zeros((batch_size, beam, max_decode_len), jnp.int32),
        finished_scores=jnp.full((batch_size, beam), neg_inf),
        finished_log_probs=jnp.full((batch_size, beam), neg_inf),
        finished_flags=jnp.zeros((batch_size, beam), bool), finished_state=fin_state0, cache=cache,
        dropped=jnp.full((batch_size,), neg_inf))
    beams = expand_step(beams, 1, 0)  # step 0 on one row per element; reorder expands to `beam`

    def not_done(b: _Beams) -> jax.Array:
        best_live = jnp.max(b.live_log_probs, axis=1) / brevity_penalty(alpha, jnp.asarray(max_decode_len))
        worst_finished = jnp.min(b.finished_scores, axis=1)
        can_improve = jnp.isfinite(best_live) & ~(best_live < worst_finished)
        return (b.step < max_decode_len) & jnp.any(can_improve)

    beams = jax.lax.while_loop(not_done, lambda b: expand_step(b, beam, b.step), beams)
    # Finished slots are sorted by score already (top_k); keep the first top_k.
    take = lambda x: x[:, :top_k]
    # Live beams left when the loop stopped were never expanded: their prefixes bound the rest.
    bound = jnp.maximum(beams.dropped, jnp.max(beams.live_log_probs, axis=1))
    return BeamSearchOutput(
        sequences=take(beams.finished_seqs), scores=take(beams.finished_scores),
        log_probs=take(beams.finished_log_probs), finished=take(beams.finished_flags),
        constraint_state=jax.tree_util.tree_map(take, beams.finished_state), unexplored_bound=bound)


def certified_exact(log_probs: jax.Array, unexplored_bound: jax.Array, k: int) -> jax.Array:
    """bool [batch]: the first k returned sequences are provably the k of highest log-probability
    (with alpha = 0): the k-th scores at least as high as anything the search left unexplored."""
    return log_probs[:, k - 1] >= unexplored_bound
