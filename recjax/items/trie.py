"""The valid item IDs' token sequences as a prefix tree held in flat arrays, for use under `jit`.

A Python dict trie (OpenP5's, or a `prefix_allowed_tokens_fn`) costs one Python call per beam per
step; a dense `[num_nodes, vocab]` transition table costs num_nodes * 32128 * 4 bytes (~3 GB for
Beauty's ~24k nodes). Here the edges are stored CSR-style, sorted by parent node:

    edge_offsets   int32 [num_nodes + 1]   node n owns edges [edge_offsets[n], edge_offsets[n+1])
    edge_tokens    int32 [num_edges]       the token of each edge, ascending within a node
    edge_children  int32 [num_edges]       the node the edge leads to

so the outgoing edges of a batch of nodes are one gather of `[..., max_degree]` padded slots (the
largest out-degree is a few hundred for numeric IDs under the T5 vocabulary, ~300 for Beauty).
Node 0 is the root. Every sequence ends with EOS, so each item is exactly one leaf (the node its
EOS edge leads to) and no sequence is a prefix of another. Per item, `item_paths` holds its nodes
by depth; with `leaf_count` (items under a node) this lets a user's history be excluded exactly:
an edge is removed when every item below it is excluded, so no beam is spent on a dead prefix.

Beauty (12,101 IDs, 1-3 T5 pieces + EOS): 24,204 nodes, 1.1 MB of arrays.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from recjax.config import EOS_ID


class TrieArrays(NamedTuple):
    """The device-side arrays (a pytree: pass it to jitted functions as an argument)."""

    edge_offsets: jax.Array  # int32 [num_nodes + 1]
    edge_tokens: jax.Array  # int32 [num_edges]
    edge_children: jax.Array  # int32 [num_edges]
    leaf_item: jax.Array  # int32 [num_nodes], item index at a leaf, -1 elsewhere
    leaf_count: jax.Array  # int32 [num_nodes], number of items (leaves) below a node
    item_paths: jax.Array  # int32 [num_items, depth + 1], node at each depth (root first), -1 after the leaf
    item_tokens: jax.Array  # int32 [num_items, depth], token at each depth, 0 after EOS
    item_slots: jax.Array  # int32 [num_items, depth], index of that edge among its parent's edges


@dataclasses.dataclass(frozen=True)
class ItemTrie:
    """Prefix tree of the item IDs' token sequences (each ending with EOS); numpy on the host."""

    edge_offsets: np.ndarray
    edge_tokens: np.ndarray
    edge_children: np.ndarray
    leaf_item: np.ndarray
    leaf_count: np.ndarray
    item_paths: np.ndarray
    item_tokens: np.ndarray
    item_slots: np.ndarray
    vocab_size: int
    eos_id: int = EOS_ID

    @property
    def num_nodes(self) -> int:
        return int(self.leaf_item.shape[0])

    @property
    def num_items(self) -> int:
        return int(self.item_paths.shape[0])

    @property
    def depth(self) -> int:
        """Longest token sequence (EOS included): the number of decoding steps needed."""
        return int(self.item_tokens.shape[1])

    @property
    def degrees(self) -> np.ndarray:
        return np.diff(self.edge_offsets)  # [num_nodes]

    @property
    def root_degree(self) -> int:
        return int(self.degrees[0])

    @property
    def max_degree(self) -> int:
        """Largest out-degree below the root (the padded edge width inside the decoding loop)."""
        return int(max(self.degrees[1:].max(initial=0), 1))

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays_numpy())

    def arrays_numpy(self) -> TrieArrays:
        return TrieArrays(self.edge_offsets, self.edge_tokens, self.edge_children, self.leaf_item,
                          self.leaf_count, self.item_paths, self.item_tokens, self.item_slots)

    def arrays(self) -> TrieArrays:
        """The arrays as jax arrays (pass to jitted code as an argument, not a closure constant)."""
        return TrieArrays(*(jnp.asarray(a) for a in self.arrays_numpy()))

    def item_sequence(self, item: int) -> list[int]:
        """Token sequence of item `item` (EOS included)."""
        row = self.item_tokens[item]
        length = int((self.item_paths[item] >= 0).sum()) - 1
        return [int(t) for t in row[:length]]

    def lookup(self, tokens: Sequence[int]) -> int:
        """Item index of a token sequence (EOS included or not), or -1 if it is not an item ID."""
        tokens = list(tokens)
        if not tokens or tokens[-1] != self.eos_id:
            tokens.append(self.eos_id)
        node = 0
        for tok in tokens:
            lo, hi = int(self.edge_offsets[node]), int(self.edge_offsets[node + 1])
            j = lo + int(np.searchsorted(self.edge_tokens[lo:hi], tok))
            if j >= hi or int(self.edge_tokens[j]) != tok:
                return -1
            node = int(self.edge_children[j])
        return int(self.leaf_item[node])

    @classmethod
    def from_token_sequences(cls, sequences: Sequence[Sequence[int]], vocab_size: int,
                             eos_id: int = EOS_ID, names: Sequence[str] | None = None) -> "ItemTrie":
        """Trie of `sequences[i]` = item i's tokens; EOS is appended where missing.

        Raises ValueError (naming the items) on an empty sequence, a token outside [1, vocab_size)
        (0 is padding and the decoder start), an EOS before the end, or two items with the same
        tokens (then the model could not tell them apart).
        """
        label = (lambda i: f"item {i} ({names[i]!r})") if names is not None else (lambda i: f"item {i}")
        children: list[dict[int, int]] = [{}]  # node -> {token: child}
        leaf_item: list[int] = [-1]
        paths: list[list[int]] = []
        token_rows: list[list[int]] = []
        for i, seq in enumerate(sequences):
            seq = [int(t) for t in seq]
            if seq and seq[-1] == eos_id:
                seq = seq[:-1]
            if not seq:
                raise ValueError(f"{label(i)}: empty token sequence (an item ID must have at least one token)")
            bad = [t for t in seq if not 0 < t < vocab_size or t == eos_id]
            if bad:
                raise ValueError(f"{label(i)}: token {bad[0]} is padding, EOS or outside the vocabulary "
                                 f"[0, {vocab_size}) before the end of the sequence {seq}")
            seq.append(eos_id)
            node, path = 0, [0]
            for tok in seq:
                nxt = children[node].get(tok)
                if nxt is None:
                    nxt = len(children)
                    children[node][tok] = nxt
                    children.append({})
                    leaf_item.append(-1)
                node = nxt
                path.append(node)
            if leaf_item[node] != -1:
                raise ValueError(f"{label(i)} and {label(leaf_item[node])} have the same token sequence {seq}")
            leaf_item[node] = i
            paths.append(path)
            token_rows.append(seq)
        if not paths:
            raise ValueError("cannot build an item trie from zero items")

        num_nodes = len(children)
        degrees = np.array([len(c) for c in children], np.int64)
        edge_offsets = np.zeros(num_nodes + 1, np.int64)
        np.cumsum(degrees, out=edge_offsets[1:])
        edge_tokens = np.empty(int(edge_offsets[-1]), np.int32)
        edge_children = np.empty(int(edge_offsets[-1]), np.int32)
        for node, table in enumerate(children):
            lo = edge_offsets[node]
            for j, tok in enumerate(sorted(table)):
                edge_tokens[lo + j] = tok
                edge_children[lo + j] = table[tok]

        slot_of = {}  # child node -> index of its edge among the parent's (sorted) edges
        for node, table in enumerate(children):
            for j, tok in enumerate(sorted(table)):
                slot_of[table[tok]] = j
        depth = max(len(t) for t in token_rows)
        item_paths = np.full((len(paths), depth + 1), -1, np.int32)  # [items, depth + 1]
        item_tokens = np.zeros((len(paths), depth), np.int32)  # [items, depth]
        item_slots = np.zeros((len(paths), depth), np.int32)  # [items, depth]
        leaf_count = np.zeros(num_nodes, np.int64)
        for i, (path, seq) in enumerate(zip(paths, token_rows)):
            item_paths[i, :len(path)] = path
            item_tokens[i, :len(seq)] = seq
            item_slots[i, :len(seq)] = [slot_of[n] for n in path[1:]]
            leaf_count[path] += 1
        return cls(edge_offsets=edge_offsets.astype(np.int32), edge_tokens=edge_tokens,
                   edge_children=edge_children, leaf_item=np.asarray(leaf_item, np.int32),
                   leaf_count=leaf_count.astype(np.int32), item_paths=item_paths, item_tokens=item_tokens,
                   item_slots=item_slots, vocab_size=int(vocab_size), eos_id=int(eos_id))


