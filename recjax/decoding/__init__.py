"""Decoding algorithms over a model's functions (decoding.model_api): beam search under jit with
logit hooks and the item-ID trie constraint (the trie itself: recjax.items.trie), best-first
exact search, candidate scoring (see DESIGN.md, "Decoding")."""
from recjax.decoding.beam_search import BeamSearchOutput, beam_search
from recjax.decoding.constraints import TrieConstraint, exclusion_matrix
from recjax.decoding.item_decoder import DecodedItems, DecodeOptions, ItemDecoder

__all__ = ["BeamSearchOutput", "beam_search", "TrieConstraint", "exclusion_matrix", "DecodedItems",
           "DecodeOptions", "ItemDecoder"]
