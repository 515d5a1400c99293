"""Logit hooks for beam search: the item-ID trie constraint and history exclusion.

A constraint is a logit hook with a per-beam state that beam search carries through its loop and
reorders with the beams (`recjax.decoding.beam_search.LogitsConstraint`):

    initial_state(batch)              -> state, leaves [batch, 1, ...]
    apply(state, log_probs, step)     -> log_probs [batch, width, vocab] with banned tokens at -inf
    advance(state, tokens, step)      -> state after appending tokens [batch, width]

and optionally the sparse form, which beam search prefers when it exists:

    expand(state, logits, step)       -> (tokens, log_probs, next_state), each [batch, width, C]:
                                         the C allowed continuations of each beam only

The trie has at most a few hundred continuations per node against a 32k vocabulary, so its sparse
form spares beam search a masked [beams, vocab] array and a top-k over beams * vocab entries;
only the softmax normalizer still reads the whole vocabulary.

`TrieConstraint` keeps every beam on a path of the trie (so every finished beam is a valid item
ID) and, given each user's history, removes the items already seen. Exclusion is exact at every
depth, not only at the EOS step: an edge is banned when all items below it are excluded, so a
beam never spends a step on a prefix that can only end in a seen item.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from recjax.items.trie import TrieArrays, child_node, node_edges

Step = Union[int, jax.Array]


def _is_first_step(step: Step) -> bool:
    # Beam search runs step 0 (all beams at the root) outside its loop with a Python int step.
    return isinstance(step, (int, np.integer)) and int(step) == 0


def _ban(log_probs: jax.Array, tokens: jax.Array, banned: jax.Array) -> jax.Array:
    """log_probs [b, w, n]; tokens, banned [b, w, m]: set log_probs[., ., tokens] = -inf where banned
    (tokens index the last axis: vocabulary ids, or edge slots in the sparse form)."""
    b, w, vocab = log_probs.shape
    bi = jnp.arange(b)[:, None, None]
    wi = jnp.arange(w)[None, :, None]
    index = jnp.where(banned, tokens, vocab)  # out of range -> dropped
    return log_probs.at[bi, wi, index].set(-jnp.inf, mode="drop")


def exclusion_matrix(histories: Sequence[Sequence[int]], width: Optional[int] = None) -> np.ndarray:
    """int32 [users, width] of each user's distinct item indices to exclude, padded with -1.

    Duplicates are removed (the exact exclusion counts items). `width` (default: the longest
    history) is a static shape: use a fixed one across batches to compile once.
    """
    rows = [np.unique(np.asarray(h, np.int64).reshape(-1)) for h in histories]
    longest = max((len(r) for r in rows), default=0)
    width = max(longest, 1) if width is None else width
    if longest > width:
        raise ValueError(f"a history has {longest} distinct items, more than the exclusion width {width}")
    out = np.full((len(rows), width), -1, np.int32)
    for i, r in enumerate(rows):
        if len(r) and r[0] < 0:
            raise ValueError(f"history {i} holds a negative item index {int(r[0])}")
        out[i, :len(r)] = r
    return out


class TrieConstraint:
    """Constrain beams to the trie of valid item IDs, optionally excluding items per user.

    trie: `ItemTrie.arrays()`; root_width / width: the root's out-degree and the largest other
    out-degree (`ItemTrie.root_degree`, `ItemTrie.max_degree`), static; exclude: int32
    [batch, history] item indices per user (-1 padding, no duplicates: `exclusion_matrix`) or None.
    Built inside the jitted function from its arguments.
    """

    def __init__(self, trie: TrieArrays, root_width: int, width: int, exclude: Optional[jax.Array] = None):
        self.trie = trie
        self.root_width = int(root_width)
        self.width = int(width)
        self.exclude = exclude
        if exclude is not None:
            safe = jnp.maximum(exclude, 0)
            has = (exclude >= 0)[..., None]
            self.ex_paths = jnp.where(has, trie.item_paths[safe], -1)  # [batch, hist, depth + 1]
            self.ex_tokens = jnp.where(has, trie.item_tokens[safe], 0)  # [batch, hist, depth]
            self.ex_slots = jnp.where(has, trie.item_slots[safe], 0)  # [batch, hist, depth]

    def _width(self, step: Step) -> int:
        return self.root_width if _is_first_step(step) else self.width

    def initial_state(self, batch_size: int) -> dict:
        return {"node": jnp.zeros((batch_size, 1), jnp.int32)}  # every beam starts at the root

    def apply(self, state: dict, log_probs: jax.Array, step: Step) -> jax.Array:
        nodes = state["node"]  # [batch, width_beams]
        tokens, _, valid = node_edges(self.trie, nodes, self._width(step))  # [b, w, degree]
        allowed = jnp.take_along_axis(log_probs, tokens, axis=-1)  # [b, w, degree]
        b, w, vocab = log_probs.shape
        bi = jnp.arange(b)[:, None, None]
        wi = jnp.arange(w)[None, :, None]
        out = jnp.full_like(log_probs, -jnp.inf)
        out = out.at[bi, wi, jnp.where(valid, tokens, vocab)].set(allowed, mode="drop")
        if self.exclude is not None:
            out = self._exclude(out, nodes, step)
        return out

    def _dead_edges(self, step: Step) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Per excluded item h, the edge it takes at depth `step`: (parent node, slot among the
        parent's edges, dead), each [b, hist]. Item h leaves parent[h] into child[h]; that edge is
        dead when the excluded items below child[h] are all the items below it."""
        parent = jnp.take(self.ex_paths, step, axis=2)  # [b, hist]
        child = jnp.take(self.ex_paths, step + 1, axis=2)  # [b, hist]
        slot = jnp.take(self.ex_slots, step, axis=2)  # [b, hist]
        real = child >= 0
        below = jnp.sum((child[:, :, None] == child[:, None, :]) & real[:, None, :], axis=-1)  # [b, hist]
        dead = real & (below >= self.trie.leaf_count[jnp.maximum(child, 0)])
        return parent, slot, dead

    def _exclude(self, log_probs: jax.Array, nodes: jax.Array, step: Step) -> jax.Array:
        parent, _, dead = self._dead_edges(step)
        tok = jnp.take(self.ex_tokens, step, axis=2)  # [b, hist]
        hit = dead[:, None, :] & (nodes[:, :, None] == parent[:, None, :])  # [b, w, hist]
        return _ban(log_probs, jnp.broadcast_to(tok[:, None, :], hit.shape), hit)

    def advance(self, state: dict, tokens: jax.Array, step: Step) -> dict:
        return {"node": child_node(self.trie, state["node"], tokens, self._width(step))}

    def expand(self, state: dict, logits: jax.Array, step: Step) -> tuple[jax.Array, jax.Array, dict]:
        """Sparse form: logits [b, w, vocab] (float32) -> the allowed edges of each beam's node,
        (tokens, log_probs, {"node": children}) each [b, w, degree], log-probs normalized over
        the whole vocabulary, -inf for padding slots and excluded subtrees."""
        nodes = state["node"]  # [b, w]
        tokens, children, valid = node_edges(self.trie, nodes, self._width(step))  # [b, w, degree]
        normalizer = jax.nn.logsumexp(logits, axis=-1, keepdims=True)  # [b, w, 1]
        log_probs = jnp.where(valid, jnp.take_along_axis(logits, tokens, axis=-1) - normalizer, -jnp.inf)
        if self.exclude is not None:
            parent, slot, dead = self._dead_edges(step)  # [b, hist]
            hit = dead[:, None, :] & (nodes[:, :, None] == parent[:, None, :])  # [b, w, hist]
            log_probs = _ban(log_probs, jnp.broadcast_to(slot[:, None, :], hit.shape), hit)
        return tokens, log_probs, {"node": jnp.where(valid, children, -1)}

    def items(self, state: dict) -> jax.Array:
        """Item index of each finished beam's leaf, -1 where the beam is not at a leaf."""
        nodes = state["node"]
        return jnp.where(nodes >= 0, self.trie.leaf_item[jnp.maximum(nodes, 0)], -1)


class BanTokens:
    """Stateless hook: never generate `tokens` (free generation bans padding, id 0: it is the
    decoder start token, not something a target contains, and scoring treats it as absent)."""

    def __init__(self, tokens: Sequence[int]):
        self.tokens = tuple(int(t) for t in tokens)

    def initial_state(self, batch_size: int) -> dict:
        return {}

    def apply(self, state: dict, log_probs: jax.Array, step: Step) -> jax.Array:
        return log_probs.at[..., list(self.tokens)].set(-jnp.inf)

    def advance(self, state: dict, tokens: jax.Array, step: Step) -> dict:
        return state