def node_edges(trie: TrieArrays, nodes: jax.Array, width: int, xp=jnp) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Outgoing edges of `nodes` (any shape [...]), padded to `width` slots.

    Returns (tokens, children, valid), each [..., width]; padded slots have valid False, token
    and child 0. A negative node (no node, e.g. a dead beam) has no edges. `xp=numpy` with
    `ItemTrie.arrays_numpy()` does the same on the host (the best-first search's driver).
    """
    num_nodes = trie.leaf_item.shape[0]
    safe = xp.clip(nodes, 0, num_nodes - 1)
    start = trie.edge_offsets[safe]  # [...]
    stop = xp.where(nodes >= 0, trie.edge_offsets[safe + 1], start)  # [...]
    index = start[..., None] + xp.arange(width, dtype=xp.int32)  # [..., width]
    valid = index < stop[..., None]
    index = xp.where(valid, index, 0)
    tokens = xp.where(valid, trie.edge_tokens[index], 0)
    children = xp.where(valid, trie.edge_children[index], 0)
    return tokens, children, valid


def child_node(trie: TrieArrays, nodes: jax.Array, tokens: jax.Array, width: int) -> jax.Array:
    """The node reached from `nodes` by `tokens` (same shape), or -1 where there is no such edge."""
    edge_tokens, edge_children, valid = node_edges(trie, nodes, width)  # [..., width]
    match = valid & (edge_tokens == tokens[..., None])
    return jnp.where(match.any(-1), jnp.sum(jnp.where(match, edge_children, 0), -1), -1)
