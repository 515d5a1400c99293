"""Exact top-k retrieval: best-first search over the item-ID trie.

A prefix's log-probability bounds every item below it (each further token multiplies by a
probability <= 1), so expanding open prefixes best first and stopping once the k-th complete item
scores at least the best open prefix returns the k items of highest log-likelihood, provably
(ties aside), without scoring the catalog. History items are excluded exactly: a prefix whose
items are all excluded is never opened, and an excluded item is never returned.

Each step expands, for every user of a batch still searching, its `prefixes_per_step` best open
prefixes in one jitted call: the decoder is run teacher-forced over each prefix (item IDs are a
few tokens) against the user's encoder states, computed once, and only the prefix's last position
goes through the output layer; the log-probabilities of the prefix's trie children come back.
Expanding several prefixes per step keeps the search exact (it only may expand a few more), and
the number of expansions per user is counted: it is what the search costs.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import NamedTuple, Optional

import jax
import numpy as np

from recjax.config import DECODER_START_ID
from recjax.items.trie import ItemTrie, node_edges
from recjax.decoding.model_api import DecodingModel


class ExactItems(NamedTuple):
    items: np.ndarray  # int32 [batch, k] item indices best first, -1 where the catalog ran out
    log_probs: np.ndarray  # float32 [batch, k] summed token log-probabilities, -inf where empty
    expansions: np.ndarray  # int32 [batch] prefixes expanded (decoder evaluations) per user


@functools.lru_cache(maxsize=8)
def _compiled(model: DecodingModel):
    """(encode, expand) jitted once per model: expand gives log p(child token | prefix) [b, p, width]
    for prefixes [b, p, depth] (start token, then the prefix, 0-padded) of lengths [b, p]."""
    return jax.jit(model.encode), jax.jit(model.prefix_log_probs)


class _Frontier:
    """One user's search: open prefixes (log-prob, node, decoder tokens, length) and the best k
    complete items found so far."""

    def __init__(self, depth: int, k: int, dead: np.ndarray):
        self.k = k
        self.dead = dead  # nodes with every item below them excluded
        self.logp = np.zeros(1)
        self.node = np.zeros(1, np.int64)
        self.tokens = np.zeros((1, depth), np.int32)
        self.tokens[:, 0] = DECODER_START_ID
        self.length = np.zeros(1, np.int64)
        self.found_logp = np.zeros(0)
        self.found_item = np.zeros(0, np.int64)
        self.expansions = 0

    def kth(self) -> float:
        return self.found_logp[self.k - 1] if len(self.found_logp) >= self.k else -np.inf

    def done(self) -> bool:
        return len(self.logp) == 0 or (len(self.found_logp) >= self.k and self.kth() >= self.logp.max())

    def pop(self, n: int) -> np.ndarray:
        """Indices (into the open arrays) of the n best open prefixes; they leave the open set."""
        n = min(n, len(self.logp))
        best = np.argpartition(-self.logp, n - 1)[:n] if n < len(self.logp) else np.arange(len(self.logp))
        return best

    def absorb(self, popped: np.ndarray, children: np.ndarray, child_tokens: np.ndarray, child_valid: np.ndarray,
               child_logp: np.ndarray, leaf_item: np.ndarray, eos_id: int) -> None:
        """popped [n] open indices expanded; children/child_tokens/child_valid/child_logp [n, width]."""
        parent_logp, parent_tokens, parent_length = self.logp[popped], self.tokens[popped], self.length[popped]
        keep = np.ones(len(self.logp), bool)
        keep[popped] = False
        self.expansions += len(popped)
        valid = child_valid & ~np.isin(children, self.dead)  # [n, width]
        total = parent_logp[:, None] + child_logp  # [n, width]
        leaf = valid & (child_tokens == eos_id)
        rows, cols = np.nonzero(leaf)
        found_logp = np.concatenate([self.found_logp, total[rows, cols]])
        found_item = np.concatenate([self.found_item, leaf_item[children[rows, cols]]])
        order = np.argsort(-found_logp, kind="stable")[:self.k]
        self.found_logp, self.found_item = found_logp[order], found_item[order]
        rows, cols = np.nonzero(valid & ~leaf)
        tokens = parent_tokens[rows].copy()
        length = parent_length[rows] + 1
        tokens[np.arange(len(rows)), length] = child_tokens[rows, cols]
        logp = np.concatenate([self.logp[keep], total[rows, cols]])
        node = np.concatenate([self.node[keep], children[rows, cols]])
        tokens = np.concatenate([self.tokens[keep], tokens])
        length = np.concatenate([self.length[keep], length])
        alive = logp > self.kth()  # a prefix below the k-th found item can never enter the top k
        self.logp, self.node, self.tokens, self.length = logp[alive], node[alive], tokens[alive], length[alive]


class BestFirstSearch:
    """Exact top-k items per encoder input for one model and catalog.

    search = BestFirstSearch(model, trie, top_k=10)  # model: EncoderDecoderModel
    out = search(params, encoder_input_tokens [batch, enc_len], histories)  # ExactItems (numpy)

    `put` places a host batch array for the jitted calls (e.g. sharded over a mesh's data axis);
    `fetch` brings device results back (default: numpy)."""

    def __init__(self, model: DecodingModel, trie: ItemTrie, top_k: int, prefixes_per_step: int = 8):
        if top_k < 1 or prefixes_per_step < 1:
            raise ValueError(f"need top_k >= 1 and prefixes_per_step >= 1, got {top_k}, {prefixes_per_step}")
        self.trie, self.top_k, self.per_step = trie, top_k, prefixes_per_step
        self.width = max(trie.root_degree, trie.max_degree)
        self._encode, self._expand = _compiled(model)
        self._arrays = trie.arrays_numpy()

    def _edges(self, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(tokens, children, valid) of the outgoing edges of `nodes` [n], each [n, width]."""
        return node_edges(self._arrays, nodes, self.width, xp=np)

    def _dead_nodes(self, history: Optional[Sequence[int]]) -> np.ndarray:
        if history is None or len(history) == 0:
            return np.zeros(0, np.int64)
        paths = self.trie.item_paths[np.unique(np.asarray(history, np.int64))]  # [h, depth + 1]
        nodes, counts = np.unique(paths[paths >= 0], return_counts=True)
        return nodes[counts >= self.trie.leaf_count[nodes]]

    def __call__(self, params, encoder_input_tokens: np.ndarray, histories: Optional[Sequence[Sequence[int]]] = None,
                 *, put: Callable = lambda a: a, fetch: Callable = np.asarray) -> ExactItems:
        batch = encoder_input_tokens.shape[0]
        depth, width, per_step = self.trie.depth, self.width, self.per_step
        encoded = self._encode(params, put(encoder_input_tokens))
        encoder_tokens = put(encoder_input_tokens)
        users = [_Frontier(depth, self.top_k, self._dead_nodes(None if histories is None else histories[u]))
                 for u in range(batch)]
        while True:
            active = [u for u, f in enumerate(users) if not f.done()]
            if not active:
                break
            prefixes = np.zeros((batch, per_step, depth), np.int32)
            positions = np.zeros((batch, per_step), np.int32)
            tokens = np.zeros((batch, per_step, width), np.int32)
            popped = {}
            for u in active:
                f = users[u]
                idx = f.pop(per_step)
                edges = self._edges(f.node[idx])
                popped[u] = (idx, edges)
                n = len(idx)
                prefixes[u, :n], positions[u, :n], tokens[u, :n] = f.tokens[idx], f.length[idx], edges[0]
            child_logp = fetch(self._expand(params, encoded, encoder_tokens, put(prefixes), put(positions), put(tokens)))
            for u in active:
                (idx, (child_tokens, children, valid)), f = popped[u], users[u]
                f.absorb(idx, children, child_tokens, valid, np.asarray(child_logp[u, :len(idx)], np.float64),
                         self.trie.leaf_item, self.trie.eos_id)
        items = np.full((batch, self.top_k), -1, np.int32)
        log_probs = np.full((batch, self.top_k), -np.inf, np.float32)
        for u, f in enumerate(users):
            items[u, :len(f.found_item)] = f.found_item
            log_probs[u, :len(f.found_logp)] = f.found_logp
        return ExactItems(items, log_probs, np.array([f.expansions for f in users], np.int32))
