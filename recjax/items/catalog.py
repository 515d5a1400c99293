"""A dataset's items as a model writes them: what evaluation, `infer` and the decoders read."""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

import numpy as np

from recjax.config import EOS_ID
from recjax.items.trie import ItemTrie


@dataclasses.dataclass
class Catalog:
    """IDs, titles, original IDs (ASIN, movie id), the tokenizer and the trie of the ID tokens."""

    name: str
    item_ids: list[str]
    item_titles: list[str]
    trie: ItemTrie
    tokenizer: Any  # sentencepiece processor of the task vocabulary
    item_original_ids: Optional[list[str]] = None  # ASIN / movie id: the same item under any ID scheme
    _index: Optional[dict[str, int]] = None
    _original_index: Optional[dict[str, int]] = None

    @classmethod
    def build(cls, name: str, dataset, tokenizer, vocab_size: int) -> "Catalog":
        """The catalog of a prepared dataset under a tokenizer, for a model of `vocab_size` ids."""
        sequences = [tokenizer.EncodeAsIds(i) for i in dataset.item_ids]
        trie = ItemTrie.from_token_sequences(sequences, vocab_size, names=dataset.item_ids)
        return cls(name, list(dataset.item_ids), list(dataset.item_titles), trie, tokenizer,
                   list(dataset.item_original_ids))

    def index(self, item_id: str) -> int:
        """Item index of an ID text, -1 when the catalog has no such item."""
        if self._index is None:
            self._index = {s: i for i, s in enumerate(self.item_ids)}
        return self._index.get(item_id, -1)

    def index_of_any(self, value: str) -> int:
        """Item index of an ID text or, failing that, of an original ID (ASIN, movie id); -1 if neither."""
        index = self.index(value)
        if index < 0 and self.item_original_ids:
            if self._original_index is None:
                self._original_index = {s: i for i, s in enumerate(self.item_original_ids)}
            index = self._original_index.get(value, -1)
        return index

    def decode(self, tokens: np.ndarray) -> str:
        """Tokens (EOS included or not, 0-padded) -> text."""
        tokens = [int(t) for t in tokens]
        if EOS_ID in tokens:
            tokens = tokens[:tokens.index(EOS_ID)]
        # The model's vocabulary is padded past the tokenizer's pieces (and sentinels): an
        # unconstrained decode may write such ids, which decode to nothing.
        size = self.tokenizer.GetPieceSize()
        return self.tokenizer.DecodeIds([t for t in tokens if 0 < t < size])
