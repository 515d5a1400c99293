"""Top-k item IDs for a batch of encoder inputs: encoder once, beam search over the KV cache,
optionally constrained to the item-ID trie and excluding each user's history; one jitted function.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple, Optional

import gin
import jax
import jax.numpy as jnp
import numpy as np

from recjax.decoding.beam_search import beam_search
from recjax.decoding.constraints import BanTokens, TrieConstraint, exclusion_matrix
from recjax.config import EOS_ID, PAD_ID
from recjax.items.trie import ItemTrie, TrieArrays
from recjax.decoding.model_api import DecodingModel


@gin.configurable(module="recjax.decoding")
@dataclasses.dataclass(frozen=True)
class DecodeOptions:
    """beam_size: beams per user; top_k: how many items are returned (<= beam_size);
    constrained: restrict every beam to the item-ID trie (False: free generation, for comparison);
    exclude_history: remove the items of the user's history (constrained mode only);
    alpha: brevity penalty exponent (0: rank by summed log-probability);
    max_decode_len: decoding steps (default: the trie's depth, +4 unconstrained);
    sparse_trie: rank only each beam's allowed continuations (the trie's sparse form, faster);
    False masks the full vocabulary through the generic logit hook (same results)."""

    beam_size: int = 20
    top_k: int = 20
    constrained: bool = True
    exclude_history: bool = True
    alpha: float = 0.0
    max_decode_len: Optional[int] = None
    sparse_trie: bool = True

    def __post_init__(self):
        if self.beam_size < 1 or not 1 <= self.top_k <= self.beam_size:
            raise ValueError(f"need beam_size >= 1 and 1 <= top_k <= beam_size, got beam_size={self.beam_size}, "
                             f"top_k={self.top_k}")
        if self.exclude_history and not self.constrained:
            raise ValueError("exclude_history needs constrained decoding (it removes trie leaves)")

    def decode_len(self, trie: ItemTrie) -> int:
        if self.max_decode_len is not None:
            if self.constrained and self.max_decode_len < trie.depth:
                raise ValueError(f"max_decode_len={self.max_decode_len} is shorter than the longest item ID "
                                 f"({trie.depth} tokens with EOS)")
            return self.max_decode_len
        return trie.depth if self.constrained else trie.depth + 4


class DecodedItems(NamedTuple):
    items: jax.Array  # int32 [batch, top_k] item indices, -1 for no/invalid item
    scores: jax.Array  # float32 [batch, top_k] ranking scores (log-probs when alpha = 0), -inf empty
    log_probs: jax.Array  # float32 [batch, top_k] summed token log-probabilities
    sequences: jax.Array  # int32 [batch, top_k, max_decode_len] tokens (EOS included)
    unexplored_bound: jax.Array  # float32 [batch]: no item left out has a higher log-prob (beam_search)


def search_items(model: DecodingModel, params, encoder_input_tokens: jax.Array, trie: Optional[TrieArrays],
                 exclude: Optional[jax.Array], *, options: DecodeOptions, max_decode_len: int,
                 root_width: int = 0, width: int = 0, eos_id: int = EOS_ID) -> DecodedItems:
    """Traceable body (call under jit): encoder_input_tokens int32 [batch, enc_len];
    trie: `ItemTrie.arrays()` (None when unconstrained); exclude: int32 [batch, history] or None."""
    batch = encoder_input_tokens.shape[0]
    beam = options.beam_size
    encoded = model.encode(params, encoder_input_tokens)  # [batch, enc_len, embed]

    def decode_step(tokens, cache, beams_per_input):
        # tokens [batch * beams_per_input, 1]; the decoder rows of element i share its encoder row.
        del beams_per_input
        return model.logits_from_slice(params, cache, encoded, encoder_input_tokens, tokens, max_decode_len)

    if options.constrained:
        constraint = TrieConstraint(trie, root_width, width, exclude if options.exclude_history else None)
        if not options.sparse_trie:
            constraint.expand = None  # beam search then takes the dense apply/advance hook
    else:
        constraint = BanTokens([PAD_ID])
    cache = model.init_decode_cache(batch, encoder_input_tokens, max_decode_len)
    out = beam_search(decode_step, cache, batch, beam_size=beam, max_decode_len=max_decode_len, eos_id=eos_id,
                      alpha=options.alpha, top_k=options.top_k, constraint=constraint,
                      reorder_cache=functools.partial(model.reorder_cache, batch_size=batch))
    if options.constrained:
        items = jnp.where(out.finished, constraint.items(out.constraint_state), -1)
    else:
        items = jnp.full(out.scores.shape, -1, jnp.int32)  # looked up on the host (`lookup_items`)
    return DecodedItems(items.astype(jnp.int32), out.scores, out.log_probs, out.sequences, out.unexplored_bound)


class ItemDecoder:
    """Jitted top-k item decoding for one model, trie and option set (compiled once per shape).

    decoder = ItemDecoder(model, trie, DecodeOptions(beam_size=20, top_k=20))  # model: EncoderDecoderModel
    out = decoder(params, encoder_input_tokens [batch, enc_len], histories)  # numpy DecodedItems
    """

    def __init__(self, model: DecodingModel, trie: ItemTrie, options: DecodeOptions = DecodeOptions(),
                 *, in_shardings=None, out_shardings=None):
        self.model, self.trie, self.options = model, trie, options
        self.max_decode_len = options.decode_len(trie)
        self._trie_arrays = trie.arrays()
        body = functools.partial(search_items, model, options=options, max_decode_len=self.max_decode_len,
                                 root_width=trie.root_degree, width=trie.max_degree, eos_id=trie.eos_id)
        kwargs = {}
        if in_shardings is not None:
            kwargs["in_shardings"] = in_shardings
        if out_shardings is not None:
            kwargs["out_shardings"] = out_shardings
        self._search = jax.jit(body, **kwargs)

    def exclusion(self, histories, width: Optional[int] = None) -> Optional[np.ndarray]:
        if not (self.options.constrained and self.options.exclude_history) or histories is None:
            return None
        return exclusion_matrix(histories, width)

    def search(self, params, encoder_input_tokens, trie: Optional[TrieArrays] = None,
               exclude=None) -> DecodedItems:
        """Device arrays (placed as the inputs are: e.g. a batch sharded over a mesh); `items` is
        -1 throughout in unconstrained mode (see `lookup_items`). trie: `ItemTrie.arrays()`
        placed by the caller (default: this decoder's, on the default device)."""
        if self.options.constrained and self.options.exclude_history and exclude is None:
            raise ValueError("DecodeOptions.exclude_history is set: pass exclude=decoder.exclusion(histories)")
        if not self.options.constrained:
            trie = None
        elif trie is None:
            trie = self._trie_arrays
        return self._search(params, encoder_input_tokens, trie, exclude)

    def __call__(self, params, encoder_input_tokens, exclude: Optional[np.ndarray] = None) -> DecodedItems:
        """encoder_input_tokens [batch, enc_len]; exclude: `exclusion(histories, width)` or None.
        Numpy results; unconstrained outputs get their items looked up in the trie."""
        out = DecodedItems(*(np.asarray(x) for x in self.search(params, encoder_input_tokens, None, exclude)))
        if not self.options.constrained:
            out = out._replace(items=lookup_items(self.trie, out.sequences, out.scores))
        return out


def lookup_items(trie: ItemTrie, sequences: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Item index of each decoded sequence [batch, k, len] (-1: not an item ID, or an empty slot)."""
    items = np.full(scores.shape, -1, np.int32)
    for idx in np.ndindex(*scores.shape):
        if not np.isfinite(scores[idx]):
            continue
        seq = sequences[idx]
        eos = np.nonzero(seq == trie.eos_id)[0]
        if len(eos):
            items[idx] = trie.lookup(seq[:eos[0] + 1].tolist())
    return items
