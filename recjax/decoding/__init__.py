"""Decoding: item-ID trie, logit hooks and beam search under jit (see DESIGN.md, "Decoding")."""
from recjax.decoding.beam_search import BeamSearchOutput, beam_search
from recjax.decoding.constraints import TrieConstraint, exclusion_matrix
from recjax.decoding.item_decoder import DecodedItems, DecodeOptions, ItemDecoder
from recjax.decoding.trie import ItemTrie

__all__ = ["BeamSearchOutput", "beam_search", "TrieConstraint", "exclusion_matrix", "DecodedItems",
           "DecodeOptions", "ItemDecoder", "ItemTrie"]
